// Write-back: where the bytes of a write() go, and how they reach the journal (ARCHITECTURE
// §4, §5, invariant 1).
//
// Connected, as an NFS client does: consecutive writes to an object gather in a dirty run
// (in memory and in the cache file) that becomes one journal record when it reaches
// DIRTY_RUN_MAX, when a write does not continue it, before any other mutation
// (commitAllDirty), and at flush()/fsync(). close() and fsync() return once the backend has
// it (settledOrOffline). A run that is full at once (a 1 MiB write) is the request's own
// buffer, kept rather than copied, and becomes a record just after write() returns. A
// connected record is volatile (replayer.ts): it gets a journal row, and its CRC, only if
// the backend has not applied it within DURABLE_AFTER_MS, or when the connection goes (a
// local disk applies a 1 MiB write well within that). A file written past
// WRITE_AROUND_BYTES through one descriptor skips the cache (write-around): its records
// carry their bytes in memory only.
// Disconnected: the bytes go to the cache file and, once there, into a journal record of
// their own before write() returns (extending the journal's last record where it can).
//
// What must stay true:
// - while connected, an acknowledged write's record is durable once it has waited
//   DURABLE_AFTER_MS for the backend (a crash before then may lose it, as the README allows
//   for a connected write before close or fsync; its object's cached data, ours (SELF), is
//   then suspect at the next start and dropped, cache-layer.ts init);
// - an acknowledged write is never only in process memory once the mount is not connected:
//   when the connection goes, every record gets its row, a dirty run becomes a record
//   (unless records of its object are still on their way: then at its next flush), the
//   in-memory bytes of write-around records are spilled to the cache file
//   (spillWriteBehind), and an offline write is journaled after them;
// - a record's base is the object's version when it is journaled, not when its run began;
// - a run's buffer goes back to the pool only when nobody uses it any more (pins: write()s
//   still storing from it, the replayer holding it as the record's hint, a backend keeping
//   the bytes until their COMMIT);
// - acknowledged bytes waiting for the backend in memory stay bounded (WRITE_BEHIND_LIMIT).
import { crc32 } from 'node:zlib';
import { BufferPool } from '../core/buffer-pool.js';
import { FsError, isFsError } from '../core/errors.js';
import { log } from '../core/log.js';
import type { CacheLimit } from '../core/events.js';
import type { Attr, Creds } from '../backends/types.js';
import type { CachedObject, ObjectIndex } from '../index/objects.js';
import type { DataStore } from '../store/data-store.js';
import { isConnectionError, type Replayer } from '../journal/replayer.js';
import { byOf, sameUser } from '../journal/records.js';
import type { AppliedOutcome } from './backend-target.js';
import type { ChunkFetcher } from './chunk-fetcher.js';
import { SELF, nowNs } from './freshness.js';

/** Bytes of acknowledged writes that may wait in memory for the backend at once. */
const WRITE_BEHIND_LIMIT = 16 * 1024 * 1024;
/**
 * While connected, a file written through one descriptor past this many bytes stops being
 * copied into the cache (write-around): the backend has it after close, a later read
 * fetches it, and a big sequential write does not cost a second copy on the cache disk.
 */
const WRITE_AROUND_BYTES = 64 * 1024 * 1024;
/**
 * Bytes of journaled runs a backend may keep after their write, until it commits them (NFS
 * keeps up to 64 MiB of UNSTABLE writes): the run pool keeps buffers for them too, or every
 * run past the first few would be a fresh buffer to fault in.
 */
const BACKEND_KEEPS = 64 * 1024 * 1024;
/** A dirty run becomes a journal record once it holds this many bytes. */
export const DIRTY_RUN_MAX = 1024 * 1024;
/**
 * A connected write record the backend has not applied within this many ms gets its journal
 * row (and its CRC). Why not at once: the row, its deletion and the CRC were a third of the
 * mount thread's time in `dd bs=1M conv=fsync` into a local directory, for records the
 * backend applied a millisecond later (docs/PERFORMANCE.md, fifteenth session).
 */
export const DURABLE_AFTER_MS = 20;

/** What write-back needs of an open file (the layer's OpenFile has it). */
export interface Writer {
  readonly obj: CachedObject;
  /** Who opened it: its writes are journaled as that user. */
  readonly by: Creds | undefined;
  /** Data was written through it since the last flush. */
  written: boolean;
  /** Bytes written through it (for the write-around threshold). */
  writtenBytes: number;
  /** A write-behind failure not yet reported to the application. */
  error: FsError | null;
}

