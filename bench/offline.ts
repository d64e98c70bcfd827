// Benchmarks of disconnected operation, on both backends (a local directory; NFSv3 on one
// nfs-ganesha, scripts/nfs-server.sh, 127.0.0.1), all measured in this one run:
//  1. replay (`cachefs sync`) of N small files created offline vs the plain copy of the same
//     tree (`cp -r` into a local directory; `nfs-cp`, one process per file, for NFS);
//  2. replay of a large file overwritten offline vs `cp` / `nfs-cp` of the same bytes;
//  3. offline vs connected reads (of a cached file) and writes (dd conv=fsync).
// Usage (as root, after scripts/setup.sh):  node dist/bench/offline.js [--runs N] [--files N]
//   [--size-mib N] [--rw-mib N] [--out docs/PERFORMANCE.md] [--work DIR]
// Writes its tables between <!-- offline:begin --> and <!-- offline:end --> in
// docs/PERFORMANCE.md (bench/run.ts and bench/nfs.ts keep that section when they rewrite it).
//
// Every workload through a mount runs in a child process (cp, dd, cat, the cachefs CLI): this
// process never serves a mount and does no I/O on one. It talks to the mount daemons only on
// their control sockets (status: FUSE ops, counters, journal.pending over time).
import { spawn, execFileSync } from 'node:child_process';
import { promises as fsp, existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNfsServer, type NfsServer } from '../test/helpers/nfs-server.js';
import { sendControl } from '../src/daemon/control.js';
import { CONTROL_SOCKET } from '../src/daemon/protocol.js';
import { cpuDelta, cpuSnap, watchGanesha, type Cpu } from './cpu.js';
import { writeDocSection, shq, runChild, arg, deltaOps, deltaCounters, CLI, REPO, type OpsTable, type Counters } from './common.js';


const RUNS = Number(arg('runs', '3'));
const FILES = Number(arg('files', '10000'));
const SIZE_MIB = Number(arg('size-mib', '1024'));
const RW_MIB = Number(arg('rw-mib', '256'));
const OUT = arg('out', path.join(REPO, 'docs', 'PERFORMANCE.md'));
const WORK = arg('work', path.join(os.tmpdir(), 'cachefs-bench-offline'));
const BACKENDS = arg('backends', 'local,nfs').split(',') as ('local' | 'nfs')[];
const MiB = 1024 * 1024;
const PER_DIR = 100;
const BEGIN = '<!-- offline:begin -->';

// ------------------------------------------------------------------ processes

/** Runs a child process to its end (bench/common.ts). */
const run = runChild;

const q = shq;
/** Dirty pages written back before a timed step, so it does not pay for an earlier one's. */
const flushDirty = () => execFileSync('sync');


// ------------------------------------------------------------------ cachefs mounts

interface StatusJson {
  pid: number; state: string; reason: string; ops: OpsTable; counters: Counters; conflicts: number;
  journal: { pending: number }; backendInfo?: { rpc?: { calls?: number } };
}

const live = new Set<CachefsMount>();

class CachefsMount {
  pid: number | null = null;
  constructor(readonly label: 'local' | 'nfs', readonly backend: string, readonly mnt: string, readonly cache: string) {}

  private get sock(): string { return path.join(this.cache, CONTROL_SOCKET); }

  async mount(opts: { fresh: boolean }): Promise<void> {
    if (opts.fresh) await fsp.rm(this.cache, { recursive: true, force: true });
    await fsp.mkdir(this.mnt, { recursive: true });
    live.add(this);
    await run(process.execPath, [CLI, 'mount', this.backend, this.mnt, '--cache-dir', this.cache, '--log-level', 'warn'], { cwd: WORK });
    this.pid = (await this.status()).pid;
    // List the root while connected: a directory never listed cannot get new names offline.
    await run('ls', ['-a', this.mnt]);
  }

  /** The daemon's status, straight from its control socket (what `status --json` prints). */
  async status(): Promise<StatusJson> {
    return await sendControl(this.sock, { op: 'status' }) as StatusJson;
  }

  /** Pending journal records by op (`cachefs journal --json`, counted). */
  async journalOps(): Promise<Record<string, number>> {
    const { items } = await sendControl(this.sock, { op: 'journal' }, 120_000) as { items: { op: string }[] };
    const out: Record<string, number> = {};
    for (const i of items) out[i.op] = (out[i.op] ?? 0) + 1;
    return out;
  }

  async offline(): Promise<void> {
    await run(process.execPath, [CLI, 'offline', this.mnt], { cwd: WORK });
    const s = await this.status();
    if (s.state !== 'disconnected') throw new Error(`${this.label}: after \`cachefs offline\` the mount is ${s.state}`);
  }

