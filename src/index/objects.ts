// The object index: backend objects keyed by (fsid, fh), their attributes, the name cache
// and which chunks of their data are cached. SQLite is the truth; this class keeps a
// write-through in-memory mirror of what has been touched, because FUSE asks for the same
// attributes many thousands of times a second.
//
// What must stay true:
// - an object's id never changes and is never reused (it is the inode number users see);
// - (fsid, fh) -> id is one-to-one, so hard links share one object and a rename keeps data;
// - a name entry points at an existing object, or is negative (null); a negative entry is
//   kept only where absence says more than nothing: not in a complete listing, nor where the
//   listing kept for offline use is complete and lacks the name (a mount that makes and
//   removes uniquely named temporary files for days would otherwise keep one for each);
// - the mirror never claims what SQLite refused: each change is written before the mirror
//   takes it, and a `batch` whose commit fails (the cache disk full) reloads the objects it
//   changed from SQLite, so a retry sees what is really stored (a replay that stalled on a
//   full disk must find a provisional handle still provisional, for one);
// - memory holds a bounded number of objects nobody uses (mirror.ts); an object whose state
//   is partly in memory only stays pinned here until that state is written or dropped: a
//   size grown by local writes (see setLocalSize), an access time not yet flushed;
// - a directory's stale listing (the disconnected answer) is stored as it is kept, so a
//   mount started disconnected answers with what the last one had.
import type { Attr, Node } from '../backends/types.js';
import { makeDurable, type Db } from './db.js';
import { isCacheStorageError } from '../core/errors.js';
import { log } from '../core/log.js';
import { ObjectMirror } from './mirror.js';

/** How many of our own recent removals are remembered for the watcher's reports of them. */
const REMOVED_MEMO = 1024;

/**
 * How many recently used objects memory keeps at least (twice as many at most; see
 * mirror.ts): about 1 KB each. A working set of this size is never reloaded from SQLite;
 * one larger is, at about 6 µs an object (a warm walk of 50,000 files in an in-process
 * layer: 157 ms with every object kept, 276-308 ms keeping 16,384). 32,768 to 65,536
 * covers `git status` of a 60,000-file tree for at most about 64 MB.
 */
export const KEEP_OBJECTS = 32_768;

export interface CachedObject {
  readonly id: number;
  fh: Buffer;
  attr: Attr;
  /** When attributes were last confirmed with the backend (ms, monotonic clock); 0 = stale. Not persisted. */
  attrAt: number;
  /** Backend version the cached data belongs to; null = nothing cached. */
  dataVersion: string | null;
  /** Directories: backend version the cached names belong to. */
  namesVersion: string | null;
  /** Directories: the name cache holds the complete listing. */
  complete: boolean;
  symlink: string | null;
  cachedBytes: number;
  lastAccess: number;
  /**
   * Files: bytes at or past this offset that no cached chunk holds are zeros (the file grew
   * here from this size, or was cut to it, and nothing of the backend's lies beyond); null =
   * no such promise. Only ever lowered while the cached data stays; cleared with it.
   */
  zerosFrom: number | null;
  /** Loaded lazily: indexes of cached chunks. */
  chunks: Set<number> | null;
  /** Loaded lazily, directories only: name -> child id, null = known absent. */
  names: Map<string, number | null> | null;
  /**
   * Directories: the names cached before the directory's version moved (invalidateNames),
   * or a listing kept at the first lookup in a directory never listed (the layer's lookup).
   * Not trusted while connected (any of them may be wrong now), but while disconnected they
   * are what the cache holds, and they answer (issue 12: a directory another client changed
   * must not become unreachable offline). Stored (stale_names); cleared by a fresh listing.
   */
  stale: { names: Map<string, number | null>; complete: boolean } | null;
}

/** One object with cached data, as culling sees it (ObjectIndex.cachedData). */
export interface CachedDataRow {
  id: number;
  /** The file's size (bytes). */
  size: number;
  /** What the index counts as cached (see cachedData for why culling looks at chunks too). */
  cachedBytes: number;
  /** ms since the epoch. */
  lastAccess: number;
  /** Cached chunks, and the highest cached chunk index. */
  chunks: number;
  maxChunk: number;
}

