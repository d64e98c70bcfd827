// Test helper: a real NFS server (nfs-ganesha, FSAL_VFS) on 127.0.0.1, run by
// scripts/nfs-server.sh with its own state dir and (by default) free ports. Needs root.
//
//   const srv = await startNfsServer('mytest');
//   // srv.url = 'nfs://127.0.0.1:<nfsPort>/export?mountport=<mntPort>'; files written into
//   // srv.exportDir are visible over NFS at once (Attr_Expiration_Time = 0)
//   await srv.stop();
//
// restart() keeps the export dir (its inode is part of the root file handle), so handles
// obtained before a restart stay valid. A process 'exit' hook SIGTERMs servers a test forgot
// to stop (only the pids started here, after checking their command line), and a watchdog
// (scripts/nfs-server.sh, CACHEFS_NFS_WATCH_PID) stops them if this process dies by a signal.
import { execFile } from 'node:child_process';
import { readFileSync, promises as fsp } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** scripts/nfs-server.sh (start|stop|status; env CACHEFS_NFS_DIR, CACHEFS_NFS_PORT, ...) */
export const NFS_SERVER_SCRIPT = path.join(REPO, 'scripts', 'nfs-server.sh');
const SCRIPT = NFS_SERVER_SCRIPT;
const SCRIPT_TIMEOUT_MS = 60_000;

/**
 * A directory `name` of the server's export: where it is on this machine (write fixtures
 * there) and the nfs:// URL that mounts it as a backend.
 */
export function exportSubdir(srv: Pick<NfsServer, 'url' | 'exportDir'>, name: string): { dir: string; url: string } {
  const u = new URL(srv.url);
  u.pathname = `${u.pathname.replace(/\/$/, '')}/${name}`;
  return { dir: path.join(srv.exportDir, name), url: u.toString() };
}

export interface NfsServer {
  /** cachefs' URL form: nfs://127.0.0.1:<nfsPort>/export?mountport=<mntPort> */
  url: string;
  /** the exported directory (mode 0777); write fixtures here directly */
  exportDir: string;
  /** the state dir: ganesha.conf, ganesha.log, ganesha.pid, ... */
  dir: string;
  nfsPort: number;
  mntPort: number;
  /** pid of the running ganesha.nfsd; 0 while stopped */
  pid(): number;
  stop(): Promise<void>;
  /** Stops the server and removes its state dir and export (end of a test file). */
  dispose(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
}

// Servers started here and not yet stopped: pid -> config path (to recognise the process).
const live = new Map<number, string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [pid, conf] of live) {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        if (cmd[0]?.endsWith('ganesha.nfsd') && cmd.includes(conf)) process.kill(pid, 'SIGTERM');
      } catch { /* gone already */ }
    }
  });
}

/** A port the OS considers free on 127.0.0.1 right now (listen on :0, note it, close). */
async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      servers.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve());
      });
      ports.push((s.address() as net.AddressInfo).port);
    }
    return ports; // all held open at once, so they are distinct
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

interface ScriptResult { code: number; stdout: string; stderr: string; how: string }

function runScript(cmd: 'start' | 'stop' | 'status', env: NodeJS.ProcessEnv): Promise<ScriptResult> {
  return new Promise((resolve) => {
    execFile('bash', [SCRIPT, cmd], {
      cwd: REPO,
      env: { ...process.env, ...env },
      timeout: SCRIPT_TIMEOUT_MS,
      killSignal: 'SIGTERM',
      maxBuffer: 4 * 1024 * 1024,
    }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; killed?: boolean; signal?: string | null }) | null;
      const code = !e ? 0 : typeof e.code === 'number' ? e.code : 1;
      const how = !e ? 'exit 0'
        : e.killed ? `timed out after ${SCRIPT_TIMEOUT_MS / 1000} s`
        : e.signal ? `killed by ${e.signal}`
        : typeof e.code === 'number' ? `exit ${e.code}` : e.message;
      resolve({ code, stdout: String(stdout), stderr: String(stderr), how });
    });
  });
}