  /** `cachefs sync`, as a user runs it; throws unless it ends connected with an empty journal. */
  async sync(): Promise<void> {
    const out = await run(process.execPath, [CLI, 'sync', this.mnt, '--json'], { cwd: WORK });
    const s = JSON.parse(out) as StatusJson;
    if (s.state !== 'connected' || s.journal.pending !== 0) {
      throw new Error(`${this.label}: \`cachefs sync\` returned with state ${s.state} (${s.reason}), ${s.journal.pending} records pending`);
    }
    if (s.conflicts !== 0) throw new Error(`${this.label}: \`cachefs sync\` left ${s.conflicts} conflict(s)`);
  }

  async umount(): Promise<void> {
    try {
      await run(process.execPath, [CLI, 'umount', this.mnt], { cwd: WORK });
    } catch (e) {
      process.stderr.write(`cachefs umount ${this.mnt} failed (${(e as Error).message}); fusermount3 -u -z\n`);
      await run('fusermount3', ['-u', '-z', this.mnt]).catch(() => undefined);
    }
    this.pid = null;
    live.delete(this);
  }
}

// ------------------------------------------------------------------ measuring

interface Point { t: number; pending: number; state: string; backendCalls: number; rpcCalls: number }
interface Profile {
  cpu: Cpu;
  /** FUSE requests by op (count, handler ms) and the layer's counters, for cachefs rows. */
  ops?: OpsTable;
  counters?: Counters;
  rpcCalls?: number;
  /** Journal records pending when the step began (replays), and how many of each op. */
  records?: number;
  recordOps?: Record<string, number>;
  /** journal.pending over time (replays). */
  timeline?: Point[];
}
interface Sample { secs: number; prof: Profile }

const samples = new Map<string, Sample[]>();

function record(key: string, s: Sample): void {
  if (!samples.has(key)) samples.set(key, []);
  samples.get(key)!.push(s);
  process.stderr.write(`  ${key}: ${s.secs.toFixed(3)} s` +
    `${s.prof.records !== undefined ? ` (${s.prof.records} records)` : ''}\n`);
}

const rpcOf = (s: StatusJson) => s.backendInfo?.rpc?.calls ?? 0;

/** How often journal.pending is sampled during a replay (each status costs the daemon a few ms). */
const POLL_MS = 500;

/**
 * Times fn (a child process); through `m` it also records the FUSE ops, counters and backend
 * RPCs it caused and, with `timeline`, the journal's records by op before and journal.pending
 * every POLL_MS while it runs.
 */
async function measure(key: string, m: CachefsMount | null, fn: () => Promise<unknown>, opts: { timeline?: boolean } = {}): Promise<Sample> {
  const recordOps = m && opts.timeline ? await m.journalOps() : undefined;
  const before = m ? await m.status() : null;
  const c0 = cpuSnap(m?.pid ?? null);
  const t = process.hrtime.bigint();
  const points: Point[] = [];
  let done = false;
  const poller = m && opts.timeline ? (async () => {
    points.push({ t: 0, pending: before!.journal.pending, state: before!.state, backendCalls: 0, rpcCalls: 0 });
    while (!done) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      if (done) break;
      const s = await m.status().catch(() => null);
      if (!s || done) continue;
      points.push({
        t: Number(process.hrtime.bigint() - t) / 1e9, pending: s.journal.pending, state: s.state,
        backendCalls: s.counters.backendCalls - before!.counters.backendCalls, rpcCalls: rpcOf(s) - rpcOf(before!),
      });
    }
  })() : null;
  try {
    await fn();
  } finally {
    done = true;
  }
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  const c1 = cpuSnap(m?.pid ?? null);
  await poller;
  const after = m ? await m.status() : null;
  const prof: Profile = { cpu: cpuDelta(c0, c1) };
  if (before && after) {
    prof.ops = deltaOps(before.ops, after.ops);
    prof.counters = deltaCounters(before.counters, after.counters);
    prof.rpcCalls = rpcOf(after) - rpcOf(before);
    if (opts.timeline) {
      prof.records = before.journal.pending;
      prof.recordOps = recordOps;
      points.push({ t: secs, pending: after.journal.pending, state: after.state, backendCalls: prof.counters.backendCalls, rpcCalls: prof.rpcCalls });
      prof.timeline = points;
    }
  }
  const s = { secs, prof };
  record(key, s);
  return s;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
