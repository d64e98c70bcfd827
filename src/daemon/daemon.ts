// The mount process: the composition root. It opens the backend, the cache (index, journal,
// data store), wires the layer, mounts it with FUSE, serves the control socket and unmounts
// cleanly on SIGTERM/SIGINT or a `shutdown` request.
//
// What must stay true:
// - this process never does synchronous I/O on its own mountpoint (it would deadlock);
// - the cache directory is 0700, the control socket 0600;
// - one mount process per cache directory (pid file), so two never share one journal;
// - a full (or failing) cache disk never ends the process: requests get ENOSPC, replay
//   stalls and retries (src/journal/replayer.ts), and a storage failure that escapes its
//   handler anyway is logged and shown by `status` (see onEscaped); a mount that cannot start
//   on a full disk says so.
import { promises as fsp, constants as fsc, readFileSync, statfsSync, existsSync } from 'node:fs';
import path from 'node:path';
import type net from 'node:net';
import { UserError, isCacheFull, isCacheStorageError, isFsError } from '../core/errors.js';
import { EventBus } from '../core/events.js';
import { log, setLogLevel, setLogSink } from '../core/log.js';
import type { Config } from '../config/schema.js';
import type { Backend } from '../backends/types.js';
import { DeferredBackend, type KnownBackend } from '../backends/deferred.js';
import { isConnectionError } from '../journal/replayer.js';
import { isNfsUrl, parseNfsUrl } from '../core/nfs-url.js';
import { faultsFromEnv, withFaults } from '../backends/faulty.js';
import { openDb, getMeta, setMeta, type Db } from '../index/db.js';
import { ObjectIndex } from '../index/objects.js';
import { Journal } from '../journal/journal.js';
import { Replayer } from '../journal/replayer.js';
import { ConflictStore } from '../conflict/store.js';
import { Resolver } from '../conflict/resolve.js';
import { HoardService } from '../hoard/service.js';
import { Culler, MeteredDataStore } from '../cache/culler.js';
import { CacheLayer } from '../layers/cache-layer.js';
import { Connectivity } from '../layers/connectivity.js';
import { opStats, sessionStats } from '../fuse/ops.js';
import { ControlDir } from '../layers/control-dir.js';
import { hoardFsOf } from './hoard-fs.js';
import { FuseServer } from '../fuse/server.js';
import { forceUnmount, isMounted } from '../core/mount-table.js';
import { serveControl, type WatchStream } from './control.js';
import { CONTROL_SOCKET, LOG_FILE, asWatchEvent, type Status } from './protocol.js';
import { wireNotifications } from './notifications.js';
import { register, unregister } from './registry.js';
import { LogFile } from './log-file.js';
import { claimPidFile, prepareCacheDir } from './cache-dir.js';
import type { JournalRecord } from '../journal/records.js';

/**
 * What makes a mount fail in FUSE itself, said before trying (libfuse only reports it as a
 * failed mount): no access to /dev/fuse, or files under the mountpoint that it would hide.
 */
export async function checkMountable(mp: string): Promise<void> {
  try {
    await fsp.access('/dev/fuse', fsc.R_OK | fsc.W_OK);
  } catch (e) {
    // An ordinary user mounts through fusermount3, which is setuid root and opens the device.
    if (process.getuid?.() !== 0 && existsSync('/dev/fuse') && (await fusermount3())) return checkEmpty(mp);
    throw new UserError(`no access to /dev/fuse (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): FUSE file systems cannot be mounted here`, {
      hint: 'load the fuse module (modprobe fuse); in a container, pass the device (--device /dev/fuse) and CAP_SYS_ADMIN',
    });
  }
  await checkEmpty(mp);
}

/** Whether fusermount3 is on the PATH and executable. */
async function fusermount3(): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    try { await fsp.access(path.join(dir || '.', 'fusermount3'), fsc.X_OK); return true; } catch { /* next */ }
  }
  return false;
}

async function checkEmpty(mp: string): Promise<void> {
  const names = await fsp.readdir(mp).catch(() => [] as string[]);
  if (names.length > 0) {
    throw new UserError(`mountpoint ${mp} is not empty (${names.length} entr${names.length === 1 ? 'y' : 'ies'}, e.g. ${names[0]}): the mount would hide them`, {
      hint: 'mount on an empty directory',
    });
  }
}

