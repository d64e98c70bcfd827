// What the benchmarks share: where the CLI is, command-line flags, fixtures, and the deltas
// of a mount's status counters between two moments.
import { spawn, execFileSync } from 'node:child_process';
import { promises as fsp, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sendControl } from '../src/daemon/control.js';
import { CONTROL_SOCKET } from '../src/daemon/protocol.js';
import { MOUNT_PROCESS_ENV } from '../src/cli/commands.js';

export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
export const REPO = path.resolve(path.dirname(CLI), '..', '..', '..');

export type OpsTable = Record<string, { count: number; ms: number }>;
export interface Counters { hits: number; misses: number; bytesFromCache: number; bytesFromBackend: number; backendCalls: number }

export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

export async function makeBigFile(file: string, mib: number): Promise<void> {
  const h = await fsp.open(file, 'w');
  const block = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  for (let i = 0; i < mib; i++) { block.writeUInt32LE(i, 0); await h.write(block); }
  await h.close();
}

export async function makeTree(root: string, files: number): Promise<void> {
  const perDir = 100;
  for (let d = 0; d < Math.ceil(files / perDir); d++) {
    const dir = path.join(root, `d${String(d).padStart(3, '0')}`);
    await fsp.mkdir(dir, { recursive: true });
    const n = Math.min(perDir, files - d * perDir);
    await Promise.all(Array.from({ length: n }, (_, i) => fsp.writeFile(path.join(dir, `f${i}.txt`), `file ${d}/${i}\n`)));
  }
}

/** A directory of `files` empty files (f0 … fN-1), made 500 at a time. */
export async function makeFlatDir(dir: string, files: number): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  for (let i = 0; i < files; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, files - i) }, (_, k) => fsp.writeFile(path.join(dir, `f${i + k}`), '')));
  }
}

export function deltaOps(a: OpsTable, b: OpsTable): OpsTable {
  const out: OpsTable = {};
  for (const [k, v] of Object.entries(b)) {
    const count = v.count - (a[k]?.count ?? 0);
    if (count > 0) out[k] = { count, ms: v.ms - (a[k]?.ms ?? 0) };
  }
  return out;
}

export function deltaCounters(a: Counters, b: Counters): Counters {
  return {
    hits: b.hits - a.hits, misses: b.misses - a.misses, bytesFromCache: b.bytesFromCache - a.bytesFromCache,
    bytesFromBackend: b.bytesFromBackend - a.bytesFromBackend, backendCalls: b.backendCalls - a.backendCalls,
  };
}

// ------------------------------------------------------------------ shared by bench/hoard.ts
// (general enough for any bench: child processes, cold caches, samples and medians, machine
// facts, a mount driven through the CLI, a section of docs/PERFORMANCE.md, CPU profiles).

export const MiB = 1024 * 1024;

/** A shell-quoted word. */
export const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export interface RunOpts {
  shell?: boolean;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called with each line of stdout as it arrives (and the hrtime it arrived at, ns). */
  onLine?: (line: string, at: bigint) => void;
}

/** Runs a child process to its end; resolves with its stdout, rejects (with stderr) unless it exits 0. */
export function runChild(cmd: string, args: string[], opts: RunOpts = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = opts.shell ? spawn('sh', ['-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd, env: opts.env })
      : spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd, env: opts.env });
    let out = '';
    let err = '';
    let partial = '';
    c.stdout.on('data', (d: Buffer) => {
      const s = d.toString();
      out += s;
      if (!opts.onLine) return;
      const at = process.hrtime.bigint();
      partial += s;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const l of lines) opts.onLine(l, at);
    });
    c.stderr.on('data', (d) => { err += d; });
    c.on('error', reject);
    c.on('close', (code) => {
      if (partial && opts.onLine) opts.onLine(partial, process.hrtime.bigint());
      if (code === 0) resolve(out);
      else reject(new Error(`${opts.shell ? cmd : `${cmd} ${args.join(' ')}`}: exit ${code}: ${(err.trim() || out.trim()).slice(0, 2000)}`));
    });
  });
}

/**
 * Cold caches: dirty pages written back, then the kernel's page, dentry and inode caches
 * dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`). False when that is not allowed (not
 * root): "cold" is then only cold for cachefs's own cache.
 */