/**
 * The columns an object is loaded from, in this order (rows are read raw, as arrays: the
 * named-column objects better-sqlite3 builds cost twice as much, and a listing after a
 * remount loads a row per entry). `parseRow` reads them by position.
 */
const ROW_COLUMNS = `id, fh, type, mode, uid, gid, size, nlink, rdev, used, atime_ns, mtime_ns, ctime_ns, version,
  data_version, names_version, complete, symlink, cached_bytes, last_access, zeros_from, stale`;
type ObjectRow = [
  id: number, fh: Buffer, type: string, mode: number, uid: number, gid: number, size: number,
  nlink: number, rdev: number, used: number, atime_ns: string, mtime_ns: string, ctime_ns: string,
  version: string, data_version: string | null, names_version: string | null, complete: number,
  symlink: string | null, cached_bytes: number, last_access: number, zeros_from: number | null,
  stale: number | null,
];
/** Where `stale` is in a row (loaded with the directory's stored names: see loadStale). */
const STALE_COLUMN = 21;

export class ObjectIndex {
  private readonly mirror: ObjectMirror;
  /** Objects whose lastAccess changed since flushAccessTimes (pinned until then). */
  private readonly touched = new Set<CachedObject>();
  /** Objects whose size a local write grew in memory only (setLocalSize): pinned until stored. */
  private readonly sizeUnsaved = new Set<CachedObject>();
  /** The last flushAccessTimes could not write (said once per spell, in the log). */
  private accessFlushFailing = false;
  /** Objects changed inside the batch under way: reloaded from SQLite if it does not commit. */
  private batchTouched: Set<CachedObject> | null = null;
  /**
   * Names our own changes removed where no negative entry is kept (see setName), newest
   * last, REMOVED_MEMO at most: the watcher reports our removals too, and one of a name a
   * complete listing lacks would otherwise be taken for someone else's change
   * (outside-changes.ts). Memory only: a report comes within moments of the change.
   */
  private readonly removedHere = new Map<string, true>();
  private readonly st;

