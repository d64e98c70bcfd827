// Where the local backend's objects are: for each handle it gave out, the path below the
// root it was last seen at (with its inode number, so that pathOf() can check the object is
// still there), and back from a path to its handle. A path here is a hint, never identity:
// an object moved from outside is found again by its handle (LocalBackend.refind).
//
// What must stay true:
// - an entry goes when its object's name goes through us (unlink, rmdir, a rename over it):
//   a mount connected for days creates and removes millions of files, and an entry kept for
//   every object ever seen is a leak, which every rename then walked;
// - a rename of a file moves its own entry only; a directory's moves the entries below it
//   too (the only walk over the table);
// - one path has one entry: an object seen where another was remembered replaces it.
import { atOrBelow, rebased } from './rel.js';

export interface Place {
  rel: string;
  ino: bigint;
  dir: boolean;
}

export class Places {
  private readonly byKey = new Map<string, Place>();
  /** Path → key of the entry whose `rel` it is. */
  private readonly byRel = new Map<string, string>();

  get size(): number { return this.byKey.size; }

  get(key: string): Place | undefined {
    return this.byKey.get(key);
  }

  /** The object with handle `key` is at `rel`. */
  set(key: string, rel: string, ino: bigint, dir: boolean): void {
    const old = this.byKey.get(key);
    if (old) {
      if (old.rel === rel) { old.ino = ino; old.dir = dir; return; }
      if (this.byRel.get(old.rel) === key) this.byRel.delete(old.rel);
    }
    const other = this.byRel.get(rel);
    if (other !== undefined && other !== key) this.byKey.delete(other);
    this.byKey.set(key, { rel, ino, dir });
    this.byRel.set(rel, key);
  }

  /** The object with handle `key` is gone. */
  delete(key: string): void {
    const p = this.byKey.get(key);
    if (!p) return;
    this.byKey.delete(key);
    if (this.byRel.get(p.rel) === key) this.byRel.delete(p.rel);
  }

  /** The name `rel` was removed: the entry of the object seen there goes (its key returned). */
  forget(rel: string): string | undefined {
    const key = this.byRel.get(rel);
    if (key === undefined) return undefined;
    this.byRel.delete(rel);
    this.byKey.delete(key);
    return key;
  }

  /**
   * `from` was renamed to `to`, replacing whatever `to` was. Returns whether the object moved
   * is known not to be a directory (then nothing below `from` was walked), and the key of the
   * object replaced, if one was known there.
   */
  moved(from: string, to: string): { notDir: boolean; replaced: string | undefined } {
    if (from === to) return { notDir: true, replaced: undefined }; // rename(2) did nothing
    const replaced = this.forget(to);
    const key = this.byRel.get(from);
    const p = key === undefined ? undefined : this.byKey.get(key);
    if (p && key !== undefined) {
      this.byRel.delete(from);
      p.rel = to;
      this.byRel.set(to, key);
      if (!p.dir) return { notDir: true, replaced };
    }
    // Entries below `to` are stale (a directory renamed over was empty); those below `from`
    // move with it. (`to` and `from` themselves were dealt with above.)
    const below: [string, string][] = [];
    for (const e of this.byRel) {
      if (e[0] === to || e[0] === from) continue;
      if (atOrBelow(e[0], to)) this.forget(e[0]);
      else if (atOrBelow(e[0], from)) below.push(e);
    }
    for (const [rel, k] of below) {
      const now = rebased(rel, from, to);
      this.byRel.delete(rel);
      this.byRel.set(now, k);
      const q = this.byKey.get(k);
      if (q) q.rel = now;
    }
    return { notDir: false, replaced };
  }
}
