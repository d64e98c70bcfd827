// The cache layer: the upper layer over a backend (the lower). It resolves paths to objects
// through the name cache, serves attributes, directories and data from the cache, fetches
// what is missing in aligned chunks, and sends every mutation through the journal.
//
// Consistency (ARCHITECTURE §4):
// - attributes are trusted for an NFS-style time (acregmin..acregmax, acdirmin..acdirmax,
//   growing with the time since the object last changed), then revalidated;
// - open() always revalidates (close-to-open); a changed version drops clean cached data;
// - flush()/fsync() of a written file return once its data is on the backend.
//
// Mutations (ARCHITECTURE §5): append a record, wait for the replayer to apply it to the
// backend, then record the result in the cache. A refused record reaches the caller as the
// backend's errno and leaves the cache as it was (or drops data we can no longer vouch for).
// Data writes gather in dirty runs (one record per run); flush()/fsync() wait for them.
//
// Locking: everything runs on Node's one thread; the await points are where other requests
// interleave. Chunk fetches are coalesced per (object, chunk) in `inflight`; a write waits
// for any fetch of the chunks it touches, and for its bytes to land in the cache file
// (`landing`), before writing there; chunks being written are guarded the same way.
import PQueue from 'p-queue';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { BufferPool } from '../core/buffer-pool.js';
import { FsError, isFsError } from '../core/errors.js';
import { withDeadline } from '../core/deadline.js';
import { log } from '../core/log.js';
import { nameTooLong } from '../core/names.js';
import type { Attr, Backend, Creds, Node, OutsideChange, StatFs } from '../backends/types.js';
import type { CachedObject, ObjectIndex } from '../index/objects.js';
import type { DataStore } from '../store/data-store.js';
import type { Replayer } from '../journal/replayer.js';
import { sameUser, type JournalRecord, type SetAttrRecord } from '../journal/records.js';
import type { Config } from '../config/schema.js';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { isConnectionError } from '../journal/replayer.js';
import { optimizeJournal } from '../journal/optimize.js';
import { BackendTarget, PROVISIONAL_TAG, isProvisional, type AppliedOutcome, type BackendCall } from './backend-target.js';
import type { Connectivity } from './connectivity.js';
import type { ConflictStore } from '../conflict/store.js';
import type { CacheLimit, EventSink } from '../core/events.js';
import { OfflineBases, BASE_COPY_MAX } from '../conflict/bases.js';
import { fullyCached } from '../conflict/variants.js';
import type { ResolveFs } from '../conflict/resolve.js';

/**
 * Marks a data or names version as "changed by us, adopt the next version the backend
 * reports": our own writes change the backend's version, which must not drop our cache.
 */
const SELF = 'self';

export interface OpenFile {
  obj: CachedObject;
  flags: number;
  /** Data was written through this open file since the last flush. */
  written: boolean;
  /** Where a sequential reader will read next (for read-ahead). */
  nextPos: number;
  /** A write-behind failure not yet reported to the application. */
  error: FsError | null;
  /** Bytes written through this descriptor (for the write-around threshold). */
  writtenBytes: number;
  /** When the kernel last flushed it (a close() by some process; ms since the epoch, 0 never). */
  flushedAt: number;
  /**
   * Who opened it: its writes are journaled, and replayed, as that user (the kernel checks
   * a write's rights at open, as NFS clients send writes with the opener's credentials).
   * Undefined: the mount itself (hoarding, conflict resolution as the mount).
   */
  by: Creds | undefined;
}

export type { CachedObject } from '../index/objects.js';
export type { SetAttrRecord } from '../journal/records.js';

/** A journal record as `cachefs journal` shows it (daemon/protocol.ts checks it at the edge). */
export interface JournalItem {
  seq: number;
  op: string;
  /** Where in the mount, as far as the cache knows (null: no name reaches it any more). */
  path: string | null;
  /** For renames and links: the other name. */
  to: string | null;
  /** Data bytes the record carries (writes). */
  bytes: number;
  /** ISO time the change was made. */
  at: string;
  attempts: number;
  lastError: string | null;
}

export interface Counters {
  hits: number;
  misses: number;
  bytesFromCache: number;
  bytesFromBackend: number;
  backendCalls: number;
}

export type TimeArg = bigint | 'now' | 'omit';

/**
 * What the layer tells the kernel when it learns that the backend changed behind the
 * kernel's caches (the FUSE server implements it; null: nobody to tell).
 */
export interface KernelCache {
  /**
   * Object `id` is at `version` on the backend now. The kernel is told to drop its copies
   * (attributes, pages) when what it was given is of another version; true if it was.
   */
  objectAt(id: number, version: string): boolean;
  /** `name` in directory `dirId` may lead elsewhere now (or nowhere). */
  invalidateEntry(dirId: number, name: string): void;
  /** Whether the kernel holds object `id` (a node it was given and has not forgotten). */
  holds(id: number): boolean;
}

export interface LayerDeps {
  backend: Backend;
  index: ObjectIndex;
  store: DataStore;
  connectivity: Connectivity;
  config: Config;
  /** Where replay parks the records whose base the server no longer has. */
  conflicts?: ConflictStore;
  /** Where notifications go (`cachefs watch`). */
  events?: EventSink;
}

const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_RDWR = 2;
/** Bytes of acknowledged writes that may wait in memory for the backend at once. */
const WRITE_BEHIND_LIMIT = 16 * 1024 * 1024;
/** Fetched bytes that may wait in memory for the cache file at once. */
const LANDING_LIMIT = 16 * 1024 * 1024;
/**
 * While connected, a file written through one descriptor past this many bytes stops being
 * copied into the cache (write-around): the backend has it after close, a later read
 * fetches it, and a big sequential write does not cost a second copy on the cache disk.
 */
const WRITE_AROUND_BYTES = 64 * 1024 * 1024;
/** How often access times (for LRU culling) are written to the index. */
const ACCESS_FLUSH_MS = 30_000;
/** A dirty run becomes a journal record once it holds this many bytes. */
const DIRTY_RUN_MAX = 1024 * 1024;
/** Directories listed again after a reconnection (the most recently used). */
const DIFF_MAX_DIRS = 2000;
/** Chunks of one file a hoard walk fetches at once. */
const HOARD_CHUNKS_PER_FILE = 8;
/** While disconnected, how often the backend is probed. */
const PROBE_INTERVAL_MS = 2000;

/** What a mutation produced: the backend's answer, or (not connected) "kept in the journal". */
type MutationOutcome = AppliedOutcome | { kind: 'journaled' };
const JOURNALED: MutationOutcome = { kind: 'journaled' };
/** Records marked as made offline: replay reconciles them with the server (see records.ts). */
const OFFLINE_CHECKED = new Set(['write', 'setattr', 'link', 'unlink', 'rmdir', 'rename', 'create', 'mkdir', 'symlink', 'mknod']);

const S_IFMT_OF: Record<Attr['type'], number> = {
  file: 0o100000, dir: 0o040000, symlink: 0o120000, fifo: 0o010000, socket: 0o140000, chardev: 0o020000, blockdev: 0o060000,
};

/** A chunk fetch, tagged with the object version it reads (write guards carry none). */
type VersionedFetch = Promise<Buffer> & { version?: string };

/** Consecutive writes to one object not yet journaled (bytes also in the cache file). */
interface DirtyRun {
  obj: CachedObject;
  of: OpenFile;
  offset: number;
  /** The run's bytes (from a pool), `length` of them used. */
  buf: Buffer;
  length: number;
  /** Users of `buf` (write()s still storing from it, the replayer's hint); see unpinRun. */
  pins: number;
  /** Journaled: no write joins it any more, and its buffer goes back once unpinned. */
  committed: boolean;
}

export class CacheLayer {
  readonly counters: Counters = { hits: 0, misses: 0, bytesFromCache: 0, bytesFromBackend: 0, backendCalls: 0 };
  readonly replayer: Replayer<AppliedOutcome>;
  private readonly backend: Backend;
  private readonly index: ObjectIndex;
  private readonly store: DataStore;
  private readonly cfg: Config;
  private readonly queue: PQueue;
  private readonly chunk: number;
  private rootId = 0;
  private readonly openFiles = new Map<number, OpenFile>();
  private readonly openCount = new Map<number, number>();
  /** Objects written past WRITE_AROUND_BYTES while open: their writes skip the cache. */
  private readonly writeAround = new Set<number>();
  /** Objects no name reaches any more, kept while they are open. */
  private readonly orphans = new Set<number>();
  /**
   * Files unlinked (or renamed over) while open here, silly-renamed as NFS clients do: the
   * backend must keep the object until its last close, or the writes still to come through
   * the open descriptors would find it gone. Removed at that close.
   */
  private readonly hidden = new Map<number, { dir: CachedObject; name: string; by: Creds | undefined }>();
  private nextFd = 1;
  private readonly inflight = new Map<string, Promise<Buffer>>();
  /** Chunks whose fetched bytes are still on their way into the cache file. */
  private readonly landing = new Map<string, Promise<void>>();
  /** Bumped whenever an object's cached data is dropped (late landings are then ignored). */
  private readonly dataGen = new Map<number, number>();
  private statfsCache: { at: number; value: StatFs } | null = null;
  private accessTimer: NodeJS.Timeout | null = null;
  private writeBehindBytes = 0;
  /** Bytes fetched from the backend still on their way into cache files. */
  private landingBytes = 0;
  private readonly dirty = new Map<number, DirtyRun>();
  private readonly runPool = new BufferPool(DIRTY_RUN_MAX + 128 * 1024, 4);
  /** The last journal record written for each object (flush waits for it). */
  private readonly lastSeq = new Map<number, number>();
  readonly call: BackendCall;
  /** What objects changed offline were before (null without a conflict store). */
  private bases: OfflineBases | null = null;
  private readonly baseCaptures = new Map<number, Promise<void>>();
  /** Directories a reconciliation touched: listed again once the replay is over. */
  private readonly relistDirs = new Set<number>();

