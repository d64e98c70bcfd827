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
// This file is the layer's entry points and the state they share (objects, names, open
// files); its parts live beside it, each with the narrow interface it needs wired here:
// - freshness.ts: how long attributes are trusted, what a new version drops (SELF);
// - gated-backend.ts: the queue, deadline and disconnected gate of every backend call;
// - chunk-fetcher.ts: fetching chunks, coalescing, landing, read-ahead, write guards;
// - write-back.ts: dirty runs, their journal records, write-behind and spills;
// - reconnect.ts: going disconnected, probing, reintegration, directory diffing;
// - mutations.ts: every change to names and attributes through the journal (create, link,
//   unlink, rename, setattr...), offline bases, files unlinked while open;
// - outside-changes.ts: what the backend's watcher reports, and what the kernel is told of
//   changes it did not ask for (rechecks in a batch, after a replay, after a resolution).
//
// Locking: everything runs on Node's one thread; the await points are where other requests
// interleave. Chunk fetches are coalesced per (object, chunk) in the fetcher; a write waits
// for any fetch of the chunks it touches, and for its bytes to land in the cache file,
// before writing there; chunks being written are guarded the same way (chunk-fetcher.ts).
import path from 'node:path';
import { FsError, isFsError } from '../core/errors.js';
import { log } from '../core/log.js';
import { nameTooLong } from '../core/names.js';
import type { Attr, Backend, Creds, DirEntry, OutsideChange, StatFs } from '../backends/types.js';
import type { CachedObject, ObjectIndex } from '../index/objects.js';
import type { DataStore } from '../store/data-store.js';
import type { Replayer } from '../journal/replayer.js';
import type { SetAttrRecord } from '../journal/records.js';
import type { Config } from '../config/schema.js';
import { promises as fsp } from 'node:fs';
import { isConnectionError } from '../journal/replayer.js';
import { BackendTarget, isProvisional, type AppliedOutcome, type BackendCall } from './backend-target.js';
import type { Connectivity } from './connectivity.js';
import type { ConflictStore } from '../conflict/store.js';
import type { CacheLimit, EventSink } from '../core/events.js';
import { OfflineBases } from '../conflict/bases.js';
import { fullyCached } from '../conflict/variants.js';
import type { ResolveFs } from '../conflict/resolve.js';
import { Freshness, SELF, now } from './freshness.js';
import { GatedBackend } from './gated-backend.js';
import { ChunkFetcher, notCachedWhenOffline, type Lent } from './chunk-fetcher.js';
import { WriteBack } from './write-back.js';
import { resolveFsOf } from './resolve-fs.js';
import { Reconnector } from './reconnect.js';
import { Mutations, JOURNALED, type TimeArg } from './mutations.js';
import { OutsideChanges, type KernelCache } from './outside-changes.js';
import { DirectWrites } from './direct-writes.js';

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
  /** The kernel writes through it straight into the cache file (direct-writes.ts). */
  direct?: true;
}

export type { CachedObject } from '../index/objects.js';
export type { SetAttrRecord } from '../journal/records.js';
export type { TimeArg } from './mutations.js';
export type { KernelCache } from './outside-changes.js';

/** One entry of a listing; `stale`: its attributes are due for revalidation (not refreshed). */
export interface ListedEntry { name: string; obj: CachedObject; stale?: true }

/**
 * What a listing's caller needs of its entries' attributes: none (READDIR: names, inode
 * numbers, types); each one fresh (a hoard walk, which fetches by them); or those that are
 * cheap to have (READDIRPLUS: a stale entry may go without, the kernel looks it up).
 */
export type ListingNeeds = 'names' | 'attrs' | 'attrs-if-cheap';

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
const O_TRUNC = 0o1000;
/** How often access times (for LRU culling) are written to the index. */
const ACCESS_FLUSH_MS = 30_000;
/**
 * The largest file an open may write directly (passthrough) when it opens: the open reads it
 * whole once, to know later what the kernel changed. Files made empty grow freely.
 */
const DIRECT_OPEN_MAX_BYTES = 64 * 1024 * 1024;
/** Chunks of one file a hoard walk fetches at once. */
const HOARD_CHUNKS_PER_FILE = 8;
/**
 * A directory this big or smaller (st_size: about 1,000 names on ext4) is listed for the
 * disconnected answer at the first lookup in it (see keepListingForOffline).
 */
const LIST_ON_LOOKUP_MAX_BYTES = 32 * 1024;
/** Directories with more entries are not listed again for stale attributes (relistForAttrs). */
const RELIST_FOR_ATTRS_MAX = 4096;
/** What callOrGone() returns for the call that found the backend gone. */
const GONE: unique symbol = Symbol('the backend went away');

export class CacheLayer {
  readonly counters: Counters = { hits: 0, misses: 0, bytesFromCache: 0, bytesFromBackend: 0, backendCalls: 0 };
  readonly replayer: Replayer<AppliedOutcome>;
  private readonly backend: Backend;
  private readonly index: ObjectIndex;
  private readonly store: DataStore;
  private readonly cfg: Config;
  private readonly chunk: number;
  private rootId = 0;
  private readonly openFiles = new Map<number, OpenFile>();
  private readonly openCount = new Map<number, number>();
  /** Objects no name reaches any more, kept while they are open. */
  private readonly orphans = new Set<number>();
  private nextFd = 1;
  private statfsCache: { at: number; value: StatFs } | null = null;
  private accessTimer: NodeJS.Timeout | null = null;
  /** Every backend call goes through this gate (gated-backend.ts); `call` is its entry. */
  private readonly gate: GatedBackend;
  readonly call: BackendCall;
  /** The rules for attributes and data versions (freshness.ts). */
  private readonly freshness: Freshness;
  /** Chunks of cached data: fetched, in flight, landing, guarded (chunk-fetcher.ts). */
  private readonly fetcher: ChunkFetcher;
  /** Dirty runs and the journal records of writes (write-back.ts). */
  private readonly writeBack: WriteBack;
  /** Disconnection, probing and reintegration (reconnect.ts). */
  private readonly reconnect: Reconnector;
  /** Changes to names and attributes through the journal (mutations.ts). */
  private readonly mutations: Mutations;
  /** Outside changes and the kernel's rechecks (outside-changes.ts). */
  private readonly outside: OutsideChanges;
  /** Opens the kernel writes through directly (FUSE passthrough for writes). */
  private readonly direct: DirectWrites;
  /** What objects changed offline were before (null without a conflict store). */
  private bases: OfflineBases | null = null;

