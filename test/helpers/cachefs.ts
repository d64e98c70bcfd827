// Test helpers: run the real CLI in a child process, mount real FUSE file systems over
// temporary backend directories, and always clean up (cachefs umount, then fusermount3 -u -z).
// The test process is never the one serving a mount, so synchronous I/O on it is safe here.
import { execFile, spawn } from 'node:child_process';
import { promises as fsp, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportSubdir, type NfsServer } from './nfs-server.js';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const REPO = path.resolve(path.dirname(CLI), '..', '..', '..');

export interface CliResult { code: number; stdout: string; stderr: string }

export function cli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], {
      cwd: opts.cwd ?? process.cwd(),
      env: { ...process.env, ...opts.env },
      timeout: opts.timeoutMs ?? 90_000,
      maxBuffer: 16 * 1024 * 1024,
    }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

export function sh(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number; uid?: number; gid?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('close', (code) => { clearTimeout(t); resolve({ code: code ?? 1, stdout, stderr }); });
    child.on('error', (e) => { clearTimeout(t); resolve({ code: 127, stdout, stderr: String(e) }); });
  });
}

export function tempRoot(tag: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `cachefs-${tag}-`));
}

export interface MountOpts {
  /** Merged into the generated config file. */
  config?: Record<string, unknown>;
  root?: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Mount over this NFS server instead of a local directory: the backend directory is a
   * fresh directory inside its export, mounted as nfs://…/export/<dir>.
   */
  nfs?: NfsServer;
  /** Mount the backend another mount uses (a second laptop on the same server), not a fresh one. */
  sameBackendAs?: Mounted;
}

export class Mounted {
  readonly backend: string;
  readonly mnt: string;
  readonly cache: string;
  readonly configFile: string;
  /** What `cachefs mount` is given: the backend directory, or an nfs:// URL naming it. */
  source: string;
  constructor(readonly root: string, backendDir?: string) {
    this.backend = backendDir ?? path.join(root, 'backend');
    this.source = this.backend;
    this.mnt = path.join(root, 'mnt');
    this.cache = path.join(root, 'cache');
    this.configFile = path.join(root, 'cache.config.json');
  }

  m(...p: string[]): string { return path.join(this.mnt, ...p); }
  b(...p: string[]): string { return path.join(this.backend, ...p); }

  /** Environment of the next mount process (e.g. CACHEFS_FAULTS for fault injection). */
  env: NodeJS.ProcessEnv = {};

  async mount(): Promise<void> {
    const r = await cli(['mount', this.source, this.mnt, '--cache-dir', this.cache, '--config', this.configFile], { env: this.env });
    if (r.code !== 0) throw new Error(`mount failed (${r.code}): ${r.stderr}`);
  }

  async umount(): Promise<CliResult> {
    return cli(['umount', this.mnt]);
  }

  async remount(): Promise<void> {
    const r = await this.umount();
    if (r.code !== 0) throw new Error(`umount failed: ${r.stderr}`);
    await this.mount();
  }