  constructor(private readonly deps: LayerDeps, replayerFactory: (target: BackendTarget) => Replayer<AppliedOutcome>) {
    this.backend = deps.backend;
    this.index = deps.index;
    this.store = deps.store;
    this.cfg = deps.config;
    this.chunk = deps.config.cache.chunkSize;
    this.queue = new PQueue({ concurrency: deps.config.cache.backendConcurrency });
    const timeout = deps.config.backendTimeoutMs;
    const unreachable = (what: string) => new FsError('EHOSTUNREACH', `${what}: the backend is unreachable (${deps.connectivity.snapshot().reason})`);
    this.call = <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      // Disconnected: the backend is not asked at all, so nothing waits for a dead server;
      // calls still queued when the connection goes fail as they come out of the queue.
      if (deps.connectivity.state === 'disconnected') return Promise.reject(unreachable(what));
      const p = this.queue.add(() => {
        if (deps.connectivity.state === 'disconnected') return Promise.reject(unreachable(what));
        this.counters.backendCalls++;
        return withDeadline(fn(), timeout, `backend ${what}`);
      }, { throwOnTimeout: true }) as Promise<T>;
      return p.catch((e: unknown) => {
        if (isConnectionError(e)) {
          const msg = (e as Error).message;
          const code = (e as FsError).code;
          this.lostConnection(`${what}: ${msg.includes(code) ? msg : `${code}: ${msg}`}`);
        }
        throw e;
      });
    };
    const target = new BackendTarget(this.backend, this.index, this.store, this.call);
    this.replayer = replayerFactory(target);
    target.laterChange = (seq, obj, from, to) => this.replayer.laterChange(seq, obj, from, to);
    const conflicts = deps.conflicts;
    if (conflicts) {
      this.bases = new OfflineBases(conflicts.db, path.join(this.cfg.cacheDir, 'bases'));
      target.enableConflicts({
        store: conflicts,
        bases: this.bases,
        cacheDir: this.cfg.cacheDir,
        rootId: () => this.rootId,
        pathOf: (id) => this.index.pathOf(id, this.rootId),
        // The client variant is saved with the conflict; the cache shows the server's from now on.
        onConflict: (o) => { this.dropData(o); o.attrAt = 0; },
        relist: (id) => { this.relistDirs.add(id); },
        pendingOf: (id) => this.replayer.pendingEntries().map((e) => e.record)
          .filter((r) => (r.op === 'write' || r.op === 'setattr' || r.op === 'link') && r.obj === id),
        lastSeq: () => this.replayer.lastSeq,
      }, () => this.deps.connectivity.state === 'reintegrating', this.chunk);
    }
  }

  async init(): Promise<void> {
    const root = await this.call('root', () => this.backend.root());
    const obj = this.adopt(root);
    this.rootId = obj.id;
    this.accessTimer = setInterval(() => this.index.flushAccessTimes(), ACCESS_FLUSH_MS);
    this.accessTimer.unref();
    // Objects whose cached data we were changing when the last run ended may hold bytes the
    // backend never got (a dirty run not yet journaled, or dropped by its CRC check). Once
    // the records left behind are replayed, their cached data is dropped and fetched anew.
    const suspect = this.index.idsWithDataVersion(SELF);
    // Records left by a previous run go first; they may have been made disconnected, so they
    // are replayed as a reintegration (bases checked, conflicts parked).
    if (this.replayer.pendingCount > 0) void this.reintegrate(`${this.replayer.pendingCount} journal records left by the last run`);
    if (suspect.length > 0) {
      void this.replayer.drained().then(() => {
        for (const id of suspect) {
          const o = this.index.get(id);
          if (o && !this.openCount.has(id)) this.dropData(o);
        }
      }).catch((e: unknown) => log.warn('cannot drop the cached data the last run may have left half-written; it is dropped at the next mount', e));
    }
  }

  get rootObjectId(): number { return this.rootId; }

  /** Told when the backend changed behind the kernel's caches (set by the daemon). */
  kernel: KernelCache | null = null;

  // ---------------------------------------------------------------- connectivity
  //
  // connected: backend calls go out; a mutation waits for its own record.
  // disconnected: no backend call goes out (EHOSTUNREACH at once); the cache is served as it
  //   is; mutations are journaled and return; a probe looks for the backend.
  // reintegrating: the journal is replayed; calls go out, but mutations still only wait for
  //   the journal (the backlog may take longer than FUSE waits).
  // A backend call that fails with a connection error (or misses its deadline) switches to
  // disconnected, long before FUSE's own 15 s timeout.

  private get connected(): boolean { return this.deps.connectivity.state === 'connected'; }
  private manualOffline = false;
  private probeTimer: NodeJS.Timeout | null = null;
  private probing = false;
  private offlineWaiters: (() => void)[] = [];
  private reintegration: Promise<void> | null = null;
  /** Between resuming the replayer and its queue running dry, during reintegration. */
  private replaying = false;

  /** Resolves when the mount stops being connected (for waits that must not outlast it). */
  private whenNotConnected(): Promise<typeof JOURNALED> {
    if (!this.connected) return Promise.resolve(JOURNALED);
    return new Promise((r) => this.offlineWaiters.push(() => r(JOURNALED)));
  }

  private lostConnection(reason: string): void {
    if (this.deps.connectivity.state === 'disconnected') return;
    log.warn(`working disconnected: ${reason}`);
    this.deps.connectivity.set('disconnected', reason);
    this.replayer.pause();
    this.spillWriteBehind();
    const w = this.offlineWaiters;
    this.offlineWaiters = [];
    for (const f of w) f();
    if (!this.manualOffline) this.startProbe();
  }

  private startProbe(): void {
    if (this.probeTimer) return;
    this.probeTimer = setInterval(() => { void this.probe().catch(() => undefined); }, PROBE_INTERVAL_MS);
    this.probeTimer.unref();
  }

  private stopProbe(): void {
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.probeTimer = null;
  }

  /** Asks the backend for the root's attributes (bypassing the disconnected gate). */
  private async probe(): Promise<boolean> {
    if (this.probing || this.deps.connectivity.state !== 'disconnected' || this.manualOffline) return false;
    this.probing = true;
    try {
      const root = this.index.get(this.rootId);
      if (!root) return false;
      await withDeadline(this.backend.getattr(root.fh), Math.min(3000, this.cfg.backendTimeoutMs), 'probe');
    } catch {
      return false;
    } finally {
      this.probing = false;
    }
    void this.reintegrate('the backend answers again');
    return true;
  }

  /** Replays the journal, then trusts nothing cached until it is revalidated. */
  reintegrate(reason: string): Promise<void> {
    if (this.reintegration) return this.reintegration;
    this.stopProbe();
    this.deps.connectivity.set('reintegrating', reason);
    log.info(`reintegrating: ${reason}; ${this.replayer.pendingCount} journal records to replay`);
    this.reintegration = (async () => {
      if (this.cfg.reintegration.optimize) {
        const before = this.replayer.pendingCount;
        const dropped = this.replayer.optimize(optimizeJournal);
        if (dropped > 0) log.info(`journal optimized before replay: ${before} records, ${dropped} no longer needed`);
      }
      this.replaying = true;
      this.replayer.resume();
      await this.replayer.drained().finally(() => { this.replaying = false; });
      if (this.replayer.isPaused || this.deps.connectivity.state !== 'reintegrating') return; // lost it again
      this.index.clearReplayVersions();
      // Every offline change is on the backend now, or parked with a conflict (which keeps
      // its own copies): the bases are not needed any more, and the next replay is a new epoch.
      await this.bases?.clear();
      this.deps.conflicts?.nextEpoch();
      for (const o of this.index.loaded()) o.attrAt = 0;
      await this.diffDirectories();
      if (this.deps.connectivity.state !== 'reintegrating') return;
      this.deps.connectivity.set('connected', 'journal replayed');
      log.info('connected: journal replayed');
    })().catch((e: unknown) => {
      // Never left in a promise (nor the mount left 'reintegrating'): say why, try again later.
      log.warn('the reintegration could not finish', e);
      this.lostConnection(`the reintegration could not finish (${(e as Error)?.message ?? e}); it is tried again`);
    }).finally(() => { this.reintegration = null; });
    return this.reintegration;
  }

  /** The pending journal records, for people (`cachefs journal`). */
  journalItems(): JournalItem[] {
    const where = (id: number, name?: string): string | null => {
      const p = this.index.pathOf(id, this.rootId);
      if (p === null) return null;
      return name === undefined ? p : path.posix.join(p, name);
    };
    return this.replayer.pendingEntries().map((e) => {
      const r = e.record;
      let p: string | null = null;
      let to: string | null = null;
      switch (r.op) {
        case 'write': case 'setattr': case 'commit': p = where(r.obj); break;
        case 'link': p = where(r.obj); to = where(r.parent, r.name); break;
        case 'rename': p = where(r.fromParent, r.fromName); to = where(r.toParent, r.toName); break;
        default: p = where(r.parent, r.name);
      }
      return {
        seq: e.seq, op: r.op, path: p, to, bytes: r.op === 'write' ? r.length : 0,
        at: new Date(e.createdAt).toISOString(), attempts: e.attempts, lastError: e.lastError,
      };
    });
  }

  /**
   * Directory diffing after a reconnection: every fully cached directory is listed again, so
   * what the server deleted or added meanwhile shows at once, and the directory stays fully
   * cached (the next disconnection can create names in it again).
   */
  private async diffDirectories(): Promise<void> {
    const forced = new Set(this.relistDirs);
    this.relistDirs.clear();
    const dirs = [...this.index.loaded()].filter((o) => o.attr.type === 'dir' && (o.complete || forced.has(o.id)))
      .sort((a, b) => b.lastAccess - a.lastAccess).slice(0, DIFF_MAX_DIRS);
    for (const id of forced) {
      const o = this.index.get(id);
      if (o && o.attr.type === 'dir' && !dirs.includes(o)) dirs.push(o);
    }
    let gone = 0;
    await Promise.all(dirs.map(async (dir) => {
      try {
        const seen = dir.attr.version;
        await this.revalidate(dir, true);
        // Unchanged: its names are current. Changed, even by our own replayed records (which
        // the names already show), it is listed: the server may have changed it too. A
        // directory a conflict touched is listed anyway (its names may show our variant).
        if (dir.complete && dir.attr.version === seen && !forced.has(dir.id)) return;
        const before = new Set(this.index.namesOf(dir).keys());
        const listed = await this.call('readdir', () => this.backend.readdir(dir.fh));
        this.index.batch(() => {
          const t = now();
          this.index.replaceListing(dir, listed.map((e) => ({ name: e.name, id: this.adopt(e, t).id })), dir.attr.version);
        });
        const after = new Set(listed.map((e) => e.name));
        for (const n of before) if (!after.has(n)) gone++;
      } catch (e) {
        log.debug(`directory diffing of object ${dir.id} failed`, e);
      }
    }));
    if (gone > 0) log.info(`directory diffing: ${gone} name(s) deleted on the backend meanwhile`);
  }

  /** Mounted while the backend was away: start disconnected, probing for it. */
  startDisconnected(reason: string): void {
    this.lostConnection(reason);
  }

  /** `cachefs offline`: stop using the backend until `online`. */
  goOffline(): void {
    this.manualOffline = true;
    this.stopProbe();
    this.lostConnection('cachefs offline');
    this.deps.connectivity.force('disconnected', 'cachefs offline');
  }

  /** `cachefs online`: probe now; replay and reconnect if the backend answers. */
  async goOnline(): Promise<void> {
    this.manualOffline = false;
    if (this.deps.connectivity.state === 'connected') return;
    if (this.deps.connectivity.state === 'reintegrating') { await this.reintegration; return; }
    const root = this.index.get(this.rootId);
    try {
      await withDeadline(this.backend.getattr(root!.fh), Math.min(3000, this.cfg.backendTimeoutMs), 'probe');
    } catch (e) {
      this.startProbe();
      throw new FsError('EHOSTUNREACH', `the backend does not answer (${(e as Error).message}); cachefs keeps trying`);
    }
    await this.reintegrate('cachefs online');
  }

  // ---------------------------------------------------------------- freshness

  private timeoutFor(obj: CachedObject): number {
    const c = this.cfg.consistency;
    const [lo, hi] = obj.attr.type === 'dir' ? [c.acdirmin, c.acdirmax] : [c.acregmin, c.acregmax];
    // NFS's heuristic: the longer an object has gone unchanged, the longer we trust it.
    const ageS = Math.max(0, Date.now() / 1000 - Number(obj.attr.mtimeNs / 1_000_000_000n));
    // The kernel keeps what we answer for fuse.attrTimeout on top of this: what applications
    // see must be no older than an NFS client would show (acregmin for a young file), so our
    // own trust is shorter by that much. (A file changed on the server 0.3 s after a read was
    // served stale for 3 + 1 s: the kernel's i_size came from our cached attributes at the
    // LOOKUP just before open(), and open()'s own revalidation cannot reach the kernel.)
    return Math.max(0, Math.min(hi, Math.max(lo, ageS / 10)) * 1000 - this.cfg.fuse.attrTimeout * 1000);
  }

  private isFresh(obj: CachedObject): boolean {
    return obj.attrAt !== 0 && now() - obj.attrAt < this.timeoutFor(obj);
  }

  /**
   * Records attributes the backend reported and drops what they make stale. An object with
   * changes of ours the backend does not have yet (a dirty run, journal records not yet
   * applied, a writer that has not flushed) keeps its cached data and its local size and
   * mtime: our own writes are never an outside change, and the backend's size is behind.
   */
  private applyAttr(obj: CachedObject, attr: Attr): void {
    const v = attr.version;
    const unsent = attr.type === 'file' && this.hasUnsentChanges(obj);
    if (obj.dataVersion !== null && obj.dataVersion !== v) {
      // Ours (SELF) is adopted once nothing of ours is still on its way: the backend's
      // version before then does not include all of our bytes.
      if (obj.dataVersion === SELF) { if (!unsent) this.index.setDataVersion(obj, v); }
      else if (!unsent && !this.hasOpenWriters(obj)) this.dropData(obj);
    }
    if (attr.type === 'dir') {
      if (obj.namesVersion === SELF) this.index.setNamesVersion(obj, v);
      // Names learnt one lookup at a time carry no version of their own: the directory's
      // version moving means any of them may now be wrong (renamed or replaced elsewhere).
      else if (obj.namesVersion !== null ? obj.namesVersion !== v : obj.attr.version !== v && obj.names !== null && obj.names.size > 0) {
        this.index.invalidateNames(obj);
      }
    }
    if (unsent) attr = { ...attr, size: obj.attr.size };
    this.index.setAttr(obj, attr, now());
  }

  /** Data or size changes of ours that the backend has not applied yet. */
  private hasUnsentChanges(obj: CachedObject): boolean {
    return this.dirty.has(obj.id) || this.hasOpenWriters(obj) || this.replayer.hasPendingFor(obj.id);
  }

  /** The cached object for a node the backend reported: known ones get the new attributes. */
  private adopt(node: Node, t = now()): CachedObject {
    const known = this.index.byHandle(node.fh);
    if (!known) return this.index.upsert(node, t);
    this.applyAttr(known, node.attr);
    return known;
  }

  private dropData(obj: CachedObject): void {
    this.dataGen.set(obj.id, (this.dataGen.get(obj.id) ?? 0) + 1);
    if (obj.cachedBytes === 0 && obj.dataVersion === null) return;
    this.index.clearChunks(obj);
    void this.store.truncate(obj.id, 0).catch((e) => log.warn(`cannot truncate cache file ${obj.id}`, e));
  }

  private hasOpenWriters(obj: CachedObject): boolean {
    for (const of of this.openFiles.values()) if (of.obj === obj && of.written) return true;
    return false;
  }

  async revalidate(obj: CachedObject, force: boolean): Promise<void> {
    if (!force && this.isFresh(obj)) return;
    // Disconnected, or replaying the journal (the backend does not show all our changes
    // yet), what the cache holds is the answer; reintegration revalidates after the replay.
    if (this.deps.connectivity.state === 'disconnected' || this.replaying) return;
    let attr: Attr;
    try {
      attr = await this.call('getattr', () => this.backend.getattr(obj.fh));
    } catch (e) {
      if (isConnectionError(e)) return; // just went offline: serve the cache
      if (isFsError(e, 'ESTALE')) {
        this.forgetObject(obj);
        throw new FsError('ENOENT', 'the object was removed on the backend');
      }
      throw e;
    }
    this.applyAttr(obj, attr);
  }

  /** The object is gone from the backend: unlink it from every cached name. */
  private forgetObject(obj: CachedObject): void {
    if (obj.id === this.rootId) return;
    if (this.replayer.hasPendingFor(obj.id)) {
      // Gone on the backend (ESTALE) while changes of ours wait in the journal: the cached
      // data is the only copy of them, so it stays until those records are dealt with.
      log.info(`object ${obj.id} is gone (or has no name left) but has journal records to send: kept until they are`);
      obj.attrAt = 0;
      return;
    }
    if (this.openCount.get(obj.id)) {
      this.orphans.add(obj.id); // still open here: removed when the last opener releases it
      return;
    }
    this.index.remove(obj);
    void this.store.remove(obj.id).catch(() => undefined);
  }

  // ---------------------------------------------------------------- resolution

  private obj(id: number): CachedObject {
    const o = this.index.get(id);
    if (!o) throw new FsError('ESTALE', `object ${id} vanished from the index`);
    return o;
  }

  async lookup(dir: CachedObject, name: string): Promise<CachedObject> {
    if (dir.attr.type !== 'dir') throw new FsError('ENOTDIR');
    if (nameTooLong(name)) throw new FsError('ENAMETOOLONG');
    await this.revalidate(dir, false);
    const names = this.index.namesOf(dir);
    const known = names.get(name);
    if (known === null) throw new FsError('ENOENT');
    if (known !== undefined) {
      const o = this.index.get(known);
      if (o && this.isFresh(o)) return o;
      if (o) {
        // Due for revalidation anyway: if the object is gone, the name may now be another
        // object's (replaced from outside), so ask the backend rather than answer ENOENT.
        try {
          await this.revalidate(o, false);
          return o;
        } catch (e) {
          if (!isFsError(e, 'ENOENT')) throw e;
        }
      }
    } else if (dir.complete) {
      throw new FsError('ENOENT');
    }
    if (!this.connected && dir.stale) {
      // Disconnected: the names the directory had before its version moved are what the
      // cache holds (they answer until a listing while connected replaces them).
      const before = dir.stale.names.get(name);
      const o = before !== undefined && before !== null ? this.index.get(before) : undefined;
      if (o) return o;
      if (before === null || dir.stale.complete) throw new FsError('ENOENT');
    }
    try {
      const node = await this.call('lookup', () => this.backend.lookup(dir.fh, name));
      const obj = this.adopt(node);
      this.index.setName(dir, name, obj.id);
      return obj;
    } catch (e) {
      if (isFsError(e, 'ENOENT')) this.index.setName(dir, name, null);
      throw e;
    }
  }

  async resolve(p: string): Promise<CachedObject> {
    let cur = this.obj(this.rootId);
    if (p === '/' || p === '') return cur;
    for (const part of p.split('/')) {
      if (part === '') continue;
      cur = await this.lookup(cur, part);
    }
    return cur;
  }

  async resolveParent(p: string): Promise<{ dir: CachedObject; name: string }> {
    const name = path.posix.basename(p);
    if (name === '' || p === '/') throw new FsError('EBUSY', 'the mount root');
    if (nameTooLong(name)) throw new FsError('ENAMETOOLONG');
    const dir = await this.resolve(path.posix.dirname(p));
    if (dir.attr.type !== 'dir') throw new FsError('ENOTDIR');
    return { dir, name };
  }

  // ---------------------------------------------------------------- attributes

  async getattr(p: string): Promise<CachedObject> {
    return this.resolveValid(p, false);
  }

  /**
   * The object a kernel node stands for, revalidated. ESTALE when the backend says it is
   * gone: the kernel then looks its name up again (LOOKUP_REVAL), as resolveValid does for
   * a path.
   */
  async getattrOf(o: CachedObject, force = false): Promise<CachedObject> {
    try {
      await this.revalidate(o, force);
      return o;
    } catch (e) {
      if (isFsError(e, 'ENOENT') && this.index.get(o.id) !== o) throw new FsError('ESTALE', `object ${o.id} is gone from the backend`);
      throw e;
    }
  }

  /** The object with this id (a kernel node id), or ESTALE when the cache forgot it. */
  objectOrStale(id: number): CachedObject { return this.obj(id); }

  /**
   * resolve(), then revalidate the object the name led to. When the backend says that object
   * is gone (revalidate forgot it: ESTALE), the name may well be another object's now (a
   * file replaced by a rename elsewhere, as git's index.lock -> index): the name is looked
   * up again, once, as the kernel walks a path again on ESTALE, instead of answering ENOENT
   * for a name that exists.
   */
  private async resolveValid(p: string, force: boolean): Promise<CachedObject> {
    const o = await this.resolve(p);
    try {
      await this.revalidate(o, force);
      return o;
    } catch (e) {
      if (!isFsError(e, 'ENOENT') || this.index.get(o.id) === o) throw e;
    }
    const again = await this.resolve(p);
    await this.revalidate(again, force);
    return again;
  }

  fileOf(fd: number): OpenFile {
    const of = this.openFiles.get(fd);
    if (!of) throw new FsError('EBADF');
    return of;
  }

  async readdir(p: string): Promise<{ dir: CachedObject; entries: { name: string; obj: CachedObject }[] }> {
    return this.readdirOf(await this.resolve(p));
  }

  async readdirOf(dir: CachedObject): Promise<{ dir: CachedObject; entries: { name: string; obj: CachedObject }[] }> {
    if (dir.attr.type !== 'dir') throw new FsError('ENOTDIR');
    await this.revalidate(dir, false);
    // A listing with attributes (READDIRPLUS-style) when the names are not all cached, or
    // when many of the entries' attributes are stale (after a remount, say): one backend
    // listing then refreshes them all, instead of one getattr round trip per entry later.
    if (!dir.complete && !this.connected) {
      if (dir.stale?.complete) return { dir, entries: this.staleListing(dir) };
      throw new FsError('EHOSTUNREACH', 'this directory was never listed while connected');
    }
    if (!dir.complete || (this.connected && this.staleChildren(dir) > 8)) {
      const listed = await this.call('readdir', () => this.backend.readdir(dir.fh));
      this.index.batch(() => {
        const t = now();
        const entries: { name: string; id: number }[] = [];
        for (const e of listed) entries.push({ name: e.name, id: this.adopt(e, t).id });
        this.index.replaceListing(dir, entries, dir.attr.version);
      });
    }
    const out: { name: string; obj: CachedObject }[] = [];
    for (const [name, id] of this.index.namesOf(dir)) {
      if (id === null) continue;
      const o = this.index.get(id);
      if (o) out.push({ name, obj: o });
    }
    return { dir, entries: out };
  }

  /**
   * Disconnected, a directory whose version moved after it was listed: its last listing,
   * with what was learnt or changed here since (names made, removed or looked up).
   */
  private staleListing(dir: CachedObject): { name: string; obj: CachedObject }[] {
    const merged = new Map(dir.stale?.names ?? []);
    for (const [name, id] of this.index.namesOf(dir)) merged.set(name, id);
    const out: { name: string; obj: CachedObject }[] = [];
    for (const [name, id] of merged) {
      const o = id === null ? undefined : this.index.get(id);
      if (o) out.push({ name, obj: o });
    }
    return out;
  }

  private staleChildren(dir: CachedObject): number {
    let stale = 0;
    for (const id of this.index.namesOf(dir).values()) {
      if (id === null) continue;
      const o = this.index.get(id);
      if (!o || !this.isFresh(o)) stale++;
    }
    return stale;
  }

  async readlink(p: string): Promise<string> {
    return this.readlinkOf(await this.resolve(p));
  }

  async readlinkOf(o: CachedObject): Promise<string> {
    if (o.attr.type !== 'symlink') throw new FsError('EINVAL');
    await this.revalidate(o, false);
    if (o.symlink !== null && (o.dataVersion === o.attr.version || !this.connected)) return o.symlink;
    const target = await this.call('readlink', () => this.backend.readlink(o.fh));
    this.index.setSymlink(o, target);
    this.index.setDataVersion(o, o.attr.version);
    return target;
  }

  async statfs(): Promise<StatFs> {
    if (this.statfsCache && (now() - this.statfsCache.at < 1000 || !this.connected)) return this.statfsCache.value;
    if (!this.connected) {
      // Never asked while connected: the cache disk's figures are the honest answer now.
      const s = await fsp.statfs(this.cfg.cacheDir);
      return { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, namemax: 255 };
    }
    const value = await this.call('statfs', () => this.backend.statfs());
    this.statfsCache = { at: now(), value };
    return value;
  }

  // ---------------------------------------------------------------- open files

  async open(p: string, flags: number, by?: Creds): Promise<number> {
    const o = this.cfg.consistency.closeToOpen ? await this.resolveValid(p, true) : await this.resolve(p);
    if (o.attr.type === 'dir' && (flags & O_ACCMODE) !== 0) throw new FsError('EISDIR');
    return this.addOpen(o, flags, by);
  }

  /** open() of a kernel node: revalidated first (close-to-open), ESTALE when it is gone. */
  async openObject(o: CachedObject, flags: number, by?: Creds): Promise<number> {
    if (this.cfg.consistency.closeToOpen) await this.getattrOf(o, true);
    if (o.attr.type === 'dir' && (flags & O_ACCMODE) !== 0) throw new FsError('EISDIR');
    return this.addOpen(o, flags, by);
  }

  private addOpen(obj: CachedObject, flags: number, by: Creds | undefined): number {
    const fd = this.nextFd++;
    if (this.nextFd > 0x7fffffff) this.nextFd = 1;
    this.openFiles.set(fd, { obj, flags, written: false, nextPos: -1, error: null, writtenBytes: 0, flushedAt: 0, by });
    this.openCount.set(obj.id, (this.openCount.get(obj.id) ?? 0) + 1);
    this.index.touch(obj, Date.now());
    return fd;
  }

  async release(fd: number): Promise<void> {
    const of = this.openFiles.get(fd);
    if (!of) return;
    if (of.written) await this.flush(fd).catch((e) => log.warn('flush on release failed', e));
    this.openFiles.delete(fd);
    const n = (this.openCount.get(of.obj.id) ?? 1) - 1;
    if (n <= 0) {
      this.openCount.delete(of.obj.id);
      this.lastSeq.delete(of.obj.id);
      this.writeAround.delete(of.obj.id);
      if (this.orphans.delete(of.obj.id)) this.forgetObject(of.obj);
      const h = this.hidden.get(of.obj.id);
      if (h) {
        this.hidden.delete(of.obj.id);
        await this.unlinkAt(h.dir, h.name, h.by).catch((e) => log.warn(`removing ${h.name} (unlinked while open) failed; it stays on the backend`, e));
      }
    } else this.openCount.set(of.obj.id, n);
  }

  /** Whether removing this name would drop an object that is still open here (see `hidden`). */
  private mustHide(obj: CachedObject): boolean {
    return obj.attr.type === 'file' && obj.attr.nlink <= 1 && this.isOpen(obj.id) && !this.hidden.has(obj.id);
  }

  /** Moves `name` (an open file's last name) aside until its last close. */
  private async hide(dir: CachedObject, name: string, obj: CachedObject, by: Creds | undefined): Promise<void> {
    const hiddenName = `.cachefs-hidden-${obj.id}-${Date.now().toString(36)}`;
    await this.renameAt(dir, name, dir, hiddenName, by);
    this.hidden.set(obj.id, { dir, name: hiddenName, by });
  }

  /** close(): the data written through `fd` is on the backend when this returns. */
  async flush(fd: number): Promise<void> {
    const of = this.fileOf(fd);
    of.flushedAt = Date.now();
    if (!of.written) { this.throwPendingError(of); return; }
    const run = this.dirty.get(of.obj.id);
    if (run) void this.commitRun(run);
    // Wait for this object's own records only, not for everything in the journal. Not
    // connected, the records are durable in the journal already: that is close()'s promise.
    await this.settledOrOffline(of.obj.id);
    if (!this.connected && of.written) {
      // Written offline: replayed, the writes would give the file the replay's time on the
      // server (and make rebuild everything after a trip). The server gets the mtime the
      // user saw here, at close. As the mount, not the writer: it is the time the writes
      // themselves gave (their rights are checked with them), and setting an explicit time
      // needs ownership, which a writer of someone else's 0666 file does not have.
      await this.mutate({ op: 'setattr', obj: of.obj.id, set: { mtime: { kind: 'set', ns: String(of.obj.attr.mtimeNs) } }, base: of.obj.attr.version });
    }
    of.written = false;
    this.throwPendingError(of);
    if (!this.connected) return;
    // Close-to-open durability on backends that write unstably (NFS): COMMIT before close
    // returns; its answer carries the attributes after our writes (wcc data) where it can.
    const committed = this.backend.commitOnClose
      ? await this.mutate({ op: 'commit', obj: of.obj.id, base: of.obj.attr.version })
      : null;
    if (!this.connected) return;
    // Adopt the version our writes produced, so our own writes never look like someone else's.
    let attr: Attr;
    try {
      attr = committed?.kind === 'attr' ? committed.attr : await this.call('getattr', () => this.backend.getattr(of.obj.fh));
    } catch (e) {
      if (isConnectionError(e)) return; // went offline just now: the data is journaled
      throw e;
    }
    if (of.obj.dataVersion !== null) this.index.setDataVersion(of.obj, SELF);
    this.applyAttr(of.obj, attr);
  }

  /**
   * fsync(): connected, the data written so far is on the backend (committed) when this
   * returns. Disconnected, it is in the cache file and in committed journal records, and both
   * are on stable storage (fdatasync, a WAL checkpoint): it survives power loss.
   */
  async fsync(fd: number): Promise<void> {
    const of = this.fileOf(fd);
    const run = this.dirty.get(of.obj.id);
    if (run) void this.commitRun(run);
    if (this.connected) {
      await this.settledOrOffline(of.obj.id);
      if (this.connected) {
        await this.mutate({ op: 'commit', obj: of.obj.id, base: of.obj.attr.version });
        if (of.written) await this.flush(fd);
      }
    }
    if (!this.connected) {
      if (this.spilling) await this.spilling;
      await this.store.sync(of.obj.id);
      this.index.makeDurable();
      this.throwPendingError(of);
    }
  }

  // ---------------------------------------------------------------- data

  private chunkKey(obj: CachedObject, idx: number): string { return `${obj.id}:${idx}`; }

  /** Fetches chunk `idx` of `obj` into the cache (coalesced with concurrent fetches). */
  private fetchChunk(obj: CachedObject, idx: number): Promise<Buffer> {
    const key = this.chunkKey(obj, idx);
    const have = this.inflight.get(key);
    if (have) return have;
    let landed!: () => void;
    const landing = new Promise<void>((r) => { landed = r; });
    this.landing.set(key, landing);
    const p = (async () => {
      const version = obj.attr.version;
      const gen = this.dataGen.get(obj.id) ?? 0;
      // Up to the end of the file as the attributes say (a chunk past it is just short: a
      // file that grew has a new version, which drops this chunk anyway). Asking for a whole
      // chunk of a small file would allocate it for nothing.
      const want = Math.max(0, Math.min(this.chunk, obj.attr.size - idx * this.chunk)) || this.chunk;
      const buf = await this.call('read', () => this.backend.read(obj.fh, idx * this.chunk, want));
      if (obj.attr.version !== version) {
        // The object changed while we read: these bytes may be from either side of it.
        throw new FsError('EAGAIN', 'object changed during fetch');
      }
      if (obj.dataVersion !== null && obj.dataVersion !== version && obj.dataVersion !== SELF) this.dropData(obj);
      this.counters.bytesFromBackend += buf.length;
      // The reader gets the bytes now; the cache file gets them in the background, and the
      // chunk counts as cached only once they have landed there (unless the data was
      // dropped meanwhile). Writers wait for `landing` so they never race this write.
      const dataVersion = obj.dataVersion === SELF ? SELF : version;
      this.landingBytes += buf.length;
      // Below the cache disk's stop threshold (culling.bstop) nothing new is kept: the
      // reader still gets its bytes.
      const keep = this.storeData;
      const stored = (keep ? this.store.write(obj.id, idx * this.chunk, buf) : Promise.reject(new FsError('ENOSPC', 'the cache is full'))).then(
        () => {
          // Only if nothing dropped the data meanwhile, and the object is still the version
          // these bytes came from (a revalidation may have seen a newer one while they landed).
          if ((this.dataGen.get(obj.id) ?? 0) === gen && (dataVersion === SELF || obj.attr.version === version)) {
            // Nobody awaits this (the reader has its bytes): a chunk the index cannot record
            // (a full cache disk) is just not cached, and is fetched again when needed.
            try {
              this.index.addChunk(obj, idx, buf.length, dataVersion);
            } catch (e) {
              log.warn(`chunk ${idx} of object ${obj.id} cannot be recorded in the index; it is not kept`, e);
            }
          }
        },
        (e) => { if (keep) log.warn(`cannot keep chunk ${idx} of object ${obj.id} in the cache`, e); },
      ).finally(() => {
        this.landingBytes -= buf.length;
        if (this.inflight.get(key) === p) this.inflight.delete(key);
        if (this.landing.get(key) === landing) this.landing.delete(key);
        landed();
      });
      // Back-pressure: when the cache disk lags behind the backend, fetched bytes would pile
      // up in memory; past this bound the reader waits for its chunk to land.
      if (this.landingBytes > LANDING_LIMIT) await stored;
      return buf;
    })();
    (p as VersionedFetch).version = obj.attr.version;
    this.inflight.set(key, p);
    p.catch(() => {
      if (this.inflight.get(key) === p) this.inflight.delete(key);
      if (this.landing.get(key) === landing) this.landing.delete(key);
      landed();
    });
    return p;
  }

  /**
   * Makes chunk `idx` present in the cache: waits for a fetch or write already under way,
   * else fetches it. Returns the chunk's bytes when this call fetched them, null otherwise.
   */
  private async ensureChunk(obj: CachedObject, idx: number): Promise<Buffer | null> {
    for (let attempt = 0; ; attempt++) {
      const key = this.chunkKey(obj, idx);
      const busy = this.inflight.get(key);
      try {
        if (busy) {
          const from = (busy as VersionedFetch).version;
          if (from !== undefined && from !== obj.attr.version && attempt < 3) {
            // A fetch of the version before a revalidation saw a newer one: its bytes are
            // stale. Let it finish (it will not count as cached), then fetch anew.
            await busy.catch(() => undefined);
            await this.landing.get(key);
            continue;
          }
          const b = await busy;
          if (b.length > 0) return b;
          continue; // a write's guard: look again
        }
        if (this.index.chunksOf(obj).has(idx)) return null;
        return await this.fetchChunk(obj, idx);
      } catch (e) {
        if (!isFsError(e, 'EAGAIN') || attempt >= 3) throw e;
      }
    }
  }

  /** Reads up to `len` bytes at `pos`; `scratch` (if given, ≥ len bytes) may hold the result. */
  /**
   * Reads up to `len` bytes at `pos`. `scratch` (≥ len bytes, if given) may hold the result.
   * `direct` is the kernel's own buffer: it is used only when the whole read is served from
   * the cache file synchronously, with no await on I/O before it (so fuse-native cannot
   * have given up on the request and detached it meanwhile).
   */
  async read(fd: number, pos: number, len: number, scratch?: Buffer, direct?: Buffer): Promise<Buffer> {
    const of = this.fileOf(fd);
    const obj = of.obj;
    if (obj.attr.type !== 'file') throw new FsError(obj.attr.type === 'dir' ? 'EISDIR' : 'EINVAL');
    const around = this.writeAround.has(obj.id);
    if (around) {
      // Its newest bytes are only in memory and on their way to the backend: let them land
      // there, then read (and cache) from the backend.
      const run = this.dirty.get(obj.id);
      if (run) void this.commitRun(run);
      await this.settledOrOffline(obj.id);
      if (!this.connected) throw new FsError('ENODATA', 'written past the cache while connected; readable again once reconnected');
      if (obj.cachedBytes > 0) this.dropData(obj);
    }
    const size = obj.attr.size;
    if (pos >= size || len <= 0) return Buffer.alloc(0);
    const n = Math.min(len, size - pos);
    const first = Math.floor(pos / this.chunk);
    const last = Math.floor((pos + n - 1) / this.chunk);
    const chunks = this.index.chunksOf(obj);
    const fetched = new Map<number, Buffer>();
    const waits: Promise<void>[] = [];
    for (let i = first; i <= last; i++) {
      if (chunks.has(i) && !this.inflight.has(this.chunkKey(obj, i))) continue;
      if (!chunks.has(i) && !this.inflight.has(this.chunkKey(obj, i)) && this.knownZero(obj, i)) {
        // Made here and never on the backend: a chunk nobody wrote is a hole (zeros).
        this.index.addChunk(obj, i, Math.min(this.chunk, size - i * this.chunk), obj.dataVersion ?? SELF);
        continue;
      }
      waits.push(this.ensureChunk(obj, i).then((b) => { if (b) fetched.set(i, b); }));
    }
    if (waits.length) {
      this.counters.misses++;
      try {
        await Promise.all(waits);
      } catch (e) {
        throw notCachedWhenOffline(e);
      }
    } else {
      this.counters.hits++;
      this.counters.bytesFromCache += n;
    }
    // Sequential reader: fetch ahead so the next reads find their chunks cached.
    if (of.nextPos === pos && this.cfg.cache.readAheadChunks > 0) this.readAhead(obj, last + 1);
    of.nextPos = pos + n;
    this.index.touch(obj, Date.now());
    if (fetched.size === 0) {
      if (direct && waits.length === 0 && !around && direct.length >= n && this.store.readsSync(obj.id, n)) {
        return this.store.read(obj.id, pos, n, direct.subarray(0, n));
      }
      return this.store.read(obj.id, pos, n, scratch && scratch.length >= n ? scratch.subarray(0, n) : undefined);
    }
    // Some chunks came from the backend just now (their bytes may not have landed in the
    // cache file yet): take those from memory and the others from the cache file.
    const out = scratch && scratch.length >= n ? scratch.subarray(0, n) : Buffer.allocUnsafe(n);
    for (let i = first; i <= last; i++) {
      const cStart = i * this.chunk;
      const from = Math.max(pos, cStart);
      const to = Math.min(pos + n, cStart + this.chunk);
      const b = fetched.get(i);
      if (b) {
        const part = b.subarray(from - cStart, to - cStart);
        part.copy(out, from - pos);
        if (part.length < to - from) out.fill(0, from - pos + part.length, to - pos);
      } else {
        await this.store.read(obj.id, from, to - from, out.subarray(from - pos, to - pos));
      }
    }
    return out;
  }

  private readAhead(obj: CachedObject, from: number): void {
    const chunks = this.index.chunksOf(obj);
    const lastChunk = Math.floor(Math.max(0, obj.attr.size - 1) / this.chunk);
    const to = Math.min(lastChunk, from + this.cfg.cache.readAheadChunks - 1);
    for (let i = from; i <= to; i++) {
      if (chunks.has(i) || this.inflight.has(this.chunkKey(obj, i))) continue;
      this.ensureChunk(obj, i).catch((e) => log.debug('read-ahead failed', e));
    }
  }

  async write(fd: number, pos: number, data: Buffer): Promise<number> {
    const of = this.fileOf(fd);
    const obj = of.obj;
    if ((of.flags & O_ACCMODE) !== O_WRONLY && (of.flags & O_ACCMODE) !== O_RDWR) throw new FsError('EBADF');
    if (data.length === 0) return 0;
    if (!this.connected) {
      // Disconnected, the cache is the only home of this write until replay: if culling
      // cannot make room for it, the write fails now (EDISCONFULL) rather than be lost later.
      if (this.admitOffline && !this.admitOffline(data.length)) {
        const full = new FsError('ENOSPC', 'the cache is full: this change cannot be kept while disconnected');
        const cause = this.offlineRefusal ?? undefined;
        this.deps.events?.emit({ type: 'cache-full', path: this.index.pathOf(obj.id, this.rootId), message: full.message, ...(cause ? { cause } : {}) });
        throw full;
      }
      await this.captureBase(obj);
      // Bytes acknowledged while connected and still only in memory go to the cache file
      // first (see spillWriteBehind): this write is journaled after them.
      if (this.spilling) await this.spilling;
    }
    const end = pos + data.length;
    const first = Math.floor(pos / this.chunk);
    const last = Math.floor((end - 1) / this.chunk);
    of.writtenBytes += data.length;
    if (!this.writeAround.has(obj.id) && of.writtenBytes > WRITE_AROUND_BYTES && this.deps.connectivity.state === 'connected') {
      this.writeAround.add(obj.id);
    }
    let around = this.writeAround.has(obj.id);
    if (around && obj.cachedBytes > 0) this.dropData(obj); // what is cached is about to be stale
    // Make every touched chunk whole in the cache before writing into it (a chunk the write
    // covers entirely, or that is known to hold zeros, needs nothing from the backend), and
    // wait until no fetch of them is in flight or landing: a fetched chunk landing after
    // these bytes would overwrite them.
    const fresh: number[] = [];
    if (!around && !(await this.chunksWritable(obj, pos, end, fresh))) {
      // The cache cannot hold the chunk (below its stop threshold, or dropped again and
      // again): connected, the bytes still reach the backend, around the cache.
      if (!this.connected) throw new FsError('ENOSPC', 'the cache cannot keep this write while disconnected');
      this.dropData(obj);
      around = true;
    }
    // `data` may be the kernel's buffer: if fuse-native gave up on this request meanwhile
    // (its 14 s timeout) the buffer is detached and reads as empty.
    if (data.length !== end - pos) throw new FsError('EIO', 'the request timed out while the chunk was fetched');
    of.written = true;
    this.index.setDataVersion(obj, SELF);
    const offline = !this.connected;
    // Offline (invariant 1): the bytes go to the cache file and, once there, into a journal
    // record of their own before write() returns. No dirty run: nothing waits in memory.
    // Connected: write-back as an NFS client does: consecutive writes gather in a dirty run
    // (in memory and in the cache file) that becomes one journal record when it reaches
    // DIRTY_RUN_MAX, when a write does not continue it, before any other mutation, and at
    // flush()/fsync(). close() and fsync() return once the backend has it.
    let run: DirtyRun | undefined;
    let own = data;
    if (!offline) {
      run = this.dirty.get(obj.id);
      if (run && (run.offset + run.length !== pos || run.length + data.length > run.buf.length || !sameUser(run.of.by, of.by))) {
        void this.commitRun(run);
        run = undefined;
      }
      if (!run) {
        run = { obj, of, offset: pos, buf: this.runPool.acquire(DIRTY_RUN_MAX + 128 * 1024), length: 0, pins: 0, committed: false };
        this.dirty.set(obj.id, run);
      }
      own = run.buf.subarray(run.length, run.length + data.length);
      data.copy(own);
      run.length += data.length;
    }
    // Every touched chunk is guarded while the bytes go in: no fetch can start there, and a
    // reader waits for this write (it finds the guard in `inflight`).
    const release = this.guardChunks(obj, rangeOf(first, last));
    const storeIt = !around || offline;
    if (run) run.pins++;
    try {
      if (storeIt) await this.store.write(obj.id, pos, own);
      if (!around) {
        const grown = end > obj.attr.size ? obj.attr.size : -1;
        for (const i of fresh) this.index.addChunk(obj, i, Math.min(this.chunk, end - i * this.chunk), SELF);
        if (grown >= 0) this.knownZerosFrom(obj, grown);
      }
    } catch (e) {
      if (offline) {
        // Disconnected, the cache file is the only home of these bytes until replay: if it
        // cannot take them (a full cache disk), the write fails rather than lose them later.
        if (isFsError(e, 'EFBIG')) throw e; // past the largest file the cache disk can hold
        const full = isFsError(e, 'ENOSPC') || isFsError(e, 'EDQUOT') ? e : new FsError('ENOSPC', `the cache cannot keep this write while disconnected: ${(e as Error).message}`);
        this.deps.events?.emit({ type: 'cache-full', path: this.index.pathOf(obj.id, this.rootId), message: full.message, cause: 'disk' });
        throw full;
      }
      // The bytes still reach the backend (they are in the run); the cache just cannot
      // vouch for this object any more.
      log.warn(`cache write of object ${obj.id} failed; dropping its cached data`, e);
      this.dropData(obj);
    } finally {
      release();
      if (run) {
        // The run may have been journaled while this write was storing (another request's
        // mutation commits every dirty run): its buffer is given back only now.
        this.unpinRun(run);
      }
    }
    if (offline) {
      this.journalOfflineWrite(obj, pos, own, end, of.by);
      this.throwPendingError(of);
      return data.length;
    }
    if (end > obj.attr.size) this.index.setLocalSize(obj, end);
    if (run && run.length >= DIRTY_RUN_MAX && this.dirty.get(obj.id) === run) {
      const applied = this.commitRun(run);
      // Back-pressure: never hold more than this many bytes waiting for the backend (while
      // connected: offline, the bytes wait in the cache file and the journal, not in memory).
      if (this.writeBehindBytes > WRITE_BEHIND_LIMIT) await Promise.race([applied, this.whenNotConnected()]);
    }
    this.throwPendingError(of);
    return data.length;
  }

  /**
   * Waits until the chunks [pos, end) touches can take a write: each is cached (fetched if
   * need be) or known to hold nothing yet (`fresh` gets those), and none is being fetched
   * or landing. Returns once that holds with no await left before the caller's write, or
   * false if the cache cannot hold them.
   */
  private async chunksWritable(obj: CachedObject, pos: number, end: number, fresh: number[]): Promise<boolean> {
    const first = Math.floor(pos / this.chunk);
    const last = Math.floor((end - 1) / this.chunk);
    for (let attempt = 0; attempt < 5; attempt++) {
      fresh.length = 0;
      for (let i = first; i <= last; i++) {
        const key = this.chunkKey(obj, i);
        const busy = this.inflight.get(key);
        if (busy) await busy.catch(() => undefined);
        const landing = this.landing.get(key);
        if (landing) await landing;
        if (this.index.chunksOf(obj).has(i)) continue;
        const cStart = i * this.chunk;
        if ((pos <= cStart && end >= cStart + this.chunk) || this.knownZero(obj, i)) { fresh.push(i); continue; }
        await this.ensureChunk(obj, i).catch((e) => { throw notCachedWhenOffline(e); });
        await this.landing.get(key);
      }
      // From here to the caller's write there is no await: check that it all still holds.
      let ok = true;
      const chunks = this.index.chunksOf(obj);
      for (let i = first; i <= last && ok; i++) {
        const key = this.chunkKey(obj, i);
        if (this.inflight.has(key) || this.landing.has(key)) ok = false;
        else if (!chunks.has(i) && !fresh.includes(i)) ok = false;
        else if (fresh.includes(i) && !chunks.has(i)) {
          const cStart = i * this.chunk;
          ok = (pos <= cStart && end >= cStart + this.chunk) || this.knownZero(obj, i);
        }
      }
      if (ok) return true;
      if (!this.storeData && this.connected) return false;
    }
    return false;
  }

  /**
   * Chunk `idx` holds nothing the backend has: it starts at or past the end of the file as
   * the cache knows it, or the object was made here and never reached the backend. Its
   * bytes are what we wrote there (holes read as zeros).
   */
  private knownZero(obj: CachedObject, idx: number): boolean {
    const start = idx * this.chunk;
    return start >= obj.attr.size || isProvisional(obj.fh) || (obj.zerosFrom !== null && obj.dataVersion !== null && start >= obj.zerosFrom);
  }

  /**
   * The file grew from `from` (a write past its end, a truncate up): chunks that start at or
   * past it and are not cached hold only zeros (offline they can be read, mapped and written;
   * connected they need no fetch). One value, however far the file grew. The chunk holding
   * `from`, when it starts before it, keeps its state (its head is the backend's).
   */
  private knownZerosFrom(obj: CachedObject, from: number): void {
    this.index.batch(() => {
      // The promise belongs to our data version: when the backend's content moves on, the
      // data is dropped, and the promise with it (clearChunks).
      if (obj.dataVersion === null) this.index.setDataVersion(obj, SELF);
      this.index.noteZerosFrom(obj, from);
    });
  }

  /**
   * A write made while disconnected: its bytes are in the cache file; now its journal record
   * (with the size and times the write gives, in one transaction, so after a crash the cache
   * still shows all of it). From here the write survives kill -9 (invariant 1).
   */
  private journalOfflineWrite(obj: CachedObject, pos: number, data: Buffer, end: number, by: Creds | undefined): void {
    const t = nowNs();
    const attrs = { size: Math.max(obj.attr.size, end), mtimeNs: t, ctimeNs: t };
    // A write that continues the journal's last record (the same object, right after it,
    // nothing journaled since) extends that record in place, up to DIRTY_RUN_MAX: a 1 MiB
    // write arrives as eight FUSE writes, and replay is one round trip per record. The CRC
    // continues over the new bytes; the update is one transaction, as an append is.
    const last = this.offlineTail;
    if (last && last.record.obj === obj.id && last.record.offset + last.record.length === pos
      && last.record.length + data.length <= DIRTY_RUN_MAX && sameUser(last.record.by, by)) {
      const record = { ...last.record, length: last.record.length + data.length, crc: crc32(data, last.record.crc) };
      const extended = this.index.batch(() => {
        if (!this.replayer.extendLast(last.seq, last.record, record)) return false;
        this.index.patchAttr(obj, attrs);
        return true;
      });
      if (extended) { this.offlineTail = { seq: last.seq, record }; return; }
    }
    const record = { op: 'write' as const, obj: obj.id, offset: pos, length: data.length, crc: crc32(data), ...byOf(by), base: obj.attr.version, offline: true as const };
    this.index.batch(() => {
      const seq = this.replayer.append(record);
      this.lastSeq.set(obj.id, seq);
      this.offlineTail = { seq, record };
      this.index.patchAttr(obj, attrs);
    });
  }

  /** The last offline write record journaled (extendLast checks it is still the journal's last). */
  private offlineTail: { seq: number; record: { op: 'write'; obj: number; offset: number; length: number; crc: number; by?: Creds; base: string; offline: true } } | null = null;

  /**
   * Turns a dirty run into a journal record. The record carries a CRC of the bytes: if the
   * process dies before the backend has them, the replay reads them back from the cache
   * file and, should they differ, drops the record rather than send other bytes.
   */
  private commitRun(run: DirtyRun): Promise<void> {
    if (this.dirty.get(run.obj.id) === run) this.dirty.delete(run.obj.id);
    if (run.committed) return Promise.resolve();
    run.committed = true;
    const data = run.buf.subarray(0, run.length);
    // The base is the version now, not when the run began: a record of ours applied since
    // (its answer carries the version it made) must not look like someone else's change.
    const record = {
      op: 'write' as const, obj: run.obj.id, offset: run.offset, length: run.length, crc: crc32(data), ...byOf(run.of.by), base: run.obj.attr.version,
      ...(this.connected ? {} : { offline: true as const }),
    };
    if (!this.connected && !this.writeAround.has(run.obj.id)) {
      // A run begun while connected, journaled after the connection went: its bytes are in
      // the cache file (or on their way, with a write() that has not returned yet), so the
      // record needs no copy in memory; the replay reads them back from there. The
      // attributes the writes gave (size, times) are stored with the record, in one
      // transaction: after a crash the cache still shows (and a conflict keeps) all of it.
      const t = nowNs();
      try {
        this.index.batch(() => {
          this.lastSeq.set(run.obj.id, this.replayer.append(record));
          this.index.patchAttr(run.obj, { size: run.obj.attr.size, mtimeNs: t, ctimeNs: t });
        });
      } catch (e) {
        // The cache disk is full: the bytes are in the cache file but not journaled. The run
        // stays dirty (unless a newer one took its place), so the next flush journals it; the
        // caller (write, close, fsync) hears ENOSPC now.
        run.committed = false;
        if (!this.dirty.has(run.obj.id)) this.dirty.set(run.obj.id, run);
        throw e;
      }
      this.unpinRun(run, false);
      return Promise.resolve();
    }
    const seq = this.replayer.append(record, { data });
    this.lastSeq.set(run.obj.id, seq);
    if (!this.connected) {
      // Written around the cache, and the connection is gone: the bytes go to the cache
      // file now, and the record stops holding them in memory (see spillWriteBehind).
      this.spill(seq, run.obj.id, run.offset, data);
      return Promise.resolve();
    }
    run.pins++; // the replayer holds the buffer as the record's hint
    this.writeBehindBytes += run.length;
    const of = run.of;
    return this.replayer.waitFor(seq).then(
      (outcome) => {
        if (outcome.kind === 'refused') this.writeFailed(of, outcome.error);
        else if (outcome.kind === 'attr') this.ownWriteVersion(run.obj, outcome.attr);
        this.unpinRun(run); // the record has left the journal: nobody reads it
      },
      (e) => {
        // The connection went: the record waits in the journal with its bytes (the replayer
        // keeps this buffer as its hint, so it is not given back to the pool; a spill to the
        // cache file lets it go).
        if (!isConnectionError(e)) this.writeFailed(of, e);
      },
    ).finally(() => { this.writeBehindBytes -= run.length; });
  }

  /** One user of a dirty run's buffer less; the last one after the commit gives it back. */
  private unpinRun(run: DirtyRun, dec = true): void {
    if (dec) run.pins--;
    if (run.pins === 0 && run.committed) this.runPool.release(run.buf);
  }

  /** Spills still writing to cache files: an offline write is journaled after them. */
  private spilling: Promise<void> | null = null;

  /**
   * Writes a journaled record's in-memory bytes to the object's cache file and then lets the
   * replayer forget them: from then on they survive the process (the replay reads them back
   * from there). Calls keep their order per object (DataStore), so a newer write lands last.
   */
  private spill(seq: number, objId: number, offset: number, data: Buffer): void {
    const p = this.store.write(objId, offset, data).then(
      () => { this.replayer.dropHint(seq); },
      (e) => { log.error(`cannot keep journal record ${seq}'s bytes in the cache file: they stay in memory only`, e); },
    );
    const all = Promise.all([this.spilling, p]).then(() => undefined);
    this.spilling = all;
    void all.then(() => { if (this.spilling === all) this.spilling = null; });
  }

  /**
   * The connection went while bytes written around the cache (big files, connected) wait in
   * journal records held only in memory: they go to the cache file, so a crash or an
   * unmount before the replay loses none of them (invariant 1), and memory stays bounded.
   */
  private spillWriteBehind(): void {
    for (const { seq, obj, offset, data } of this.replayer.hintedWrites()) {
      if (this.writeAround.has(obj)) this.spill(seq, obj, offset, data);
    }
  }

  /**
   * Our write reached the backend and it told us the version it made: later records of this
   * object are based on it. Only the version moves (the cache's size and times are ahead of
   * this one write while more are on their way); the cached data is ours (SELF) already.
   */
  private ownWriteVersion(obj: CachedObject, attr: Attr): void {
    if (obj.dataVersion !== null && obj.dataVersion !== SELF) return; // dropped or re-fetched meanwhile
    obj.attr = { ...obj.attr, version: attr.version };
  }

  /** Waits for an object's records to reach the backend, or for the mount to go offline. */
  private async settledOrOffline(objId: number): Promise<void> {
    if (!this.connected) return;
    await Promise.race([this.replayer.settled(this.lastSeq.get(objId) ?? 0), this.whenNotConnected()]);
  }

  /** Journals every dirty run (before any other mutation, so the journal keeps order). */
  private commitAllDirty(): void {
    for (const run of [...this.dirty.values()]) void this.commitRun(run);
  }

  private writeFailed(of: OpenFile, e: unknown): void {
    // We can no longer vouch for the cached bytes of this object.
    this.dropData(of.obj);
    of.obj.attrAt = 0;
    of.error ??= isFsError(e) ? e : new FsError('EIO', String((e as Error)?.message ?? e));
  }

  private throwPendingError(of: OpenFile): void {
    const e = of.error;
    if (e) { of.error = null; throw e; }
  }

  /**
   * Marks chunks as being written so no fetch from the backend can land in them meanwhile
   * (a fetch would bring the old bytes and could overwrite the new ones in the cache file).
   */
  private guardChunks(obj: CachedObject, idxs: number[]): () => void {
    if (idxs.length === 0) return () => undefined;
    let done!: () => void;
    const p = new Promise<Buffer>((r) => { done = () => r(Buffer.alloc(0)); });
    const keys = idxs.map((i) => this.chunkKey(obj, i));
    for (const k of keys) if (!this.inflight.has(k)) this.inflight.set(k, p);
    return () => {
      for (const k of keys) if (this.inflight.get(k) === p) this.inflight.delete(k);
      done();
    };
  }

  // ---------------------------------------------------------------- mutations

  /**
   * Before the first change made offline to an object that exists on the backend: keep what
   * it was (attributes, and a small file's bytes) so replay can tell whose change is whose.
   */
  private captureBase(obj: CachedObject | null | undefined): Promise<void> | void {
    const b = this.bases;
    if (!b || !obj || this.connected || obj.attr.version.startsWith('provisional:')) return;
    const busy = this.baseCaptures.get(obj.id);
    if (busy) return busy;
    if (b.has(obj.id)) return;
    const copy = obj.attr.type === 'file' && obj.attr.size <= BASE_COPY_MAX && obj.dataVersion === obj.attr.version
      && fullyCached(obj, this.index, this.chunk)
      ? async (dest: string) => { await this.store.copyOut(obj.id, dest); await fsp.truncate(dest, obj.attr.size); }
      : undefined;
    const p = b.capture(obj.id, obj.attr.version, obj.attr, copy).finally(() => this.baseCaptures.delete(obj.id));
    this.baseCaptures.set(obj.id, p);
    return p;
  }

  /**
   * Appends a record (durable on return). Connected, it waits for the backend to apply it
   * and returns what that produced; otherwise, or if the connection goes while it waits,
   * the record stays in the journal for reintegration and the answer is JOURNALED.
   */
  private async mutate(record: JournalRecord, hint?: { data: Buffer }): Promise<MutationOutcome> {
    this.commitAllDirty();
    if (!this.connected && OFFLINE_CHECKED.has(record.op)) (record as { offline?: true }).offline = true;
    const seq = this.replayer.append(record, hint);
    if (!this.connected) return JOURNALED;
    const applied = this.replayer.waitFor(seq);
    let outcome: Awaited<typeof applied> | typeof JOURNALED;
    try {
      outcome = await Promise.race([applied, this.whenNotConnected()]);
    } catch (e) {
      if (isConnectionError(e)) return JOURNALED; // the record waits in the journal
      throw e;
    }
    if (outcome.kind === 'journaled') applied.catch(() => undefined);
    if (outcome.kind === 'refused') throw outcome.error;
    return outcome;
  }

  /**
   * A new object in the index before its create goes to the backend: it has a provisional
   * handle (mapped to the backend's when the create is applied) and attributes made here.
   */
  private provisional(type: Attr['type'], mode: number, creds: Creds, extra: { size?: number; rdev?: number } = {}): CachedObject {
    const t = BigInt(Date.now()) * 1_000_000n;
    const fh = Buffer.concat([PROVISIONAL_TAG, randomBytes(16)]);
    const attr: Attr = {
      type, mode: S_IFMT_OF[type] | (mode & 0o7777), uid: creds.uid, gid: creds.gid,
      size: extra.size ?? (type === 'dir' ? 4096 : 0), nlink: type === 'dir' ? 2 : 1, rdev: extra.rdev ?? 0, used: 0,
      atimeNs: t, mtimeNs: t, ctimeNs: t, version: `provisional:${fh.subarray(PROVISIONAL_TAG.length).toString('hex')}`,
    };
    return this.index.upsert({ fh, attr }, now());
  }

  /** Creates through the journal; a refusal removes the provisional object again. */
  private async createVia(dir: CachedObject, name: string, prov: CachedObject, record: JournalRecord): Promise<CachedObject> {
    let out: MutationOutcome;
    try {
      out = await this.mutate(record);
    } catch (e) {
      this.index.remove(prov);
      throw e;
    }
    const node = out.kind === 'created' ? { fh: out.fh, attr: out.attr } : { fh: prov.fh, attr: prov.attr };
    return this.index.batch(() => this.recordNewObject(dir, name, { kind: 'created', ...node }));
  }

  /**
   * A name in `dir` was made or removed; `subdirs` is how many subdirectories it gained (a
   * directory's st_nlink counts its subdirectories' "..").
   */
  private afterDirChange(dir: CachedObject, subdirs = 0): void {
    // Our own change moves the directory's version: adopt the next one instead of
    // throwing the name cache away, if the names were current before the change.
    if (dir.namesVersion !== null && dir.namesVersion === dir.attr.version) this.index.setNamesVersion(dir, SELF);
    dir.attrAt = 0;
    // Not connected, nobody else keeps the directory's attributes: they move here as a
    // POSIX file system moves them (mtime and ctime, and the link count).
    if (!this.connected) {
      const t = nowNs();
      this.index.patchAttr(dir, { mtimeNs: t, ctimeNs: t, ...(subdirs !== 0 ? { nlink: Math.max(2, dir.attr.nlink + subdirs) } : {}) });
    }
  }

  private recordNewObject(dir: CachedObject, name: string, outcome: AppliedOutcome & { kind: 'created' }): CachedObject {
    const obj = this.adopt({ fh: outcome.fh, attr: outcome.attr });
    this.index.setName(dir, name, obj.id);
    this.afterDirChange(dir, outcome.attr.type === 'dir' ? 1 : 0);
    if (outcome.attr.type === 'dir') this.index.replaceListing(obj, [], outcome.attr.version);
    if (outcome.attr.type === 'file' && outcome.attr.size === 0 && obj.dataVersion === null) {
      this.index.setDataVersion(obj, outcome.attr.version); // an empty file is fully cached
    }
    return obj;
  }

  async create(p: string, mode: number, flags: number, creds: Creds): Promise<number> {
    const { dir, name } = await this.resolveParent(p);
    return (await this.createAt(dir, name, mode, flags, creds)).fd;
  }

  async createAt(dir: CachedObject, name: string, mode: number, flags: number, creds: Creds): Promise<{ fd: number; obj: CachedObject }> {
    checkName(dir, name);
    const prov = this.provisional('file', mode, creds);
    const obj = await this.createVia(dir, name, prov, { op: 'create', parent: dir.id, name, mode, uid: creds.uid, gid: creds.gid, ...(creds.groups ? { groups: creds.groups } : {}), obj: prov.id, base: dir.attr.version });
    return { fd: this.addOpen(obj, flags, creds), obj };
  }

  async mkdir(p: string, mode: number, creds: Creds): Promise<void> {
    const { dir, name } = await this.resolveParent(p);
    await this.mkdirAt(dir, name, mode, creds);
  }

  async mkdirAt(dir: CachedObject, name: string, mode: number, creds: Creds): Promise<CachedObject> {
    checkName(dir, name);
    await this.ensureAbsent(dir, name);
    const prov = this.provisional('dir', mode, creds);
    return this.createVia(dir, name, prov, { op: 'mkdir', parent: dir.id, name, mode, uid: creds.uid, gid: creds.gid, ...(creds.groups ? { groups: creds.groups } : {}), obj: prov.id, base: dir.attr.version });
  }

  async mknod(p: string, mode: number, rdev: number, creds: Creds): Promise<void> {
    const { dir, name } = await this.resolveParent(p);
    await this.mknodAt(dir, name, mode, rdev, creds);
  }

  async mknodAt(dir: CachedObject, name: string, mode: number, rdev: number, creds: Creds): Promise<CachedObject> {
    checkName(dir, name);
    await this.ensureAbsent(dir, name);
    const type = typeOfMode(mode);
    const prov = this.provisional(type, mode, creds, { rdev });
    return this.createVia(dir, name, prov, { op: 'mknod', parent: dir.id, name, mode, rdev, uid: creds.uid, gid: creds.gid, ...(creds.groups ? { groups: creds.groups } : {}), obj: prov.id, base: dir.attr.version });
  }

  async symlink(target: string, p: string, creds: Creds): Promise<void> {
    const { dir, name } = await this.resolveParent(p);
    await this.symlinkAt(dir, name, target, creds);
  }

  async symlinkAt(dir: CachedObject, name: string, target: string, creds: Creds): Promise<CachedObject> {
    checkName(dir, name);
    await this.ensureAbsent(dir, name);
    const prov = this.provisional('symlink', 0o777, creds, { size: Buffer.byteLength(target) });
    const obj = await this.createVia(dir, name, prov, { op: 'symlink', parent: dir.id, name, target, uid: creds.uid, gid: creds.gid, ...(creds.groups ? { groups: creds.groups } : {}), obj: prov.id, base: dir.attr.version });
    this.index.setSymlink(obj, target);
    this.index.setDataVersion(obj, obj.attr.version);
    return obj;
  }

  private async ensureAbsent(dir: CachedObject, name: string): Promise<void> {
    try {
      await this.lookup(dir, name);
    } catch (e) {
      if (isFsError(e, 'ENOENT')) return;
      throw e;
    }
    throw new FsError('EEXIST');
  }

  async link(src: string, dst: string, by?: Creds): Promise<void> {
    const obj = await this.resolve(src);
    if (obj.attr.type === 'dir') throw new FsError('EPERM');
    const { dir, name } = await this.resolveParent(dst);
    await this.linkAt(obj, dir, name, by);
  }

  async linkAt(obj: CachedObject, dir: CachedObject, name: string, by?: Creds): Promise<CachedObject> {
    if (obj.attr.type === 'dir') throw new FsError('EPERM');
    checkName(dir, name);
    await this.ensureAbsent(dir, name);
    await this.captureBase(obj);
    const out = await this.mutate({ op: 'link', obj: obj.id, parent: dir.id, name, ...byOf(by), base: obj.attr.version });
    this.index.setName(dir, name, obj.id);
    this.afterDirChange(dir);
    if (out.kind === 'attr') this.adoptOwnChange(obj, out.attr);
    else if (out.kind === 'journaled') this.index.patchAttr(obj, { nlink: obj.attr.nlink + 1, ctimeNs: nowNs() });
    else obj.attrAt = 0;
    return obj;
  }

  /** Our own metadata change: the new attributes must not drop our cached data. */
  private adoptOwnChange(obj: CachedObject, attr: Attr): void {
    this.index.batch(() => {
      // Cached data and names that were current before our change are current after it.
      if (obj.dataVersion !== null && obj.dataVersion === obj.attr.version && !this.hasOpenWriters(obj)) {
        this.index.setDataVersion(obj, attr.version);
      } else if (obj.dataVersion !== null && !this.hasOpenWriters(obj)) {
        this.index.setDataVersion(obj, SELF);
      }
      if (obj.attr.type === 'dir' && obj.namesVersion !== null && obj.namesVersion === obj.attr.version) {
        this.index.setNamesVersion(obj, attr.version);
      }
      this.applyAttr(obj, attr);
    });
  }

  async unlink(p: string, by?: Creds): Promise<void> {
    const { dir, name } = await this.resolveParent(p);
    await this.unlinkAt(dir, name, by);
  }

  async unlinkAt(dir: CachedObject, name: string, by?: Creds): Promise<void> {
    checkName(dir, name);
    const obj = await this.lookup(dir, name);
    if (obj.attr.type === 'dir') throw new FsError('EISDIR');
    if (this.mustHide(obj)) { await this.hide(dir, name, obj, by); return; }
    await this.captureBase(obj);
    const survives = obj.attr.nlink > 1;
    const out = await this.mutate({ op: 'unlink', parent: dir.id, name, obj: obj.id, ...byOf(by), base: dir.attr.version, objBase: obj.attr.version });
    this.index.batch(() => {
      this.index.setName(dir, name, null);
      this.afterDirChange(dir);
      this.dropLink(obj);
    });
    // Applied, and the object keeps another name: the unlink moved its ctime (so its version)
    // on the backend. Learn it now, while connected, as rename does: git links each loose
    // object to its name and unlinks the temporary one, and a `git gc` offline removing the
    // object must be based on the version the backend really has (invariant 9).
    if (survives && out.kind !== 'journaled') {
      try {
        this.adoptOwnChange(obj, await this.call('getattr', () => this.backend.getattr(obj.fh)));
      } catch (e) {
        log.debug(`revalidation after an unlink of a link of object ${obj.id} failed`, e);
      }
    }
  }

  /** One name less for `obj`: forget it when it was the last one. */
  private dropLink(obj: CachedObject): void {
    if (obj.attr.nlink <= 1 || obj.attr.type === 'dir') this.forgetObject(obj);
    else {
      this.index.patchAttr(obj, { nlink: obj.attr.nlink - 1, ctimeNs: nowNs() });
      obj.attrAt = 0;
    }
  }

  async rmdir(p: string, by?: Creds): Promise<void> {
    const { dir, name } = await this.resolveParent(p);
    await this.rmdirAt(dir, name, by);
  }

  async rmdirAt(dir: CachedObject, name: string, by?: Creds): Promise<void> {
    checkName(dir, name);
    const obj = await this.lookup(dir, name);
    if (obj.attr.type !== 'dir') throw new FsError('ENOTDIR');
    // Connected, the backend says whether it is empty; otherwise the cached names do (a
    // directory never listed may hold more: replay then keeps it, remove against update).
    if (!this.connected) {
      if (obj.stale && this.staleListing(obj).length > 0) throw new FsError('ENOTEMPTY');
      for (const child of this.index.namesOf(obj).values()) if (child !== null) throw new FsError('ENOTEMPTY');
    }
    await this.mutate({ op: 'rmdir', parent: dir.id, name, obj: obj.id, ...byOf(by), base: dir.attr.version, objBase: obj.attr.version });
    this.index.batch(() => {
      this.index.setName(dir, name, null);
      this.afterDirChange(dir, -1);
      this.forgetObject(obj);
    });
  }

  async rename(src: string, dst: string, by?: Creds): Promise<void> {
    const from = await this.resolveParent(src);
    const to = await this.resolveParent(dst);
    // A directory into itself: the kernel checks this before a FUSE rename; a path caller here.
    if ((dst + '/').startsWith(src + '/') && (await this.lookup(from.dir, from.name)).attr.type === 'dir') throw new FsError('EINVAL');
    await this.renameAt(from.dir, from.name, to.dir, to.name, by);
  }

  /** rename(2) by parent objects and names (`noReplace`: RENAME_NOREPLACE, EEXIST if taken). */
  async renameAt(fromDir: CachedObject, fromName: string, toDir: CachedObject, toName: string, by?: Creds, noReplace = false): Promise<void> {
    checkName(fromDir, fromName);
    checkName(toDir, toName);
    const from = { dir: fromDir, name: fromName };
    const to = { dir: toDir, name: toName };
    const obj = await this.lookup(from.dir, from.name);
    let target: CachedObject | null = null;
    try { target = await this.lookup(to.dir, to.name); } catch (e) { if (!isFsError(e, 'ENOENT')) throw e; }
    if (target && noReplace) throw new FsError('EEXIST');
    if (target === obj) return; // rename onto a hard link of itself: POSIX says do nothing
    if (target && this.mustHide(target)) {
      // Replacing a file that is open here: it hides first, the rename then takes a free name.
      await this.hide(to.dir, to.name, target, by);
      target = null;
    }
    if (target && !this.connected) this.checkRenameTarget(obj, target);
    await this.captureBase(obj);
    await this.captureBase(target);
    const out = await this.mutate({
      op: 'rename', fromParent: from.dir.id, fromName: from.name, toParent: to.dir.id, toName: to.name, obj: obj.id, ...byOf(by), base: obj.attr.version,
      ...(target ? { target: target.id, targetBase: target.attr.version } : {}),
    });
    this.index.batch(() => {
      this.index.setName(from.dir, from.name, null);
      this.index.setName(to.dir, to.name, obj.id);
      const movedDir = obj.attr.type === 'dir' && to.dir !== from.dir ? 1 : 0;
      const replacedDir = target?.attr.type === 'dir' ? 1 : 0;
      this.afterDirChange(from.dir, to.dir === from.dir ? -replacedDir : -movedDir);
      if (to.dir !== from.dir) this.afterDirChange(to.dir, movedDir - replacedDir);
      obj.attrAt = 0; // ctime moves; a directory's ".." changes
      if (!this.connected) this.index.patchAttr(obj, { ctimeNs: nowNs() });
      if (obj.dataVersion !== null && !this.hasOpenWriters(obj)) this.index.setDataVersion(obj, SELF);
      if (target) this.dropLink(target);
    });
    // Applied: the rename moved the object's ctime on the backend, so its version. Learn it
    // now, while connected: a later offline change (or a rename onto it, as git does with
    // index.lock -> index) is based on the version the backend really has (invariant 9).
    if (out.kind !== 'journaled') await this.revalidate(obj, true).catch((e) => log.debug(`revalidation after a rename of object ${obj.id} failed`, e));
  }

  /**
   * Disconnected, the backend cannot refuse a rename onto an existing name now and replay
   * would refuse it later: the cache answers with the errors the backend would give.
   */
  private checkRenameTarget(obj: CachedObject, target: CachedObject): void {
    if (obj.attr.type === 'dir') {
      if (target.attr.type !== 'dir') throw new FsError('ENOTDIR');
      if (target.stale ? this.staleListing(target).length > 0 : [...this.index.namesOf(target).values()].some((c) => c !== null)) {
        throw new FsError('ENOTEMPTY');
      }
      if (!target.complete && !target.stale?.complete) {
        throw new FsError('EHOSTUNREACH', 'the directory renamed over was never listed while connected: whether it is empty is unknown');
      }
    } else if (target.attr.type === 'dir') {
      throw new FsError('EISDIR');
    }
  }

  async setattr(obj: CachedObject, set: SetAttrRecord, by?: Creds): Promise<void> {
    await this.captureBase(obj);
    if (set.size !== undefined && set.size > obj.attr.size && !this.connected) {
      // Disconnected, the cache file holds the file until replay, so it must be able to have
      // the new size before the change is journaled: its file system refuses a size it cannot
      // hold (EFBIG), as the backend's would have. (The file stays sparse: no space is used.)
      await this.store.truncate(obj.id, set.size);
    }
    const out = await this.mutate({ op: 'setattr', obj: obj.id, set, ...byOf(by), base: obj.attr.version });
    if (set.size !== undefined) {
      const before = obj.attr.size;
      await this.truncateCache(obj, set.size);
      // The size is ours from now on (the backend's answer below may be behind later writes).
      this.index.setLocalSize(obj, set.size);
      if (set.size > before) this.knownZerosFrom(obj, before);
    }
    if (out.kind === 'attr') this.adoptOwnChange(obj, out.attr);
    else if (out.kind === 'journaled') this.index.patchAttr(obj, localSetattr(obj.attr, set));
    else obj.attrAt = 0;
  }

  private async truncateCache(obj: CachedObject, size: number): Promise<void> {
    // A fetch that read the backend before its truncate could land after ours and put old
    // bytes back past the new end: let every fetch of this object land first.
    await this.quiesceFetches(obj);
    if (size < obj.attr.size || obj.cachedBytes > 0) {
      await this.store.truncate(obj.id, size);
      this.index.dropChunksFrom(obj, Math.ceil(size / this.chunk), this.chunk);
    }
  }

  /** Waits until no chunk of `obj` is being fetched or landing in its cache file. */
  private async quiesceFetches(obj: CachedObject): Promise<void> {
    const prefix = `${obj.id}:`;
    for (let round = 0; round < 10; round++) {
      const busy: Promise<unknown>[] = [];
      for (const [k, p] of this.inflight) if (k.startsWith(prefix)) busy.push(p.catch(() => undefined));
      for (const [k, p] of this.landing) if (k.startsWith(prefix)) busy.push(p);
      if (busy.length === 0) return;
      await Promise.all(busy);
    }
  }

  async truncate(p: string, size: number, by?: Creds): Promise<void> {
    const obj = await this.resolve(p);
    if (obj.attr.type === 'dir') throw new FsError('EISDIR');
    await this.setattr(obj, { size }, by);
  }

  /** As the opener: the kernel checked the right to truncate at open, as for a write. */
  async ftruncate(fd: number, size: number): Promise<void> {
    const of = this.fileOf(fd);
    await this.setattr(of.obj, { size }, of.by);
  }

  async chmod(p: string, mode: number, by?: Creds): Promise<void> {
    await this.setattr(await this.resolve(p), { mode: mode & 0o7777 }, by);
  }

  async chown(p: string, uid: number | undefined, gid: number | undefined, by?: Creds): Promise<void> {
    const set: SetAttrRecord = {};
    if (uid !== undefined) set.uid = uid;
    if (gid !== undefined) set.gid = gid;
    const obj = await this.resolve(p);
    if (!('uid' in set) && !('gid' in set)) return;
    await this.setattr(obj, set, by);
  }

  async utimens(p: string, atime: TimeArg, mtime: TimeArg, by?: Creds): Promise<void> {
    const set: SetAttrRecord = {};
    const conv = (t: TimeArg) => (t === 'now' ? { kind: 'now' as const } : { kind: 'set' as const, ns: String(t) });
    if (atime !== 'omit') set.atime = conv(atime);
    if (mtime !== 'omit') set.mtime = conv(mtime);
    const obj = await this.resolve(p);
    if (!set.atime && !set.mtime) return;
    await this.setattr(obj, set, by);
  }

  // ---------------------------------------------------------------- hoarding and culling

  /** False below the cache disk's stop threshold: fetched data is served but not kept. */
  storeData = true;
  /** Set by the culler: may a write of this many bytes be kept while disconnected? */
  admitOffline: ((bytes: number) => boolean) | null = null;
  /** Set by the culler when admitOffline says no: the limit that write met (the cache-full event's cause). */
  offlineRefusal: CacheLimit | null = null;

  /** The object's cached data holds changes the backend does not have yet (never culled). */
  isDirty(id: number): boolean {
    return this.dirty.has(id) || this.replayer.hasPendingFor(id) || this.baseCaptures.has(id);
  }

  isOpen(id: number): boolean { return (this.openCount.get(id) ?? 0) > 0; }

  /**
   * Drops an object's cached data if it is clean (the backend has it), not open and not
   * being fetched: culling and `cachefs evict`. Returns the bytes freed (0: kept).
   */
  evict(obj: CachedObject): number {
    if (obj.cachedBytes === 0 || this.isOpen(obj.id) || this.isDirty(obj.id) || this.writeAround.has(obj.id)) return 0;
    const prefix = `${obj.id}:`;
    for (const k of this.inflight.keys()) if (k.startsWith(prefix)) return 0;
    const n = obj.cachedBytes;
    this.dropData(obj);
    return n;
  }

  /**
   * Makes every byte of a regular file present in the cache (a hoard walk). Returns the
   * bytes fetched from the backend; they are in the cache file when it resolves.
   */
  async hoardFile(obj: CachedObject, onBytes?: (n: number) => void): Promise<number> {
    if (obj.attr.type !== 'file') return 0;
    // No revalidation: the walk's scan read these attributes moments ago, and a file changed
    // since is caught by the next open() (close-to-open), which drops data of an old version.
    const missing: number[] = [];
    const n = Math.ceil(obj.attr.size / this.chunk);
    for (let i = 0; i < n; i++) {
      if (!this.index.chunksOf(obj).has(i) || this.inflight.has(this.chunkKey(obj, i))) missing.push(i);
    }
    let fetched = 0;
    // A few chunks of one file at a time (the backend queue bounds the calls overall), so a
    // big file is not fetched one round trip after another.
    const one = async (i: number): Promise<void> => {
      const b = await this.ensureChunk(obj, i).catch((e) => {
        if (isFsError(e, 'ESTALE')) {
          this.forgetObject(obj); // removed on the backend since its attributes were cached
          throw new FsError('ENOENT', 'removed on the backend');
        }
        throw notCachedWhenOffline(e);
      });
      await this.landing.get(this.chunkKey(obj, i));
      if (!this.storeData || !this.index.chunksOf(obj).has(i)) {
        throw new FsError('ENOSPC', 'the cache is full (below its stop threshold): pinned data cannot be kept');
      }
      if (b) { fetched += b.length; onBytes?.(b.length); }
    };
    for (let k = 0; k < missing.length; k += HOARD_CHUNKS_PER_FILE) {
      await Promise.all(missing.slice(k, k + HOARD_CHUNKS_PER_FILE).map(one));
    }
    this.index.touch(obj, Date.now());
    return fetched;
  }

  /** The object with this id, if the index has it (hoard walks fetch what their scan found). */
  objectById(id: number): CachedObject | undefined {
    return this.index.get(id);
  }

  // ---------------------------------------------------------------- conflict resolution

  /**
   * The mount's operations by path, acting as `creds`, for resolving conflicts: every change
   * goes through the journal like one an application makes.
   */
  resolveFs(creds: Creds): ResolveFs {
    return {
      stat: async (p) => {
        try {
          const o = await this.getattr(p);
          return { type: o.attr.type, mode: o.attr.mode, uid: o.attr.uid, gid: o.attr.gid, size: o.attr.size };
        } catch (e) {
          if (isFsError(e, 'ENOENT')) return null;
          throw e;
        }
      },
      writeFile: async (p, src, mode) => {
        let fd: number;
        try {
          fd = await this.open(p, O_WRONLY, creds);
          try { await this.ftruncate(fd, 0); } catch (e) { await this.release(fd); throw e; }
        } catch (e) {
          if (!isFsError(e, 'ENOENT')) throw e;
          fd = await this.create(p, mode, O_RDWR, creds);
        }
        try {
          const h = await fsp.open(src, 'r');
          try {
            const buf = Buffer.allocUnsafe(DIRTY_RUN_MAX);
            for (let pos = 0; ;) {
              const { bytesRead } = await h.read(buf, 0, buf.length, pos);
              if (bytesRead === 0) break;
              await this.write(fd, pos, Buffer.from(buf.subarray(0, bytesRead)));
              pos += bytesRead;
            }
          } finally {
            await h.close();
          }
          await this.flush(fd);
        } finally {
          await this.release(fd);
        }
      },
      symlink: (target, p) => this.symlink(target, p, creds),
      mkdir: (p, mode) => this.mkdir(p, 0o040000 | mode, creds),
      unlink: (p) => this.unlink(p, creds),
      rmdir: (p) => this.rmdir(p, creds),
      chmod: (p, mode) => this.chmod(p, mode, creds),
      chown: (p, uid, gid) => this.chown(p, uid, gid, creds),
    };
  }

  /**
   * A resolved conflict's objects that only ever existed here (made offline, their creates
   * parked) are dropped: the chosen variant was written anew through the mount.
   */
  forgetOfflineObjects(ids: number[]): void {
    for (const id of ids) {
      const o = this.index.get(id);
      if (!o || !isProvisional(o.fh) || this.openCount.get(id)) continue;
      this.index.remove(o);
      void this.store.remove(o.id).catch(() => undefined);
    }
  }

  // ---------------------------------------------------------------- outside changes

  /**
   * The backend told us (its watcher) that something changed behind our back. Cheap on purpose
   * (it also fires for our own writes): it only makes the directory and the named object
   * revalidate at their next use. A created, removed or renamed entry changes the
   * directory's version, which drops its name cache then; a modified file changes its own.
   */
  noticeOutsideChange(change: OutsideChange): void {
    const dir = change.dir ? this.index.byHandle(change.dir) : undefined;
    if (dir) {
      dir.attrAt = 0;
      const child = change.name !== undefined ? dir.names?.get(change.name) : undefined;
      if (child !== undefined && child !== null) {
        const o = this.index.get(child);
        if (o) o.attrAt = 0;
      }
      this.tellKernelLater(dir, change.name);
      if (child !== undefined && child !== null) {
        const o = this.index.get(child);
        if (o) this.tellKernelLater(o);
      }
    }
    if (change.fh) {
      const o = this.index.byHandle(change.fh);
      if (o) { o.attrAt = 0; this.tellKernelLater(o); }
    }
  }

  /** Objects (and names in them) the kernel may hold stale copies of, checked together soon. */
  private readonly toRecheck = new Map<number, Set<string>>();
  private recheckTimer: NodeJS.Timeout | null = null;

  /**
   * The kernel caches names and attributes for as long as the mount's timeouts say. When a
   * watcher reports a change to something the kernel holds, the object is revalidated (a
   * batch, soon after) and, if the version the kernel was given is not the backend's now,
   * the kernel is told to drop its copies (and the names reported in a directory).
   */
  private tellKernelLater(o: CachedObject, name?: string): void {
    const k = this.kernel;
    if (!k || !k.holds(o.id)) return;
    let names = this.toRecheck.get(o.id);
    if (!names) this.toRecheck.set(o.id, (names = new Set()));
    if (name !== undefined) names.add(name);
    this.recheckTimer ??= setTimeout(() => { this.recheckTimer = null; void this.recheck(); }, 50);
  }

  private async recheck(): Promise<void> {
    const batch = [...this.toRecheck];
    this.toRecheck.clear();
    const k = this.kernel;
    if (!k || !this.connected) return;
    await Promise.all(batch.map(async ([id, names]) => {
      const o = this.index.get(id);
      if (!o) return;
      try {
        await this.revalidate(o, true);
      } catch (e) {
        if (!isFsError(e, 'ENOENT')) { log.debug(`revalidating object ${id} after an outside change failed`, e); return; }
      }
      const gone = this.index.get(id) !== o;
      if (!k.objectAt(id, gone ? '' : o.attr.version)) return;
      for (const n of names) k.invalidateEntry(id, n);
    }));
  }

  // ---------------------------------------------------------------- status

  openFileCount(): number { return this.openFiles.size; }

  /**
   * Whether every open file was flushed (closed by its process) since `since`, and the last
   * of those flushes is `quietMs` old. After a lazy detach the kernel drops the connection
   * at the last close without sending RELEASE, so this is how the mount learns it is idle.
   */
  closedSince(since: number, quietMs: number): boolean {
    let last = 0;
    for (const of of this.openFiles.values()) {
      if (of.flushedAt < since) return false;
      last = Math.max(last, of.flushedAt);
    }
    return Date.now() - last >= quietMs;
  }

  /** Waits until every journaled change is on the backend (used by unmount). */
  async flushAll(): Promise<void> {
    this.commitAllDirty();
    await this.replayer.drained();
  }

  async close(): Promise<void> {
    if (this.accessTimer) clearInterval(this.accessTimer);
    this.index.flushAccessTimes();
    await this.queue.onIdle();
  }
}

