// The chunk fetcher: brings an object's data from the backend into its cache file in aligned
// chunks (cache.chunkSize), and keeps track of every chunk on its way (ARCHITECTURE §4).
//
// A chunk of an object is, at any moment, one of:
// - cached: the index lists it (chunksOf), its bytes are in the cache file;
// - in flight: a fetch (or a write's guard, or a whole-file copy's: copyWhole) is in
//   `inflight`; concurrent readers of the same chunk share that one fetch, and wait out a
//   guard before they look again;
// - landing: its bytes came from the backend and are on their way into the cache file
//   (`landing`); it counts as cached only once they are there;
// - known zero: it holds nothing the backend has (past the end of the file as the cache
//   knows it, or the object was made here): it needs no fetch;
// - missing: none of the above; fetched when read.
//
// What must stay true (Node's one thread; the await points are where requests interleave):
// - a write never races a fetch of the chunks it touches: it waits until none of them is in
//   flight or landing (writable), and guards them while its bytes go in (guard), so fetched
//   old bytes never land over new ones;
// - a fetch's bytes count as cached only if nothing dropped the object's data meanwhile
//   (`dataGen`) and the object is still the version they were read from; so do a
//   whole-file copy's, a piece at a time, and the copy stops at the first that does not;
// - fetched bytes waiting for the cache disk stay bounded in memory (LANDING_LIMIT);
// - a fetch's buffer comes from a pool and goes back only when nothing uses it any more:
//   its bytes have landed, every reader it was lent to has released it (lend), and the
//   backend call that filled it has ended (a call given up on at its deadline may still
//   write into it, so after a failure the buffer is left to the collector); a buffer the
//   backend lent (readLent: an NFS reply's record) goes back to it on the same terms.
import { BufferPool } from '../core/buffer-pool.js';
import { FsError, isFsError } from '../core/errors.js';
import { log } from '../core/log.js';
import { isConnectionError } from '../journal/replayer.js';
import type { Attr, Backend, BackendCall } from '../backends/types.js';
import type { CachedObject, ObjectIndex } from '../index/objects.js';
import type { DataStore } from '../store/data-store.js';
import { isProvisional } from './backend-target.js';
import { SELF } from './freshness.js';

/** Fetched bytes that may wait in memory for the cache file at once. */
const LANDING_LIMIT = 16 * 1024 * 1024;
/**
 * Bytes per kernel copy call of copyWhole: a reader waits for at most one piece beyond what
 * it reads; each piece costs a few backend syscalls and an index commit.
 */
const COPY_PIECE = 8 * 1024 * 1024;
/** How long a copy whose call failed may take to show it has stopped, before it counts as still writing. */
const STOP_GRACE_MS = 20;

/** A chunk fetch, tagged with the object version it reads (write guards carry none). */
type VersionedFetch = Promise<Buffer> & { version?: string };

/**
 * The buffer of one fetch and its users (the landing, and readers it was lent to): `free`
 * gives it back (to our pool, or to the backend that lent it) once the last user is done.
 */
interface Lease { free: (() => void) | null; users: number }

/** A fetched chunk's bytes lent to a reader: valid until release(), which must come once. */
export interface Lent { bytes: Buffer; release(): void }

/** What the fetcher needs; the cache layer wires it. */
export interface FetcherDeps {
  backend: Pick<Backend, 'read' | 'readLent' | 'copyInto'>;
  /** The gated backend call (gated-backend.ts). */
  call: BackendCall;
  index: Pick<ObjectIndex, 'batch' | 'chunksOf' | 'addChunk' | 'clearChunks' | 'setDataVersion' | 'noteZerosFrom'>;
  store: Pick<DataStore, 'write' | 'truncate' | 'fill'>;
  chunkSize: number;
  /** Chunks a sequential reader gets fetched ahead of it (cache.readAheadChunks). */
  readAheadChunks: number;
  /** Counts the bytes fetched (the layer's status counters). */
  counters: { bytesFromBackend: number };
  /** False below the cache disk's stop threshold: fetched data is served but not kept. */
  storeData(): boolean;
  connected(): boolean;
}

