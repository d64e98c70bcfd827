// The in-memory side of the object index: the objects loaded from SQLite, by id and by
// handle. A mount that walks a tree of a million files (a `find`, a hoard walk, a backup)
// must not keep a million objects in memory for the rest of its life (about 1 KB each), so
// the mirror itself holds only the most recently used ones; every other object stays in
// memory exactly as long as someone else (an open file, a request under way, a write-back
// run, the index's own pins) holds it. The kernel's node table holds ids, not objects: an
// object it names is loaded again when asked for.
//
// What must stay true:
// - one instance per id: while any code holds an object, `get` returns that same object
//   (a WeakRef to it is kept until it is collected), never a second copy loaded from its row,
//   whose changes would then be lost or fought over;
// - an object nobody holds may be collected at any time; loading it again from its row gives
//   the same object but for what is kept in memory only (ObjectIndex pins the objects whose
//   memory-only state matters: stale listings, sizes grown by local writes, access times not
//   yet written);
// - the `keep` most recently used objects, and up to `keep` more, are held here: a working
//   set that fits is never reloaded.
import type { CachedObject } from './objects.js';

/** An object in memory, or what is left of it once collected (until the next sweep). */
interface Slot { ref: WeakRef<CachedObject>; key: string }

export class ObjectMirror {
  private readonly live = new Map<number, Slot>();
  /** Handle (hex) → id, for the objects in `live`. */
  private readonly byFh = new Map<string, number>();
  /** `live` is swept of collected objects when it grows past this (amortized: it doubles). */
  private sweepAt: number;
  /** Objects used since the last turn of the generations, and those used in the one before. */
  private recent = new Set<CachedObject>();
  private older = new Set<CachedObject>();

  /** @param keep how many recently used objects the mirror holds by itself (at least). */
  constructor(private readonly keep: number) {
    this.sweepAt = 4 * keep;
  }

  /** The live object with this id (marked as used), if any. */
  get(id: number): CachedObject | undefined {
    const o = this.live.get(id)?.ref.deref();
    if (o) this.used(o);
    return o;
  }

  /** The live object with this id, without marking it used (culling looks, it does not use). */
  peek(id: number): CachedObject | undefined {
    return this.live.get(id)?.ref.deref();
  }

  /** The live object with this handle (hex), marked as used, if any. */
  getByHandle(key: string): CachedObject | undefined {
    const id = this.byFh.get(key);
    return id === undefined ? undefined : this.get(id);
  }

  /**
   * Registers an object just loaded or made, or whose handle changed (a replayed create);
   * it replaces nothing live (see `get`).
   */
  add(o: CachedObject): void {
    const key = o.fh.toString('hex');
    const had = this.live.get(o.id);
    if (had && had.key !== key && this.byFh.get(had.key) === o.id) this.byFh.delete(had.key);
    this.live.set(o.id, { ref: new WeakRef(o), key });
    this.byFh.set(key, o.id);
    this.used(o);
    if (this.live.size > this.sweepAt) this.sweep();
  }

  /** The object leaves memory now (removed from the index, or to be reloaded). */
  delete(o: CachedObject): void {
    const slot = this.live.get(o.id);
    if (slot && slot.ref.deref() === o) {
      this.live.delete(o.id);
      if (this.byFh.get(slot.key) === o.id) this.byFh.delete(slot.key);
    }
    this.recent.delete(o);
    this.older.delete(o);
  }

  /** Every object in memory now. */
  *values(): IterableIterator<CachedObject> {
    for (const s of this.live.values()) {
      const o = s.ref.deref();
      if (o) yield o;
    }
  }

  private used(o: CachedObject): void {
    if (this.recent.has(o)) return;
    this.recent.add(o);
    if (this.recent.size < this.keep) return;
    // A generation is full: the one before it is let go (what of it was used again is in
    // this one), so between keep and 2 × keep objects are held. Cheaper per use than an
    // exact LRU (a use is a Set lookup, not a delete and re-insert in a Map).
    this.older = this.recent;
    this.recent = new Set();
  }

  /** Drops the entries of collected objects; the next sweep waits until `live` doubles. */
  private sweep(): void {
    for (const [id, s] of this.live) {
      if (s.ref.deref() !== undefined) continue;
      this.live.delete(id);
      if (this.byFh.get(s.key) === id) this.byFh.delete(s.key);
    }
    this.sweepAt = Math.max(4 * this.keep, 2 * this.live.size);
  }
}