/** Data the cache does not hold cannot be had while the backend is unreachable: ENODATA. */
function notCachedWhenOffline(e: unknown): unknown {
  if (!isConnectionError(e)) return e;
  return new FsError('ENODATA', `not in the cache, and the backend is unreachable (${(e as Error).message})`);
}

function rangeOf(first: number, last: number): number[] {
  const out: number[] = [];
  for (let i = first; i <= last; i++) out.push(i);
  return out;
}

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

function typeOfMode(mode: number): Attr['type'] {
  switch (mode & 0o170000) {
    case 0o020000: return 'chardev';
    case 0o060000: return 'blockdev';
    case 0o010000: return 'fifo';
    case 0o140000: return 'socket';
    default: return 'file';
  }
}

/** The attributes a setattr leaves, worked out here while the backend cannot say. */
function localSetattr(a: Attr, set: SetAttrRecord): Partial<Attr> {
  const t = nowNs();
  const time = (x: SetAttrRecord['atime']): bigint | undefined => (x ? (x.kind === 'now' ? t : BigInt(x.ns)) : undefined);
  const out: Partial<Attr> = { ctimeNs: t };
  if (set.mode !== undefined) out.mode = (a.mode & 0o170000) | (set.mode & 0o7777);
  if (set.uid !== undefined) out.uid = set.uid;
  if (set.gid !== undefined) out.gid = set.gid;
  if (set.size !== undefined) { out.size = set.size; out.mtimeNs = t; }
  const at = time(set.atime);
  const mt = time(set.mtime);
  if (at !== undefined) out.atimeNs = at;
  if (mt !== undefined) out.mtimeNs = mt;
  return out;
}

function now(): number {
  return performance.now() || 1;
}

/** The `by` field of a record made for `by` (none for the mount's own changes). */
function byOf(by: Creds | undefined): { by?: Creds } {
  return by ? { by: { uid: by.uid, gid: by.gid, ...(by.groups ? { groups: by.groups } : {}) } } : {};
}

/** A name in a directory, as every *At() method takes it: the directory must be one, the name fit NAME_MAX. */
function checkName(dir: CachedObject, name: string): void {
  if (dir.attr.type !== 'dir') throw new FsError('ENOTDIR');
  if (name === '' || name === '.' || name === '..' || name.includes('/')) throw new FsError('EINVAL', `not a name: ${JSON.stringify(name)}`);
  if (nameTooLong(name)) throw new FsError('ENAMETOOLONG');
}