/** Consecutive writes to one object not yet journaled (bytes also in the cache file). */
export interface DirtyRun {
  obj: CachedObject;
  of: Writer;
  offset: number;
  /** The run's bytes (from a pool), `length` of them used. */
  buf: Buffer;
  length: number;
  /** Users of `buf` (write()s still storing from it, the replayer's hint); see unpinRun. */
  pins: number;
  /** Journaled: no write joins it any more, and its buffer goes back once unpinned. */
  committed: boolean;
  /**
   * Set when `buf` is a request's buffer kept rather than a pooled one: gives it back (in
   * place of the pool). Such a run is full (`length` is `buf.length`): nothing joins it.
   */
  giveBack?: () => void;
}

/** What write-back needs; the cache layer wires it. */
export interface WriteBackDeps {
  replayer: Pick<Replayer<AppliedOutcome>, 'append' | 'extendLast' | 'waitFor' | 'settled' | 'hintedWrites' | 'dropHint' | 'persist' | 'hasPendingFor'>;
  index: Pick<ObjectIndex, 'batch' | 'patchAttr' | 'setDataVersion' | 'setLocalSize' | 'addChunk'>;
  store: Pick<DataStore, 'write'>;
  chunks: Pick<ChunkFetcher, 'writable' | 'guard' | 'knownZerosFrom' | 'dropData' | 'generation'>;
  chunkSize: number;
  connected(): boolean;
  /** `p`'s outcome, or as soon as the mount stops being connected (reconnect.ts). */
  untilOffline(p: Promise<unknown>): Promise<unknown>;
  /** Our record reached the backend, which reported the version it made (freshness.ts). */
  ownWriteVersion(obj: CachedObject, attr: Attr): void;
  /** Tells the user the cache could not keep a write (`cachefs watch`). */
  cacheFull(obj: CachedObject, message: string, cause: CacheLimit): void;
  /** The object has no name left (unlinked while open): nobody can see its bytes after replay. */
  nameless(id: number): boolean;
}

export class WriteBack {
  private readonly chunk: number;
  private readonly runs = new Map<number, DirtyRun>();
  /**
   * Run buffers, enough for every run write-behind may hold (a fresh 1 MiB buffer is one
   * the kernel faults in page by page while the write's bytes are copied into it), let go
   * after a second without writes.
   */
  private readonly runPool = new BufferPool(DIRTY_RUN_MAX + 128 * 1024, Math.ceil((WRITE_BEHIND_LIMIT + BACKEND_KEEPS) / DIRTY_RUN_MAX) + 2, 1000);
  /**
   * The last journal record written for each object (flush waits for it). The layer's
   * release() forgets an object's entry at its last close.
   */
  readonly lastSeq = new Map<number, number>();
  /**
   * Objects written past WRITE_AROUND_BYTES while open: their writes skip the cache. The
   * layer's release() forgets an object at its last close.
   */
  readonly writeAround = new Set<number>();
  private writeBehindBytes = 0;
  /** Writes waiting for write-behind room (see room()). */
  private roomWaiters: (() => void)[] = [];
  /** The last offline write record journaled (extendLast checks it is still the journal's last). */
  private offlineTail: { seq: number; record: { op: 'write'; obj: number; offset: number; length: number; crc: number; by?: Creds; base: string; offline: true } } | null = null;
  /** Spills still writing to cache files: an offline write is journaled after them. */
  private spills: Promise<void> | null = null;
  /** Volatile write records with the time they were appended, oldest first (see persistLate). */
  private volatileWrites: { seq: number; at: number }[] = [];
  private persistTimer: NodeJS.Timeout | null = null;

  constructor(private readonly d: WriteBackDeps) {
    this.chunk = d.chunkSize;
  }

  /**
   * Whether this write's chunks are whole in the cache and it may go there (see
   * ChunkFetcher.writable). Not when, while it waited, another write of the object made it
   * write-around (which drops the cached data), nor when, connected, the chunk could not be
   * fetched because the object kept changing meanwhile (EAGAIN: our own writes reaching the
   * backend, as with the kernel's writeback cache, which sends writes of one file in
   * parallel and not chunk-aligned). The bytes then go around the cache: they are in the
   * dirty run, whatever the cache holds.
   */
  private async cacheable(obj: CachedObject, pos: number, end: number, fresh: number[]): Promise<boolean> {
    let ok: boolean;
    try {
      ok = await this.d.chunks.writable(obj, pos, end, fresh);
    } catch (e) {
      if (!isFsError(e, 'EAGAIN') || !this.d.connected()) throw e;
      log.debug(`write of object ${obj.id} at ${pos} goes around the cache: its chunk changed while it was fetched`);
      ok = false;
    }
    return ok && !this.writeAround.has(obj.id);
  }