export class ChunkFetcher {
  private readonly chunk: number;
  /** Fetches (and write guards) per chunk key: concurrent readers share one. */
  private readonly inflight = new Map<string, Promise<Buffer>>();
  /** Chunks whose fetched bytes are still on their way into the cache file. */
  private readonly landing = new Map<string, Promise<void>>();
  /**
   * Bumped whenever an object's cached data is dropped (late landings are then ignored).
   * Keyed by the object, not its id: an entry goes with its object, where a map of ids kept
   * one for every file ever truncated or changed from outside. A fetch in flight holds its
   * object, so the count it started with is the one it is compared with.
   */
  private readonly dataGen = new WeakMap<CachedObject, number>();
  /** Bytes fetched from the backend still on their way into cache files. */
  private landingBytes = 0;
  /** The pooled buffer of each fetch in flight or landing (by chunk key). */
  private readonly leases = new Map<string, Lease>();
  /**
   * Fetch buffers: a fresh 1 MiB buffer per chunk was a page-faulted allocation, and 64 MiB
   * of them garbage made V8 collect (a cold read of 256 MiB spent 141 ms in the collector).
   * Enough for what may be landing, plus read-ahead; let go after a second without fetches.
   */
  private readonly pool: BufferPool;
  /** The backend said it makes no kernel copies (not a local disk): copyWhole stops asking. */
  private noCopies = false;

  constructor(private readonly d: FetcherDeps) {
    this.chunk = d.chunkSize;
    this.pool = new BufferPool(d.chunkSize, Math.ceil(LANDING_LIMIT / d.chunkSize) + d.readAheadChunks + 2, 1000);
  }

  private unlease(lease: Lease): void {
    if (--lease.users > 0 || !lease.free) return;
    const free = lease.free;
    lease.free = null;
    free();
  }

  private chunkKey(obj: CachedObject, idx: number): string { return `${obj.id}:${idx}`; }

  /** Chunk `idx` of `obj` is being fetched, or written (guarded). */
  busy(obj: CachedObject, idx: number): boolean {
    return this.inflight.has(this.chunkKey(obj, idx));
  }

  /** Some chunk of `obj` is being fetched or written (eviction leaves it alone then). */
  busyObject(obj: CachedObject): boolean {
    const prefix = `${obj.id}:`;
    for (const k of this.inflight.keys()) if (k.startsWith(prefix)) return true;
    return false;
  }

  /** Settles once chunk `idx`'s fetched bytes are in the cache file (undefined: none landing). */
  landed(obj: CachedObject, idx: number): Promise<void> | undefined {
    return this.landing.get(this.chunkKey(obj, idx));
  }