async function openBackend(spec: string, config: Config, known: KnownBackend | null): Promise<Backend> {
  const b = isNfsUrl(spec) ? await openNfs(spec, config, known) : await openLocal(spec);
  let faults;
  try { faults = faultsFromEnv(process.env); } catch (e) {
    throw new UserError(`CACHEFS_FAULTS is malformed: ${(e as Error).message}`, { hint: 'it is for tests only; unset it' });
  }
  if (faults) {
    log.warn(`fault injection is on: ${process.env.CACHEFS_FAULTS ?? `file ${process.env.CACHEFS_FAULTS_FILE}`}`);
    return withFaults(b, faults);
  }
  return b;
}

// Each backend's adapter is loaded by the mount that uses it (the NFS client alone is six
// modules a local mount has no use for; every mount's start waits for its imports).
async function openLocal(spec: string): Promise<Backend> {
  const { LocalBackend } = await import('../backends/local/local-backend.js');
  // The mount process works inside the backend directory (see LocalBackend.abs): every
  // other path it uses was made absolute when the configuration was loaded.
  const b = new LocalBackend(spec, { workInRoot: true });
  try {
    await b.open();
  } catch (e) {
    if (isFsError(e)) {
      throw new UserError(`cannot use backend ${spec}: ${e.message}`, { hint: 'give an existing directory (path or file:// URL)' });
    }
    throw e;
  }
  return b;
}

async function openNfs(spec: string, config: Config, known: KnownBackend | null): Promise<Backend> {
  const { NfsBackend } = await import('../backends/nfs/nfs-backend.js');
  const fresh = () => new NfsBackend(parseNfsUrl(spec), { deadlineMs: config.backendTimeoutMs });
  const b = fresh();
  try {
    await b.open();
  } catch (e) {
    await b.close().catch(() => undefined);
    if (known && isConnectionError(e)) {
      // The server is away, but this cache knows it: mount disconnected, serve the cache,
      // and reconnect when it answers (src/backends/deferred.ts).
      log.warn(`${spec} is unreachable (${(e as Error).message}): mounting disconnected, from the cache`);
      return new DeferredBackend(b, known, Math.min(3000, config.backendTimeoutMs), async () => {
        const n = fresh();
        try { await n.open(); } catch (err) { await n.close().catch(() => undefined); throw err; }
        return n;
      });
    }
    if (isFsError(e)) {
      throw new UserError(`cannot mount ${spec}: ${e.message}`, {
        hint: e.code === 'ETIMEDOUT' || e.code === 'ECONNREFUSED'
          ? 'is the NFS server running and reachable? give ?mountport=N (and :port) if it has no portmapper'
          : 'check the export path (the MOUNT EXPORT list names what the server exports) and its access rules',
      });
    }
    throw e;
  }
  return b;
}

/**
 * The supplementary groups of a caller, from /proc (FUSE passes only uid, gid and pid).
 * Undefined when the process is gone already; the kernel checked its permissions anyway.
 */
