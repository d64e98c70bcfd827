// What each CLI command does. These functions throw UserError for anything the user should
// read; they print only their own command's output.
import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync, existsSync, rmSync, statSync, statfsSync, writeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isNfsUrl } from '../core/nfs-url.js';
import { UserError } from '../core/errors.js';
import { loadConfig, type ConfigOverrides } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { sendControl, watchControl } from '../daemon/control.js';
import { prepareCacheDir, refuseIfInUse } from '../daemon/cache-dir.js';
import { CONTROL_SOCKET, EvictResultSchema, JournalItemSchema, StatusSchema, type EvictResultView, type Status } from '../daemon/protocol.js';
import { lookupMount, processAlive } from '../daemon/registry.js';
import { detachMount, forceUnmount, isMounted } from '../core/mount-table.js';
import { formatBytes, formatWatchEvent } from './format.js';
import { progressBar } from './progress.js';
import { EXIT_NOT_A_MOUNT, notAMount, requireMountOf } from './where.js';

export interface MountFlags {
  cacheDir?: string;
  config?: string;
  foreground?: boolean;
  allowOther?: boolean;
  logLevel?: Config['log'];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function commandMount(backend: string | undefined, mountpoint: string | undefined, flags: MountFlags): Promise<void> {
  const overrides: ConfigOverrides = {};
  if (backend !== undefined) overrides.backend = backend;
  if (mountpoint !== undefined) overrides.mountpoint = mountpoint;
  if (flags.cacheDir !== undefined) overrides.cacheDir = flags.cacheDir;
  if (flags.allowOther !== undefined) overrides.allowOther = flags.allowOther;
  if (flags.logLevel !== undefined) overrides.log = flags.logLevel;
  const { config, file } = loadConfig({ ...(flags.config ? { configFile: flags.config } : {}), overrides });
  if (!isNfsUrl(config.backend) && !existsSync(config.backend)) {
    throw new UserError(`backend directory ${config.backend} does not exist`, { hint: 'give an existing directory to cache' });
  }

  if (flags.foreground) {
    // Loaded here, not with the CLI: the daemon brings the whole mount (FUSE, layers,
    // SQLite, koffi), 174 ms to import, which no other command (nor a background mount's
    // own CLI process) needs.
    const { runMount } = await import('../daemon/daemon.js');
    const m = await runMount(config);
    process.stdout.write(`cachefs: ${config.backend} mounted on ${config.mountpoint} (pid ${process.pid}); Ctrl-C unmounts\n`);
    tellReady();
    await m.done;
    return;
  }

  // Background: start a foreground mount process of our own, detached, and wait until the
  // mount answers on its control socket (or the process dies and tells us why).
  refuseIfInUse(config.cacheDir);
  const madeCacheDir = !existsSync(config.cacheDir);
  await prepareCacheDir(config.cacheDir);
  const errFile = path.join(config.cacheDir, 'mount-stderr.log');
  // On a full cache disk this file may not be writable: then the disk itself is the answer.
  let errFd: number | 'ignore' = 'ignore';
  try { errFd = openSync(errFile, 'w', 0o600); } catch { /* see fullDisk below */ }
  const self = fileURLToPath(new URL('./main.js', import.meta.url));
  // A small young generation keeps the mount process's RSS low: its garbage is mostly
  // short-lived request buffers (see docs/PERFORMANCE.md for the measured effect).
  const args = ['--max-semi-space-size=4', self, 'mount', config.backend, config.mountpoint, '--foreground', '--cache-dir', config.cacheDir];
  // The file this process read (--config, or ./cache.config.json): the mount process starts
  // in / and must not look for one there.
  if (file) args.push('--config', file);
  if (flags.allowOther === true) args.push('--allow-other');
  if (flags.allowOther === false) args.push('--no-allow-other');
  if (flags.logLevel) args.push('--log-level', flags.logLevel);
  const env = { ...MOUNT_PROCESS_ENV, ...process.env, [READY_FD_ENV]: '3' };
  // In /, as daemons start: a mount process kept for days must not hold the directory the
  // user happened to be in (a USB disk could not be unmounted; a directory inside a dead
  // mount would fail every relative path).
  const child = spawn(process.execPath, args, { detached: true, cwd: '/', stdio: ['ignore', 'ignore', errFd, 'pipe'], env });
  if (errFd !== 'ignore') closeSync(errFd);
  let exited: number | null = null;
  // Woken when the mount process says it is mounted (tellReady), or goes: no polling delay.
  // A word that comes while the loop below is checking is kept for its next wait.
  let told = false;
  let wake: (() => void) | null = null;
  const tell = () => { if (wake) { wake(); wake = null; } else told = true; };
  const woken = () => told ? (told = false, Promise.resolve()) : new Promise<void>((resolve) => { wake = resolve; });
  child.on('exit', (code) => { exited = code ?? 1; tell(); });
  const ready = child.stdio[3] as Readable | null;
  ready?.on('data', tell).on('error', () => undefined);
  child.unref();
  (ready as { unref?: () => void } | null)?.unref?.();

  const deadline = Date.now() + 60_000;
  const sock = path.join(config.cacheDir, CONTROL_SOCKET);
  const logFile = path.join(config.cacheDir, 'cachefs.log');
  while (Date.now() < deadline) {
    if (exited !== null) {
      // The mount process said why on its stderr (its log may hold more, or nothing).
      let raw = '';
      try { raw = readFileSync(errFile, 'utf8').trim(); } catch { /* nothing was written */ }
      const full = raw ? null : fullDisk(config.cacheDir);
      if (full) {
        throw new UserError(`the mount process exited with code ${exited}: the cache disk is full (${config.cacheDir}, ${full} free): cachefs needs room there for its index, journal and log`, {
          hint: 'make room on that disk (the journal and everything cached are kept), or give the cache a roomier disk (--cache-dir)',
        });
      }
      const why = raw.split('\n');
      const hintLine = why.find((l) => l.startsWith('  hint: '));
      const message = why.filter((l) => !l.startsWith('  hint: ')).join('\n').replace(/^cachefs: /, '') || `the mount process exited with code ${exited}`;
      const logged = existsSync(logFile) && statSync(logFile).size > 0;
      // A cache directory made for this mount alone goes again: nothing was cached in it.
      if (madeCacheDir) rmSync(config.cacheDir, { recursive: true, force: true });
      throw new UserError(message, {
        hint: hintLine?.slice('  hint: '.length) ?? (logged && !madeCacheDir ? `see ${logFile}` : 'run `cachefs mount --foreground` to see the mount process\'s own output'),
      });
    }
    if (existsSync(sock)) {
      try {
        const s = StatusSchema.parse(await sendControl(sock, { op: 'status' }, 2000));
        // Only our own process counts: another one answering here means the cache directory
        // is in use (and ours is about to fail, or has).
        if (s.pid === child.pid && await isMounted(config.mountpoint)) {
          process.stdout.write(`cachefs: ${config.backend} mounted on ${config.mountpoint} (pid ${child.pid})\n`);
          return;
        }
      } catch { /* not ready yet */ }
    }
    // Checked again on the mount process's word, or after 50 ms without one.
    await Promise.race([woken(), sleep(50)]);
    wake = null;
  }
  throw new UserError('the mount did not come up within 60 s', {
    hint: `see ${logFile}; \`cachefs umount ${config.mountpoint}\` cleans up`,
  });
}

/**
 * A background mount's process tells the `cachefs mount` that started it that it is mounted
 * by writing to the descriptor this variable names (a pipe; see commandMount). Unset for a
 * mount started by hand, and for the processes the mount itself starts.
 */
const READY_FD_ENV = 'CACHEFS_READY_FD';

function tellReady(): void {
  const fd = Number(process.env[READY_FD_ENV]);
  delete process.env[READY_FD_ENV];
  if (!Number.isInteger(fd) || fd < 3) return;
  try {
    writeSync(fd, 'mounted\n');
    closeSync(fd);
  } catch { /* the CLI is gone: it polls anyway */ }
}

/** The free space of a (nearly) full disk holding `dir`, in words; null when it has room or cannot tell. */
function fullDisk(dir: string): string | null {
  try {
    const s = statfsSync(dir);
    const free = s.bavail * s.bsize;
    if (free >= 1048576 && free >= s.blocks * s.bsize * 0.01) return null;
    return formatBytes(free);
  } catch {
    return null;
  }
}

/**
 * The environment of a mount process (`cachefs mount` and the benchmarks). glibc's dynamic
 * mmap threshold lets freed buffers pile up in a brk heap that never shrinks, so it is
 * fixed. At 128 KiB every 1 MiB buffer (an NFS reply record, a copy of a WRITE kept for
 * its COMMIT, a fetched chunk) was a fresh mapping the kernel faulted in and zeroed, then
 * unmapped: over NFS a cold read of 256 MiB took 1.6-1.9 s, at 4 MiB 1.0-1.2 s, and
 * writes 1.85-2.0 s against 1.45-1.5 s (docs/PERFORMANCE.md). The trim threshold still
 * gives freed memory at the heap's top back at once.
 */
export const MOUNT_PROCESS_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: String(4 * 1024 * 1024), MALLOC_TRIM_THRESHOLD_: '131072',
  // Backend and cache-file I/O share libuv's thread pool; 4 threads queue up under load.
  UV_THREADPOOL_SIZE: '16',
};