  /** Fetches chunk `idx` of `obj` into the cache (coalesced with concurrent fetches). */
  fetch(obj: CachedObject, idx: number): Promise<Buffer> {
    const key = this.chunkKey(obj, idx);
    const have = this.inflight.get(key);
    if (have) return have;
    let landed!: () => void;
    const landing = new Promise<void>((r) => { landed = r; });
    this.landing.set(key, landing);
    // The landing is the lease's first user; it lets go once the bytes are in the cache file.
    const lease: Lease = { free: null, users: 1 };
    this.leases.set(key, lease);
    const p = (async () => {
      const version = obj.attr.version;
      const gen = this.dataGen.get(obj) ?? 0;
      // Up to the end of the file as the attributes say (a chunk past it is just short: a
      // file that grew has a new version, which drops this chunk anyway). Asking for a whole
      // chunk of a small file would allocate it for nothing.
      const want = Math.max(0, Math.min(this.chunk, obj.attr.size - idx * this.chunk)) || this.chunk;
      let buf: Buffer;
      const backend = this.d.backend;
      if (backend.readLent && want > this.chunk / 2) {
        // The backend's own buffer, given back when the lease ends (nothing is lent on failure).
        const lent = await this.d.call('read', () => backend.readLent!(obj.fh, idx * this.chunk, want));
        buf = lent.data;
        lease.free = lent.release;
      } else {
        const pooled = want > this.chunk / 2 ? this.pool.acquire(want) : null;
        if (pooled) lease.free = () => this.pool.release(pooled);
        try {
          buf = await this.d.call('read', () => backend.read(obj.fh, idx * this.chunk, want, pooled?.subarray(0, want)));
        } catch (e) {
          lease.free = null; // the call may still be writing into it: the collector takes it
          throw e;
        }
        if (pooled && (buf.buffer !== pooled.buffer || buf.byteOffset !== pooled.byteOffset)) {
          // The backend answered with a buffer of its own.
          this.pool.release(pooled);
          lease.free = null;
        }
      }
      if (obj.attr.version !== version) {
        // The object changed while we read: these bytes may be from either side of it.
        throw new FsError('EAGAIN', 'object changed during fetch');
      }
      if (obj.dataVersion !== null && obj.dataVersion !== version && obj.dataVersion !== SELF) this.dropData(obj);
      this.d.counters.bytesFromBackend += buf.length;
      // The reader gets the bytes now; the cache file gets them in the background, and the
      // chunk counts as cached only once they have landed there (unless the data was
      // dropped meanwhile). Writers wait for `landing` so they never race this write.
      const dataVersion = obj.dataVersion === SELF ? SELF : version;
      this.landingBytes += buf.length;
      // Below the cache disk's stop threshold (culling.bstop) nothing new is kept: the
      // reader still gets its bytes.
      const keep = this.d.storeData();
      const stored = (keep ? this.d.store.write(obj.id, idx * this.chunk, buf) : Promise.reject(new FsError('ENOSPC', 'the cache is full'))).then(
        () => {
          // Only if nothing dropped the data meanwhile, and the object is still the version
          // these bytes came from (a revalidation may have seen a newer one while they landed).
          if ((this.dataGen.get(obj) ?? 0) === gen && (dataVersion === SELF || obj.attr.version === version)) {
            // Nobody awaits this (the reader has its bytes): a chunk the index cannot record
            // (a full cache disk) is just not cached, and is fetched again when needed.
            try {
              this.d.index.addChunk(obj, idx, buf.length, dataVersion);
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
        if (this.leases.get(key) === lease) this.leases.delete(key);
        this.unlease(lease);
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
      // No landing: its use of the lease ends here (its buffer, if any, was left to the collector).
      if (this.inflight.get(key) === p) this.inflight.delete(key);
      if (this.landing.get(key) === landing) this.landing.delete(key);
      if (this.leases.get(key) === lease) this.leases.delete(key);
      lease.free = null;
      lease.users--;
      landed();
    });
    return p;
  }

  /**
   * Makes chunk `idx` present in the cache: waits for a fetch or write already under way,
   * else fetches it. Returns how many bytes this call fetched or waited for (null: the
   * chunk was cached).
   */
  async ensure(obj: CachedObject, idx: number): Promise<number | null> {
    const lent = await this.lend(obj, idx);
    if (!lent) return null;
    const n = lent.bytes.length;
    lent.release();
    return n;
  }

  /**
   * As ensure(), for a reader that wants the bytes a fetch brings: they are lent to it
   * (their buffer goes back to the pool only once it calls release()). Null when the chunk
   * was cached: the reader takes it from the cache file.
   */
  async lend(obj: CachedObject, idx: number): Promise<Lent | null> {
    for (let attempt = 0; ; attempt++) {
      const key = this.chunkKey(obj, idx);
      let busy = this.inflight.get(key);
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
        } else {
          if (this.d.index.chunksOf(obj).has(idx)) return null;
          busy = this.fetch(obj, idx);
        }
        // A user of the fetch's buffer from now on (taken before any await, so the landing
        // cannot give the buffer back while this reader still has to copy from it).
        const lease = this.leases.get(key);
        if (lease) lease.users++;
        let b: Buffer;
        try {
          b = await busy;
        } catch (e) {
          if (lease) this.unlease(lease);
          throw e;
        }
        if (b.length === 0) { if (lease) this.unlease(lease); continue; } // a write's guard: look again
        let released = false;
        return { bytes: b, release: () => { if (!released && lease) { released = true; this.unlease(lease); } } };
      } catch (e) {
        if (!isFsError(e, 'EAGAIN') || attempt >= 3) throw e;
      }
    }
  }

  /**
   * Whether copyWhole(obj) would start now: the backend makes kernel copies, the cache keeps
   * data and the mount is connected, and nothing of the object is cached, changed here, or
   * on its way.
   */
  canCopyWhole(obj: CachedObject): boolean {
    if (!this.d.backend.copyInto || this.noCopies || !this.d.storeData() || !this.d.connected()) return false;
    if (obj.attr.size === 0 || obj.cachedBytes > 0 || obj.dataVersion !== null || obj.zerosFrom !== null || isProvisional(obj.fh)) return false;
    const prefix = `${obj.id}:`;
    for (const k of this.landing.keys()) if (k.startsWith(prefix)) return false;
    return !this.busyObject(obj);
  }

  /**
   * Starts bringing the whole of `obj` into its cache file by the backend's kernel copy
   * (Backend.copyInto), a piece of COPY_PIECE bytes after another, when nothing of it is
   * cached, changed here, or on its way; false if it does not start. Every chunk is guarded
   * from the start, as for a write, and each piece's guards go once it is copied: a reader
   * waits for the piece it reads and then reads the cache file; a writer waits and then
   * writes over the copy (quiesce() waits for the whole copy). A piece counts only if the
   * object is still the version the copy began with, and nothing dropped its data; at the
   * first piece that does not (or fails), the copy stops, and the rest is fetched chunk by
   * chunk when read. Resolves once the copy has ended.
   */
  copyWhole(obj: CachedObject): { started: false } | { started: true; done: Promise<void> } {
    if (!this.canCopyWhole(obj)) return { started: false };
    const backend = this.d.backend;
    const size = obj.attr.size;
    const n = Math.ceil(size / this.chunk);
    const version = obj.attr.version;
    const gen = this.dataGen.get(obj) ?? 0;
    const perPiece = Math.max(1, Math.floor(COPY_PIECE / this.chunk));
    // Guarded now, before any await: a read or write that comes after this call waits.
    const releases: (() => void)[] = [];
    for (let i = 0; i < n; i += perPiece) {
      releases.push(this.guard(obj, Array.from({ length: Math.min(perPiece, n - i) }, (_, k) => i + k)));
    }
    const unchanged = (after?: Attr): boolean => (this.dataGen.get(obj) ?? 0) === gen && obj.attr.version === version
      && (after === undefined || after.version === version) && (obj.dataVersion === null || obj.dataVersion === version);
    const done = (async () => {
      let piece = 0;
      try {
        for (; piece < releases.length; piece++) {
          const first = piece * perPiece;
          const offset = first * this.chunk;
          const length = Math.min(perPiece * this.chunk, size - offset);
          if (!this.d.storeData() || !unchanged()) return;
          let after: Attr | undefined;
          let failure: unknown;
          await this.d.store.fill(obj.id, async (fd) => {
            // Checked again in the store's order: a truncate of dropped data called since
            // has run, and no byte of this piece may land after it.
            if (!unchanged()) return 0;
            let stopped = false;
            const copying = backend.copyInto!(obj.fh, fd, offset, length);
            void copying.then(() => { stopped = true; }, () => { stopped = true; });
            try {
              after = await this.d.call('read', () => copying);
              return length;
            } catch (e) {
              failure = e;
              // Given up on at its deadline, the copy may still be writing: the store puts
              // a copy of the file in its place (fill), and the late bytes go nowhere.
              await Promise.race([copying.catch(() => undefined), new Promise((r) => setTimeout(r, STOP_GRACE_MS))]);
              return stopped ? 0 : { wrote: 0, stillWriting: copying };
            }
          });
          if (failure !== undefined) throw failure;
          if (!after || !unchanged(after)) return;
          this.d.index.batch(() => {
            for (let i = first; i < Math.min(first + perPiece, n); i++) {
              this.d.index.addChunk(obj, i, Math.min(this.chunk, size - i * this.chunk), version);
            }
          });
          this.d.counters.bytesFromBackend += length;
          releases[piece]!();
        }
      } catch (e) {
        log.debug(`the kernel copy of object ${obj.id} stopped at piece ${piece}`, e);
        if (isFsError(e, 'EOPNOTSUPP')) this.noCopies = true;
      } finally {
        for (; piece < releases.length; piece++) releases[piece]!();
      }
    })();
    return { started: true, done };
  }

  /** A sequential reader is at chunk `from`: fetch the next few in the background. */
  readAhead(obj: CachedObject, from: number): void {
    const chunks = this.d.index.chunksOf(obj);
    const lastChunk = Math.floor(Math.max(0, obj.attr.size - 1) / this.chunk);
    const to = Math.min(lastChunk, from + this.d.readAheadChunks - 1);
    for (let i = from; i <= to; i++) {
      if (chunks.has(i) || this.inflight.has(this.chunkKey(obj, i))) continue;
      this.ensure(obj, i).catch((e) => log.debug('read-ahead failed', e));
    }
  }

  /** Waits until no chunk of `obj` is being fetched or landing in its cache file. */
  async quiesce(obj: CachedObject): Promise<void> {
    const prefix = `${obj.id}:`;
    for (let round = 0; round < 10; round++) {
      const busy: Promise<unknown>[] = [];
      for (const [k, p] of this.inflight) if (k.startsWith(prefix)) busy.push(p.catch(() => undefined));
      for (const [k, p] of this.landing) if (k.startsWith(prefix)) busy.push(p);
      if (busy.length === 0) return;
      await Promise.all(busy);
    }
  }

  /**
   * Marks chunks as being written so no fetch from the backend can land in them meanwhile
   * (a fetch would bring the old bytes and could overwrite the new ones in the cache file).
   * Returns the release; readers that find the guard wait for it, then look again.
   */
  guard(obj: CachedObject, idxs: number[]): () => void {
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

  /**
   * Waits until the chunks [pos, end) touches can take a write: each is cached (fetched if
   * need be) or known to hold nothing yet (`fresh` gets those), and none is being fetched
   * or landing. Returns once that holds with no await left before the caller's write, or
   * false if the cache cannot hold them.
   */
  async writable(obj: CachedObject, pos: number, end: number, fresh: number[]): Promise<boolean> {
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
        if (this.d.index.chunksOf(obj).has(i)) continue;
        const cStart = i * this.chunk;
        if ((pos <= cStart && end >= cStart + this.chunk) || this.knownZero(obj, i)) { fresh.push(i); continue; }
        await this.ensure(obj, i).catch((e) => { throw notCachedWhenOffline(e); });
        await this.landing.get(key);
      }
      // From here to the caller's write there is no await: check that it all still holds.
      let ok = true;
      const chunks = this.d.index.chunksOf(obj);
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
      if (!this.d.storeData() && this.d.connected()) return false;
    }
    return false;
  }

  /**
   * Chunk `idx` holds nothing the backend has: it starts at or past the end of the file as
   * the cache knows it, or the object was made here and never reached the backend. Its
   * bytes are what we wrote there (holes read as zeros).
   */
  knownZero(obj: CachedObject, idx: number): boolean {
    const start = idx * this.chunk;
    return start >= obj.attr.size || isProvisional(obj.fh) || (obj.zerosFrom !== null && obj.dataVersion !== null && start >= obj.zerosFrom);
  }

  /**
   * The file grew from `from` (a write past its end, a truncate up): chunks that start at or
   * past it and are not cached hold only zeros (offline they can be read, mapped and written;
   * connected they need no fetch). One value, however far the file grew. The chunk holding
   * `from`, when it starts before it, keeps its state (its head is the backend's).
   */
  knownZerosFrom(obj: CachedObject, from: number): void {
    // Each write that grows a file asks; only the first changes anything (no empty commit).
    if (obj.dataVersion !== null && obj.zerosFrom !== null && obj.zerosFrom <= from) return;
    this.d.index.batch(() => {
      // The promise belongs to our data version: when the backend's content moves on, the
      // data is dropped, and the promise with it (clearChunks).
      if (obj.dataVersion === null) this.d.index.setDataVersion(obj, SELF);
      this.d.index.noteZerosFrom(obj, from);
    });
  }

  /**
   * How many times the object's cached data was dropped: bytes that went into its cache file
   * before a drop (a fetch, a write) must not be counted as cached after it.
   */
  generation(obj: CachedObject): number {
    return this.dataGen.get(obj) ?? 0;
  }

  /** Forgets the object's cached data; fetches still landing for it are not counted. */
  dropData(obj: CachedObject): void {
    this.dataGen.set(obj, (this.dataGen.get(obj) ?? 0) + 1);
    if (obj.cachedBytes === 0 && obj.dataVersion === null) return;
    this.d.index.clearChunks(obj);
    void this.d.store.truncate(obj.id, 0).catch((e) => log.warn(`cannot truncate cache file ${obj.id}`, e));
  }
}

/** Data the cache does not hold cannot be had while the backend is unreachable: ENODATA. */
export function notCachedWhenOffline(e: unknown): unknown {
  if (!isConnectionError(e)) return e;
  return new FsError('ENODATA', `not in the cache, and the backend is unreachable (${(e as Error).message})`);
}
