// Keeping the cache within its size (ARCHITECTURE §8, like cachefilesd). The culler measures
// what the cache holds by class (pinned, dirty, clean), watches the cache disk's free space,
// and drops least-recently-used clean data when the cache is over `culling.maxBytes` or the
// disk below `bcull`/`fcull`, until it is back under 90% of maxBytes and above `brun`. Below
// the stop threshold (`bstop`/`fstop`, and never less than the index reserve, see below), or
// while it is over maxBytes with nothing left to drop, nothing new is cached (the layer's
// `storeData`), and a write made while disconnected is refused with ENOSPC (the layer's
// `admitOffline`: the write fails rather than be lost later; `offlineRefusal` says which limit).
//
// The index reserve: the index and journal (SQLite, with its write-ahead log) live on the same
// disk and must always be able to grow a little: a journal record that cannot be written
// loses a change, a replay that cannot delete its records cannot finish. So file data stops
// at INDEX_RESERVE free bytes (a quarter of a small disk) even when bstop is less, and a
// change made while disconnected is journaled only while half of it is left (`journalRoom`):
// the last half is for the write records of data already acknowledged and for the replay.
// Near these thresholds the free space is read again (statfs, microseconds) rather than
// estimated, since the index and the log grow too and no running figure counts them.
//
// What must stay true:
// - dirty data (not yet replayed) is never dropped, and pinned data never by culling (only
//   `cachefs evict --force` drops a pinned file's clean data, on request): invariant 4;
// - data is dropped only through the layer's `evict`, which also refuses open files and
//   chunks being fetched or written, so no reader ever sees a chunk vanish under it;
// - deciding on a write costs no SQLite scan: a running figure (the last measurement plus the
//   bytes stored since) answers, and only a write that would not fit makes the culler measure
//   and cull, at most once per STUCK_RETRY_MS while nothing can be dropped.
//
// When it runs: every `culling.intervalS` (with a statfs of the cache directory), and soon
// after data lands in the cache past a threshold. The daemon's store tells it about every byte
// written into the cache (MeteredDataStore): fetched chunks and written data alike, the one
// place all of it passes, so the layer needs no hook of its own.
//
// Usage is counted from the chunks each object has (full chunks, and the last one up to the
// file's size), or the index's `cachedBytes` where that is larger: a write into a chunk
// already cached adds nothing to `cachedBytes`, so an appended file is undercounted there.
import { promises as fsp, statfsSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { log } from '../core/log.js';
import type { CacheLimit } from '../core/events.js';
import { isCacheStorageError, isFsError } from '../core/errors.js';
import type { CachedDataRow, CachedObject } from '../index/objects.js';
import { DataStore } from '../store/data-store.js';

/** What the culler needs of the cache layer. */
export interface CullLayer {
  /** Drops an object's clean data if nothing uses it; the bytes freed (0: kept). */
  evict(obj: CachedObject): number;
  isDirty(id: number): boolean;
  isOpen(id: number): boolean;
  /** The object at a path from the mount root (from the cache when it can). */
  resolve(path: string): Promise<CachedObject>;
  /** Set false: fetched data is served but not kept. */
  storeData: boolean;
  /** Asked before each write made while disconnected: may it be kept? */
  admitOffline: ((bytes: number) => boolean) | null;
  /**
   * Asked before a whole-file copy at open (a read of one page may start it): would `bytes`
   * more fit without culling? Such a copy must not push other cached data out.
   */
  roomFor?: ((bytes: number) => boolean) | null;
  /**
   * Set by the culler each time admitOffline says no: the limit that write met, for the
   * cache-full event (a layer that does not declare it yet just does not tell).
   */
  offlineRefusal?: CacheLimit | null;
}

/** What the culler needs of the object index. */
export interface CullIndex {
  cachedData(): CachedDataRow[];
  get(id: number): CachedObject | undefined;
  parentOf(id: number): { parent: number; name: string } | null;
}

/** What the culler needs of the pins (src/hoard/pins.ts PinStore). */
export interface CullPins {
  covering(path: string): object | null;
  list(): readonly object[];
}

/** The cache directory's file system, as statfs reports it (blocks and files). */
export interface DiskSpace { bsize: number; blocks: number; bavail: number; files: number; ffree: number }

export interface CullerDeps {
  layer: CullLayer;
  index: CullIndex;
  pins: CullPins;
  rootId(): number;
  config: Config['culling'];
  chunkSize: number;
  cacheDir: string;
  /** Tests give a fake disk; by default fs.promises.statfs of cacheDir. */
  statfs?: (dir: string) => Promise<DiskSpace>;
  /**
   * Reads the free space at once, for decisions near a threshold; by default fs.statfsSync
   * (when `statfs` is not given: a fake disk is only read through `statfs`).
   */
  statfsSync?: ((dir: string) => DiskSpace) | null;
}

export type DataClass = 'pinned' | 'dirty' | 'clean';

/** What `cachefs status` shows of the cache. Classes add up to `bytes`. */
export interface Usage {
  /** Bytes of file data the cache holds, and in how many objects. */
  bytes: number;
  objects: number;
  /** Under a pin (never culled). */
  pinned: number;
  /** Holding changes the backend does not have yet (never culled; counted here even if pinned). */
  dirty: number;
  /** Everything else: what culling may drop, least recently used first. */
  clean: number;
  /** culling.maxBytes (0: only the disk limits the cache). */
  limit: number;
  /** Free blocks and files of the cache directory's file system, percent (null: unknown). */
  diskFreePercent: number | null;
  filesFreePercent: number | null;
  /** False below bstop/fstop, or over the limit with nothing left to drop: nothing new is kept. */
  storing: boolean;
}

export interface EvictKept { path: string; reason: 'dirty' | 'open' | 'pinned' | 'busy'; bytes: number }
export interface EvictPathResult {
  /** As given, from the mount root. */
  path: string;
  freed: number;
  /** Files whose data was dropped. */
  files: number;
  /** Files with cached data that were kept, and why. */
  kept: EvictKept[];
  /** Why nothing could be done for this path (not found, a directory without -r). */
  error?: string;
}
export interface EvictResult { paths: EvictPathResult[]; freed: number }

/** Culling goes down to this share of maxBytes, so it does not run again at the next chunk. */
const CULL_TO = 0.9;
/** While nothing can be dropped, a write does not make the culler scan again sooner than this. */
const STUCK_RETRY_MS = 250;
/** How old a measurement `usage()` may answer with. */
const USAGE_MAX_AGE_MS = 500;
/**
 * Free bytes the cache disk keeps for the index and journal (SQLite and its write-ahead log,
 * which grows up to ~4 MiB between checkpoints), at most a quarter of the disk.
 */
export const INDEX_RESERVE = 8 * 1024 * 1024;
/** Near a threshold, the free space is read again when the last reading is older than this. */
const FRESH_MS = 50;

interface Candidate { id: number; bytes: number }
interface Measured {
  at: number;
  objects: number;
  pinned: number;
  dirty: number;
  clean: number;
  /** Clean, unpinned objects, least recently used first. */
  candidates: Candidate[];
}

/** Bytes an object's data file holds: whole chunks, the last one up to the file's size. */
export function bytesOf(r: CachedDataRow, chunk: number): number {
  const last = r.size > 0 ? Math.floor((r.size - 1) / chunk) : -1;
  let est: number;
  if (r.maxChunk < last) est = r.chunks * chunk;
  else if (r.maxChunk === last) est = (r.chunks - 1) * chunk + (r.size - last * chunk);
  else est = r.cachedBytes; // chunks past the end (a truncate under way): the index knows
  return Math.max(est, r.cachedBytes);
}

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

/** Paths from the mount root through the cached names, each directory looked up once. */
class PathMemo {
  private readonly memo = new Map<number, string | null>();
  constructor(private readonly index: CullIndex, rootId: number) { this.memo.set(rootId, '/'); }

  of(id: number): string | null {
    const chain: { id: number; name: string }[] = [];
    let cur = id;
    let base: string | null | undefined;
    for (let hops = 0; base === undefined; hops++) {
      base = this.memo.get(cur);
      if (base !== undefined) break;
      const up = hops > 4096 ? null : this.index.parentOf(cur); // a cycle in a corrupt index: no path
      if (!up) { base = null; break; }
      chain.push({ id: cur, name: up.name });
      cur = up.parent;
    }
    let p: string | null = base;
    for (let i = chain.length - 1; i >= 0; i--) {
      p = p === null ? null : (p === '/' ? '/' : p + '/') + chain[i]!.name;
      this.memo.set(chain[i]!.id, p);
    }
    return p;
  }
}

export class Culler {
  private measured: Measured | null = null;
  /** Bytes stored in the cache since `measured` was taken (rewrites count again: an overestimate). */
  private pending = 0;
  private disk: DiskSpace | null = null;
  /** When `disk` was read (ms since the epoch). */
  private diskAt = 0;
  /** Bytes stored minus bytes dropped since `disk` was read. */
  private diskDelta = 0;
  private storing = true;
  /** When a cull last ended with the cache still over its limits (nothing left to drop). */
  private stuckAt = 0;
  private filesWarned = false;
  private statfsFailing = false;
  private timer: NodeJS.Timeout | null = null;
  private soon: { cancel(): void } | null = null;
  private checking: Promise<void> | null = null;
  private stopped = false;
  private readonly cfg: Config['culling'];
  private readonly statfs: (dir: string) => Promise<DiskSpace>;
  private readonly statfsNow: ((dir: string) => DiskSpace) | null;
  /** A storage failure met while dropping data (said once per spell, in the log). */
  private evictFailing = false;

  constructor(private readonly d: CullerDeps) {
    this.cfg = d.config;
    this.statfs = d.statfs ?? ((dir) => fsp.statfs(dir));
    this.statfsNow = d.statfsSync !== undefined ? d.statfsSync : d.statfs ? null : (dir) => statfsSync(dir);
  }

  /** Starts the periodic check and takes over the layer's offline write admission. */
  async start(): Promise<void> {
    this.d.layer.admitOffline = (bytes) => this.admit(bytes);
    this.d.layer.roomFor = (bytes) => this.storing && !this.overLimits(bytes);
    await this.check('mount');
    this.timer = setInterval(() => { void this.check('interval'); }, Math.round(this.cfg.intervalS * 1000));
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.clearSoon();
    this.d.layer.admitOffline = null;
    this.d.layer.roomFor = null;
  }

  /** Bytes were written into the cache (a fetched chunk, or written data). Cheap. */
  noteStored(bytes: number): void {
    this.pending += bytes;
    this.diskDelta += bytes;
    // Not measured yet: measure later, once the chunk that just landed is in the index.
    if (!this.measured || this.overLimits(0)) this.schedule();
  }

  /** Reads the disk's free space, then culls if needed (the periodic run). */
  check(why: string): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.checking) return this.checking;
    this.checking = (async () => {
      try {
        // Reset first: bytes stored while statfs runs count twice rather than not at all.
        this.diskDelta = 0;
        this.disk = await this.statfs(this.d.cacheDir);
        this.diskAt = Date.now();
        this.statfsFailing = false;
      } catch (e) {
        if (!this.statfsFailing) log.warn(`cannot read the free space of ${this.d.cacheDir}; culling by maxBytes only until it can`, e);
        this.statfsFailing = true;
        this.disk = null;
      }
      if (!this.stopped) this.cullSafely(why);
    })().finally(() => { this.checking = null; });
    return this.checking;
  }

  /** The cache's use by class (measured again when the last measurement is older than 0.5 s). */
  usage(): Usage {
    let m = this.measured;
    if (!m || this.pending > 0 || Date.now() - m.at > USAGE_MAX_AGE_MS) m = this.remeasure();
    const disk = this.diskNow();
    return {
      bytes: m.pinned + m.dirty + m.clean, objects: m.objects, pinned: m.pinned, dirty: m.dirty, clean: m.clean,
      limit: this.cfg.maxBytes,
      diskFreePercent: disk ? round1(disk.blocksPct) : null,
      filesFreePercent: disk ? round1(disk.filesPct) : null,
      storing: this.storing,
    };
  }

  /**
   * `cachefs evict`: drops the clean data of files (with `recursive`, of everything cached
   * under a directory). Dirty and open files are kept; pinned ones too unless `force`.
   */
  async evictPaths(paths: string[], opts: { recursive: boolean; force: boolean }): Promise<EvictResult> {
    const out: EvictPathResult[] = [];
    let total = 0;
    for (const given of paths) {
      const res: EvictPathResult = { path: given, freed: 0, files: 0, kept: [] };
      out.push(res);
      const p = normalize(given);
      let obj: CachedObject;
      try {
        obj = await this.d.layer.resolve(p);
      } catch (e) {
        if (!isFsError(e)) throw e;
        res.error = e.code === 'ENOENT' ? 'no such file or directory' : e.message;
        continue;
      }
      if (obj.attr.type === 'dir' && !opts.recursive) { res.error = 'is a directory (give -r to evict everything under it)'; continue; }
      // Every object with cached data, with the path it is known by; the ones under `p`.
      const memo = new PathMemo(this.d.index, this.d.rootId());
      const prefix = p === '/' ? '/' : p + '/';
      const targets = this.d.index.cachedData().flatMap((r) => {
        if (obj.attr.type !== 'dir') return r.id === obj.id ? [{ r, path: p }] : [];
        const at = memo.of(r.id);
        return at !== null && at.startsWith(prefix) ? [{ r, path: at }] : [];
      });
      for (const { r, path: at } of targets) {
        const bytes = bytesOf(r, this.d.chunkSize);
        const o = this.d.index.get(r.id);
        if (!o) continue;
        const why = this.d.layer.isDirty(r.id) ? 'dirty'
          : !opts.force && this.d.pins.covering(at) ? 'pinned'
            : this.d.layer.isOpen(r.id) ? 'open' : null;
        if (why) { res.kept.push({ path: at, reason: why, bytes }); continue; }
        if (this.evict(o) > 0) {
          res.freed += bytes;
          res.files++;
        } else res.kept.push({ path: at, reason: 'busy', bytes }); // being fetched or written (or the index cannot be written)
      }
      total += res.freed;
      this.diskDelta -= res.freed;
    }
    if (total > 0) {
      this.measured = null;
      log.info(`cachefs evict: dropped ${mib(total)} of clean data (${paths.join(', ')})`);
      this.cullSafely('evict'); // may start storing again
    }
    return { paths: out, freed: total };
  }

  // ---------------------------------------------------------------- internals

  private clearSoon(): void {
    this.soon?.cancel();
    this.soon = null;
  }

  /** Culls soon (after the chunk that just landed is in the index), or once a stuck spell ends. */
  private schedule(): void {
    if (this.soon || this.stopped) return;
    const wait = this.stuckAt ? this.stuckAt + STUCK_RETRY_MS - Date.now() : 0;
    const run = () => { this.soon = null; if (!this.stopped) this.cullSafely('data arrived'); };
    if (wait > 0) {
      const t = setTimeout(run, wait).unref();
      this.soon = { cancel: () => clearTimeout(t) };
    } else {
      const i = setImmediate(run);
      this.soon = { cancel: () => clearImmediate(i) };
    }
  }

  private remeasure(): Measured {
    const rows = this.d.index.cachedData();
    const memo = this.d.pins.list().length > 0 ? new PathMemo(this.d.index, this.d.rootId()) : null;
    const m: Measured = { at: Date.now(), objects: rows.length, pinned: 0, dirty: 0, clean: 0, candidates: [] };
    for (const r of rows) {
      const bytes = bytesOf(r, this.d.chunkSize);
      if (this.d.layer.isDirty(r.id)) { m.dirty += bytes; continue; }
      const at = memo ? memo.of(r.id) : null;
      if (at !== null && this.d.pins.covering(at)) { m.pinned += bytes; continue; }
      m.clean += bytes;
      m.candidates.push({ id: r.id, bytes });
    }
    this.measured = m;
    this.pending = 0;
    return m;
  }

  /** The running estimate: the last measurement plus what was stored since. */
  private estimate(): number {
    const m = this.measured ?? this.remeasure();
    return m.pinned + m.dirty + m.clean + this.pending;
  }

  private diskNow(): { total: number; avail: number; blocksPct: number; filesPct: number } | null {
    const s = this.disk;
    if (!s) return null;
    const total = s.blocks * s.bsize;
    const avail = Math.max(0, s.bavail * s.bsize - this.diskDelta);
    return {
      total, avail,
      blocksPct: total > 0 ? (avail / total) * 100 : 100,
      filesPct: s.files > 0 ? (s.ffree / s.files) * 100 : 100,
    };
  }

  /**
   * Would `reserve` more bytes put the cache at maxBytes or the disk below bcull (see
   * cullBytes)? (Free files
   * are left to the periodic check: dropping data does not free them, see cullNow.)
   */
  private overLimits(reserve: number): boolean {
    const limit = this.cfg.maxBytes;
    if (limit > 0 && this.estimate() + reserve >= limit) return true;
    const disk = this.diskNow();
    return disk !== null && disk.total > 0 && disk.avail - reserve < this.cullBytes(disk.total);
  }

  /**
   * Measures, drops least-recently-used clean data until `reserve` more bytes fit under 90%
   * of maxBytes and the disk is above brun, and decides whether new data is kept.
   * Synchronous: the index and the layer's eviction are, so a write can wait for it.
   */
  private cullNow(why: string, reserve: number): void {
    const m = this.remeasure();
    const limit = this.cfg.maxBytes;
    const used = m.pinned + m.dirty + m.clean;
    let need = 0;
    // At the limit already counts: nothing more would fit.
    if (limit > 0 && used + reserve >= limit) need = used + reserve - Math.floor(limit * CULL_TO);
    const disk = this.diskNow();
    if (disk && disk.total > 0 && disk.avail - reserve < this.cullBytes(disk.total)) {
      need = Math.max(need, Math.ceil(this.runBytes(disk.total) - (disk.avail - reserve)));
    }
    let freed = 0;
    let files = 0;
    if (need > 0) {
      const dropped = new Set<number>();
      for (const c of m.candidates) {
        if (freed >= need) break;
        if (this.d.layer.isOpen(c.id)) continue;
        const o = this.d.index.get(c.id);
        if (!o || this.evict(o) === 0) continue;
        freed += c.bytes;
        files++;
        dropped.add(c.id);
      }
      m.clean -= freed;
      m.candidates = m.candidates.filter((c) => !dropped.has(c.id));
      this.diskDelta -= freed;
      const now = m.pinned + m.dirty + m.clean;
      const kept = `${mib(m.pinned)} pinned, ${mib(m.dirty)} dirty, ${mib(m.clean)} clean`;
      if (files > 0) {
        log.info(`culled ${files} file(s), ${mib(freed)} of clean data (${why}): the cache holds ${mib(now)}`
          + `${limit > 0 ? ` of ${mib(limit)}` : ''} (${kept})`);
      }
      if (freed < need) {
        if (!this.stuckAt) log.warn(`the cache cannot be culled enough (${why}): ${mib(need - freed)} more would have to go, and the rest is pinned, dirty or in use (${kept})`);
        this.stuckAt = Date.now();
      } else this.stuckAt = 0;
    } else this.stuckAt = 0;

    // Free files (inodes): the layer's evict empties a cache file but keeps it, so culling
    // frees none; below fcull the log says so, below fstop nothing new is cached.
    const after = this.diskNow();
    if (after && after.filesPct < this.cfg.fcull) {
      if (!this.filesWarned) log.warn(`the cache disk has ${after.filesPct.toFixed(1)}% of its files (inodes) free, below culling.fcull (${this.cfg.fcull}%): dropping data does not free files; give the cache a roomier disk`);
      this.filesWarned = true;
    } else this.filesWarned = false;
    const diskStop = after !== null && after.total > 0 && (after.avail < this.stopBytes(after.total) || after.filesPct < this.cfg.fstop);
    const full = limit > 0 && m.pinned + m.dirty + m.clean >= limit;
    this.setStoring(!diskStop && !full, diskStop
      ? `the cache disk is below culling.bstop/fstop or the index reserve (${mib(after!.avail)}, ${after!.blocksPct.toFixed(1)}% blocks, ${after!.filesPct.toFixed(1)}% files free)`
      : 'the cache is at culling.maxBytes and everything in it is pinned, dirty or in use');
  }

  private setStoring(on: boolean, why: string): void {
    if (on === this.storing) return;
    this.storing = on;
    this.d.layer.storeData = on;
    if (on) log.info('the cache has room again: fetched data is kept');
    else log.warn(`${why}: fetched data is served but not kept, and writes made while disconnected fail with ENOSPC`);
  }

  /**
   * The layer asks before a write made while disconnected: may `bytes` more be kept? When
   * not, the layer's `offlineRefusal` says which limit the write met.
   */
  private admit(bytes: number): boolean {
    let misfit = this.misfit(bytes);
    if (misfit !== null && !(this.stuckAt && Date.now() - this.stuckAt < STUCK_RETRY_MS)) {
      this.cullNow('a write while disconnected', bytes);
      misfit = this.misfit(bytes);
    }
    if (misfit !== null) this.d.layer.offlineRefusal = misfit;
    return misfit === null;
  }

  /** Which limit `bytes` more would pass (the disk's first: raising maxBytes cannot help there); null: they fit. */
  private misfit(bytes: number): CacheLimit | null {
    let disk = this.diskNow();
    // Near the stop threshold the estimate is not good enough (the index, its log and our
    // log grow too): read the disk again.
    if (disk && disk.total > 0 && disk.avail - bytes < 2 * this.stopBytes(disk.total) && this.refreshDisk()) disk = this.diskNow();
    if (disk && disk.total > 0 && (disk.avail - bytes < this.stopBytes(disk.total) || disk.filesPct < this.cfg.fstop)) return 'disk';
    return this.cfg.maxBytes === 0 || this.estimate() + bytes <= this.cfg.maxBytes ? null : 'maxBytes';
  }

  /**
   * May a change made while disconnected be journaled? Only while the cache disk has half of
   * its stop threshold left (an unknown disk: yes). What is below stays for the index's own
   * needs: write records of data already acknowledged, and the replay's bookkeeping. The
   * disk is read every time (a statfs costs less than the journal append it guards): a change
   * let in must not fail halfway, journaled but not in the index, because something else
   * filled the disk since the last reading.
   */
  journalRoom(): boolean {
    this.refreshDisk(0);
    const disk = this.diskNow();
    if (!disk || disk.total === 0) return true;
    return disk.avail >= this.stopBytes(disk.total) / 2;
  }

  /** Free bytes below which no new file data is kept: bstop, and never less than the index reserve. */
  private stopBytes(total: number): number {
    return Math.max((total * this.cfg.bstop) / 100, Math.min(INDEX_RESERVE, total / 4));
  }

  /**
   * Free bytes below which culling starts, and up to which it goes: bcull and brun, kept as
   * far above the stop threshold as they are above bstop when the index reserve raised it
   * (a small disk), so clean data is dropped before new data is refused.
   */
  private cullBytes(total: number): number {
    return Math.max((total * this.cfg.bcull) / 100, this.stopBytes(total) + (total * (this.cfg.bcull - this.cfg.bstop)) / 100);
  }

  private runBytes(total: number): number {
    return Math.max((total * this.cfg.brun) / 100, this.stopBytes(total) + (total * (this.cfg.brun - this.cfg.bstop)) / 100);
  }

  /** Reads the disk's free space now (if it can, and the last reading is older than `fresh` ms); true if read. */
  private refreshDisk(fresh = FRESH_MS): boolean {
    if (!this.statfsNow || Date.now() - this.diskAt < fresh) return false;
    try {
      this.disk = this.statfsNow(this.d.cacheDir);
    } catch {
      return false; // the periodic check says so in the log
    }
    this.diskAt = Date.now();
    this.diskDelta = 0;
    return true;
  }

  /**
   * The layer's evict, where a failure to write the index (a full cache disk) keeps the data:
   * culling runs from timers and must never throw. Returns the bytes freed.
   */
  private evict(o: CachedObject): number {
    try {
      const n = this.d.layer.evict(o);
      this.evictFailing = false;
      return n;
    } catch (e) {
      if (!isCacheStorageError(e)) throw e;
      if (!this.evictFailing) log.warn(`cannot drop cached data of object ${o.id}: the index cannot be written`, e);
      this.evictFailing = true;
      return 0;
    }
  }

  /** cullNow from a timer or a request that must not fail because of it. */
  private cullSafely(why: string): void {
    try {
      this.cullNow(why, 0);
    } catch (e) {
      log.error(`culling (${why}) failed`, e);
    }
  }
}

/** A DataStore that tells the culler about every byte written into the cache. */
export class MeteredDataStore extends DataStore {
  onStored: (bytes: number) => void = () => undefined;

  override async write(id: number, offset: number, data: Buffer): Promise<void> {
    await super.write(id, offset, data);
    this.onStored(data.length);
  }

  override async fill(id: number, copy: Parameters<DataStore['fill']>[1]): Promise<number> {
    const n = await super.fill(id, copy);
    this.onStored(n);
    return n;
  }
}

function normalize(p: string): string {
  const parts: string[] = [];
  for (const s of p.split('/')) {
    if (s === '' || s === '.') continue;
    if (s === '..') parts.pop(); else parts.push(s);
  }
  return '/' + parts.join('/');
}

function round1(n: number): number { return Math.round(n * 10) / 10; }