  /** The SQLite file (shared with the journal: a change and its record commit together). */
  constructor(readonly db: Db, readonly fsid: string, opts: { keepObjects?: number } = {}) {
    this.mirror = new ObjectMirror(opts.keepObjects ?? KEEP_OBJECTS);
    this.st = {
      byId: db.prepare(`SELECT ${ROW_COLUMNS} FROM objects WHERE id = ? AND fsid = ?`).raw(true),
      byFh: db.prepare(`SELECT ${ROW_COLUMNS} FROM objects WHERE fsid = ? AND fh = ?`).raw(true),
      insert: db.prepare(`INSERT INTO objects (fsid, fh, type, mode, uid, gid, size, nlink, rdev, used,
          atime_ns, mtime_ns, ctime_ns, version) VALUES (@fsid, @fh, @type, @mode, @uid, @gid, @size,
          @nlink, @rdev, @used, @atime_ns, @mtime_ns, @ctime_ns, @version)`),
      saveAttr: db.prepare(`UPDATE objects SET type=@type, mode=@mode, uid=@uid, gid=@gid, size=@size,
          nlink=@nlink, rdev=@rdev, used=@used, atime_ns=@atime_ns, mtime_ns=@mtime_ns, ctime_ns=@ctime_ns,
          version=@version WHERE id=@id`),
      saveData: db.prepare(`UPDATE objects SET data_version=?, cached_bytes=?, last_access=? WHERE id=?`),
      saveZerosFrom: db.prepare(`UPDATE objects SET zeros_from=? WHERE id=?`),
      saveDir: db.prepare(`UPDATE objects SET names_version=?, complete=? WHERE id=?`),
      saveSymlink: db.prepare(`UPDATE objects SET symlink=? WHERE id=?`),
      saveAccess: db.prepare(`UPDATE objects SET last_access=? WHERE id=?`),
      remove: db.prepare(`DELETE FROM objects WHERE id = ?`),
      setHandle: db.prepare(`UPDATE objects SET fh = ? WHERE id = ?`),
      nameOf: db.prepare(`SELECT parent, name FROM names WHERE child = ? LIMIT 1`),
      replayVersion: db.prepare(`SELECT version FROM replay_versions WHERE object = ?`),
      setReplayVersion: db.prepare(`INSERT INTO replay_versions (object, version) VALUES (?, ?)
          ON CONFLICT(object) DO UPDATE SET version = excluded.version`),
      delReplayVersion: db.prepare(`DELETE FROM replay_versions WHERE object = ?`),
      clearReplayVersions: db.prepare(`DELETE FROM replay_versions`),
      removeChunks: db.prepare(`DELETE FROM chunks WHERE object = ?`),
      removeChunksFrom: db.prepare(`DELETE FROM chunks WHERE object = ? AND idx >= ?`),
      chunks: db.prepare(`SELECT idx FROM chunks WHERE object = ?`),
      addChunk: db.prepare(`INSERT OR IGNORE INTO chunks (object, idx) VALUES (?, ?)`),
      names: db.prepare(`SELECT name, child FROM names WHERE parent = ?`),
      children: db.prepare(`SELECT ${ROW_COLUMNS.replace(/(\w+)/g, 'o.$1')} FROM names n JOIN objects o ON o.id = n.child WHERE n.parent = ? AND o.fsid = ?`).raw(true),
      setName: db.prepare(`INSERT INTO names (parent, name, child) VALUES (?, ?, ?)
          ON CONFLICT(parent, name) DO UPDATE SET child = excluded.child`),
      delNames: db.prepare(`DELETE FROM names WHERE parent = ?`),
      delName: db.prepare(`DELETE FROM names WHERE parent = ? AND name = ?`),
      delNamesTo: db.prepare(`DELETE FROM names WHERE child = ?`),
      staleNames: db.prepare(`SELECT name, child FROM stale_names WHERE parent = ?`).raw(true),
      staleNameOf: db.prepare(`SELECT parent, name FROM stale_names WHERE child = ? LIMIT 1`),
      setStaleName: db.prepare(`INSERT INTO stale_names (parent, name, child) VALUES (?, ?, ?)
          ON CONFLICT(parent, name) DO UPDATE SET child = excluded.child`),
      delStaleNames: db.prepare(`DELETE FROM stale_names WHERE parent = ?`),
      saveStale: db.prepare(`UPDATE objects SET stale = ? WHERE id = ?`),
      count: db.prepare(`SELECT COUNT(*) AS n, COALESCE(SUM(cached_bytes), 0) AS bytes FROM objects WHERE fsid = ?`),
    };
  }

  private fromRow(r: ObjectRow): CachedObject {
    const o = parseRow(r);
    this.loadStale(o, r);
    this.mirror.add(o);
    return o;
  }

  /** The stored disconnected answer of a directory whose row says it has one. */
  private loadStale(o: CachedObject, r: ObjectRow): void {
    const complete = r[STALE_COLUMN];
    if (complete === null) return;
    const names = new Map<string, number | null>();
    for (const [name, child] of this.st.staleNames.all(o.id) as [string, number | null][]) names.set(name, child);
    o.stale = { names, complete: complete === 1 };
  }

  /**
   * Gives an object made while disconnected (a provisional handle) the handle the backend
   * assigned when its create was replayed. Its id (inode number) and everything cached stay.
   */
  setHandle(obj: CachedObject, fh: Buffer): void {
    const copy = Buffer.from(fh);
    this.changing(obj);
    this.st.setHandle.run(copy, obj.id);
    obj.fh = copy;
    this.mirror.add(obj);
  }

  /** The object's version after the last record a reintegration replayed to it (or null). */
  replayVersion(id: number): string | null {
    return (this.st.replayVersion.get(id) as { version: string } | undefined)?.version ?? null;
  }

  setReplayVersion(id: number, version: string | null): void {
    if (version === null) this.st.delReplayVersion.run(id);
    else this.st.setReplayVersion.run(id, version);
  }

  /** A reintegration finished: what it replayed is what the cache now revalidates. */
  clearReplayVersions(): void {
    this.st.clearReplayVersions.run();
  }