export function dropCaches(): boolean {
  execFileSync('sync');
  try { writeFileSync('/proc/sys/vm/drop_caches', '3'); return true; } catch { return false; }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Timed samples by key, in the order they were first recorded; the median sample carries its profile. */
export class SampleSet<P> {
  private readonly by = new Map<string, { secs: number; prof: P }[]>();

  add(key: string, secs: number, prof: P): void {
    if (!this.by.has(key)) this.by.set(key, []);
    this.by.get(key)!.push({ secs, prof });
  }
  has(key: string): boolean { return (this.by.get(key)?.length ?? 0) > 0; }
  all(key: string): { secs: number; prof: P }[] { return this.by.get(key) ?? []; }
  keys(): string[] { return [...this.by.keys()]; }
  /** The median sample by time (the upper one of an even count). */
  med(key: string): { secs: number; prof: P } {
    const all = this.by.get(key);
    if (!all?.length) throw new Error(`no samples for ${key}`);
    return [...all].sort((a, b) => a.secs - b.secs)[Math.floor(all.length / 2)]!;
  }
  /** "min-max" of the key's times, 2 decimals. */
  spread(key: string): string {
    const xs = this.all(key).map((s) => s.secs);
    return `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
  }
}

/** The installed Debian version of a package, or '?'. */
export function debVersion(pkg: string): string {
  try { return execFileSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8' }); } catch { return '?'; }
}

/** What the sections of docs/PERFORMANCE.md say about the machine and the code measured. */
export function machineFacts(): { line: string; head: string; srcDirty: boolean } {
  const head = (() => { try { return execFileSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { return '?'; } })();
  const srcDirty = (() => { try { return execFileSync('git', ['-C', REPO, 'status', '--porcelain', 'src'], { encoding: 'utf8' }).trim() !== ''; } catch { return false; } })();
  const line = `${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} cores (${os.cpus()[0]?.model.trim() ?? '?'}), ` +
    `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, kernel ${os.release()}, Node ${process.version}; commit ${head}` +
    `${srcDirty ? ' with uncommitted changes in src/' : ''}`;
  return { line, head, srcDirty };
}

/** A file's size in MiB from its byte count, 1 decimal. */
export const fmtMiB = (bytes: number): string => (bytes / MiB).toFixed(1);

/** What `cachefs status --json` answers (the part benches read). */
export interface MountStatus {
  pid: number; state: string; reason: string; ops: OpsTable; counters: Counters; conflicts: number;
  journal: { pending: number }; cache: { bytes: number; objects: number; pinned?: number };
  rssBytes?: number; backendInfo?: { rpc?: { calls?: number } };
}

/**
 * A cachefs mount driven the way a user drives it: the CLI (`mount`, `offline`, `online`,
 * `umount`, any other command) in child processes; status straight from the control socket.
 * Every mount still up is in `BenchMount.live` (unmount them on the way out).
 */
export class BenchMount {
  static readonly live = new Set<BenchMount>();
  pid: number | null = null;

  constructor(readonly label: string, readonly backend: string, readonly mnt: string, readonly cache: string,
    readonly cwd: string) {}

  private get sock(): string { return path.join(this.cache, CONTROL_SOCKET); }

  /** Mounts (a fresh cache directory when `fresh`); `env` is added to the environment of `cachefs mount` and so of the mount process. */
  async mount(opts: { fresh: boolean; env?: NodeJS.ProcessEnv; config?: string }): Promise<void> {
    if (opts.fresh) await fsp.rm(this.cache, { recursive: true, force: true });
    await fsp.mkdir(this.mnt, { recursive: true });
    BenchMount.live.add(this);
    await runChild(process.execPath, [CLI, 'mount', this.backend, this.mnt, '--cache-dir', this.cache, '--log-level', 'warn',
      ...(opts.config ? ['--config', opts.config] : [])], { cwd: this.cwd, env: opts.env ? { ...process.env, ...opts.env } : undefined });
    this.pid = (await this.status()).pid;
  }

  /**
   * Mounts with the mount process started here, in the foreground, with `nodeArgs` before the
   * script (e.g. --cpu-prof, which NODE_OPTIONS does not take), and the environment and V8 flag
   * `cachefs mount` gives its background process (src/cli/commands.ts). `umount` ends it.
   */
  async mountForeground(opts: { fresh: boolean; nodeArgs: string[]; config?: string }): Promise<void> {
    if (opts.fresh) await fsp.rm(this.cache, { recursive: true, force: true });
    await fsp.mkdir(this.mnt, { recursive: true });
    BenchMount.live.add(this);
    const env = { ...MOUNT_PROCESS_ENV, ...process.env };
    const child = spawn(process.execPath, [...opts.nodeArgs, '--max-semi-space-size=4', CLI, 'mount', this.backend, this.mnt, '--foreground',
      '--cache-dir', this.cache, '--log-level', 'warn', ...(opts.config ? ['--config', opts.config] : [])],
    { cwd: this.cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    let exited: number | null = null;
    child.stderr.on('data', (d) => { err += d; });
    this.exited = new Promise((resolve) => child.on('exit', (code) => { exited = code ?? 1; resolve(); }));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (exited !== null) throw new Error(`the foreground mount exited (${exited}): ${err.trim()}`);
      if (Date.now() > deadline) throw new Error('the foreground mount did not answer within 60 s');
      const s = await this.status().catch(() => null);
      if (s && s.pid === child.pid && readFileSync('/proc/mounts', 'utf8').includes(` ${this.mnt} `)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    this.pid = child.pid!;
  }

  /** The foreground mount process's end (mountForeground), once `umount` has asked for it. */
  private exited: Promise<void> | null = null;

  async status(): Promise<MountStatus> {
    return await sendControl(this.sock, { op: 'status' }) as MountStatus;
  }

  /** One request on the mount's control socket (what the CLI sends). */
  request(req: Record<string, unknown>, timeoutMs?: number): Promise<unknown> {
    return sendControl(this.sock, req as Parameters<typeof sendControl>[1], timeoutMs);
  }

  /** `cachefs <args...>` (a new CLI process), resolving with its stdout. */
  cli(args: string[], opts: Pick<RunOpts, 'onLine'> = {}): Promise<string> {
    return runChild(process.execPath, [CLI, ...args], { cwd: this.cwd, onLine: opts.onLine });
  }

  async offline(): Promise<void> {
    await this.cli(['offline', this.mnt]);
    const s = await this.status();
    if (s.state !== 'disconnected') throw new Error(`${this.label}: after \`cachefs offline\` the mount is ${s.state}`);
  }

  async online(): Promise<void> {
    await this.cli(['online', this.mnt]);
    const s = await this.status();
    if (s.state !== 'connected') throw new Error(`${this.label}: after \`cachefs online\` the mount is ${s.state} (${s.reason})`);
  }

  async umount(): Promise<void> {
    try {
      await this.cli(['umount', this.mnt]);
    } catch (e) {
      process.stderr.write(`cachefs umount ${this.mnt} failed (${(e as Error).message}); fusermount3 -u -z\n`);
      await runChild('fusermount3', ['-u', '-z', this.mnt]).catch(() => undefined);
    }
    if (this.exited) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.exited, new Promise((r) => { timer = setTimeout(r, 60_000); })]);
      clearTimeout(timer);
      this.exited = null;
    }
    this.pid = null;
    BenchMount.live.delete(this);
  }
}