  /** The dirty run of each object, if it has one (changed by write-back only). */
  get dirty(): ReadonlyMap<number, DirtyRun> { return this.runs; }

  /** Spills still writing to cache files (null: none). */
  get spilling(): Promise<void> | null { return this.spills; }

  /**
   * Stores a write() that the layer has checked (open for writing, not empty; offline: the
   * cache admits it, its base is captured, earlier spills have landed). Returns the bytes
   * written, or throws (a pending write-behind failure of this open file included).
   * `keep`: `data` may be kept past the return, until the release it gives is called.
   */
  async write(of: Writer, pos: number, data: Buffer, keep?: () => () => void): Promise<number> {
    const obj = of.obj;
    const end = pos + data.length;
    const first = Math.floor(pos / this.chunk);
    const last = Math.floor((end - 1) / this.chunk);
    of.writtenBytes += data.length;
    if (!this.writeAround.has(obj.id) && of.writtenBytes > WRITE_AROUND_BYTES && this.d.connected()) {
      this.writeAround.add(obj.id);
    }
    let around = this.writeAround.has(obj.id);
    if (around && obj.cachedBytes > 0) this.d.chunks.dropData(obj); // what is cached is about to be stale
    // Make every touched chunk whole in the cache before writing into it (a chunk the write
    // covers entirely, or that is known to hold zeros, needs nothing from the backend), and
    // wait until no fetch of them is in flight or landing: a fetched chunk landing after
    // these bytes would overwrite them.
    const fresh: number[] = [];
    if (!around && !(await this.cacheable(obj, pos, end, fresh))) {
      // The cache cannot hold the chunk (below its stop threshold, or dropped again and
      // again): connected, the bytes still reach the backend, around the cache.
      if (!this.d.connected()) throw new FsError('ENOSPC', 'the cache cannot keep this write while disconnected');
      this.d.chunks.dropData(obj);
      around = true;
    }
    // `data` may be a request's buffer: if it was detached meanwhile (a request given up
    // on), it reads as empty.
    if (data.length !== end - pos) throw new FsError('EIO', 'the request timed out while the chunk was fetched');
    of.written = true;
    this.d.index.setDataVersion(obj, SELF);
    const offline = !this.d.connected();
    // Offline (invariant 1): the bytes go to the cache file and, once there, into a journal
    // record of their own before write() returns. No dirty run: nothing waits in memory.
    // Connected: the bytes join the object's dirty run (see the top of this file).
    let run: DirtyRun | undefined;
    let own = data;
    if (!offline) {
      run = this.runs.get(obj.id);
      if (run && (run.offset + run.length !== pos || run.length + data.length > run.buf.length || !sameUser(run.of.by, of.by))) {
        void this.commitRun(run);
        run = undefined;
      }
      if (!run) {
        // A run full at once keeps the request's buffer as it is (a 1 MiB copy less).
        const giveBack = keep && data.length >= DIRTY_RUN_MAX ? keep() : undefined;
        run = {
          obj, of, offset: pos, buf: giveBack ? data : this.runPool.acquire(DIRTY_RUN_MAX + 128 * 1024),
          length: giveBack ? data.length : 0, pins: 0, committed: false, giveBack,
        };
        this.runs.set(obj.id, run);
      }
      if (run.buf !== data) {
        own = run.buf.subarray(run.length, run.length + data.length);
        data.copy(own);
        run.length += data.length;
      }
    }
    // Every touched chunk is guarded while the bytes go in: no fetch can start there, and a
    // reader waits for this write (it finds the guard in the fetcher's `inflight`).
    const release = this.d.chunks.guard(obj, rangeOf(first, last));
    const storeIt = !around || offline;
    const gen = this.d.chunks.generation(obj);
    if (run) run.pins++;
    try {
      if (storeIt) await this.d.store.write(obj.id, pos, own);
      // The object's cached data was dropped while the bytes went in (another descriptor's
      // write around the cache, say; the cache file is truncated after them): what they
      // landed in is not cached data any more.
      if (!around && this.d.chunks.generation(obj) === gen) {
        const grown = end > obj.attr.size ? obj.attr.size : -1;
        // One commit for the chunks and the zeros past the old end: a file written once
        // (`tar x`, a checkout) made two here.
        this.d.index.batch(() => {
          for (const i of fresh) this.d.index.addChunk(obj, i, Math.min(this.chunk, end - i * this.chunk), SELF);
          if (grown >= 0) this.d.chunks.knownZerosFrom(obj, grown);
        });
      }
    } catch (e) {
      if (offline) {
        // Disconnected, the cache file is the only home of these bytes until replay: if it
        // cannot take them (a full cache disk), the write fails rather than lose them later.
        if (isFsError(e, 'EFBIG')) throw e; // past the largest file the cache disk can hold
        const full = isFsError(e, 'ENOSPC') || isFsError(e, 'EDQUOT') ? e : new FsError('ENOSPC', `the cache cannot keep this write while disconnected: ${(e as Error).message}`);
        this.d.cacheFull(obj, full.message, 'disk');
        throw full;
      }
      // The bytes still reach the backend (they are in the run); the cache just cannot
      // vouch for this object any more.
      log.warn(`cache write of object ${obj.id} failed; dropping its cached data`, e);
      this.d.chunks.dropData(obj);
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
    if (end > obj.attr.size) this.d.index.setLocalSize(obj, end);
    if (run && run.length >= DIRTY_RUN_MAX && this.runs.get(obj.id) === run) {
      // Journaled just after this write is answered (a run's bytes are acknowledged before
      // their record while connected anyway): its CRC and journal row then overlap the
      // kernel's copy of the next write instead of delaying this answer. Whatever comes
      // first journals it: the next write to the object (which does not join a full run), a
      // mutation (commitAllDirty), flush or fsync.
      const full = run;
      setImmediate(() => { void this.commitRun(full); });
      // Back-pressure: never hold more than this many bytes waiting for the backend (while
      // connected: offline, the bytes wait in the cache file and the journal, not in memory).
      // A sliding window: the write goes on once the oldest records have made room, so the
      // backend always has records to apply while the application writes more.
      // (This run is counted once journaled: the bound is the limit and a run or two.)
      if (this.writeBehindBytes > WRITE_BEHIND_LIMIT) await this.d.untilOffline(this.room());
    }
    this.throwPendingError(of);
    return data.length;
  }

  /**
   * A write made while disconnected: its bytes are in the cache file; now its journal record
   * (with the size and times the write gives, in one transaction, so after a crash the cache
   * still shows all of it). From here the write survives kill -9 (invariant 1).
   */
  private journalOfflineWrite(obj: CachedObject, pos: number, data: Buffer, end: number, by: Creds | undefined): void {
    const t = nowNs();
    const attrs = { size: Math.max(obj.attr.size, end), mtimeNs: t, ctimeNs: t };
    // Unlinked while open, offline: the unlink is journaled already and these bytes live
    // only for the descriptors still open (a record would replay as an update/remove conflict).
    if (this.d.nameless(obj.id)) { this.d.index.patchAttr(obj, attrs); return; }
    // A write that continues the journal's last record (the same object, right after it,
    // nothing journaled since) extends that record in place, up to DIRTY_RUN_MAX: a 1 MiB
    // write arrives as eight FUSE writes, and replay is one round trip per record. The CRC
    // continues over the new bytes; the update is one transaction, as an append is.
    const last = this.offlineTail;
    if (last && last.record.obj === obj.id && last.record.offset + last.record.length === pos
      && last.record.length + data.length <= DIRTY_RUN_MAX && sameUser(last.record.by, by)) {
      const record = { ...last.record, length: last.record.length + data.length, crc: crc32(data, last.record.crc) };
      const extended = this.d.index.batch(() => {
        if (!this.d.replayer.extendLast(last.seq, last.record, record)) return false;
        this.d.index.patchAttr(obj, attrs);
        return true;
      });
      if (extended) { this.offlineTail = { seq: last.seq, record }; return; }
    }
    const record = { op: 'write' as const, obj: obj.id, offset: pos, length: data.length, crc: crc32(data), ...byOf(by), base: obj.attr.version, offline: true as const };
    this.d.index.batch(() => {
      const seq = this.d.replayer.append(record);
      this.lastSeq.set(obj.id, seq);
      this.offlineTail = { seq, record };
      this.d.index.patchAttr(obj, attrs);
    });
  }

  /**
   * Turns a dirty run into a journal record. The record carries a CRC of the bytes: if the
   * process dies before the backend has them, the replay reads them back from the cache
   * file and, should they differ, drops the record rather than send other bytes.
   */
  commitRun(run: DirtyRun): Promise<void> {
    if (this.runs.get(run.obj.id) === run) this.runs.delete(run.obj.id);
    if (run.committed) return Promise.resolve();
    run.committed = true;
    const data = run.buf.subarray(0, run.length);
    const connected = this.d.connected();
    // The base is the version now, not when the run began: a record of ours applied since
    // (its answer carries the version it made) must not look like someone else's change.
    // Connected, the CRC waits with the record's row (see the top of this file).
    const record = {
      op: 'write' as const, obj: run.obj.id, offset: run.offset, length: run.length, crc: connected ? 0 : crc32(data), ...byOf(run.of.by), base: run.obj.attr.version,
      ...(connected ? {} : { offline: true as const }),
    };
    if (!connected && !this.writeAround.has(run.obj.id)) {
      // A run begun while connected, journaled after the connection went: its bytes are in
      // the cache file (or on their way, with a write() that has not returned yet), so the
      // record needs no copy in memory; the replay reads them back from there. The
      // attributes the writes gave (size, times) are stored with the record, in one
      // transaction: after a crash the cache still shows (and a conflict keeps) all of it.
      const t = nowNs();
      try {
        this.d.index.batch(() => {
          this.lastSeq.set(run.obj.id, this.d.replayer.append(record));
          this.d.index.patchAttr(run.obj, { size: run.obj.attr.size, mtimeNs: t, ctimeNs: t });
        });
      } catch (e) {
        // The cache disk is full: the bytes are in the cache file but not journaled. The run
        // stays dirty (unless a newer one took its place), so the next flush journals it; the
        // caller (write, close, fsync) hears ENOSPC now.
        run.committed = false;
        if (!this.runs.has(run.obj.id)) this.runs.set(run.obj.id, run);
        throw e;
      }
      this.unpinRun(run, false);
      return Promise.resolve();
    }
    const seq = this.d.replayer.append(record, { data, keep: () => this.keepRun(run), crcLater: connected }, { volatile: connected });
    this.lastSeq.set(run.obj.id, seq);
    if (connected) this.persistLate(seq);
    if (!connected) {
      // Written around the cache, and the connection is gone: the bytes go to the cache
      // file now, and the record stops holding them in memory (see spillWriteBehind).
      this.spill(seq, run.obj.id, run.offset, data);
      return Promise.resolve();
    }
    run.pins++; // the replayer holds the buffer as the record's hint
    this.writeBehindBytes += run.length;
    const of = run.of;
    return this.d.replayer.waitFor(seq).then(
      (outcome) => {
        if (outcome.kind === 'refused') this.writeFailed(of, outcome.error);
        else if (outcome.kind === 'attr') this.d.ownWriteVersion(run.obj, outcome.attr);
        this.unpinRun(run); // the record has left the journal: nobody reads it
      },
      (e) => {
        // The connection went: the record waits in the journal with its bytes (the replayer
        // keeps this buffer as its hint, so it is not given back to the pool; a spill to the
        // cache file lets it go). Its row is written by then (spillWriteBehind); again here,
        // should this come first.
        if (isConnectionError(e)) this.d.replayer.persist(seq);
        else this.writeFailed(of, e);
      },
    ).finally(() => {
      this.writeBehindBytes -= run.length;
      if (this.writeBehindBytes <= WRITE_BEHIND_LIMIT) this.wakeRoom();
    });
  }

  /**
   * Record `seq` (volatile) gets its row if the backend has not applied it DURABLE_AFTER_MS
   * from now: one timer for all of them, which writes the rows of every record that old,
   * in order (replayer.persist; nothing for one applied meanwhile).
   */
  private persistLate(seq: number): void {
    this.volatileWrites.push({ seq, at: Date.now() });
    if (!this.persistTimer) this.armPersist();
  }

  private armPersist(): void {
    const first = this.volatileWrites[0];
    if (!first) { this.persistTimer = null; return; }
    this.persistTimer = setTimeout(() => {
      const due = Date.now() - DURABLE_AFTER_MS;
      let upTo = 0;
      while (this.volatileWrites.length > 0 && this.volatileWrites[0]!.at <= due) upTo = this.volatileWrites.shift()!.seq;
      if (upTo > 0) this.d.replayer.persist(upTo);
      this.armPersist();
    }, Math.max(1, first.at + DURABLE_AFTER_MS - Date.now()));
    this.persistTimer.unref();
  }

  /**
   * Every acknowledged write's record gets its row now (the mount is going: unmount, or the
   * connection is lost). False if the cache disk cannot take them (they stay in memory).
   */
  persistWrites(): boolean {
    this.volatileWrites = [];
    if (this.persistTimer) { clearTimeout(this.persistTimer); this.persistTimer = null; }
    return this.d.replayer.persist();
  }

  /** Resolves once the bytes waiting for the backend are within WRITE_BEHIND_LIMIT again. */
  private room(): Promise<void> {
    if (this.writeBehindBytes <= WRITE_BEHIND_LIMIT) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  private wakeRoom(): void {
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * One more user of a journaled run's buffer: a backend that keeps the bytes after the
   * write (NFS, until their COMMIT) instead of copying them. The release counts once.
   */
  private keepRun(run: DirtyRun): () => void {
    run.pins++;
    let kept = true;
    return () => {
      if (!kept) return;
      kept = false;
      this.unpinRun(run);
    };
  }

  /** One user of a dirty run's buffer less; the last one after the commit gives it back. */
  private unpinRun(run: DirtyRun, dec = true): void {
    if (dec) run.pins--;
    if (run.pins !== 0 || !run.committed) return;
    if (run.giveBack) run.giveBack();
    else this.runPool.release(run.buf);
  }

  /**
   * Writes a journaled record's in-memory bytes to the object's cache file and then lets the
   * replayer forget them: from then on they survive the process (the replay reads them back
   * from there). Calls keep their order per object (DataStore), so a newer write lands last.
   */
  private spill(seq: number, objId: number, offset: number, data: Buffer): void {
    const p = this.d.store.write(objId, offset, data).then(
      () => { this.d.replayer.dropHint(seq); },
      (e) => { log.error(`cannot keep journal record ${seq}'s bytes in the cache file: they stay in memory only`, e); },
    );
    const all = Promise.all([this.spills, p]).then(() => undefined);
    this.spills = all;
    void all.then(() => { if (this.spills === all) this.spills = null; });
  }

  /**
   * The connection went while bytes written around the cache (big files, connected) wait in
   * journal records held only in memory: they go to the cache file, so a crash or an
   * unmount before the replay loses none of them (invariant 1), and memory stays bounded.
   */
  spillWriteBehind(): void {
    // Runs not journaled yet first (their bytes are in the cache file; journaled now, as
    // offline records, durable with their CRC), then the rows of the records still volatile
    // (their CRCs from the bytes in memory): from here on every acknowledged write survives
    // kill -9. A run the cache disk cannot journal stays dirty: its next flush tries again.
    // Not a run of an object with records still on their way: one of them may yet succeed
    // (the backend answers after all, as with `cachefs offline`), and its version would make
    // the base taken now look like someone else's change at replay. Such a run is journaled
    // at its next flush, as before (its earlier records are in the journal already).
    for (const run of [...this.runs.values()]) {
      if (this.d.replayer.hasPendingFor(run.obj.id)) continue;
      try {
        void this.commitRun(run);
      } catch (e) {
        log.error(`a write to object ${run.obj.id} cannot be journaled now; it is kept and journaled at its next flush`, e);
      }
    }
    this.persistWrites();
    for (const { seq, obj, offset, data } of this.d.replayer.hintedWrites()) {
      if (this.writeAround.has(obj)) this.spill(seq, obj, offset, data);
    }
  }

  /** Waits for an object's records to reach the backend, or for the mount to go offline. */
  async settledOrOffline(objId: number): Promise<void> {
    if (!this.d.connected()) return;
    await this.d.untilOffline(this.d.replayer.settled(this.lastSeq.get(objId) ?? 0));
  }

  /** Journals every dirty run (before any other mutation, so the journal keeps order). */
  commitAllDirty(): void {
    for (const run of [...this.runs.values()]) void this.commitRun(run);
  }

  private writeFailed(of: Writer, e: unknown): void {
    // We can no longer vouch for the cached bytes of this object.
    this.d.chunks.dropData(of.obj);
    of.obj.attrAt = 0;
    of.error ??= isFsError(e) ? e : new FsError('EIO', String((e as Error)?.message ?? e));
  }

  /** Reports (once) a write-behind failure of this open file to the application. */
  throwPendingError(of: Writer): void {
    const e = of.error;
    if (e) { of.error = null; throw e; }
  }
}

function rangeOf(first: number, last: number): number[] {
  const out: number[] = [];
  for (let i = first; i <= last; i++) out.push(i);
  return out;
}