  /** One cached name of an object: its directory and the name in it (null: none cached). */
  parentOf(id: number): { parent: number; name: string } | null {
    return (this.st.nameOf.get(id) as { parent: number; name: string } | undefined) ?? null;
  }

  /** A path of an object from the root, through the cached names (for people: journal lists). */
  pathOf(id: number, rootId: number): string | null {
    const parts: string[] = [];
    for (let cur = id, hops = 0; cur !== rootId; hops++) {
      if (hops > 4096) return null; // a cycle in a corrupt index: no path
      const row = (this.st.nameOf.get(cur) as { parent: number; name: string } | undefined) ?? this.staleNameOf(cur);
      if (!row) return null;
      parts.push(row.name);
      cur = row.parent;
    }
    return '/' + parts.reverse().join('/');
  }

  /**
   * Where a directory whose names went stale (invalidateNames) last showed `id`: those names
   * still answer offline, so the object still has a path (for the journal and conflicts).
   */
  private staleNameOf(id: number): { parent: number; name: string } | undefined {
    return this.st.staleNameOf.get(id) as { parent: number; name: string } | undefined;
  }

  /** Every object currently in memory (for revalidation after reconnecting). */
  loaded(): IterableIterator<CachedObject> {
    return this.mirror.values();
  }

  /** Every change committed so far survives power loss when this returns (fsync offline). */
  makeDurable(): void {
    makeDurable(this.db);
  }

