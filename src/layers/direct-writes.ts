// Direct writes: FUSE passthrough for writing (fuse.passthroughWrites). The kernel writes an
// open file's bytes into its cache file itself and never tells us. What they changed is
// journaled at close (flush), at fsync, before a change of size through us, and at the last
// release: the file is read back and compared, piece by piece, with what was journaled last;
// each piece that differs becomes a write record (Coda's store at close, but only of the
// pieces that changed). Without passthrough the same opens go through the session.
//
// What must stay true:
// - while the kernel may write a cache file, a durable row says so (direct_writes), written
//   before the open is answered; the next start journals such a file whole (recover()), so
//   an acknowledged write is never lost, connected or not (invariant 1);
// - the row goes only once the last open that can write is released and its bytes journaled;
// - the first comparison is against the file as it was when the row was written (its pieces'
//   CRCs taken before the kernel could write), so no change goes unjournaled;
// - a record's bytes may change in the cache file before it is replayed (the kernel writes
//   on): the replay sends the newer ones (writing(id) counts as a later change), and the
//   journaling the row guarantees carries them again;
// - the layer's attributes follow the cache file (size, times) whenever they are asked for;
// - a conflict parked while the kernel still writes the file never lets those writes reach
//   the server's variant: the cache file keeps the writer's bytes (it is not emptied under
//   the writer), and what is journaled from then on carries a base no server version has,
//   replayed as a reintegration, so it is parked as a conflict of its own (both variants kept).
import fs, { promises as fsp } from 'node:fs';
import { crc32 } from 'node:zlib';
import type { Db } from '../index/db.js';
import type { CachedObject, ObjectIndex } from '../index/objects.js';
import type { DataStore } from '../store/data-store.js';
import type { Replayer } from '../journal/replayer.js';
import { byOf, type JournalRecord, type RecordCreds } from '../journal/records.js';
import { log } from '../core/log.js';
import type { Attr, Creds } from '../backends/types.js';
import { SELF } from './freshness.js';

/** Bytes compared (and journaled, when changed) as one piece: one write record at most. */
export const PIECE = 1024 * 1024;
/** How soon a failed journaling at the last release is tried again. */
const RETRY_MS = 5000;

/** What direct writes need; the cache layer wires it. */
export interface DirectWritesDeps {
  db: Db;
  index: Pick<ObjectIndex, 'get' | 'batch' | 'patchAttr' | 'setLocalSize' | 'addChunk' | 'setDataVersion' | 'chunksOf'>;
  store: Pick<DataStore, 'ensure' | 'read' | 'truncate'>;
  replayer: Pick<Replayer<{ kind: string }>, 'append'>;
  /** The newest record of an object (write-back's lastSeq: close waits for it). */
  noteSeq(objId: number, seq: number): void;
  connected(): boolean;
  /** Unlinked (while open): its bytes live only for the open descriptors, nothing is journaled. */
  nameless(id: number): boolean;
  /** Replays the journal as a reintegration (records' bases checked, conflicts parked). */
  checkBases(): void;
  /** A file written while in conflict is released: its path may show the server's variant now. */
  conflictDone(o: CachedObject): void;
  chunkSize: number;
}

interface Live {
  /** Opens that may write through the kernel. */
  opens: number;
  by: RecordCreds | undefined;
  /** The cache file. */
  file: string;
  /** The size and the CRC of each piece of what the journal (or the backend) has. */
  size: number;
  pieces: number[];
  /** The journaling under way (they run one at a time). */
  chain: Promise<unknown>;
  /** A conflict was parked for the file while the kernel could write it (see the top). */
  conflicted: boolean;
}

/** The base of what is journaled after a conflict: no server version looks like it. */
const CONFLICTED_BASE = 'conflicted:written-during-a-conflict';

export class DirectWrites {
  private readonly live = new Map<number, Live>();
  private readonly st;

  constructor(private readonly d: DirectWritesDeps) {
    this.st = {
      mark: d.db.prepare(`INSERT INTO direct_writes (object, by) VALUES (?, ?) ON CONFLICT(object) DO NOTHING`),
      unmark: d.db.prepare(`DELETE FROM direct_writes WHERE object = ?`),
      all: d.db.prepare(`SELECT object, by FROM direct_writes`),
    };
  }