function groupsOf(pid: number): number[] | undefined {
  if (!pid) return undefined;
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Groups:'));
    return line ? line.slice(7).trim().split(/\s+/).filter(Boolean).map(Number).filter((g) => Number.isInteger(g) && g >= 0) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What the cache knows of a backend from an earlier mount (its fsid and root object), so a
 * mount can start while the backend is away. Null when it never mounted it.
 */
function knownBackend(db: Db, spec: string): KnownBackend | null {
  try {
    const raw = getMeta(db, `backend:${spec}`);
    if (!raw) return null;
    const { fsid, rootId } = JSON.parse(raw) as { fsid: string; rootId: number };
    const root = new ObjectIndex(db, fsid).get(rootId);
    return root ? { fsid, root: { fh: root.fh, attr: root.attr } } : null;
  } catch {
    return null;
  }
}

function rememberBackend(db: Db, spec: string, fsid: string, rootId: number): void {
  setMeta(db, `backend:${spec}`, JSON.stringify({ fsid, rootId }));
}

export interface RunningMount {
  status(): Status;
  shutdown(reason: string): Promise<void>;
  done: Promise<void>;
}

/** Free bytes of the file system of `dir`, in words (null: cannot tell). */
function freeSpace(dir: string): string | null {
  try {
    const s = statfsSync(dir);
    const n = s.bavail * s.bsize;
    return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
  } catch {
    return null;
  }
}

/** A mount that could not start because of its cache disk says so (anything else as it was). */
function startupError(e: unknown, cacheDir: string): unknown {
  if (!isCacheStorageError(e)) return e;
  const free = freeSpace(cacheDir);
  const err = isCacheFull(e)
    ? new UserError(`cannot mount: the cache disk is full (${cacheDir}${free ? `, ${free} free` : ''}): cachefs needs room there for its index, journal and log`, {
      hint: 'make room on that disk (the journal and everything cached are kept), or give the cache a roomier disk (--cache-dir)',
    })
    : new UserError(`cannot mount: the cache disk failed (${cacheDir}): ${(e as Error).message}`, {
      hint: 'check that disk (dmesg); the journal is crash-safe, nothing written is lost by retrying',
    });
  log.error(err.message, e);
  return err;
}

/** Records journaled even on a nearly full cache disk (see journal.admit in startMount). */
const ALWAYS_JOURNALED = new Set<JournalRecord['op']>(['write', 'unlink', 'rmdir', 'commit']);

/**
 * The generation the mount's file handles carry (fuse/nodes.ts): random, made once per
 * cache (its object ids start again in a new one), never 0 (the root's).
 */
function handleGeneration(db: Db): number {
  const have = Number(getMeta(db, 'handle_generation'));
  if (Number.isInteger(have) && have > 0 && have < 2 ** 32) return have;
  const made = 1 + Math.floor(Math.random() * (2 ** 32 - 2));
  setMeta(db, 'handle_generation', String(made));
  return made;
}

export async function runMount(config: Config): Promise<RunningMount> {
  try {
    return await startMount(config);
  } catch (e) {
    throw startupError(e, config.cacheDir);
  }
}

async function startMount(config: Config): Promise<RunningMount> {
  setLogLevel(config.log);
  // The kernel has already applied the caller's umask to every mode it hands us.
  process.umask(0);
  await prepareCacheDir(config.cacheDir);
  const logFile = new LogFile(path.join(config.cacheDir, LOG_FILE));
  setLogSink((line) => logFile.write(line));
  const pidFile = await claimPidFile(config.cacheDir);

  const mp = config.mountpoint;
  try {
    const st = await fsp.stat(mp);
    if (!st.isDirectory()) throw new UserError(`mountpoint ${mp} is not a directory`, { hint: 'mount on an empty directory' });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN') {
      log.warn(`mountpoint ${mp} held a dead mount; detaching it`);
      await forceUnmount(mp);
    } else if (code === 'ENOENT') {
      await fsp.mkdir(mp, { recursive: true });
    } else if (e instanceof UserError) throw e;
    else throw new UserError(`cannot use mountpoint ${mp}: ${(e as Error).message}`);
  }
  if (await isMounted(mp)) {
    throw new UserError(`${mp} is already a FUSE mount`, { hint: `run \`cachefs umount ${mp}\` first` });
  }
  await checkMountable(mp);

  const db: Db = openDb(path.join(config.cacheDir, 'index.sqlite'));
  const known = knownBackend(db, config.backend);
  const backend = await openBackend(config.backend, config, known).catch((e: unknown) => { db.close(); throw e; });
  const knownFsid = getMeta(db, 'last_fsid');
  if (knownFsid && knownFsid !== backend.fsid) {
    log.info(`cache dir was last used for ${knownFsid}; objects are keyed by fsid, so both stay apart`);
  }
  if (knownFsid !== backend.fsid) setMeta(db, 'last_fsid', backend.fsid);

  const index = new ObjectIndex(db, backend.fsid);
  // Every byte written into the cache is counted for culling (src/cache/culler.ts).
  const store = new MeteredDataStore(config.cacheDir);
  await store.init();
  const journal = new Journal(db);
  const conflicts = new ConflictStore(db);
  const connectivity = new Connectivity();
  // Mount events for `cachefs watch`; wired before init(), which may start a reintegration.
  const events = new EventBus();
  const layer = new CacheLayer({ backend, index, store, connectivity, config, conflicts, events }, (t) => new Replayer(journal, t));
  const notifications = wireNotifications({
    connectivity, conflicts, backlog: () => ({ pending: journal.pending(), bytes: layer.replayer.pendingBytes }),
  }, events);
  await layer.init();
  if (backend instanceof DeferredBackend) layer.startDisconnected('the backend was unreachable when mounting');
  else rememberBackend(db, config.backend, backend.fsid, layer.rootObjectId);
  const hoard = new HoardService(db, { hoardFs: () => hoardFsOf(layer), connectivity }, config.hoard);
  // Keeps the cache within culling.maxBytes and the disk thresholds; never culls pinned or dirty data.
  const culler = new Culler({
    layer, index, pins: hoard.pins, rootId: () => layer.rootObjectId, config: config.culling,
    chunkSize: config.cache.chunkSize, cacheDir: config.cacheDir,
  });
  store.onStored = (n) => culler.noteStored(n);
  await culler.start();
  // A change made while disconnected is journaled only while the cache disk has room for it
  // (src/cache/culler.ts journalRoom). Always let in: write records (they carry data already
  // acknowledged), removals (the way to make room), and records made connected (they leave
  // the journal as soon as the backend has them).
  const recordPath = (r: JournalRecord): string | null => {
    const at = (id: number, name?: string): string | null => {
      const p = index.pathOf(id, layer.rootObjectId);
      return p === null || name === undefined ? p : path.posix.join(p, name);
    };
    if ('fromParent' in r) return at(r.fromParent, r.fromName);
    if ('parent' in r && 'name' in r) return at(r.parent, r.name);
    return 'obj' in r ? at(r.obj) : null;
  };
  journal.admit = (record) => {
    if (!('offline' in record && record.offline) || ALWAYS_JOURNALED.has(record.op) || culler.journalRoom()) return true;
    events.emit({ type: 'cache-full', path: recordPath(record), message: `the cache disk is full: this change (${record.op}) cannot be journaled while disconnected`, cause: 'disk' });
    return false;
  };
  // Replay that stalls on the cache's own storage (a full disk) takes the mount disconnected,
  // with the reason for `status` and `watch`; the probe retries it every few seconds.
  layer.replayer.onStall = (reason) => layer.startDisconnected(reason);

  // The last line of defence: a cache storage failure that escaped the code that met it (from
  // a timer or a promise nobody awaited) is logged and shown by `status`, and the mount goes
  // on (SQLite rolled the failed statement back; the journal keeps every change). Anything
  // else still ends the process, as it would without these listeners.
  let escaped: { message: string; at: string } | null = null;
  const onEscaped = (e: unknown, origin: string): boolean => {
    if (!isCacheStorageError(e)) return false;
    escaped = { message: String((e as Error)?.message ?? e), at: new Date().toISOString() };
    log.error(`a cache storage failure was not handled where it happened (${origin}); the mount carries on`, e);
    return true;
  };
  const onRejection = (e: unknown): void => { if (!onEscaped(e, 'a promise')) throw e; };
  const onException = (e: Error): void => {
    if (onEscaped(e, 'a callback')) return;
    process.stderr.write(`cachefs: uncaught exception: ${e?.stack ?? String(e)}\n`);
    process.exit(1);
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);

  const fuse = new FuseServer({
    mountpoint: mp,
    fsname: `cachefs:${backend.description}`,
    config,
    layer,
    control: new ControlDir({ conflicts, cacheDir: config.cacheDir }),
    generation: handleGeneration(db),
    // True only while its watcher runs (started just before the mount; never with `watch: false`).
    told: () => backend.notifiesChanges?.() ?? false,
    creds: (h) => {
      const creds = { uid: h.uid, gid: h.gid };
      // Root's rights need no groups to check (and /proc is read once per change otherwise).
      const groups = backend.needsGroups && creds.uid !== 0 ? groupsOf(h.pid) : undefined;
      return groups ? { ...creds, groups } : creds;
    },
  });
  layer.kernel = fuse;
  // Watching starts before the kernel's first request: while it runs, replies carry the
  // long timeouts (src/fuse/kernel-caching.ts), the root's first attributes included.
  const watch = config.consistency.watch;
  if (watch !== false && backend.watch) {
    backend.watch((c) => layer.noticeOutsideChange(c), {
      mode: watch === true ? 'auto' : watch,
      pollIntervalMs: Math.round(config.consistency.pollIntervalS * 1000),
    }).catch((e) => log.warn('cannot watch the backend', e));
  }

  await fuse.mount();
  // Unmounted from outside (fusermount3 -u, umount): the daemon has nothing left to serve.
  void fuse.ended.then((why) => { if (!shuttingDown) void shutdown(`the kernel ended the session (${why})`); });
  log.info(`mounted ${backend.description} on ${mp} (cache ${config.cacheDir})`);

  /** The connections following `cachefs watch` (see serveWatcher). */
  const watchers = new Set<WatchStream>();
  /** Set once the mount is gone: the reason every watcher is told. */
  let unmountedAs: string | null = null;
  const status = (): Status => {
    const snap = connectivity.snapshot();
    const stalled = layer.replayer.stalled;
    const s = index.stats();
    const u = culler.usage();
    return {
      state: snap.state,
      since: new Date(snap.since).toISOString(),
      reason: snap.reason,
      backend: backend.description,
      fsid: backend.fsid,
      mountpoint: mp,
      cacheDir: config.cacheDir,
      pid: process.pid,
      cache: {
        bytes: u.bytes, objects: s.objects, pinned: u.pinned, dirty: u.dirty, clean: u.clean, limit: u.limit,
        diskFreePercent: u.diskFreePercent, filesFreePercent: u.filesFreePercent, storing: u.storing,
        storageError: escaped,
      },
      journal: {
        pending: journal.pending(), bytes: layer.replayer.pendingBytes,
        stalled: stalled ? { reason: stalled.reason, since: new Date(stalled.since).toISOString() } : null,
      },
      conflicts: conflicts.openCount(),
      counters: { ...layer.counters },
      openFiles: layer.openFileCount(),
      rssBytes: process.memoryUsage.rss(),
      memory: (({ heapUsed, heapTotal, external, arrayBuffers }) => ({ heapUsed, heapTotal, external, arrayBuffers }))(process.memoryUsage()),
      ops: Object.fromEntries(Object.entries(opStats).map(([k, v]) => [k, { ...v, ms: Math.round(v.ms) }])),
      ...(backend.info ? { backendInfo: backend.info() } : {}),
      watchers: watchers.size,
      kernel: {
        entryTimeoutS: fuse.caching.entry, attrTimeoutS: fuse.caching.attr, negativeTimeoutS: fuse.caching.negative,
        listings: fuse.caching.listings, told: fuse.caching.told,
        polledRequests: sessionStats.polled,
      },
    };
  };

  // `cachefs watch`: each watcher gets the state it starts from, then every event, and a
  // last `unmounted` line at shutdown.
  const serveWatcher = (w: WatchStream): void => {
    // Connected while the last lines were going out: nothing more will come.
    if (unmountedAs) { void w.end({ type: 'unmounted', reason: unmountedAs, at: new Date().toISOString() }); return; }
    const s = status();
    w.send({
      type: 'state', state: s.state, since: s.since, reason: s.reason, pending: s.journal.pending,
      bytes: s.journal.bytes ?? 0, conflicts: s.conflicts, at: new Date().toISOString(),
    });
    const unsubscribe = events.subscribe((e) => w.send(asWatchEvent(e)));
    watchers.add(w);
    w.onClose(() => { unsubscribe(); watchers.delete(w); });
  };

  let finished!: () => void;
  const done = new Promise<void>((r) => { finished = r; });
  let shuttingDown: Promise<void> | null = null;
  let server: net.Server | null = null;

  const shutdown = (reason: string): Promise<void> => {
    if (shuttingDown) return shuttingDown;
    shuttingDown = (async () => {
      log.info(`unmounting (${reason})`);
      const pending = journal.pending();
      try {
        await Promise.race([layer.flushAll(), new Promise((r) => setTimeout(r, 20_000).unref())]);
      } catch (e) { log.warn('flush before unmount failed', e); }
      // Writes the backend has not taken by now stay in the journal (their rows: write-back.ts).
      layer.persistWrites();
      const left = journal.pending();
      if (left > 0) log.warn(`${left} change(s) stay safe in the journal and are replayed at the next mount`);
      else if (pending > 0) log.info(`${pending} pending change(s) written to the backend`);
      try {
        await fuse.unmount();
      } catch (e) {
        log.warn('unmount failed; aborting the connection and detaching lazily', e);
        await fuse.detach().catch((e2) => log.error('lazy unmount failed', e2));
      }
      notifications.stop();
      culler.stop();
      server?.close();
      unmountedAs = reason;
      const at = new Date().toISOString();
      await Promise.all([...watchers].map((w) => w.end({ type: 'unmounted', reason, at })));
      await backend.close().catch(() => undefined);
      await layer.close().catch(() => undefined);
      await store.close();
      db.close();
      await unregister(mp).catch(() => undefined);
      await fsp.rm(path.join(config.cacheDir, CONTROL_SOCKET), { force: true });
      await fsp.rm(pidFile, { force: true });
      log.info('unmounted');
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
      await logFile.close();
      finished();
    })();
    return shuttingDown;
  };

  // Resolutions go through the layer (journaled like any change), acting as the owner of the
  // client's variant, so what is written back belongs to whoever wrote it offline.
  const resolver = new Resolver(
    (c) => layer.resolveFs({ uid: c.detail.client?.uid ?? process.getuid?.() ?? 0, gid: c.detail.client?.gid ?? process.getgid?.() ?? 0 }),
    conflicts, config.cacheDir,
    (_c, records) => layer.forgetOfflineObjects(records.flatMap((r) => {
      const o = (r as { op?: string; obj?: number }).obj;
      return typeof o === 'number' ? [o] : [];
    })),
  );

  server = await serveControl(path.join(config.cacheDir, CONTROL_SOCKET), async (req) => {
    switch (req.op) {
      case 'status': return status();
      case 'flush': await layer.flushAll(); return { pending: journal.pending() };
      case 'shutdown': {
        const open = layer.openFileCount();
        if (req.whenIdle) {
          // Detached lazily by `cachefs umount --lazy`: the open files are still served.
          void (async () => {
            const since = Date.now();
            while (layer.openFileCount() > 0 && !layer.closedSince(since, 2000)) await new Promise((r) => setTimeout(r, 200));
            await shutdown('cachefs umount --lazy');
          })();
          return { shuttingDown: true, open };
        }
        if (open > 0 && !req.force) {
          // As umount(8) does: in use is busy. Unmounting anyway would cut the writers off.
          throw new UserError(`${mp}: target is busy (${open} file${open === 1 ? '' : 's'} open in the mount)`, {
            hint: 'close them (fuser -vm <mountpoint> shows who has them), or `cachefs umount --lazy` (detach now, finish when they are closed) or `--force`',
          });
        }
        setImmediate(() => void shutdown('cachefs umount'));
        return { shuttingDown: true };
      }
      case 'offline': layer.goOffline(); return status();
      case 'online':
        if (backend instanceof DeferredBackend) backend.retryNow();
        await layer.goOnline();
        return status();
      case 'journal': return { items: layer.journalItems() };
      case 'conflicts': return { conflicts: conflicts.list({ all: req.all === true }) };
      case 'pin': return await hoard.pin(req.paths, req.recursive, req.priority);
      case 'unpin': return hoard.unpin(req.paths, req.recursive);
      case 'pins': return hoard.list();
      case 'hoard': return hoard.hoard(req.start);
      case 'evict': return await culler.evictPaths(req.paths, { recursive: req.recursive === true, force: req.force === true });
      case 'resolve': {
        if ((req.id === undefined) === (req.path === undefined)) throw new UserError('resolve: give exactly one of id and path');
        const id = req.id ?? resolver.find(req.path!).id;
        return await resolver.resolve(id, req.keep);
      }
    }
  }, { watch: serveWatcher });
  await register({ version: 1, mountpoint: mp, cacheDir: config.cacheDir, backend: backend.description, pid: process.pid });
  hoard.startup();

  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(sig, () => void shutdown(`signal ${sig}`));
  }
  return { status, shutdown, done };
}