export async function commandUmount(mountpointArg: string, opts: { force?: boolean; lazy?: boolean } = {}): Promise<void> {
  const mp = path.resolve(mountpointArg);
  const info = lookupMount(mp);
  const mounted = await isMounted(mp);
  if (info && processAlive(info.pid)) {
    const sock = path.join(info.cacheDir, CONTROL_SOCKET);
    if (opts.lazy) {
      // Detach now (new opens fail), keep serving the open files, shut down after the last.
      if (mounted) await detachMount(mp);
      const r = await sendControl(sock, { op: 'shutdown', whenIdle: true }, 30_000) as { open?: number };
      process.stdout.write(`cachefs: detached ${mp}${r.open ? `; the mount process finishes when its ${r.open} open file(s) are closed` : ''}\n`);
      return;
    }
    let answered = false;
    try {
      // --force does not wait long for a process that may be hung: the recovery below
      // aborts its connection and detaches the mount.
      await sendControl(sock, { op: 'shutdown', ...(opts.force ? { force: true } : {}) }, opts.force ? 5_000 : 30_000);
      answered = true;
    } catch (e) {
      // A refusal (busy) is the user's to read; a dead or stuck process is cleaned up below.
      if (e instanceof UserError && /busy/.test(e.message)) throw new UserError(e.message, { ...(e.hint ? { hint: e.hint } : {}), exitCode: 1 });
    }
    if (answered) {
      const deadline = Date.now() + 60_000;
      // A process that is not our child cannot be waited for: its end is polled, briefly.
      while (Date.now() < deadline && processAlive(info.pid)) await sleep(10);
      if (!processAlive(info.pid) && !(await isMounted(mp))) {
        process.stdout.write(`cachefs: unmounted ${mp}\n`);
        return;
      }
    }
  }
  if (mounted || info) {
    if (mounted) await forceUnmount(mp).catch((e: Error) => {
      throw new UserError(`cannot detach ${mp}: ${e.message}`, { hint: `try \`fusermount3 -u -z ${mp}\` as the mounting user` });
    });
    if (info && processAlive(info.pid)) {
      try { process.kill(info.pid, 'SIGTERM'); } catch { /* gone meanwhile */ }
    }
    process.stdout.write(`cachefs: cleaned up the mount at ${mp}` +
      ' (pending changes, if any, stay in the journal and are replayed at the next mount)\n');
    return;
  }
  throw notAMount(mp, 'see `cachefs status <mountpoint>` or /proc/mounts');
}