/** The median sample (by time) of a key: its profile goes with its time. */
function med(key: string): Sample {
  const all = samples.get(key);
  if (!all?.length) throw new Error(`no samples for ${key}`);
  return [...all].sort((a, b) => a.secs - b.secs)[Math.floor(all.length / 2)]!;
}
const T = (k: string) => med(k).secs;
function spread(key: string): string {
  const all = samples.get(key)!.map((s) => s.secs);
  return `${Math.min(...all).toFixed(2)}-${Math.max(...all).toFixed(2)}`;
}

// ------------------------------------------------------------------ fixtures

/** A file of `mib` MiB of pseudo-random bytes; `seed` makes different contents. */
async function makeBigFile(file: string, mib: number, seed: number): Promise<void> {
  const h = await fsp.open(file, 'w');
  const block = Buffer.alloc(MiB);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE(((i + seed) * 2654435761) >>> 0, i);
  for (let i = 0; i < mib; i++) { block.writeUInt32LE(i ^ seed, 0); block.writeUInt32LE(seed, 4); await h.write(block); }
  await h.close();
}

/** `files` files of 1-4 KiB of pseudo-random bytes, PER_DIR to a directory (d000/f0 ...). */
async function makeTree(root: string, files: number): Promise<number> {
  let x = 0x9e3779b9;
  const rnd = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
  let bytes = 0;
  for (let d = 0; d < Math.ceil(files / PER_DIR); d++) {
    const dir = path.join(root, `d${String(d).padStart(3, '0')}`);
    await fsp.mkdir(dir, { recursive: true });
    const n = Math.min(PER_DIR, files - d * PER_DIR);
    const writes: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const size = 1024 + (rnd() % (3 * 1024 + 1));
      const b = Buffer.alloc(size);
      for (let j = 0; j + 4 <= size; j += 4) b.writeUInt32LE(rnd(), j);
      bytes += size;
      writes.push(fsp.writeFile(path.join(dir, `f${i}`), b));
    }
    await Promise.all(writes);
  }
  return bytes;
}

async function countFiles(dir: string): Promise<number> {
  return Number((await run(`find ${q(dir)} -type f | wc -l`, [], { shell: true })).trim());
}

/** The copy at `dir` is the tree, byte for byte (diff -r exits non-zero otherwise). */
async function verifyTree(src: string, dir: string, what: string): Promise<void> {
  const n = await countFiles(dir);
  if (n !== FILES) throw new Error(`${what}: ${n} files in ${dir}, not ${FILES}`);
  await run('diff', ['-r', '-q', src, dir]).catch((e) => { throw new Error(`${what}: ${dir} differs from the source tree: ${(e as Error).message}`); });
}

async function verifyFile(src: string, file: string, what: string): Promise<void> {
  await run('cmp', [src, file]).catch((e) => { throw new Error(`${what}: ${file} differs from ${src}: ${(e as Error).message}`); });
}

// ------------------------------------------------------------------ main