/**
 * Writes a bench's section of a docs file: `<!-- NAME:begin -->` generated text, the
 * hand-written part from `<!-- NAME:analysis -->` (kept from the old section), `<!-- NAME:end -->`.
 * A new section goes before the first marker of `before` found in the file, else at the end.
 */
export function writeDocSection(file: string, name: string, generated: string, before: string[]): void {
  const BEGIN = `<!-- ${name}:begin -->`;
  const END = `<!-- ${name}:end -->`;
  const ANALYSIS = `<!-- ${name}:analysis -->`;
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '# Performance\n\n';
  const b = old.indexOf(BEGIN);
  const e = old.indexOf(END);
  const h = b >= 0 && e > b ? old.indexOf(ANALYSIS, b) : -1;
  const kept = h >= 0 && h < e ? old.slice(h, e) : `${ANALYSIS}\n`;
  const body = (generated.startsWith(BEGIN) ? generated : `${BEGIN}\n${generated}`).replace(/\n*$/, '\n');
  const section = body + kept + END;
  let text: string;
  if (b >= 0 && e > b) text = old.slice(0, b) + section + old.slice(e + END.length);
  else {
    const at = before.map((m) => old.indexOf(m)).filter((i) => i >= 0).sort((x, y) => x - y)[0];
    text = at !== undefined ? old.slice(0, at) + section + '\n\n' + old.slice(at) : old.replace(/\n*$/, '\n\n') + section + '\n';
  }
  writeFileSync(file, text);
}