  /**
   * Runs `fn` in one SQLite transaction: one commit for several index changes. If it does
   * not commit (SQLite rolls everything back), the objects it changed are reloaded from
   * SQLite before the error goes on: the mirror shows what is stored.
   */
  batch<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    const touched = new Set<CachedObject>();
    this.batchTouched = touched;
    try {
      return this.db.transaction(fn)();
    } catch (e) {
      this.batchTouched = null;
      for (const o of touched) this.reload(o);
      throw e;
    } finally {
      this.batchTouched = null;
    }
  }

  /** Notes an object about to change, for `batch`'s rollback. */
  private changing(obj: CachedObject): void {
    this.batchTouched?.add(obj);
  }

  /**
   * Makes a loaded object what its row says again (after a rolled-back batch); an object
   * whose row is gone leaves the mirror. What is in memory only stays: attrAt, lastAccess,
   * and a size grown by local writes (see setLocalSize).
   */
  private reload(o: CachedObject): void {
    const row = this.st.byId.get(o.id, this.fsid) as ObjectRow | undefined;
    this.mirror.delete(o);
    if (!row) {
      this.unpin(o);
      return;
    }
    const stored = parseRow(row);
    const size = Math.max(o.attr.size, stored.attr.size);
    o.fh = stored.fh;
    o.attr = o.attr.version === stored.attr.version ? { ...stored.attr, size } : stored.attr;
    o.dataVersion = stored.dataVersion;
    o.namesVersion = stored.namesVersion;
    o.complete = stored.complete;
    o.symlink = stored.symlink;
    o.cachedBytes = stored.cachedBytes;
    o.chunks = null;
    o.names = null;
    o.stale = null;
    this.loadStale(o, row);
    this.mirror.add(o);
  }

  /** Lets go of an object's pins (it left the index). */
  private unpin(o: CachedObject): void {
    this.sizeUnsaved.delete(o);
    this.touched.delete(o);
  }

  get(id: number): CachedObject | undefined {
    const have = this.mirror.get(id);
    if (have) return have;
    const row = this.st.byId.get(id, this.fsid) as ObjectRow | undefined;
    return row ? this.fromRow(row) : undefined;
  }

  byHandle(fh: Buffer): CachedObject | undefined {
    const have = this.mirror.getByHandle(fh.toString('hex'));
    if (have) return have;
    const row = this.st.byFh.get(this.fsid, fh) as ObjectRow | undefined;
    return row ? this.fromRow(row) : undefined;
  }

  /**
   * The object for a node the backend just reported, created if new. Attributes are updated;
   * the caller decides what a changed version means for cached data (see `invalidateData`).
   */
  upsert(node: Node, now: number): CachedObject {
    const have = this.byHandle(node.fh);
    if (have) {
      if (!sameAttr(have.attr, node.attr) || this.sizeUnsaved.has(have)) {
        this.changing(have);
        this.storeAttr(have, node.attr);
        have.attr = node.attr;
      }
      have.attrAt = now;
      return have;
    }
    const info = this.st.insert.run({ fsid: this.fsid, fh: node.fh, ...attrParams(0, node.attr) });
    // What the row now holds (its other columns' defaults), without reading it back: a first
    // listing inserts one row per entry, and a query per row cost a tenth of it.
    const obj: CachedObject = {
      id: Number(info.lastInsertRowid), fh: Buffer.from(node.fh), attr: node.attr, attrAt: now,
      dataVersion: null, namesVersion: null, complete: false, symlink: null, cachedBytes: 0,
      lastAccess: 0, zerosFrom: null, chunks: new Set(), names: null, stale: null,
    };
    this.mirror.add(obj);
    this.changing(obj);
    return obj;
  }

  setAttr(obj: CachedObject, attr: Attr, now: number): void {
    if (!sameAttr(obj.attr, attr) || this.sizeUnsaved.has(obj)) {
      this.changing(obj);
      try {
        this.storeAttr(obj, attr);
      } catch (e) {
        // A full cache disk: when only the access time or the blocks used moved (a read on
        // the backend, its delayed allocation; the version leaves both out), the new ones
        // are shown from memory and the row keeps the old ones, which nothing depends on.
        // Failing instead made every open and stat of a file read once fail with ENOSPC while
        // the disk was full. Anything else must be stored.
        if (!isCacheStorageError(e) || this.db.inTransaction || !sameAttr(obj.attr, { ...attr, atimeNs: obj.attr.atimeNs, used: obj.attr.used })) throw e;
        log.debug(`the access time of object ${obj.id} is not stored: the cache disk is full`);
      }
    }
    obj.attr = attr;
    obj.attrAt = now;
  }

  /** Changes attributes locally (our own write, before the backend confirms them). */
  patchAttr(obj: CachedObject, patch: Partial<Attr>): void {
    const attr = { ...obj.attr, ...patch };
    this.changing(obj);
    this.storeAttr(obj, attr);
    obj.attr = attr;
  }

  /** Writes an object's attributes to its row (what memory holds of them is then stored). */
  private storeAttr(obj: CachedObject, attr: Attr): void {
    this.st.saveAttr.run(attrParams(obj.id, attr));
    this.sizeUnsaved.delete(obj);
  }

  /**
   * Our own write grew the file: the size is updated in memory only (persisting it on every
   * write would cost a transaction each); flush() stores the backend's attributes after.
   * The object stays in memory until then.
   */
  setLocalSize(obj: CachedObject, size: number): void {
    obj.attr = { ...obj.attr, size };
    this.sizeUnsaved.add(obj);
  }

  setSymlink(obj: CachedObject, target: string | null): void {
    this.changing(obj);
    this.st.saveSymlink.run(target, obj.id);
    obj.symlink = target;
  }

  // ---- data chunks ----

  chunksOf(obj: CachedObject): Set<number> {
    if (!obj.chunks) {
      obj.chunks = new Set((this.st.chunks.all(obj.id) as { idx: number }[]).map((r) => r.idx));
    }
    return obj.chunks;
  }

  addChunk(obj: CachedObject, idx: number, bytes: number, dataVersion: string): void {
    const set = this.chunksOf(obj);
    const had = set.has(idx);
    if (had && obj.dataVersion === dataVersion) return;
    const cachedBytes = had ? obj.cachedBytes : obj.cachedBytes + bytes;
    // One commit for both rows (half the cost of two; bench/hoard.ts showed it per chunk).
    this.batch(() => {
      this.changing(obj);
      this.st.addChunk.run(obj.id, idx);
      this.st.saveData.run(dataVersion, cachedBytes, obj.lastAccess, obj.id);
    });
    set.add(idx);
    obj.cachedBytes = cachedBytes;
    obj.dataVersion = dataVersion;
  }

  /** Forgets every cached chunk (the data file is truncated by the caller). */
  clearChunks(obj: CachedObject): void {
    this.batch(() => {
      this.changing(obj);
      this.st.removeChunks.run(obj.id);
      this.st.saveData.run(null, 0, obj.lastAccess, obj.id);
      this.st.saveZerosFrom.run(null, obj.id);
    });
    obj.chunks = new Set();
    obj.cachedBytes = 0;
    obj.dataVersion = null;
    obj.zerosFrom = null;
  }

  /** Nothing of the backend's lies at or past `offset` any more (see CachedObject.zerosFrom). */
  noteZerosFrom(obj: CachedObject, offset: number): void {
    if (obj.zerosFrom !== null && obj.zerosFrom <= offset) return;
    this.changing(obj);
    this.st.saveZerosFrom.run(offset, obj.id);
    obj.zerosFrom = offset;
  }

  /** Forgets chunks from `idx` on (after a truncate). */
  dropChunksFrom(obj: CachedObject, idx: number, chunkSize: number): void {
    const set = this.chunksOf(obj);
    const gone = [...set].filter((i) => i >= idx);
    if (gone.length === 0) return;
    const cachedBytes = Math.max(0, obj.cachedBytes - gone.length * chunkSize);
    this.batch(() => {
      this.changing(obj);
      this.st.removeChunksFrom.run(obj.id, idx);
      this.st.saveData.run(obj.dataVersion, cachedBytes, obj.lastAccess, obj.id);
    });
    for (const i of gone) set.delete(i);
    obj.cachedBytes = cachedBytes;
  }

  setDataVersion(obj: CachedObject, v: string | null): void {
    if (obj.dataVersion === v) return;
    this.changing(obj);
    this.st.saveData.run(v, obj.cachedBytes, obj.lastAccess, obj.id);
    obj.dataVersion = v;
  }

  /** Records a use of the object (ms since the epoch) for LRU culling; see flushAccessTimes. */
  touch(obj: CachedObject, now: number): void {
    obj.lastAccess = now;
    this.touched.add(obj);
  }

  /**
   * Persists the access times recorded since the last call, in one transaction. Called
   * now and then and at unmount: LRU order need not be exact, and writing a row on every
   * read would cost more than the read.
   */
  flushAccessTimes(): void {
    if (this.touched.size === 0) return;
    const objs = [...this.touched];
    this.touched.clear();
    try {
      this.batch(() => {
        for (const o of objs) this.st.saveAccess.run(o.lastAccess, o.id);
      });
    } catch (e) {
      // Runs from a timer: it must not throw. A full (or failing) cache disk only delays
      // these times, which are kept in memory and written at the next flush.
      for (const o of objs) this.touched.add(o);
      if (!isCacheStorageError(e)) throw e;
      if (!this.accessFlushFailing) log.warn('cannot write access times to the index (they are kept for the next try)', e);
      this.accessFlushFailing = true;
      return;
    }
    this.accessFlushFailing = false;
  }

  // ---- names ----

  namesOf(dir: CachedObject): Map<string, number | null> {
    if (!dir.names) {
      dir.names = new Map((this.st.names.all(dir.id) as { name: string; child: number | null }[])
        .map((r) => [r.name, r.child]));
    }
    return dir.names;
  }

  /**
   * Loads the directory's children that are not in memory yet, in one query (one row query
   * per child cost about as much as the rest of a listing after a remount). Objects already
   * loaded keep their in-memory state, which may be newer than their rows.
   */
  loadChildren(dir: CachedObject): void {
    // A warm directory has every child in memory already: no query then.
    let missing = false;
    for (const id of this.namesOf(dir).values()) if (id !== null && !this.mirror.peek(id)) { missing = true; break; }
    if (!missing) return;
    for (const r of this.st.children.all(dir.id, this.fsid) as ObjectRow[]) {
      if (!this.mirror.peek(r[0])) this.fromRow(r);
    }
  }

  /** `name` in `dir` leads to `child`, or is known absent (null). */
  setName(dir: CachedObject, name: string, child: number | null): void {
    const names = this.namesOf(dir);
    this.changing(dir);
    if (child === null && (dir.complete || (dir.stale?.complete && !dir.stale.names.has(name)))) {
      this.st.delName.run(dir.id, name);
      names.delete(name);
      const key = `${dir.id}/${name}`;
      this.removedHere.delete(key);
      this.removedHere.set(key, true);
      if (this.removedHere.size > REMOVED_MEMO) this.removedHere.delete(this.removedHere.keys().next().value!);
      return;
    }
    this.st.setName.run(dir.id, name, child);
    names.set(name, child);
  }

  /**
   * Whether `name` was removed from `dir` by a change of ours not long ago (a negative entry
   * not kept: see setName). Asked once per watcher report: the answer is used up.
   */
  takeRemovedHere(dir: CachedObject, name: string): boolean {
    return this.removedHere.delete(`${dir.id}/${name}`);
  }

  /** Replaces a directory's whole name cache with a fresh listing, in one transaction. */
  replaceListing(dir: CachedObject, entries: { name: string; id: number }[], version: string): void {
    // A listing that only confirms the stored one (a directory listed again for its entries'
    // attributes, after a remount) leaves the name rows alone: rewriting them took 25 of
    // the 425 ms a `find` over 5,000 files kept the mount busy after a remount.
    const stored = dir.complete ? this.namesOf(dir) : null;
    const same = stored !== null && stored.size === entries.length && entries.every((e) => stored.get(e.name) === e.id);
    if (same && dir.namesVersion === version && !dir.stale) return;
    const m = new Map<string, number | null>();
    this.batch(() => {
      this.changing(dir);
      if (same) {
        for (const e of entries) m.set(e.name, e.id);
      } else {
        this.st.delNames.run(dir.id);
        for (const e of entries) { m.set(e.name, e.id); this.st.setName.run(dir.id, e.name, e.id); }
      }
      this.st.saveDir.run(version, 1, dir.id);
      if (dir.stale) { this.st.delStaleNames.run(dir.id); this.st.saveStale.run(null, dir.id); }
    });
    dir.names = m;
    dir.stale = null;
    dir.complete = true;
    dir.namesVersion = version;
  }

  /** Drops the name cache of a directory (its version changed under us). */
  invalidateNames(dir: CachedObject): void {
    const before = this.namesOf(dir);
    // What the cache knew stays the disconnected answer, including what an earlier
    // invalidation kept: a directory whose version moves again before it is listed (each
    // name created in a directory never listed moves it) must not forget all but the last
    // names, or they answer EHOSTUNREACH offline. Stored in the same transaction: only the
    // names that move there are written (what an earlier one kept is stored already).
    const names = new Map([...(dir.stale?.names ?? []), ...before]);
    const complete = dir.complete || (dir.stale?.complete ?? false);
    const keep = names.size > 0 || complete;
    this.batch(() => {
      this.changing(dir);
      this.st.delNames.run(dir.id);
      this.st.saveDir.run(null, 0, dir.id);
      if (keep) this.storeStale(dir, before, complete);
    });
    if (keep) dir.stale = { names, complete };
    dir.names = new Map();
    dir.complete = false;
    dir.namesVersion = null;
  }

  /** Keeps (and stores) `stale` as the directory's disconnected answer (CachedObject.stale). */
  keepStale(dir: CachedObject, stale: NonNullable<CachedObject['stale']>): void {
    this.batch(() => {
      this.changing(dir);
      this.st.delStaleNames.run(dir.id);
      this.storeStale(dir, stale.names, stale.complete);
    });
    dir.stale = stale;
  }

  /** Writes `names` into the directory's stored stale listing (inside the caller's batch). */
  private storeStale(dir: CachedObject, names: Map<string, number | null>, complete: boolean): void {
    for (const [name, child] of names) this.st.setStaleName.run(dir.id, name, child);
    this.st.saveStale.run(complete ? 1 : 0, dir.id);
  }

  setNamesVersion(dir: CachedObject, version: string): void {
    this.changing(dir);
    this.st.saveDir.run(version, dir.complete ? 1 : 0, dir.id);
    dir.namesVersion = version;
  }

  /** Removes an object that no name reaches any more. Its data file is removed by the caller. */
  remove(obj: CachedObject): void {
    this.batch(() => {
      this.changing(obj);
      this.st.remove.run(obj.id);
      this.st.removeChunks.run(obj.id);
      this.st.delNames.run(obj.id);
      this.st.delNamesTo.run(obj.id);
      this.st.delStaleNames.run(obj.id);
    });
    this.mirror.delete(obj);
    this.unpin(obj);
  }

  /** Ids of objects whose cached data has this data version. */
  idsWithDataVersion(v: string): number[] {
    return (this.db.prepare(`SELECT id FROM objects WHERE fsid = ? AND data_version = ?`).all(this.fsid, v) as { id: number }[])
      .map((r) => r.id);
  }

  private cachedDataSt: ReturnType<Db['prepare']> | undefined;

  /**
   * Every object of this fsid with cached chunks, least recently used first (for culling,
   * src/cache/culler.ts). `chunks`/`maxChunk`: how many chunks are cached and the highest
   * index (what the data file holds, whatever `cachedBytes` says). Loaded objects answer from
   * memory: their size (a local write grows it there first) and last access (persisted only
   * by flushAccessTimes) are newer than the rows.
   */
  cachedData(): CachedDataRow[] {
    this.cachedDataSt ??= this.db.prepare(`SELECT o.id, o.size, o.cached_bytes, o.last_access, c.n, c.mx
        FROM objects o JOIN (SELECT object, COUNT(*) AS n, MAX(idx) AS mx FROM chunks GROUP BY object) c ON c.object = o.id
        WHERE o.fsid = ?`);
    const rows = this.cachedDataSt.all(this.fsid) as { id: number; size: number; cached_bytes: number; last_access: number; n: number; mx: number }[];
    const out = rows.map((r) => {
      const o = this.mirror.peek(r.id);
      return {
        id: r.id, size: o ? o.attr.size : r.size, cachedBytes: o ? o.cachedBytes : r.cached_bytes,
        lastAccess: o ? o.lastAccess : r.last_access, chunks: r.n, maxChunk: r.mx,
      };
    });
    return out.sort((a, b) => a.lastAccess - b.lastAccess || a.id - b.id);
  }

  stats(): { objects: number; bytes: number } {
    const r = this.st.count.get(this.fsid) as { n: number; bytes: number };
    return { objects: r.n, bytes: r.bytes };
  }
}