  async status(): Promise<StatusJson> {
    const r = await cli(['status', this.mnt, '--json']);
    if (r.code !== 0) throw new Error(`status failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as StatusJson;
  }

  /**
   * Status over the control socket from this process. Use it while this process holds files
   * of the mount open: spawning the CLI would close those descriptors in the child
   * (close-on-exec), and each such close is a FUSE flush that waits for the backend.
   */
  async statusDirect(): Promise<StatusJson> {
    const { sendControl } = await import('../../src/daemon/control.js');
    return await sendControl(path.join(this.cache, 'control.sock'), { op: 'status' }) as StatusJson;
  }

  /** Unmounts whatever is left, however it is left. */
  async cleanup(): Promise<void> {
    await cli(['umount', this.mnt, '--force']).catch(() => undefined);
    await sh('fusermount3', ['-u', '-z', this.mnt]).catch(() => undefined);
    // For a post-mortem: CACHEFS_TEST_KEEP_LOGS=<dir> keeps each mount's log there.
    const keep = process.env.CACHEFS_TEST_KEEP_LOGS;
    if (keep) {
      await fsp.mkdir(keep, { recursive: true });
      await fsp.copyFile(path.join(this.cache, 'cachefs.log'), path.join(keep, `${path.basename(this.root)}.log`)).catch(() => undefined);
    }
    await fsp.rm(this.root, { recursive: true, force: true }).catch(() => undefined);
    if (!this.backend.startsWith(this.root + path.sep)) await fsp.rm(this.backend, { recursive: true, force: true }).catch(() => undefined);
  }
}

export interface StatusJson {
  state: string; reason?: string; backend: string; pid: number; mountpoint: string; cacheDir: string;
  cache: { bytes: number; objects: number; dirty: number };
  /** pending: the journal's rows (durable records); bytes: what the write records not yet applied carry, volatile ones too. */
  journal: { pending: number; bytes: number };
  conflicts: number;
  counters: { hits: number; misses: number; bytesFromCache: number; bytesFromBackend: number; backendCalls: number };
  rssBytes: number;
  /** Files the mount has open (the kernel's RELEASE of a closed one comes after close() returns). */
  openFiles: number;
}

/**
 * A control request from this process (no CLI child per step): 'status', or 'offline' /
 * 'online' (which answers once the journal is replayed, or the mount is still away).
 */
export async function control(m: Mounted, op: 'status' | 'offline' | 'online'): Promise<StatusJson & { reason?: string }> {
  const { sendControl } = await import('../../src/daemon/control.js');
  return await sendControl(path.join(m.cache, 'control.sock'), { op }, 120_000) as StatusJson & { reason?: string };
}

/** kill -9 of the mount process, waited for, and its dead mount detached (fusermount3 -u -z). */
export async function killMount(m: Mounted): Promise<void> {
  const { waitUntil } = await import('./wait.js');
  const pid = (await control(m, 'status')).pid;
  process.kill(pid, 'SIGKILL');
  await waitUntil('the mount process to die', () => { try { process.kill(pid, 0); return false; } catch { return true; } }, 10_000, 5);
  await sh('fusermount3', ['-u', '-z', m.mnt]);
}

/** Waits until the mount is connected with nothing left in its journal (a replay is over). */
export async function waitReplayed(m: Mounted, timeoutMs = 180_000): Promise<void> {
  const { waitUntil } = await import('./wait.js');
  await waitUntil('the journal to be replayed', async () => {
    const s = await control(m, 'status');
    return s.state === 'connected' && s.journal.pending === 0;
  }, timeoutMs, 50);
}

/** Makes a backend directory and mounts it; the caller must `cleanup()` (use `after`). */
export async function mountFresh(tag: string, opts: MountOpts = {}): Promise<Mounted> {
  const root = opts.root ?? tempRoot(tag);
  const other = opts.sameBackendAs;
  const sub = opts.nfs && !other ? exportSubdir(opts.nfs, path.basename(root)) : undefined;
  const m = new Mounted(root, other?.backend ?? sub?.dir);
  if (other) m.source = other.source;
  else if (sub) m.source = sub.url;
  if (opts.env) m.env = opts.env;
  await fsp.mkdir(m.backend, { recursive: true });
  await fsp.mkdir(m.mnt, { recursive: true });
  writeFileSync(m.configFile, JSON.stringify({
    backend: m.source, mountpoint: m.mnt, cacheDir: m.cache, log: 'debug', ...(opts.config ?? {}),
  }, null, 2));
  try {
    await m.mount();
  } catch (e) {
    await m.cleanup(); // a mount refused leaves no temporary directory behind
    throw e;
  }
  return m;
}

/** True while `/proc/mounts` lists a FUSE mount at `mnt`. */
export async function fuseMounted(mnt: string): Promise<boolean> {
  const text = await fsp.readFile('/proc/mounts', 'utf8');
  return text.split('\n').some((l) => l.split(' ')[1] === mnt && (l.split(' ')[2] ?? '').startsWith('fuse'));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The backends every end-to-end suite runs over. */
export const BACKEND_KINDS = ['local', 'nfs'] as const;
export type BackendKind = (typeof BACKEND_KINDS)[number];

/** Why a backend's suite cannot run here (the NFS server needs root), or false. */
export function skipKind(kind: BackendKind): string | false {
  return kind === 'nfs' && process.getuid?.() !== 0 ? 'the NFS test server (nfs-ganesha) needs root' : false;
}