  /** Whether the kernel may be writing `id`'s cache file now. */
  writing(id: number): boolean { return this.live.has(id); }

  /**
   * One more open of `o` that the kernel may write through. The caller has checked that `o`
   * is a file wholly in its cache file, `file` (made to exist). Throws if the row cannot be
   * written (the open then goes through the session).
   */
  async begin(o: CachedObject, by: Creds | undefined, file: string): Promise<void> {
    if (!this.live.has(o.id)) {
      // Before the kernel can write: the CRCs of what the backend (or the journal) has.
      const { size, pieces } = await this.crcs(o.id, file, []);
      if (!this.live.has(o.id)) { // no other open began meanwhile
        const creds = byOf(by).by;
        this.st.mark.run(o.id, creds ? JSON.stringify(creds) : null);
        this.live.set(o.id, { opens: 0, by: creds, file, size, pieces, chain: Promise.resolve(), conflicted: false });
      }
    }
    this.live.get(o.id)!.opens++;
  }

  /**
   * Journals what the kernel wrote to `o` since the last time; true if anything changed.
   * Callers run one at a time per object.
   */
  absorb(o: CachedObject): Promise<boolean> {
    const l = this.live.get(o.id);
    if (!l) return Promise.resolve(false);
    const p = l.chain.then(() => this.journal(o, l));
    l.chain = p.catch(() => undefined);
    return p;
  }

  /**
   * One open less. The last one journals what is left and removes the row (kept if the
   * journaling fails: the next start journals the file whole).
   */
  async end(o: CachedObject): Promise<void> {
    const l = this.live.get(o.id);
    if (!l) return;
    if (--l.opens > 0) return;
    await this.finish(o, l);
  }

  /** The last open is gone: journal what is left, then forget the file (or retry later). */
  private async finish(o: CachedObject, l: Live): Promise<void> {
    try {
      await this.absorb(o);
    } catch (e) {
      // A full cache disk, say: the row stays, the bytes stay in the cache file, and the
      // object stays "being written" (never culled, never dropped) until this succeeds.
      const t = setTimeout(() => {
        if (l.opens === 0 && this.live.get(o.id) === l) this.finish(this.d.index.get(o.id) ?? o, l).catch(() => undefined);
      }, RETRY_MS);
      t.unref();
      throw e;
    }
    if (l.opens > 0 || this.live.get(o.id) !== l) return; // opened again meanwhile
    this.live.delete(o.id);
    this.st.unmark.run(o.id);
    if (l.conflicted) this.d.conflictDone(o);
  }

  /**
   * A conflict was parked for `o`. True if the kernel may be writing it: then its cache file
   * is left as it is, and what is journaled from now on is checked against the server.
   */
  conflicted(o: CachedObject): boolean {
    const l = this.live.get(o.id);
    if (!l) return false;
    l.conflicted = true;
    return true;
  }

  /**
   * The attributes of `o` its cache file shows now (the kernel may have written), or null:
   * not written directly. Only for the answer: stored with the next journaling, so a stat
   * never needs the index (it works on a full cache disk).
   */
  follow(o: CachedObject): Pick<Attr, 'size' | 'mtimeNs' | 'ctimeNs' | 'used'> | null {
    const l = this.live.get(o.id);
    if (!l) return null;
    let st: fs.BigIntStats;
    try { st = fs.statSync(l.file, { bigint: true }); } catch { return null; }
    return { size: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, used: Number(st.blocks) * 512 };
  }

  /** `o` was truncated through us to `size` (after absorb()): what the journal has now. */
  resized(o: CachedObject, size: number): void {
    const l = this.live.get(o.id);
    if (!l) return;
    l.pieces.length = Math.min(l.pieces.length, Math.ceil(size / PIECE));
    if (size % PIECE !== 0 && l.pieces.length === Math.ceil(size / PIECE)) l.pieces[l.pieces.length - 1] = -1; // compared again
    l.size = size;
  }