  constructor(private readonly deps: LayerDeps, replayerFactory: (target: BackendTarget) => Replayer<AppliedOutcome>) {
    this.backend = deps.backend;
    this.index = deps.index;
    this.store = deps.store;
    this.cfg = deps.config;
    this.chunk = deps.config.cache.chunkSize;
    // The parts call each other only through the closures below, which run after this
    // constructor has wired them all.
    this.gate = new GatedBackend({
      connectivity: deps.connectivity,
      concurrency: deps.config.cache.backendConcurrency,
      timeoutMs: deps.config.backendTimeoutMs,
      counters: this.counters,
      onConnectionLost: (reason) => this.reconnect.lostConnection(reason),
    });
    this.call = this.gate.call;
    this.fetcher = new ChunkFetcher({
      backend: this.backend, call: this.call, index: this.index, store: this.store,
      chunkSize: this.chunk, readAheadChunks: deps.config.cache.readAheadChunks, counters: this.counters,
      storeData: () => this.storeData,
      connected: () => this.connected,
    });
    this.freshness = new Freshness({
      index: this.index, config: deps.config,
      untoldKernelS: () => this.kernel?.untoldAttrS() ?? 0,
      hasDirtyRun: (id) => this.writeBack.dirty.has(id),
      hasOpenWriters: (o) => this.hasOpenWriters(o),
      hasPendingRecords: (id) => this.replayer.hasPendingFor(id),
      // The backend's data moved on (revalidation, a reconnection's diff): the kernel's
      // pages of the old data must go too ('' matches no version: always told).
      dropData: (o) => { this.fetcher.dropData(o); this.kernel?.objectAt(o.id, ''); },
    });
    const target = new BackendTarget(this.backend, this.index, this.store, this.call);
    this.replayer = replayerFactory(target);
    // Bytes the kernel writes directly may change a record's range before it is replayed:
    // the journaling that follows carries them again (direct-writes.ts).
    target.laterChange = (seq, obj, from, to) => this.replayer.laterChange(seq, obj, from, to) || this.direct.writing(obj);
    this.writeBack = new WriteBack({
      replayer: this.replayer, index: this.index, store: this.store, chunks: this.fetcher, chunkSize: this.chunk,
      connected: () => this.connected,
      untilOffline: (p) => this.reconnect.untilOffline(p, JOURNALED),
      ownWriteVersion: (o, attr) => this.freshness.ownWriteVersion(o, attr),
      cacheFull: (o, message, cause) => this.deps.events?.emit({ type: 'cache-full', path: this.index.pathOf(o.id, this.rootId), message, cause }),
      nameless: (id) => this.orphans.has(id) || this.index.get(id)?.attr.nlink === 0,
    });
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
        // The path shows the server's variant now: the kernel's copies of ours must go.
        // A file the kernel is still writing directly keeps its bytes: they are the writer's,
        // and what it writes next goes to a conflict too (direct-writes.ts).
        onConflict: (o) => { if (!this.direct.conflicted(o)) this.showServerVariant(o); },
        relist: (id) => { this.reconnect.relist(id); },
        pendingOf: (id) => this.replayer.pendingEntries().map((e) => e.record)
          .filter((r) => (r.op === 'write' || r.op === 'setattr' || r.op === 'link') && r.obj === id),
        lastSeq: () => this.replayer.lastSeq,
      }, () => this.deps.connectivity.state === 'reintegrating', this.chunk);
    }
    this.reconnect = new Reconnector({
      connectivity: deps.connectivity, replayer: this.replayer, index: this.index, backend: this.backend, call: this.call,
      config: deps.config, rootId: () => this.rootId, bases: this.bases, conflicts: deps.conflicts,
      revalidate: (o, force) => this.revalidate(o, force),
      adopt: (node, t) => this.freshness.adopt(node, t),
      spillWriteBehind: () => this.writeBack.spillWriteBehind(),
      replayed: (renamed) => this.outside.afterReplay(renamed),
    });
    this.direct = new DirectWrites({
      db: this.index.db, index: this.index, store: this.store, replayer: this.replayer, chunkSize: this.chunk,
      noteSeq: (id, seq) => { this.writeBack.lastSeq.set(id, seq); },
      connected: () => this.connected,
      checkBases: () => { void this.reintegrate('a file written directly while in conflict was journaled'); },
      conflictDone: (o) => { if (!this.replayer.hasPendingFor(o.id)) this.showServerVariant(o); },
      nameless: (id) => this.orphans.has(id) || this.index.get(id)?.attr.nlink === 0,
    });
    this.mutations = new Mutations({
      index: this.index, store: this.store, replayer: this.replayer, writeBack: this.writeBack, fetcher: this.fetcher,
      freshness: this.freshness, backend: this.backend, call: this.call, chunkSize: this.chunk, bases: this.bases,
      connected: () => this.connected,
      untilOffline: (p) => this.reconnect.untilOffline(p, JOURNALED),
      resolve: (p) => this.resolve(p),
      resolveParent: (p) => this.resolveParent(p),
      lookup: (dir, name) => this.lookup(dir, name),
      revalidate: (o, force) => this.revalidate(o, force),
      staleListing: (dir) => this.staleListing(dir),
      addOpen: (o, flags, by) => this.addOpen(o, flags, by),
      fileOf: (fd) => this.fileOf(fd),
      isOpen: (id) => this.isOpen(id),
      hasOpenWriters: (o) => this.hasOpenWriters(o),
      forgetObject: (o) => this.forgetObject(o),
    });
    this.outside = new OutsideChanges({
      index: this.index,
      kernel: () => this.kernel,
      connected: () => this.connected,
      rootId: () => this.rootId,
      revalidate: (o, force) => this.revalidate(o, force),
      lookup: (dir, name) => this.lookup(dir, name),
    });
  }

  async init(): Promise<void> {
    const root = await this.call('root', () => this.backend.root());
    const obj = this.freshness.adopt(root);
    this.rootId = obj.id;
    this.accessTimer = setInterval(() => this.index.flushAccessTimes(), ACCESS_FLUSH_MS);
    this.accessTimer.unref();
    // Objects whose cached data we were changing when the last run ended may hold bytes the
    // backend never got (a dirty run not yet journaled, or dropped by its CRC check). Once
    // the records left behind are replayed, their cached data is dropped and fetched anew.
    // Files the kernel was writing directly are journaled first (direct-writes.ts).
    await this.direct.recover();
    const suspect = this.index.idsWithDataVersion(SELF);
    // Records left by a previous run go first; they may have been made disconnected, so they
    // are replayed as a reintegration (bases checked, conflicts parked).
    if (this.replayer.pendingCount > 0) void this.reintegrate(`${this.replayer.pendingCount} journal records left by the last run`);
    if (suspect.length > 0) {
      void this.dropSuspectData(suspect)
        .catch((e: unknown) => log.warn('cannot drop the cached data the last run may have left half-written; it is dropped at the next mount', e));
    }
  }

  /**
   * Drops the cached data of objects the last run was changing, once the backend has every
   * record that needs it. Until then that data is the only copy of what was written offline
   * (a write record's bytes are read from the cache file when it is replayed): so it waits
   * for the records left by the last run to leave the journal (replayed, or parked with
   * their variants saved), which a mount started disconnected may not do for days, and an
   * object with records still to send (written since) keeps its data until it has none.
   */
  private async dropSuspectData(ids: number[]): Promise<void> {
    let left = ids;
    while (left.length > 0) {
      await this.replayer.settled(this.replayer.lastSeq);
      const again: number[] = [];
      for (const id of left) {
        const o = this.index.get(id);
        if (!o || this.openCount.has(id)) continue;
        if (this.replayer.hasPendingFor(id)) again.push(id);
        else this.fetcher.dropData(o);
      }
      left = again;
    }
  }

  get rootObjectId(): number { return this.rootId; }

  /** Told when the backend changed behind the kernel's caches (set by the daemon). */
  kernel: KernelCache | null = null;

  // ---------------------------------------------------------------- connectivity
  //
  // The state machine is reconnect.ts: connected, disconnected (nothing goes to the
  // backend; mutations are journaled and return), reintegrating (the journal is replayed).

  private get connected(): boolean { return this.deps.connectivity.state === 'connected'; }

  /** Replays the journal, then trusts nothing cached until it is revalidated. */
  reintegrate(reason: string): Promise<void> {
    return this.reconnect.reintegrate(reason);
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

  /** Mounted while the backend was away: start disconnected, probing for it. */
  startDisconnected(reason: string): void {
    this.reconnect.startDisconnected(reason);
  }

  /** `cachefs offline`: stop using the backend until `online`. */
  goOffline(): void {
    this.reconnect.goOffline();
  }

  /** `cachefs online`: probe now; replay and reconnect if the backend answers. */
  async goOnline(): Promise<void> {
    await this.reconnect.goOnline();
  }

  // ---------------------------------------------------------------- freshness
  //
  // The rules are freshness.ts; here is what needs the layer's open files and names.

  private hasOpenWriters(obj: CachedObject): boolean {
    for (const of of this.openFiles.values()) if (of.obj === obj && of.written) return true;
    return this.direct.writing(obj.id);
  }

  async revalidate(obj: CachedObject, force: boolean): Promise<void> {
    if (!force && this.freshness.isFresh(obj)) return;
    // Disconnected, or replaying the journal (the backend does not show all our changes
    // yet), what the cache holds is the answer; reintegration revalidates after the replay.
    if (this.deps.connectivity.state === 'disconnected' || this.reconnect.replaying) return;
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
    this.freshness.applyAttr(obj, attr);
  }

  /**
   * A backend call, as `call` makes it, except that the call which finds the backend gone
   * (made connected, failed with a connection error, the mount disconnected now) yields
   * GONE: its operation is then answered the disconnected way, not with the network's
   * error (an editor's first save, a df, as the server went away failed with "Connection
   * refused"). Made while disconnected, it fails as `call` does, so a retry ends there.
   */
  private async callOrGone<T>(what: string, fn: () => Promise<T>): Promise<T | typeof GONE> {
    const wasConnected = this.connected;
    try {
      return await this.call(what, fn);
    } catch (e) {
      if (wasConnected && !this.connected && isConnectionError(e)) return GONE;
      throw e;
    }
  }

  /** A conflict was parked for `o`: its path shows the server's variant from now on. */
  private showServerVariant(o: CachedObject): void {
    this.fetcher.dropData(o);
    o.attrAt = 0;
    this.kernel?.objectAt(o.id, '');
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
      if (o && this.freshness.isFresh(o)) return o;
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
    if (this.connected && !dir.stale?.complete && !this.listedForOffline.has(dir) && dir.attr.size <= LIST_ON_LOOKUP_MAX_BYTES) {
      await this.keepListingForOffline(dir);
    }
    const seen = dir.attr.version;
    let node;
    try {
      node = await this.callOrGone('lookup', () => this.backend.lookup(dir.fh, name));
    } catch (e) {
      if (isFsError(e, 'ENOENT')) this.learnName(dir, name, null, seen);
      throw e;
    }
    if (node === GONE) return this.lookup(dir, name);
    const obj = this.freshness.adopt(node);
    this.learnName(dir, name, obj.id, seen);
    return obj;
  }

  /**
   * A name the backend told a lookup of, asked after the directory was seen at version
   * `seen`. The first name learnt in a directory with none labels its names with that
   * version (each is at least that new), as a listing does: our own change to the
   * directory then keeps them (mutations' afterDirChange), where unlabelled names were all
   * dropped at the next revalidation, so n creates in a directory never listed cost O(n^2)
   * (each dropped the names the ones before had learnt, and looked them up again).
   */
  private learnName(dir: CachedObject, name: string, id: number | null, seen: string): void {
    const label = dir.namesVersion === null && this.index.namesOf(dir).size === 0 && dir.attr.version === seen;
    if (!label) { this.index.setName(dir, name, id); return; }
    this.index.batch(() => {
      this.index.setNamesVersion(dir, seen);
      this.index.setName(dir, name, id);
    });
  }

  /** The objects a backend listing names, each adopted (inside the caller's batch). */
  private adoptListing(listed: readonly DirEntry[]): { name: string; id: number }[] {
    const t = now();
    return listed.map((e) => ({ name: e.name, id: this.freshness.adopt(e, t).id }));
  }

  private readonly listedForOffline = new WeakSet<CachedObject>();

  /**
   * A directory someone works in (a name looked up in it) but never listed: its listing is
   * kept as the disconnected answer (`stale`), as Coda fetches a directory whole. Offline, a
   * name it did not show is then told absent and can be made (an editor's new file, a
   * mkdir), where a partial name cache could only say EHOSTUNREACH. Connected answers do not
   * use it: a name the server makes after this listing is looked up there as before (close-
   * to-open). Not for big directories (one listing costs more than the lookups it saves);
   * a failed listing only leaves the directory as it was.
   */
  private async keepListingForOffline(dir: CachedObject): Promise<void> {
    this.listedForOffline.add(dir); // once per directory: a refusal is not retried at every lookup
    let listed;
    try {
      listed = await this.call('readdir', () => this.backend.readdir(dir.fh));
    } catch (e) {
      log.debug(`listing directory ${dir.id} for the disconnected answer failed`, e);
      return;
    }
    let names: Map<string, number | null>;
    try {
      names = new Map(this.index.batch(() => this.adoptListing(listed)).map((e) => [e.name, e.id]));
    } catch (e) {
      // The cache cannot write its index now (a full cache disk): the lookup goes on without.
      log.debug(`keeping the listing of directory ${dir.id} failed`, e);
      return;
    }
    if (dir.complete || dir.stale?.complete) return; // listed meanwhile
    this.index.keepStale(dir, { names, complete: true });
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

  async readdir(p: string): Promise<{ dir: CachedObject; entries: ListedEntry[] }> {
    return this.readdirOf(await this.resolve(p));
  }

  /**
   * A directory's entries, their attributes refreshed as far as `needs` says: a plain
   * READDIR does not make the cache refresh attributes it will not use.
   */
  async readdirOf(dir: CachedObject, needs: ListingNeeds = 'attrs'): Promise<{ dir: CachedObject; entries: ListedEntry[] }> {
    if (dir.attr.type !== 'dir') throw new FsError('ENOTDIR');
    await this.revalidate(dir, false);
    // A listing with attributes (READDIRPLUS-style) when the names are not all cached, or
    // when many of the entries' attributes are stale (after a remount, say): one backend
    // listing then refreshes them all, instead of one getattr round trip per entry later.
    if (!dir.complete && !this.connected) {
      if (dir.stale?.complete) return { dir, entries: this.staleListing(dir) };
      throw new FsError('EHOSTUNREACH', 'this directory was never listed while connected');
    }
    if (!dir.complete || (needs !== 'names' && this.connected && this.relistForAttrs(dir, needs === 'attrs'))) {
      const listed = await this.callOrGone('readdir', () => this.backend.readdir(dir.fh));
      if (listed === GONE) return this.readdirOf(dir, needs);
      this.index.batch(() => this.index.replaceListing(dir, this.adoptListing(listed), dir.attr.version));
    }
    const out: ListedEntry[] = [];
    const judge = needs !== 'names' && this.connected;
    for (const [name, id] of this.index.namesOf(dir)) {
      if (id === null) continue;
      const o = this.index.get(id);
      if (!o) continue;
      out.push(judge && !this.freshness.isFresh(o) ? { name, obj: o, stale: true } : { name, obj: o });
    }
    return { dir, entries: out };
  }

  /**
   * Whether to list a directory again for its entries' attributes: when more than a few are
   * stale, and (unless the caller needs them all) the directory is not so big that the
   * listing (an lstat and a handle per entry on a local backend) costs more than the caller
   * will use. The kernel asks for the first part of a pass with attributes (READDIRPLUS),
   * whatever the program wants: a plain `ls` of 50,000 names took 2.3 s to refresh
   * attributes nobody read. Above the bound the stale entries go without attributes and
   * each is revalidated when it is looked up.
   */
  private relistForAttrs(dir: CachedObject, all: boolean): boolean {
    if (!all && this.index.namesOf(dir).size > RELIST_FOR_ATTRS_MAX) return false;
    return this.staleChildren(dir) > 8;
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

  /** How many of a directory's cached entries need their attributes revalidated. */
  private staleChildren(dir: CachedObject): number {
    this.index.loadChildren(dir);
    let stale = 0;
    for (const id of this.index.namesOf(dir).values()) {
      if (id === null) continue;
      const o = this.index.get(id);
      if (!o || !this.freshness.isFresh(o)) stale++;
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
    const target = await this.callOrGone('readlink', () => this.backend.readlink(o.fh));
    if (target === GONE) return this.readlinkOf(o);
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
    const value = await this.callOrGone('statfs', () => this.backend.statfs());
    if (value === GONE) return this.statfs();
    this.statfsCache = { at: now(), value };
    return value;
  }

  // ---------------------------------------------------------------- open files

  async open(p: string, flags: number, by?: Creds): Promise<number> {
    const o = this.cfg.consistency.closeToOpen ? await this.resolveValid(p, true) : await this.resolve(p);
    if (o.attr.type === 'dir' && (flags & O_ACCMODE) !== 0) throw new FsError('EISDIR');
    this.copyWholeAtOpen(o, flags);
    return this.addOpen(o, flags, by);
  }

  /** open() of a kernel node: revalidated first (close-to-open), ESTALE when it is gone. */
  async openObject(o: CachedObject, flags: number, by?: Creds): Promise<number> {
    if (this.cfg.consistency.closeToOpen) await this.getattrOf(o, true);
    if (o.attr.type === 'dir' && (flags & O_ACCMODE) !== 0) throw new FsError('EISDIR');
    this.copyWholeAtOpen(o, flags);
    return this.addOpen(o, flags, by);
  }

  /**
   * Whole-file caching at open (cache.wholeFileMaxBytes): an open that may read a file of
   * more than one chunk, none of it cached and nothing of ours on its way, starts a kernel
   * copy of the whole file into the cache (ChunkFetcher.copyWhole); its reads wait only for
   * the piece they read. Not for an open that truncates or only writes, nor for a file that
   * would only fit if other cached data were culled. Whatever keeps the copy from being
   * made, the file is fetched chunk by chunk as it is read.
   */
  private copyWholeAtOpen(o: CachedObject, flags: number): void {
    const size = o.attr.size;
    if (o.attr.type !== 'file' || size <= this.chunk || size > this.cfg.cache.wholeFileMaxBytes) return;
    if ((flags & O_ACCMODE) === O_WRONLY || (flags & O_TRUNC) !== 0) return;
    if (!this.fetcher.canCopyWhole(o) || this.freshness.hasUnsentChanges(o)) return;
    // The open may read one page: the copy must fit beside what is cached, not cull it.
    if (this.roomFor && !this.roomFor(size)) return;
    this.fetcher.copyWhole(o);
  }

  /**
   * The cache file holding all of `o`'s data as the backend has it (for the kernel to read
   * directly: FUSE passthrough), or null. Only a clean, wholly cached file nobody here is
   * writing, whose cache file has exactly the file's size, qualifies.
   */
  async wholeCacheFile(o: CachedObject): Promise<string | null> {
    if (o.attr.type !== 'file') return null;
    // Fetched chunks land in the cache file (and are counted) in the background: wait.
    await this.fetcher.quiesce(o);
    if (o.dataVersion === null || o.dataVersion !== o.attr.version) return null;
    if (this.isDirty(o.id) || this.hasOpenWriters(o) || !fullyCached(o, this.index, this.chunk)) return null;
    const p = await this.store.settledPath(o.id);
    const st = await fsp.stat(p).catch(() => null);
    return st && st.size === o.attr.size && o.dataVersion === o.attr.version ? p : null;
  }

  /**
   * Lets the kernel write through open file `fd` straight into the object's cache file
   * (FUSE passthrough for writes); returns that file, or null where the journal could not
   * follow (not a file wholly and only in its cache file, data of ours on its way through
   * the session, a file too big to compare). See direct-writes.ts.
   */
  async openDirect(fd: number): Promise<string | null> {
    const of = this.fileOf(fd);
    const o = of.obj;
    if (o.attr.type !== 'file' || (of.flags & O_ACCMODE) === 0) return null;
    if (of.direct) return null;
    await this.fetcher.quiesce(o);
    if (!this.direct.writing(o.id)) {
      if (o.attr.size > DIRECT_OPEN_MAX_BYTES) return null;
      if (this.writeBack.dirty.has(o.id) || this.writeBack.writeAround.has(o.id)) return null;
      for (const other of this.openFiles.values()) if (other.obj === o && other.written) return null;
      if (o.attr.size > 0 && (o.dataVersion === null || !fullyCached(o, this.index, this.chunk))) return null;
    }
    const file = await this.store.ensure(o.id);
    if (!this.direct.writing(o.id)) {
      const st = await fsp.stat(file).catch(() => null);
      if (!st || st.size !== o.attr.size) return null;
      if (o.dataVersion === null) this.index.setDataVersion(o, o.attr.version); // empty: wholly cached
    }
    if (!this.openFiles.has(fd)) return null; // released meanwhile
    await this.direct.begin(o, of.by, file);
    of.direct = true;
    return file;
  }

  /** An object's size and times as its cache file shows them while the kernel may write it (null: it does not). */
  followDirect(o: CachedObject): Pick<Attr, 'size' | 'mtimeNs' | 'ctimeNs' | 'used'> | null { return this.direct.follow(o); }

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
    if (of.direct) await this.direct.end(of.obj).catch((e) => log.warn(`journaling what the kernel wrote to object ${of.obj.id} failed; retried`, e));
    this.openFiles.delete(fd);
    const n = (this.openCount.get(of.obj.id) ?? 1) - 1;
    if (n <= 0) {
      this.openCount.delete(of.obj.id);
      this.writeBack.lastSeq.delete(of.obj.id);
      this.writeBack.writeAround.delete(of.obj.id);
      if (this.orphans.delete(of.obj.id)) this.forgetObject(of.obj);
      const h = this.mutations.hidden.get(of.obj.id);
      if (h) {
        this.mutations.hidden.delete(of.obj.id);
        log.debug(`last close of object ${of.obj.id}: removing ${h.name}`);
        // By the object it names (no lookup: the name's object may be due for a revalidation
        // that cannot happen now), unless the name is known to lead elsewhere meanwhile.
        // The index's current objects (those held since the hide may have been reloaded).
        const dir = this.index.get(h.dir.id) ?? h.dir;
        const obj = this.index.get(of.obj.id) ?? of.obj;
        const now = this.index.namesOf(dir).get(h.name);
        if (now === obj.id || now === undefined) {
          await this.mutations.removeName(dir, h.name, obj, h.by).catch((e) => log.warn(`removing ${h.name} (unlinked while open) failed; it stays on the backend`, e));
        } else {
          log.warn(`${h.name} (unlinked while open) now leads to ${now === null ? 'nothing' : `object ${now}`}: left as it is`);
        }
      }
    } else this.openCount.set(of.obj.id, n);
  }

  /** close(): the data written through `fd` is on the backend when this returns. */
  async flush(fd: number): Promise<void> {
    const of = this.fileOf(fd);
    of.flushedAt = Date.now();
    if (of.direct) {
      // What the kernel wrote is journaled now (offline, with the mtime the user saw).
      if (!(await this.direct.absorb(of.obj))) return;
      await this.writeBack.settledOrOffline(of.obj.id);
      await this.adoptOwnWrites(of.obj);
      return;
    }
    if (!of.written) { this.writeBack.throwPendingError(of); return; }
    const run = this.writeBack.dirty.get(of.obj.id);
    if (run) void this.writeBack.commitRun(run);
    // Wait for this object's own records only, not for everything in the journal. Not
    // connected, the records are durable in the journal already: that is close()'s promise.
    await this.writeBack.settledOrOffline(of.obj.id);
    if (!this.connected && of.written) {
      // Written offline: replayed, the writes would give the file the replay's time on the
      // server (and make rebuild everything after a trip). The server gets the mtime the
      // user saw here, at close. As the mount, not the writer: it is the time the writes
      // themselves gave (their rights are checked with them), and setting an explicit time
      // needs ownership, which a writer of someone else's 0666 file does not have.
      await this.mutations.mutate({ op: 'setattr', obj: of.obj.id, set: { mtime: { kind: 'set', ns: String(of.obj.attr.mtimeNs) } }, base: of.obj.attr.version });
    }
    of.written = false;
    this.writeBack.throwPendingError(of);
    await this.adoptOwnWrites(of.obj);
  }

  /** After our writes reached the backend: committed there (NFS), and their version adopted. */
  private async adoptOwnWrites(obj: CachedObject): Promise<void> {
    if (!this.connected) return;
    // Close-to-open durability on backends that write unstably (NFS): COMMIT before close
    // returns; its answer carries the attributes after our writes (wcc data) where it can.
    const committed = this.backend.commitOnClose
      ? await this.mutations.mutate({ op: 'commit', obj: obj.id, base: obj.attr.version })
      : null;
    if (!this.connected) return;
    // Adopt the version our writes produced, so our own writes never look like someone else's.
    let attr: Attr;
    try {
      attr = committed?.kind === 'attr' ? committed.attr : await this.call('getattr', () => this.backend.getattr(obj.fh));
    } catch (e) {
      if (isConnectionError(e)) return; // went offline just now: the data is journaled
      throw e;
    }
    const adopt = (): void => {
      if (obj.dataVersion !== null) this.index.setDataVersion(obj, SELF);
      this.freshness.applyAttr(obj, attr);
    };
    // Where the data version moves, it and the attributes take one commit (two before, for
    // every file `tar x` writes). Not otherwise: an attribute-only store keeps setAttr's
    // leniency on a full cache disk, which holds outside a transaction only.
    if (obj.dataVersion !== null && obj.dataVersion !== attr.version) this.index.batch(adopt);
    else adopt();
  }

  /**
   * fsync(): connected, the data written so far is on the backend (committed) when this
   * returns. Disconnected, it is in the cache file and in committed journal records, and both
   * are on stable storage (fdatasync, a WAL checkpoint): it survives power loss.
   */
  async fsync(fd: number): Promise<void> {
    const of = this.fileOf(fd);
    if (of.direct) await this.flush(fd); // journals what the kernel wrote, and waits for it (connected)
    const run = this.writeBack.dirty.get(of.obj.id);
    if (run) void this.writeBack.commitRun(run);
    if (this.connected) {
      await this.writeBack.settledOrOffline(of.obj.id);
      if (this.connected) {
        await this.mutations.mutate({ op: 'commit', obj: of.obj.id, base: of.obj.attr.version });
        if (of.written) await this.flush(fd);
      }
    }
    if (!this.connected) {
      if (this.writeBack.spilling) await this.writeBack.spilling;
      await this.store.sync(of.obj.id);
      this.index.makeDurable();
      this.writeBack.throwPendingError(of);
    }
  }

  // ---------------------------------------------------------------- data
  //
  // Chunks come through the fetcher (chunk-fetcher.ts); written bytes go through write-back
  // (write-back.ts).

  /**
   * Reads up to `len` bytes at `pos`. `scratch` (≥ len bytes, if given) may hold the result.
   * `keep`: for a caller that can reply from the fetcher's buffer itself: when the bytes all
   * come from one chunk just fetched, the result is a view of that buffer and `keep` gets its
   * release, to be called once the reply is written (one copy less per byte of a cold read).
   */
  async read(fd: number, pos: number, len: number, scratch?: Buffer, keep?: (release: () => void) => void): Promise<Buffer> {
    const of = this.fileOf(fd);
    const obj = of.obj;
    if (obj.attr.type !== 'file') throw new FsError(obj.attr.type === 'dir' ? 'EISDIR' : 'EINVAL');
    const around = this.writeBack.writeAround.has(obj.id);
    if (around) {
      // Its newest bytes are only in memory and on their way to the backend: let them land
      // there, then read (and cache) from the backend.
      const run = this.writeBack.dirty.get(obj.id);
      if (run) void this.writeBack.commitRun(run);
      await this.writeBack.settledOrOffline(obj.id);
      if (!this.connected) throw new FsError('ENODATA', 'written past the cache while connected; readable again once reconnected');
      if (obj.cachedBytes > 0) this.fetcher.dropData(obj);
    }
    const size = obj.attr.size;
    if (pos >= size || len <= 0) return Buffer.alloc(0);
    const n = Math.min(len, size - pos);
    const first = Math.floor(pos / this.chunk);
    const last = Math.floor((pos + n - 1) / this.chunk);
    const chunks = this.index.chunksOf(obj);
    // Bytes just fetched, lent by the fetcher: each is released once copied (finally below).
    const fetched = new Map<number, Lent>();
    const waits: Promise<void>[] = [];
    for (let i = first; i <= last; i++) {
      if (chunks.has(i) && !this.fetcher.busy(obj, i)) continue;
      if (!chunks.has(i) && !this.fetcher.busy(obj, i) && this.fetcher.knownZero(obj, i)) {
        // Made here and never on the backend: a chunk nobody wrote is a hole (zeros).
        this.index.addChunk(obj, i, Math.min(this.chunk, size - i * this.chunk), obj.dataVersion ?? SELF);
        continue;
      }
      waits.push(this.fetcher.lend(obj, i).then((b) => { if (b) fetched.set(i, b); }));
    }
    try {
      if (waits.length) {
        this.counters.misses++;
        try {
          await Promise.all(waits);
        } catch (e) {
          // A lend that came back after another failed is in `fetched` only once it settles:
          // wait for every one, so each is released (by the finally below).
          await Promise.allSettled(waits);
          throw notCachedWhenOffline(e);
        }
      } else {
        this.counters.hits++;
        this.counters.bytesFromCache += n;
      }
      // Sequential reader: fetch ahead so the next reads find their chunks cached.
      if (of.nextPos === pos && this.cfg.cache.readAheadChunks > 0) this.fetcher.readAhead(obj, last + 1);
      of.nextPos = pos + n;
      this.index.touch(obj, Date.now());
      if (fetched.size === 0) {
        return this.store.read(obj.id, pos, n, scratch && scratch.length >= n ? scratch.subarray(0, n) : undefined);
      }
      const only = first === last ? fetched.get(first) : undefined;
      if (keep && only) {
        const part = only.bytes.subarray(pos - first * this.chunk, pos - first * this.chunk + n);
        if (part.length === n) {
          fetched.delete(first); // the finally below leaves it to the caller
          keep(only.release);
          return part;
        }
      }
      // Some chunks came from the backend just now (their bytes may not have landed in the
      // cache file yet): take those from memory and the others from the cache file.
      const out = scratch && scratch.length >= n ? scratch.subarray(0, n) : Buffer.allocUnsafe(n);
      for (let i = first; i <= last; i++) {
        const cStart = i * this.chunk;
        const from = Math.max(pos, cStart);
        const to = Math.min(pos + n, cStart + this.chunk);
        const b = fetched.get(i)?.bytes;
        if (b) {
          const part = b.subarray(from - cStart, to - cStart);
          part.copy(out, from - pos);
          if (part.length < to - from) out.fill(0, from - pos + part.length, to - pos);
        } else {
          await this.store.read(obj.id, from, to - from, out.subarray(from - pos, to - pos));
        }
      }
      return out;
    } finally {
      for (const b of fetched.values()) b.release();
    }
  }

  /**
   * Checks a write() and, disconnected, admits it (the culler must make room for it, and
   * the object's base is kept for replay first); write-back stores and journals it.
   * `keep`: `data` may be kept past the return until the release it gives is called (see
   * WriteBack.write); without it, whoever keeps the bytes copies them.
   */
  async write(fd: number, pos: number, data: Buffer, keep?: () => () => void): Promise<number> {
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
      await this.mutations.captureBase(obj);
      // Bytes acknowledged while connected and still only in memory go to the cache file
      // first (see write-back.ts spillWriteBehind): this write is journaled after them.
      if (this.writeBack.spilling) await this.writeBack.spilling;
    }
    return this.writeBack.write(of, pos, data, keep);
  }

  // ---------------------------------------------------------------- mutations
  //
  // Every change to names and attributes goes through the journal in mutations.ts; these are
  // its entry points: by parent object and name (the kernel's), and by path.

  create(p: string, mode: number, flags: number, creds: Creds): Promise<number> { return this.mutations.create(p, mode, flags, creds); }
  createAt(dir: CachedObject, name: string, mode: number, flags: number, creds: Creds): Promise<{ fd: number; obj: CachedObject }> { return this.mutations.createAt(dir, name, mode, flags, creds); }
  mkdir(p: string, mode: number, creds: Creds): Promise<void> { return this.mutations.mkdir(p, mode, creds); }
  mkdirAt(dir: CachedObject, name: string, mode: number, creds: Creds): Promise<CachedObject> { return this.mutations.mkdirAt(dir, name, mode, creds); }
  mknod(p: string, mode: number, rdev: number, creds: Creds): Promise<void> { return this.mutations.mknod(p, mode, rdev, creds); }
  mknodAt(dir: CachedObject, name: string, mode: number, rdev: number, creds: Creds): Promise<CachedObject> { return this.mutations.mknodAt(dir, name, mode, rdev, creds); }
  symlink(target: string, p: string, creds: Creds): Promise<void> { return this.mutations.symlink(target, p, creds); }
  symlinkAt(dir: CachedObject, name: string, target: string, creds: Creds): Promise<CachedObject> { return this.mutations.symlinkAt(dir, name, target, creds); }
  link(src: string, dst: string, by?: Creds): Promise<void> { return this.mutations.link(src, dst, by); }
  linkAt(obj: CachedObject, dir: CachedObject, name: string, by?: Creds): Promise<CachedObject> { return this.mutations.linkAt(obj, dir, name, by); }
  unlink(p: string, by?: Creds): Promise<void> { return this.mutations.unlink(p, by); }
  unlinkAt(dir: CachedObject, name: string, by?: Creds): Promise<void> { return this.mutations.unlinkAt(dir, name, by); }
  rmdir(p: string, by?: Creds): Promise<void> { return this.mutations.rmdir(p, by); }
  rmdirAt(dir: CachedObject, name: string, by?: Creds): Promise<void> { return this.mutations.rmdirAt(dir, name, by); }
  rename(src: string, dst: string, by?: Creds): Promise<void> { return this.mutations.rename(src, dst, by); }
  /** rename(2) by parent objects and names (`noReplace`: RENAME_NOREPLACE, EEXIST if taken). */
  renameAt(fromDir: CachedObject, fromName: string, toDir: CachedObject, toName: string, by?: Creds, noReplace = false): Promise<void> {
    return this.mutations.renameAt(fromDir, fromName, toDir, toName, by, noReplace);
  }
  async setattr(obj: CachedObject, set: SetAttrRecord, by?: Creds): Promise<void> {
    // The kernel may have written directly: journaled first, as a write through us would be.
    if (set.size !== undefined && this.direct.writing(obj.id)) await this.direct.absorb(obj);
    await this.mutations.setattr(obj, set, by);
    if (set.size !== undefined) await this.directResized(obj, set.size);
  }
  truncate(p: string, size: number, by?: Creds): Promise<void> { return this.mutations.truncate(p, size, by); }
  /** As the opener: the kernel checked the right to truncate at open, as for a write. */
  async ftruncate(fd: number, size: number): Promise<void> {
    const obj = this.fileOf(fd).obj;
    if (this.direct.writing(obj.id)) await this.direct.absorb(obj);
    await this.mutations.ftruncate(fd, size);
    await this.directResized(obj, size);
  }

  /**
   * The kernel maps and reads the cache file itself: grown through us, the file must grow
   * too (the cache otherwise keeps a grown file's zeros as a promise, not as bytes), or an
   * mmap past its old end faults (SIGBUS).
   */
  private async directResized(obj: CachedObject, size: number): Promise<void> {
    if (!this.direct.writing(obj.id)) return;
    await this.store.truncate(obj.id, size);
    this.direct.resized(obj, size);
  }
  chmod(p: string, mode: number, by?: Creds): Promise<void> { return this.mutations.chmod(p, mode, by); }
  chown(p: string, uid: number | undefined, gid: number | undefined, by?: Creds): Promise<void> { return this.mutations.chown(p, uid, gid, by); }
  utimens(p: string, atime: TimeArg, mtime: TimeArg, by?: Creds): Promise<void> { return this.mutations.utimens(p, atime, mtime, by); }

  // ---------------------------------------------------------------- hoarding and culling

  /** False below the cache disk's stop threshold: fetched data is served but not kept. */
  storeData = true;
  /** Set by the culler: may a write of this many bytes be kept while disconnected? */
  admitOffline: ((bytes: number) => boolean) | null = null;
  /** Set by the culler when admitOffline says no: the limit that write met (the cache-full event's cause). */
  offlineRefusal: CacheLimit | null = null;
  /** Set by the culler: would this many bytes more fit without culling? (null: no culler, yes) */
  roomFor: ((bytes: number) => boolean) | null = null;

  /** The object's cached data holds changes the backend does not have yet (never culled). */
  isDirty(id: number): boolean {
    return this.writeBack.dirty.has(id) || this.replayer.hasPendingFor(id) || this.mutations.capturingBase(id) || this.direct.writing(id);
  }

  isOpen(id: number): boolean { return (this.openCount.get(id) ?? 0) > 0; }

  /**
   * Drops an object's cached data if it is clean (the backend has it), not open and not
   * being fetched: culling and `cachefs evict`. Returns the bytes freed (0: kept).
   */
  evict(obj: CachedObject): number {
    if (obj.cachedBytes === 0 || this.isOpen(obj.id) || this.isDirty(obj.id) || this.writeBack.writeAround.has(obj.id)) return 0;
    if (this.fetcher.busyObject(obj)) return 0;
    const n = obj.cachedBytes;
    this.fetcher.dropData(obj);
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
    // Nothing of it cached: a kernel copy of the whole file where the backend offers one
    // (whatever is left after it, fetched below).
    const copy = obj.attr.size > this.chunk ? this.fetcher.copyWhole(obj) : { started: false as const };
    let copied = 0;
    if (copy.started) {
      const before = obj.cachedBytes;
      await copy.done;
      copied = obj.cachedBytes - before;
      if (copied > 0) onBytes?.(copied);
    }
    const missing: number[] = [];
    const n = Math.ceil(obj.attr.size / this.chunk);
    for (let i = 0; i < n; i++) {
      if (!this.index.chunksOf(obj).has(i) || this.fetcher.busy(obj, i)) missing.push(i);
    }
    let fetched = 0;
    // A few chunks of one file at a time (the backend queue bounds the calls overall), so a
    // big file is not fetched one round trip after another.
    const one = async (i: number): Promise<void> => {
      const got = await this.fetcher.ensure(obj, i).catch((e) => {
        if (isFsError(e, 'ESTALE')) {
          this.forgetObject(obj); // removed on the backend since its attributes were cached
          throw new FsError('ENOENT', 'removed on the backend');
        }
        throw notCachedWhenOffline(e);
      });
      await this.fetcher.landed(obj, i);
      if (!this.storeData || !this.index.chunksOf(obj).has(i)) {
        throw new FsError('ENOSPC', 'the cache is full (below its stop threshold): pinned data cannot be kept');
      }
      if (got) { fetched += got; onBytes?.(got); }
    };
    for (let k = 0; k < missing.length; k += HOARD_CHUNKS_PER_FILE) {
      await Promise.all(missing.slice(k, k + HOARD_CHUNKS_PER_FILE).map(one));
    }
    this.index.touch(obj, Date.now());
    return copied + fetched;
  }

  /** The object with this id, if the index has it (hoard walks fetch what their scan found). */
  objectById(id: number): CachedObject | undefined {
    return this.index.get(id);
  }

  /**
   * The directory holding `dir` (the root's is the root), for a kernel that reconnects a
   * directory reached by its file handle (LOOKUP of ".."). From the cached names; ESTALE
   * when none is known (the kernel then reports the handle stale, never a wrong parent).
   */
  parentDirOf(dir: CachedObject): CachedObject {
    if (dir.id === this.rootId) return dir;
    const p = this.index.parentOf(dir.id);
    const parent = p ? this.index.get(p.parent) : undefined;
    if (!parent) throw new FsError('ESTALE', `no parent of object ${dir.id} is known`);
    return parent;
  }

  // ---------------------------------------------------------------- conflict resolution

  /**
   * The mount's operations by path, acting as `creds`, for resolving conflicts: every change
   * goes through the journal like one an application makes (resolve-fs.ts).
   */
  resolveFs(creds: Creds): ResolveFs {
    return resolveFsOf(this, creds, (p) => this.outside.tellKernelAbout(p));
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
  //
  // What the backend's watcher reports, and what the kernel is told of changes it did not
  // ask for (outside-changes.ts).

  /** The backend's watcher saw a change behind our back: what it touched revalidates. */
  noticeOutsideChange(change: OutsideChange): void { this.outside.noticeOutsideChange(change); }

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
    this.writeBack.commitAllDirty();
    await this.replayer.drained();
  }

  /** Every acknowledged write not yet on the backend gets its journal row now (the mount is going). */
  persistWrites(): void {
    this.writeBack.commitAllDirty();
    this.writeBack.persistWrites();
  }

  async close(): Promise<void> {
    if (this.accessTimer) clearInterval(this.accessTimer);
    this.index.flushAccessTimes();
    await this.gate.idle();
  }
}