/**
 * CPU seconds by thread of a process (/proc/PID/task/*, utime+stime): its main thread (the JS
 * thread of a Node process) as `main`, the others by name, those of one name summed (Node 20's
 * threads, libuv's pool included, are all named `node`).
 */
export function threadCpu(pid: number | null): Record<string, number> {
  const out: Record<string, number> = {};
  if (!pid) return out;
  let tids: string[];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'));
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      const name = Number(tid) === pid ? 'main' : comm;
      out[name] = (out[name] ?? 0) + (Number(f[11]) + Number(f[12])) / CLK_TCK;
    } catch { /* thread gone */ }
  }
  return out;
}
const CLK_TCK = (() => { try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { return 100; } })();

export function deltaRecord(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(b)) out[k] = v - (a[k] ?? 0);
  return out;
}

interface CpuProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface CpuProfileJson { nodes: CpuProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

export interface CpuProfileSummary {
  /** The window summed, ms. */
  windowMs: number;
  /** Self time, ms: (idle), (garbage collector), (program) and everything else by function (name file:line). */
  top: { name: string; ms: number }[];
  /** Self time by where the code is: (idle), (gc), (program), node internals, cachefs src/<dir>, a package. */
  byArea: { area: string; ms: number }[];
}

/**
 * Self times of a V8 `.cpuprofile` (node --cpu-prof), optionally only of the samples taken in
 * [fromUs, toUs] (V8's clock: CLOCK_MONOTONIC in µs, the clock process.hrtime reads).
 */
export function summarizeCpuProfile(file: string, window?: { fromUs: number; toUs: number }, topN = 25): CpuProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfileJson;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let t = prof.startTime;
  let windowUs = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i] ?? 0;
    // A sample stands for the time until the next one.
    const dur = i + 1 < prof.samples.length ? prof.timeDeltas[i + 1] ?? 0 : 0;
    if (window && (t < window.fromUs || t > window.toUs)) continue;
    windowUs += dur;
    self.set(prof.samples[i]!, (self.get(prof.samples[i]!) ?? 0) + dur);
  }
  const fn = new Map<string, number>();
  const area = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const cf = n.callFrame;
    const url = cf.url.replace(/^file:\/\//, '');
    const rel = url.startsWith(REPO) ? path.relative(REPO, url) : url;
    const name = cf.functionName.startsWith('(') ? cf.functionName : `${cf.functionName || '(anonymous)'} ${rel ? `${rel.replace(/^.*node_modules\//, '')}:${cf.lineNumber + 1}` : '(native)'}`;
    fn.set(name, (fn.get(name) ?? 0) + us);
    let a: string;
    if (cf.functionName === '(idle)') a = '(idle)';
    else if (cf.functionName === '(garbage collector)') a = '(gc)';
    else if (cf.functionName === '(program)') a = '(program: V8/native outside JS)';
    else if (!url) a = '(native functions)';
    else if (url.startsWith('node:')) a = 'node internals';
    else if (url.includes('node_modules/')) a = url.replace(/^.*node_modules\/((@[^/]+\/)?[^/]+).*$/, '$1');
    else if (rel.startsWith('dist/src/')) a = `cachefs ${rel.split('/').slice(1, 3).join('/')}`;
    else a = rel;
    area.set(a, (area.get(a) ?? 0) + us);
  }
  const sorted = (m: Map<string, number>) => [...m].sort((x, y) => y[1] - x[1]);
  return {
    windowMs: windowUs / 1000,
    top: sorted(fn).slice(0, topN).map(([name, us]) => ({ name, ms: us / 1000 })),
    byArea: sorted(area).map(([a, us]) => ({ area: a, ms: us / 1000 })),
  };
}