  /**
   * At start: the rows a previous run left (it died while the kernel could write) are
   * files whose cache file may hold bytes no record has. Each is journaled whole, as made
   * offline (its base checked at replay), before anything is replayed.
   */
  async recover(): Promise<number> {
    const rows = this.st.all.all() as { object: number; by: string | null }[];
    let n = 0;
    for (const r of rows) {
      const o = this.d.index.get(r.object);
      if (!o || o.attr.type !== 'file') { this.st.unmark.run(r.object); continue; }
      const by = r.by ? JSON.parse(r.by) as RecordCreds : undefined;
      const file = await this.d.store.ensure(o.id);
      const l: Live = { opens: 0, by, file, size: 0, pieces: [], chain: Promise.resolve(), conflicted: false };
      await this.journal(o, l, true);
      this.st.unmark.run(r.object);
      n++;
    }
    if (n > 0) log.info(`journaled ${n} file(s) the kernel was writing directly when the last run ended`);
    return n;
  }

  /**
   * Reads a cache file piece by piece: its stat, and the CRC of each piece, `seen` called
   * with each piece's offset, length and CRC as it is read.
   */
  private async crcs(id: number, file: string, seen: ((off: number, len: number, crc: number) => void)[]):
    Promise<{ st: fs.BigIntStats; size: number; pieces: number[] }> {
    const st = await fsp.stat(file, { bigint: true });
    const size = Number(st.size);
    const pieces: number[] = [];
    const buf = Buffer.allocUnsafe(PIECE);
    for (let off = 0; off < size; off += PIECE) {
      const len = Math.min(PIECE, size - off);
      const crc = crc32(await this.d.store.read(id, off, len, buf.subarray(0, len)));
      pieces.push(crc);
      for (const f of seen) f(off, len, crc);
    }
    return { st, size, pieces };
  }

  private async journal(o: CachedObject, l: Live, whole = false): Promise<boolean> {
    if (this.d.nameless(o.id)) {
      const st = await fsp.stat(l.file, { bigint: true });
      this.d.index.patchAttr(o, { size: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs });
      l.size = Number(st.size);
      return false;
    }
    const offline = whole || l.conflicted || !this.d.connected();
    const base = l.conflicted ? CONFLICTED_BASE : o.attr.version;
    const common = { obj: o.id, ...byOf(l.by), base, ...(offline ? { offline: true as const } : {}) };
    const writes: JournalRecord[] = [];
    const { st, size, pieces } = await this.crcs(o.id, l.file, [(off, len, crc) => {
      const i = off / PIECE;
      const was = i < l.pieces.length && Math.min(PIECE, l.size - off) === len ? l.pieces[i] : undefined;
      if (whole || was !== crc) writes.push({ op: 'write', offset: off, length: len, crc, ...common });
    }]);
    // Shrunk (never by the kernel alone, but say so first should it happen): the backend's
    // file must lose its tail before the pieces are written.
    const records: JournalRecord[] = size < l.size || (whole && size < o.attr.size)
      ? [{ op: 'setattr', set: { size }, ...common }, ...writes] : writes;
    if (size > l.size && records.length === 0) {
      // Grown by zeros only (a hole): the size itself is the change.
      records.push({ op: 'setattr', set: { size }, ...common });
    }
    if (records.length === 0) { l.size = size; l.pieces = pieces; return false; }
    if (offline) {
      // Replayed, the writes would give the file the replay's time: the server gets the
      // mtime the user saw here (as flush does for writes made offline).
      records.push({ op: 'setattr', obj: o.id, set: { mtime: { kind: 'set', ns: String(st.mtimeNs) } }, base, offline: true });
    }
    // Checked against the server before they are applied: the replay must be a
    // reintegration by the time they are appended (an append may start applying them).
    if (l.conflicted && this.d.connected()) this.d.checkBases();
    const chunk = this.d.chunkSize;
    this.d.index.batch(() => {
      for (const r of records) this.d.noteSeq(o.id, this.d.replayer.append(r));
      const have = this.d.index.chunksOf(o);
      for (let i = 0; i * chunk < size; i++) {
        if (!have.has(i)) this.d.index.addChunk(o, i, Math.min(chunk, size - i * chunk), SELF);
      }
      this.d.index.setLocalSize(o, size);
      this.d.index.patchAttr(o, { size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, used: Number(st.blocks) * 512 });
      this.d.index.setDataVersion(o, SELF);
    });
    l.size = size;
    l.pieces = pieces;
    return true;
  }
}