async function logTail(dir: string, lines = 20): Promise<string> {
  try {
    const text = await fsp.readFile(path.join(dir, 'ganesha.log'), 'utf8');
    return text.split('\n').filter(Boolean).slice(-lines).join('\n');
  } catch {
    return '(no ganesha.log)';
  }
}

async function readPid(dir: string): Promise<number> {
  const text = await fsp.readFile(path.join(dir, 'ganesha.pid'), 'utf8');
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`bad pid file ${path.join(dir, 'ganesha.pid')}: ${JSON.stringify(text)}`);
  return pid;
}

/**
 * Starts a fresh server (own state dir under os.tmpdir(), free ports unless given).
 * watchdog (default true): the script also starts a watchdog that stops the server once this
 * process is gone, even when it dies by a signal (the 'exit' hook does not run then).
 */
export async function startNfsServer(tag: string, opts: { nfsPort?: number; mntPort?: number; watchdog?: boolean } = {}): Promise<NfsServer> {
  const safeTag = tag.replace(/[^A-Za-z0-9_.-]/g, '_');
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `cachefs-nfs-${safeTag}-`));
  const exportDir = path.join(dir, 'export');
  const conf = path.join(dir, 'ganesha.conf');
  let nfsPort = opts.nfsPort;
  let mntPort = opts.mntPort;
  if (nfsPort === undefined || mntPort === undefined) {
    const [a, b] = await freePorts(2);
    nfsPort ??= a !== mntPort ? a! : b!;
    mntPort ??= b !== nfsPort ? b! : a!;
  }
  const env = {
    CACHEFS_NFS_DIR: dir,
    CACHEFS_NFS_EXPORT_DIR: exportDir,
    CACHEFS_NFS_PORT: String(nfsPort),
    CACHEFS_MNT_PORT: String(mntPort),
    CACHEFS_NFS_WATCH_PID: opts.watchdog === false ? '' : String(process.pid),
  };
  const expectedUrl = `nfs://127.0.0.1:${nfsPort}/export?mountport=${mntPort}`;
  let currentPid = 0;
  installExitHook();

  const server: NfsServer = {
    url: expectedUrl,
    exportDir,
    dir,
    nfsPort,
    mntPort,
    pid: () => currentPid,
    async start() {
      if (currentPid) return;
      const r = await runScript('start', env);
      // record the pid even on failure, so a half-started server is still cleaned up
      const pid = await readPid(dir).catch(() => 0);
      if (pid) live.set(pid, conf);
      const lastLine = r.stdout.trim().split('\n').pop() ?? '';
      if (r.code !== 0 || lastLine !== expectedUrl || !pid) {
        if (pid) await runScript('stop', env);
        live.delete(pid);
        throw new Error(
          `scripts/nfs-server.sh start failed (${r.how}` +
          `${r.code === 0 ? `, printed ${JSON.stringify(lastLine)} instead of ${expectedUrl}` : ''}) in ${dir}\n` +
          `--- stderr ---\n${r.stderr.trim()}\n--- stdout ---\n${r.stdout.trim()}\n` +
          `--- ganesha.log (tail) ---\n${await logTail(dir)}`);
      }
      currentPid = pid;
    },
    async stop() {
      if (!currentPid) return;
      const r = await runScript('stop', env);
      if (r.code !== 0) {
        throw new Error(`scripts/nfs-server.sh stop failed (${r.how}) in ${dir}\n--- stderr ---\n${r.stderr.trim()}\n` +
          `--- stdout ---\n${r.stdout.trim()}\n--- ganesha.log (tail) ---\n${await logTail(dir)}`);
      }
      live.delete(currentPid);
      currentPid = 0;
    },
    async restart() {
      await server.stop();
      await server.start();
    },
    async dispose() {
      await server.stop();
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