/** An object as its row stores it (not registered in any mirror). */
function parseRow(r: ObjectRow): CachedObject {
  const [id, fh, type, mode, uid, gid, size, nlink, rdev, used, atimeNs, mtimeNs, ctimeNs, version,
    dataVersion, namesVersion, complete, symlink, cachedBytes, lastAccess, zerosFrom] = r;
  const o: CachedObject = {
    id,
    fh, // a Buffer of its own (better-sqlite3 makes one per blob it returns)
    attr: {
      type: type as Attr['type'], mode, uid, gid, size, nlink, rdev, used,
      atimeNs: BigInt(atimeNs), mtimeNs: BigInt(mtimeNs), ctimeNs: BigInt(ctimeNs), version,
    },
    attrAt: 0,
    dataVersion,
    namesVersion,
    complete: complete === 1,
    symlink,
    cachedBytes,
    lastAccess,
    zerosFrom,
    chunks: null,
    names: null,
    stale: null,
  };
  return o;
}

function sameAttr(a: Attr, b: Attr): boolean {
  return a.version === b.version && a.mode === b.mode && a.uid === b.uid && a.gid === b.gid &&
    a.size === b.size && a.nlink === b.nlink && a.atimeNs === b.atimeNs && a.mtimeNs === b.mtimeNs &&
    a.ctimeNs === b.ctimeNs && a.used === b.used && a.type === b.type && a.rdev === b.rdev;
}

function attrParams(id: number, a: Attr) {
  return {
    id, type: a.type, mode: a.mode, uid: a.uid, gid: a.gid, size: a.size, nlink: a.nlink, rdev: a.rdev,
    used: a.used, atime_ns: a.atimeNs.toString(), mtime_ns: a.mtimeNs.toString(),
    ctime_ns: a.ctimeNs.toString(), version: a.version,
  };
}