export async function fetchStatus(mountpointArg: string): Promise<Status> {
  const mp = path.resolve(mountpointArg);
  const info = lookupMount(mp);
  if (!info || !processAlive(info.pid)) {
    if (await isMounted(mp)) {
      throw new UserError(`${mp} is a dead mount (its process is gone: "Transport endpoint is not connected")`, {
        hint: `run \`cachefs umount ${mp}\` to clean it up, then mount again`, exitCode: EXIT_NOT_A_MOUNT,
      });
    }
    throw notAMount(mp, 'mount it with `cachefs mount <backend> <mountpoint>`');
  }
  const raw = await sendControl(path.join(info.cacheDir, CONTROL_SOCKET), { op: 'status' });
  const parsed = StatusSchema.safeParse(raw);
  if (!parsed.success) throw new UserError('the mount process sent a status this cachefs does not understand');
  return parsed.data;
}

export async function commandStatus(mountpoint: string, opts: { json?: boolean }): Promise<void> {
  const s = await fetchStatus(mountpoint);
  if (opts.json) {
    process.stdout.write(JSON.stringify(s, null, 2) + '\n');
    return;
  }
  const c = s.counters;
  const lines = [
    `cachefs on ${s.mountpoint} (pid ${s.pid})`,
    `  backend    ${s.backend}`,
    `  state      ${s.state} since ${s.since} (${s.reason})`,
    `  cache      ${s.cache.objects} objects, ${formatBytes(s.cache.bytes)} cached${s.cache.limit ? ` of ${formatBytes(s.cache.limit)} (culling.maxBytes)` : ''} in ${s.cacheDir}`,
    ...(s.cache.pinned !== undefined ? [cacheClasses(s.cache)] : []),
    `  journal    ${s.journal.pending === 0 ? 'no pending changes' : `${s.journal.pending} pending change(s), safe in the journal`}`,
    ...(s.journal.stalled ? [`             replay held up since ${s.journal.stalled.since}: ${s.journal.stalled.reason}`] : []),
    ...(s.cache.storageError ? [`  storage    the cache's index could not be written at ${s.cache.storageError.at}: ${s.cache.storageError.message}`] : []),
    `  conflicts  ${s.conflicts === 0 ? 'none' : `${s.conflicts} waiting for you (cachefs conflicts)`}`,
    `  reads      ${c.hits} hits, ${c.misses} misses; ${formatBytes(c.bytesFromCache)} from cache, ${formatBytes(c.bytesFromBackend)} from backend`,
    `  process    ${s.openFiles} open files, ${formatBytes(s.rssBytes)} resident`,
    ...(s.kernel ? [`  kernel     keeps names ${s.kernel.entryTimeoutS} s, attributes ${s.kernel.attrTimeoutS} s${s.kernel.listings ? ', listings' : ''}; `
      + (s.kernel.told ? 'told of every backend change' : 'not told of backend changes (they show once these expire)')] : []),
  ];
  const nfs = s.backendInfo as { protocol?: string; rsize?: number; wsize?: number; rpc?: { calls?: number; retransmits?: number; reconnects?: number } } | undefined;
  if (nfs?.protocol) {
    lines.push(`  protocol   ${nfs.protocol}, rsize ${formatBytes(nfs.rsize ?? 0)}, wsize ${formatBytes(nfs.wsize ?? 0)}; `
      + `${nfs.rpc?.calls ?? 0} calls, ${nfs.rpc?.retransmits ?? 0} resent, ${nfs.rpc?.reconnects ?? 0} reconnects`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

/** The cache's use by class and its disk, for `status`. */
function cacheClasses(c: Status['cache']): string {
  const disk = c.diskFreePercent === null || c.diskFreePercent === undefined ? '' : `; cache disk ${c.diskFreePercent}% free`;
  const full = c.storing === false ? '; FULL: fetched data is not kept, offline writes fail (ENOSPC)' : '';
  return `             ${formatBytes(c.pinned ?? 0)} pinned, ${formatBytes(c.dirty ?? 0)} dirty (not yet on the backend), `
    + `${formatBytes(c.clean ?? 0)} clean (culled first when room is needed)${disk}${full}`;
}

/** Finds a live mount's control socket (or says clearly why there is none). */
async function controlOf(mountpointArg: string): Promise<string> {
  const s = await fetchStatus(mountpointArg); // the same errors for dead and missing mounts
  return path.join(s.cacheDir, CONTROL_SOCKET);
}

function printState(s: Status, json: boolean | undefined): void {
  if (json) process.stdout.write(JSON.stringify(s, null, 2) + '\n');
  else {
    const pending = s.journal.pending === 0 ? 'no pending changes' : `${s.journal.pending} change(s) in the journal`;
    process.stdout.write(`cachefs: ${s.mountpoint} is ${s.state} (${s.reason}); ${pending}\n`);
  }
}

export async function commandOffline(mountpoint: string, opts: { json?: boolean }): Promise<void> {
  const sock = await controlOf(mountpoint);
  const s = StatusSchema.parse(await sendControl(sock, { op: 'offline' }));
  printState(s, opts.json);
}

/**
 * `online` and `sync`: asks the mount to reintegrate and, while it replays, polls its status
 * for a progress bar (records and bytes still pending, rate).
 */
export async function commandSync(mountpoint: string, opts: { json?: boolean; progress: boolean }): Promise<void> {
  const sock = await controlOf(mountpoint);
  const before = StatusSchema.parse(await sendControl(sock, { op: 'status' }));
  const total = before.journal.pending;
  const totalBytes = before.journal.bytes ?? 0;
  const showBar = opts.progress && !opts.json && process.stderr.isTTY && total > 0;
  const bar = await progressBar(showBar, 'replaying |{bar}| {value}/{total} records | {bytes} | {rate}/s | {eta_formatted} left');
  const t0 = Date.now();
  bar?.start(total, 0, { rate: '0 B', bytes: `0 B of ${formatBytes(totalBytes)}` });
  let done = false;
  // The answer ends the wait between two polls at once (it waited up to 200 ms more).
  let stop = (): void => undefined;
  const stopped = new Promise<void>((resolve) => { stop = resolve; });
  const poll = (async () => {
    while (!done) {
      await Promise.race([sleep(200), stopped]);
      if (done) break;
      const s = StatusSchema.safeParse(await sendControl(sock, { op: 'status' }).catch(() => null));
      if (!s.success) continue;
      const replayed = Math.max(0, total - s.data.journal.pending);
      const sent = Math.max(0, totalBytes - (s.data.journal.bytes ?? 0));
      const secs = Math.max(0.001, (Date.now() - t0) / 1000);
      bar?.update(replayed, { rate: formatBytes(sent / secs), bytes: `${formatBytes(sent)} of ${formatBytes(totalBytes)}` });
    }
  })();
  try {
    // Reintegration may take long: the answer comes when it is over.
    const s = StatusSchema.parse(await sendControl(sock, { op: 'online' }, 3_600_000));
    done = true;
    stop();
    await poll;
    bar?.update(total - s.journal.pending);
    bar?.stop();
    if (!opts.json && opts.progress && total > 0) {
      process.stderr.write(`cachefs: replayed ${total - s.journal.pending} record(s) in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    }
    printState(s, opts.json);
    if (s.state !== 'connected') {
      throw new UserError(`${s.mountpoint} is still ${s.state} (${s.reason})`, {
        hint: `${s.journal.pending} change(s) stay safe in the journal; the mount keeps probing the backend and reintegrates by itself when it answers`, exitCode: 1,
      });
    }
  } catch (e) {
    done = true;
    stop();
    bar?.stop();
    throw e instanceof UserError ? new UserError(e.message, {
      hint: `${total} change(s) stay safe in the journal; the mount keeps probing the backend and reintegrates by itself when it answers`, exitCode: 1,
    }) : e;
  }
}

export async function commandJournal(mountpoint: string, opts: { json?: boolean }): Promise<void> {
  const sock = await controlOf(mountpoint);
  const raw = await sendControl(sock, { op: 'journal' }) as { items?: unknown };
  const items = JournalItemSchema.array().parse(raw.items);
  if (opts.json) {
    process.stdout.write(JSON.stringify(items, null, 2) + '\n');
    return;
  }
  if (items.length === 0) {
    process.stdout.write('cachefs: the journal is empty: every change is on the backend\n');
    return;
  }
  const bytes = items.reduce((n, i) => n + i.bytes, 0);
  process.stdout.write(`${items.length} change(s) waiting for the backend, ${formatBytes(bytes)} of data:\n`);
  for (const i of items) {
    const where = i.path ?? '(no longer named)';
    const to = i.to ? ` -> ${i.to}` : '';
    const size = i.bytes ? ` ${formatBytes(i.bytes)}` : '';
    const err = i.lastError ? `  [last try: ${i.lastError}]` : '';
    process.stdout.write(`  #${i.seq}  ${i.at}  ${i.op.padEnd(7)} ${where}${to}${size}${err}\n`);
  }
}

/**
 * `cachefs watch`: follows a mount's events, one line each (JSON as the mount sent it, or a
 * sentence), until the mount unmounts (exit 0), Ctrl-C (exit 0), or the reader of our
 * output goes away (a closed pipe: exit 0 too, as `head` expects).
 */
export async function commandWatch(mountpoint: string, opts: { json?: boolean }): Promise<void> {
  const sock = await controlOf(mountpoint);
  const mp = path.resolve(mountpoint);
  const w = watchControl(sock, {
    onEvent: (e, raw) => { process.stdout.write((opts.json ? raw : formatWatchEvent(e, mp)) + '\n'); },
    onBadLine: (raw) => { process.stderr.write(`cachefs: skipping an event this cachefs does not understand: ${raw.slice(0, 200)}\n`); },
  });
  const stop = () => w.close();
  const onStdoutError = (e: NodeJS.ErrnoException) => { if (e.code === 'EPIPE') stop(); };
  process.once('SIGINT', stop);
  process.stdout.on('error', onStdoutError);
  try {
    await w.done;
  } finally {
    process.off('SIGINT', stop);
    process.stdout.off('error', onStdoutError);
  }
}

const KEPT_WHY: Record<'dirty' | 'open' | 'pinned' | 'busy', (mp: string, p: string) => string> = {
  dirty: (mp) => `dirty: holds changes not yet on the backend (never dropped; \`cachefs sync ${mp}\`, then evict again)`,
  pinned: (_mp, p) => `pinned (\`cachefs unpin ${p}\` first, or evict --force)`,
  open: () => 'open: a program has it open',
  busy: () => 'busy: being fetched or written; try again',
};

/**
 * `cachefs evict <path>...`: drops the clean cached data of files in a mount (with -r, of
 * everything under a directory). Dirty and open files are kept, pinned ones too unless
 * --force; each is named with why. Exits 1 when a path could not be looked at (not found, a
 * directory without -r); files kept are reported, not failures.
 */
export async function commandEvict(paths: string[], opts: { recursive?: boolean; force?: boolean; json?: boolean }): Promise<void> {
  // Group the paths by mount (usually one), keeping their order.
  const byMount = new Map<string, { abs: string; rel: string }[]>();
  for (const p of paths) {
    const where = requireMountOf(p, 'give files or directories inside a mount (`cachefs status <mountpoint>` shows whether it is one); nothing was evicted');
    const list = byMount.get(where.mountpoint) ?? [];
    list.push({ abs: path.resolve(p), rel: where.rel });
    byMount.set(where.mountpoint, list);
  }
  const results: { mountpoint: string; given: { abs: string; rel: string }[]; r: EvictResultView }[] = [];
  for (const [mountpoint, given] of byMount) {
    const sock = await controlOf(mountpoint);
    const raw = await sendControl(sock, {
      op: 'evict', paths: given.map((g) => g.rel), recursive: opts.recursive === true, force: opts.force === true,
    }, 120_000);
    results.push({ mountpoint, given, r: EvictResultSchema.parse(raw) });
  }
  const abs = (mp: string, rel: string) => (rel === '/' ? mp : path.join(mp, rel));
  const out = results.flatMap(({ mountpoint, given, r }) => r.paths.map((x, i) => ({
    ...x, path: given[i]?.abs ?? abs(mountpoint, x.path), mountpoint,
    kept: x.kept.map((k) => ({ ...k, path: abs(mountpoint, k.path) })),
  })));
  const freed = results.reduce((n, x) => n + x.r.freed, 0);
  const errors = out.filter((x) => x.error !== undefined);
  if (opts.json) {
    process.stdout.write(JSON.stringify({ freed, paths: out }, null, 2) + '\n');
  } else {
    for (const x of out) {
      if (x.error !== undefined) continue;
      const what = x.files === 0 ? (x.kept.length === 0 ? 'nothing cached' : 'nothing dropped')
        : `${formatBytes(x.freed)} dropped${x.files > 1 || opts.recursive ? ` (${x.files} file(s))` : ''}`;
      process.stdout.write(`${x.path}: ${what}\n`);
      for (const k of x.kept) {
        process.stdout.write(`  kept ${k.path === x.path ? '' : `${k.path} `}(${formatBytes(k.bytes)}): ${KEPT_WHY[k.reason](x.mountpoint, k.path)}\n`);
      }
    }
    if (out.length > 1) process.stdout.write(`total: ${formatBytes(freed)} dropped\n`);
  }
  if (errors.length > 0) {
    throw new UserError(errors.map((x) => `${x.path}: ${x.error}`).join('; '), {
      hint: errors.some((x) => x.error?.includes('-r')) ? 'evict -r drops everything cached under a directory'
        : 'check the names (the other paths were handled as shown)',
      exitCode: 1,
    });
  }
}