let server: NfsServer | null = null;
let cleaning: Promise<void> | null = null;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const m of [...live]) await m.umount().catch(() => undefined);
    if (server) {
      await server.stop().catch((e) => process.stderr.write(`stopping the NFS server: ${(e as Error).message}\n`));
      await fsp.rm(server.dir, { recursive: true, force: true }).catch(() => undefined);
    }
    await fsp.rm(WORK, { recursive: true, force: true }).catch(() => undefined);
  })();
  return cleaning;
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    process.stderr.write(`bench: ${sig}, cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

interface Facts { nfsPort: number; mntPort: number; treeBytes: number }

async function main(): Promise<void> {
  if (!existsSync('/dev/fuse')) throw new Error('no /dev/fuse');
  if (process.getuid?.() !== 0) throw new Error('run as root (nfs-ganesha, allow_other)');
  const libnfsVersion = (() => { try { return execFileSync('dpkg-query', ['-W', '-f=${Version}', 'libnfs-utils'], { encoding: 'utf8' }); } catch { return '?'; } })();
  const ganeshaVersion = (() => { try { return execFileSync('dpkg-query', ['-W', '-f=${Version}', 'nfs-ganesha'], { encoding: 'utf8' }); } catch { return '?'; } })();
  const head = (() => { try { return execFileSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { return '?'; } })();
  const srcDirty = (() => { try { return execFileSync('git', ['-C', REPO, 'status', '--porcelain', 'src'], { encoding: 'utf8' }).trim(); } catch { return ''; } })();
  const load0 = os.loadavg();

  await fsp.rm(WORK, { recursive: true, force: true });
  await fsp.mkdir(WORK, { recursive: true });
  // Disk: the sources (2 × size + rw), per backend the big file, its cache file and the plain
  // copy, the rw files, and the trees; the NFS export lives under os.tmpdir() as well.
  const needGiB = ((5 * SIZE_MIB + 4 * RW_MIB) * MiB + FILES * 16 * 1024) / 2 ** 30 + 1;
  const df = await run('df', ['-B1', '--output=avail,target', WORK]);
  const [availStr, fsTarget] = df.trim().split('\n')[1]!.trim().split(/\s+/);
  const availGiB = Number(availStr) / 2 ** 30;
  if (availGiB < needGiB) {
    throw new Error(`${availGiB.toFixed(1)} GiB free on ${fsTarget}, ${needGiB.toFixed(1)} GiB needed: lower --size-mib`);
  }
  const diskFacts = `${availGiB.toFixed(0)} GiB free on ${fsTarget} (${needGiB.toFixed(1)} GiB needed)`;

  process.stderr.write(`preparing a ${FILES}-file tree, 2 × ${SIZE_MIB} MiB and ${RW_MIB} MiB sources in ${WORK}\n`);
  const TREE = path.join(WORK, 'tree-src');
  const treeBytes = await makeTree(TREE, FILES);
  const SRC1 = path.join(WORK, 'big1.bin');
  const SRC2 = path.join(WORK, 'big2.bin');
  const SRCW = path.join(WORK, 'rw.bin');
  await makeBigFile(SRC1, SIZE_MIB, 1);
  await makeBigFile(SRC2, SIZE_MIB, 2);
  await makeBigFile(SRCW, RW_MIB, 3);
  const PLAIN = path.join(WORK, 'plain'); // the local baseline's target, same file system as the local backend
  await fsp.mkdir(PLAIN);

  const mounts: CachefsMount[] = [];
  const localDir = path.join(WORK, 'local-backend');
  await fsp.mkdir(localDir);
  const backendDir: Record<string, string> = { local: localDir };
  if (BACKENDS.includes('local')) mounts.push(new CachefsMount('local', localDir, path.join(WORK, 'mnt-local'), path.join(WORK, 'cache-local')));
  let facts: Facts = { nfsPort: 0, mntPort: 0, treeBytes };
  if (BACKENDS.includes('nfs')) {
    process.stderr.write('starting nfs-ganesha on 127.0.0.1\n');
    server = await startNfsServer('bench-offline');
    const srv = server;
    watchGanesha(() => srv.pid());
    backendDir.nfs = srv.exportDir;
    facts = { nfsPort: srv.nfsPort, mntPort: srv.mntPort, treeBytes };
    mounts.push(new CachefsMount('nfs', srv.url, path.join(WORK, 'mnt-nfs'), path.join(WORK, 'cache-nfs')));
  }
  const libnfs = (p: string) => `nfs://127.0.0.1/export${p}?nfsport=${facts.nfsPort}&mountport=${facts.mntPort}`;
  // nfs-cp copies one file per process and makes no directories: a script of FILES nfs-cp
  // commands, the directories made on the server beforehand (untimed).
  const treeFiles: string[] = [];
  for (let d = 0; d < Math.ceil(FILES / PER_DIR); d++) {
    for (let i = 0; i < Math.min(PER_DIR, FILES - d * PER_DIR); i++) treeFiles.push(`d${String(d).padStart(3, '0')}/f${i}`);
  }
  const nfsCpScript = (dest: string) => {
    const file = path.join(WORK, 'nfs-cp-tree.sh');
    writeFileSync(file, 'set -e\n' + treeFiles.map((f) => `nfs-cp ${q(path.join(TREE, f))} ${q(libnfs(`/${dest}/${f}`))}\n`).join(''));
    return file;
  };
  /** Every source's bytes in the page cache, as for the baselines. */
  const warmSources = () => run(`cat ${q(SRC1)} ${q(SRC2)} ${q(SRCW)} > /dev/null && find ${q(TREE)} -type f -exec cat {} + > /dev/null`, [], { shell: true });

  for (let r = 0; r < RUNS; r++) {
    const swap = r % 2 === 1; // alternate which side goes first
    for (const m of mounts) {
      const B = m.label;
      const bdir = backendDir[B]!;
      process.stderr.write(`run ${r + 1}/${RUNS}: ${B} backend\n`);
      await warmSources();

      // 1. FILES small files: created offline through the mount (cp -r), replayed by `cachefs sync`,
      //    vs the plain copy of the same tree.
      const cachefsTree = async () => {
        await m.mount({ fresh: true });
        await m.offline();
        const dest = `t${r}`;
        flushDirty();
        await measure(`create.${B}`, m, () => run('cp', ['-r', TREE, path.join(m.mnt, dest)]));
        flushDirty();
        await measure(`replay.tree.${B}`, m, () => m.sync(), { timeline: true });
        await verifyTree(TREE, path.join(bdir, dest), `${B}: after replaying the tree`);
        // what any `cachefs` command costs by itself (a Node start, one control-socket request)
        await measure(`cli.${B}`, null, () => run(process.execPath, [CLI, 'status', m.mnt, '--json'], { cwd: WORK }));
        await m.umount();
        await fsp.rm(path.join(bdir, dest), { recursive: true, force: true });
      };
      const plainTree = async () => {
        const dest = `c${r}`;
        if (B === 'local') {
          flushDirty();
          await measure(`copy.tree.${B}`, null, () => run('cp', ['-r', TREE, path.join(PLAIN, dest)]));
          await verifyTree(TREE, path.join(PLAIN, dest), 'cp -r');
          await fsp.rm(path.join(PLAIN, dest), { recursive: true, force: true });
        } else {
          for (let d = 0; d < Math.ceil(FILES / PER_DIR); d++) {
            await fsp.mkdir(path.join(bdir, dest, `d${String(d).padStart(3, '0')}`), { recursive: true, mode: 0o777 });
          }
          const script = nfsCpScript(dest);
          flushDirty();
          await measure(`copy.tree.${B}`, null, () => run('sh', [script]));
          await verifyTree(TREE, path.join(bdir, dest), 'nfs-cp');
          await fsp.rm(path.join(bdir, dest), { recursive: true, force: true });
        }
      };
      if (swap) { await plainTree(); await cachefsTree(); } else { await cachefsTree(); await plainTree(); }

      // 2. A SIZE_MIB file cached while connected (written through the mount, read once),
      //    overwritten entirely offline, replayed; vs cp / nfs-cp of the same bytes.
      const cachefsBig = async () => {
        await m.mount({ fresh: true });
        const big = path.join(m.mnt, 'big');
        await run('dd', [`if=${SRC1}`, `of=${big}`, 'bs=1M', 'conv=fsync']);
        await run(`cat ${q(big)} > /dev/null`, [], { shell: true }); // read once: cached
        if (r === 0) await verifyFile(SRC1, path.join(bdir, 'big'), `${B}: the file written connected`);
        await m.offline();
        flushDirty();
        await measure(`overwrite.${B}`, m, () => run('dd', [`if=${SRC2}`, `of=${big}`, 'bs=1M', 'conv=notrunc']));
        flushDirty();
        await measure(`replay.big.${B}`, m, () => m.sync(), { timeline: true });
        await verifyFile(SRC2, path.join(bdir, 'big'), `${B}: after replaying the overwrite`);
        await m.umount();
        await fsp.rm(path.join(bdir, 'big'), { force: true });
      };
      const plainBig = async () => {
        if (B === 'local') {
          const dest = path.join(PLAIN, 'big');
          flushDirty();
          await measure(`copy.big.${B}`, null, () => run('cp', [SRC2, dest]));
          await verifyFile(SRC2, dest, 'cp');
          await fsp.rm(dest, { force: true });
        } else {
          const dest = path.join(bdir, 'bigcopy');
          await fsp.rm(dest, { force: true }); // nfs-cp never overwrites
          flushDirty();
          await measure(`copy.big.${B}`, null, () => run('nfs-cp', [SRC2, libnfs('/bigcopy')]));
          await verifyFile(SRC2, dest, 'nfs-cp');
          await fsp.rm(dest, { force: true });
        }
      };
      if (swap) { await plainBig(); await cachefsBig(); } else { await cachefsBig(); await plainBig(); }

      // 3a. Sequential read of a cached RW_MIB file, connected vs offline: in the same mount
      //     (the kernel's page cache), and after a remount (cachefs's cache files).
      await fsp.copyFile(SRCW, path.join(bdir, 'r'));
      const rfile = path.join(m.mnt, 'r');
      const readDd = () => run('dd', [`if=${rfile}`, 'of=/dev/null', 'bs=1M']);
      await m.mount({ fresh: true });
      await run(`cat ${q(rfile)} > /dev/null`, [], { shell: true }); // fills the cache
      flushDirty();
      if (swap) {
        await m.offline();
        await measure(`read.warm.off.${B}`, m, readDd);
        await m.sync();
        await measure(`read.warm.conn.${B}`, m, readDd);
      } else {
        await measure(`read.warm.conn.${B}`, m, readDd);
        await m.offline();
        await measure(`read.warm.off.${B}`, m, readDd);
        await m.sync();
      }
      await m.umount();
      await m.mount({ fresh: false });
      await measure(`read.remount.conn.${B}`, m, readDd);
      if (r === 0) await verifyFile(SRCW, rfile, `${B}: read through the mount`);
      await m.umount();
      await m.mount({ fresh: false });
      await m.offline();
      await measure(`read.remount.off.${B}`, m, readDd);
      if (r === 0) await verifyFile(SRCW, rfile, `${B}: read through the mount, offline`);
      await m.sync();
      await m.umount();
      await fsp.rm(path.join(bdir, 'r'), { force: true });

      // 3b. Sequential write of RW_MIB (dd bs=1M conv=fsync) into a new file, connected vs
      //     offline (fsync: the bytes and their journal records durable in the cache); the
      //     offline one is then replayed.
      await m.mount({ fresh: true });
      const ddW = (name: string) => () => run('dd', [`if=${SRCW}`, `of=${path.join(m.mnt, name)}`, 'bs=1M', 'conv=fsync']);
      const connWrite = async () => {
        flushDirty();
        await measure(`write.conn.${B}`, m, ddW('w1'));
        await verifyFile(SRCW, path.join(bdir, 'w1'), `${B}: written connected`);
      };
      const offWrite = async () => {
        await m.offline();
        flushDirty();
        await measure(`write.off.${B}`, m, ddW('w2'));
        flushDirty();
        await measure(`replay.w.${B}`, m, () => m.sync(), { timeline: true });
        await verifyFile(SRCW, path.join(bdir, 'w2'), `${B}: written offline, replayed`);
      };
      if (swap) { await offWrite(); await connWrite(); } else { await connWrite(); await offWrite(); }
      await m.umount();
      await fsp.rm(path.join(bdir, 'w1'), { force: true });
      await fsp.rm(path.join(bdir, 'w2'), { force: true });
    }
  }

  // ---------------------------------------------------------------- report
  const load1 = os.loadavg();
  const lines: string[] = [];
  const cmd = `node dist/bench/offline.js --runs ${RUNS} --files ${FILES} --size-mib ${SIZE_MIB}` +
    (RW_MIB !== 256 ? ` --rw-mib ${RW_MIB}` : '') + (BACKENDS.join(',') !== 'local,nfs' ? ` --backends ${BACKENDS.join(',')}` : '');
  const kib = (facts.treeBytes / FILES / 1024).toFixed(1);
  lines.push(BEGIN, '## Disconnected operation: replay and offline I/O', '');
  lines.push(`Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} cores (${os.cpus()[0]?.model.trim() ?? '?'}), ` +
    `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, kernel ${os.release()}, Node ${process.version}; commit ${head}` +
    `${srcDirty ? ' with uncommitted changes in src/' : ''}; ${diskFacts}; nfs-ganesha ${ganeshaVersion} (FSAL_VFS, ` +
    `scripts/nfs-server.sh) on 127.0.0.1, libnfs-utils ${libnfsVersion}. Load average ` +
    `${load0.map((x) => x.toFixed(2)).join(' ')} at the start, ${load1.map((x) => x.toFixed(2)).join(' ')} at the end. ` +
    'Produced by (as root, after `bash scripts/setup.sh`):', '');
  lines.push('```sh', cmd, '```', '');
  lines.push(`Median of ${RUNS} runs (range in brackets), every baseline against the same backend in the same run, ` +
    'alternating which goes first. Each replay is `cachefs sync <mnt> --json` as a user runs it (a new CLI process; it ' +
    'returns once the journal is replayed and the mount is connected again, directory diffing included), timed from ' +
    'start to exit; after each one the backend is compared with the source (`diff -r` of the tree, `cmp` of the files) ' +
    'and the mount must be connected with 0 records pending and 0 conflicts. Dirty pages are written back (`sync`) ' +
    'before each timed step; sources are in the page cache. ' +
    `Tree: ${FILES} files of 1-4 KiB (${kib} KiB on average), ${PER_DIR} to a directory, ` +
    `created offline with \`cp -r\` into the mount (root listed while connected, fresh cache). ` +
    `Baselines: \`cp -r\` / \`cp\` into a local directory on the local backend's file system; for NFS \`nfs-cp\` ` +
    `(libnfs: one process, one MOUNT, per file; a script of ${FILES} of them; the ${Math.ceil(FILES / PER_DIR)} ` +
    'directories made on the server beforehand, untimed; UNSTABLE writes and a COMMIT at close). Local backend: neither ' +
    'side fsyncs the tree or the large file. NFS: cachefs also sends UNSTABLE writes, and COMMITs once 32 MiB of a file ' +
    'or 64 MiB in all are uncommitted.', '');
  lines.push('| workload | backend | cachefs | baseline | ratio (time) | target | |');
  lines.push('| --- | --- | ---: | ---: | ---: | ---: | --- |');
  const secs = (k: string) => `${T(k).toFixed(2)} s [${spread(k)}]`;
  const rate = (k: string, n: number, unit: string) => `${secs(k)}, ${(n / T(k)).toFixed(0)} ${unit}`;
  const verdict = (ratio: number, target: number) => (ratio <= target ? 'met' : 'NOT met');
  const recs = (k: string) => {
    const p = med(k).prof;
    const by = Object.entries(p.recordOps ?? {}).sort((a, b) => b[1] - a[1]).map(([op, n]) => `${op} ${n}`).join(', ');
    return `${p.records}${by ? ` (${by})` : ''}`;
  };
  for (const m of mounts) {
    const B = m.label;
    const baseTree = B === 'local' ? '`cp -r`' : '`nfs-cp` × ' + FILES;
    const baseBig = B === 'local' ? '`cp`' : '`nfs-cp`';
    let ratio = T(`replay.tree.${B}`) / T(`copy.tree.${B}`);
    lines.push(`| replay of ${FILES} files created offline | ${B} | ${rate(`replay.tree.${B}`, FILES, 'files/s')} | ` +
      `${baseTree}: ${rate(`copy.tree.${B}`, FILES, 'files/s')} | ${ratio.toFixed(2)}× | ≤ 1.5× | ${verdict(ratio, 1.5)} |`);
    ratio = T(`replay.big.${B}`) / T(`copy.big.${B}`);
    lines.push(`| replay of ${SIZE_MIB} MiB overwritten offline | ${B} | ${rate(`replay.big.${B}`, SIZE_MIB, 'MiB/s')} | ` +
      `${baseBig}: ${rate(`copy.big.${B}`, SIZE_MIB, 'MiB/s')} | ${ratio.toFixed(2)}× | ≤ 1.5× | ${verdict(ratio, 1.5)} |`);
    ratio = T(`write.off.${B}`) / T(`write.conn.${B}`);
    lines.push(`| write ${RW_MIB} MiB, dd bs=1M conv=fsync | ${B} | offline: ${rate(`write.off.${B}`, RW_MIB, 'MiB/s')} | ` +
      `connected: ${rate(`write.conn.${B}`, RW_MIB, 'MiB/s')} | ${ratio.toFixed(2)}× | ≤ 1× | ${verdict(ratio, 1)} |`);
    ratio = T(`read.warm.off.${B}`) / T(`read.warm.conn.${B}`);
    lines.push(`| read ${RW_MIB} MiB cached, same mount (kernel page cache) | ${B} | offline: ${rate(`read.warm.off.${B}`, RW_MIB, 'MiB/s')} | ` +
      `connected: ${rate(`read.warm.conn.${B}`, RW_MIB, 'MiB/s')} | ${ratio.toFixed(2)}× | | |`);
    ratio = T(`read.remount.off.${B}`) / T(`read.remount.conn.${B}`);
    lines.push(`| read ${RW_MIB} MiB cached, after a remount (cache files) | ${B} | offline: ${rate(`read.remount.off.${B}`, RW_MIB, 'MiB/s')} | ` +
      `connected: ${rate(`read.remount.conn.${B}`, RW_MIB, 'MiB/s')} | ${ratio.toFixed(2)}× | | |`);
  }
  lines.push('');
  lines.push('The offline side of each replay, and the replay of the offline write:', '');
  lines.push('| step | backend | time | rate | journal records |');
  lines.push('| --- | --- | ---: | ---: | ---: |');
  for (const m of mounts) {
    const B = m.label;
    lines.push(`| \`cp -r\` of ${FILES} files into the mount, offline | ${B} | ${secs(`create.${B}`)} | ${(FILES / T(`create.${B}`)).toFixed(0)} files/s | |`);
    lines.push(`| \`cachefs sync\` of those | ${B} | ${secs(`replay.tree.${B}`)} | ${(FILES / T(`replay.tree.${B}`)).toFixed(0)} files/s | ${recs(`replay.tree.${B}`)} |`);
    lines.push(`| dd conv=notrunc over the cached ${SIZE_MIB} MiB file, offline | ${B} | ${secs(`overwrite.${B}`)} | ${(SIZE_MIB / T(`overwrite.${B}`)).toFixed(0)} MiB/s | |`);
    lines.push(`| \`cachefs sync\` of that | ${B} | ${secs(`replay.big.${B}`)} | ${(SIZE_MIB / T(`replay.big.${B}`)).toFixed(0)} MiB/s | ${recs(`replay.big.${B}`)} |`);
    lines.push(`| \`cachefs sync\` of the ${RW_MIB} MiB file written offline (3b) | ${B} | ${secs(`replay.w.${B}`)} | ${(RW_MIB / T(`replay.w.${B}`)).toFixed(0)} MiB/s | ${recs(`replay.w.${B}`)} |`);
    lines.push(`| (reference: \`cachefs status --json\`, the cost of starting any cachefs command) | ${B} | ${secs(`cli.${B}`)} | | |`);
  }
  lines.push('');
  lines.push('### Where the time goes (median run of each workload)', '');
  lines.push('CPU seconds during the step by process (from /proc: the cachefs mount daemon, ganesha.nfsd, the client ' +
    'processes — cp, dd, nfs-cp, the `cachefs sync` CLI —, this bench process, and everything else on the machine, ' +
    'other engineers\' test runs included), and for cachefs the FUSE requests (`status --json` `ops`: count and ' +
    'handler time), the backend calls (`counters.backendCalls`) and, on NFS, the RPCs (`backendInfo.rpc.calls`).', '');
  lines.push('| step | wall s | CPU s: cachefs / ganesha / client / bench / other | FUSE requests (handler s) | backend calls | NFS RPCs |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: |');
  const profKeys: [string, string][] = [];
  for (const m of mounts) {
    const B = m.label;
    profKeys.push(
      [`create.${B}`, `${B}: offline \`cp -r\` of the tree`], [`replay.tree.${B}`, `${B}: sync of the tree`],
      [`copy.tree.${B}`, `${B}: ${B === 'local' ? 'cp -r' : 'nfs-cp'} of the tree`],
      [`overwrite.${B}`, `${B}: offline overwrite of ${SIZE_MIB} MiB`], [`replay.big.${B}`, `${B}: sync of the overwrite`],
      [`copy.big.${B}`, `${B}: ${B === 'local' ? 'cp' : 'nfs-cp'} of ${SIZE_MIB} MiB`],
      [`write.conn.${B}`, `${B}: write ${RW_MIB} MiB connected`], [`write.off.${B}`, `${B}: write ${RW_MIB} MiB offline`],
      [`replay.w.${B}`, `${B}: sync of the offline write`],
      [`read.warm.conn.${B}`, `${B}: read, same mount, connected`], [`read.warm.off.${B}`, `${B}: read, same mount, offline`],
      [`read.remount.conn.${B}`, `${B}: read after remount, connected`], [`read.remount.off.${B}`, `${B}: read after remount, offline`],
    );
  }
  for (const [k, name] of profKeys) {
    if (!samples.has(k)) continue;
    const s = med(k);
    const c = s.prof.cpu;
    const ops = s.prof.ops;
    const reqs = ops ? Object.values(ops).reduce((a, v) => a + v.count, 0) : 0;
    const hms = ops ? Object.values(ops).reduce((a, v) => a + v.ms, 0) : 0;
    lines.push(`| ${name} | ${s.secs.toFixed(3)} | ${[c.daemon, c.ganesha, c.client, c.bench, c.other].map((x) => x.toFixed(2)).join(' / ')} | ` +
      `${ops ? `${reqs} (${(hms / 1000).toFixed(2)})${reqs ? `: ${opsList(ops)}` : ''}` : ''} | ${s.prof.counters?.backendCalls ?? ''} | ` +
      `${s.prof.rpcCalls || ''} |`);
  }
  lines.push('');
  lines.push(`\`journal.pending\` during each replay (median run; polled on the control socket every ${POLL_MS} ms; ` +
    'seconds: records pending, state):', '');
  for (const m of mounts) {
    for (const k of [`replay.tree.${m.label}`, `replay.big.${m.label}`, `replay.w.${m.label}`]) {
      const tl = med(k).prof.timeline ?? [];
      lines.push(`- ${k}: ${timeline(tl)}`);
    }
  }
  lines.push('');
  const section = lines.join('\n');
  process.stdout.write(section + '\n');
  writeDocSection(OUT, 'offline', section, ['<!-- analysis -->']);
}

/** At most ~12 points: the first, the last, and evenly spaced ones in between; state changes marked. */
function timeline(points: Point[]): string {
  if (points.length === 0) return '(none)';
  const step = Math.max(1, Math.ceil(points.length / 12));
  const keep = points.filter((p, i) => i === 0 || i === points.length - 1 || i % step === 0 || p.state !== points[i - 1]!.state);
  return keep.map((p) => `${p.t.toFixed(1)}: ${p.pending} ${p.state === 'connected' ? 'conn' : p.state === 'reintegrating' ? 'reint' : 'disc'}`).join(' → ');
}

function opsList(ops: OpsTable): string {
  return Object.entries(ops).sort((a, b) => b[1].count - a[1].count).slice(0, 5)
    .map(([k, v]) => `${k} ${v.count}`).join(', ');
}


main().then(
  () => cleanup(),
  async (e) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
    await cleanup();
    process.exitCode = 1;
  },
);
