// Pins: what the user wants kept in the cache (hoarded) before going away, stored in the
// index so they survive remounts (ARCHITECTURE §8). A pin names a path from the mount root,
// not an object: a file made later under a recursively pinned directory is covered too, and
// a pinned path that is replaced on the server keeps its pin.
//   /a/b.txt         the file (or, for a directory without -r, the directory and its entries)
//   /src  recursive  the whole tree under /src
//   /notes/**/*.md   a glob (from a hoard profile): every path it matches
import picomatch from 'picomatch';
import path from 'node:path';
import { z } from 'zod';
import type { Db } from '../index/db.js';

export const PinSchema = z.object({
  path: z.string().startsWith('/'),
  recursive: z.boolean(),
  glob: z.boolean(),
  priority: z.number().int(),
  createdAt: z.number(),
});
export type Pin = z.infer<typeof PinSchema>;

interface Row { path: string; recursive: number; glob: number; priority: number; created_at: number }

/** Normalizes a path from the mount root: one leading slash, no trailing one, no dots. */
export function normalizePinPath(p: string): string {
  const n = path.posix.normalize('/' + p);
  return n.length > 1 ? n.replace(/\/+$/, '') : n;
}

/** Whether a pin path is a glob pattern (has *, ?, [ or {). */
export function isGlob(p: string): boolean {
  return picomatch.scan(p).isGlob;
}

/** Bumped by every change of any PinStore: every instance in the process sees the change. */
let generation = 0;

export class PinStore {
  private readonly st;
  private cache: { gen: number; pins: Pin[]; matchers: Map<string, (p: string) => boolean> } | null = null;

  constructor(db: Db) {
    this.st = {
      all: db.prepare(`SELECT * FROM pins ORDER BY priority DESC, path`),
      put: db.prepare(`INSERT INTO pins (path, recursive, glob, priority, created_at) VALUES (?, ?, ?, ?, ?)
                       ON CONFLICT(path) DO UPDATE SET recursive = excluded.recursive, glob = excluded.glob, priority = excluded.priority`),
      del: db.prepare(`DELETE FROM pins WHERE path = ?`),
      delUnder: db.prepare(`DELETE FROM pins WHERE path = ? OR path LIKE ? ESCAPE '\\'`),
    };
  }

  add(p: { path: string; recursive: boolean; priority: number }): Pin {
    const norm = normalizePinPath(p.path);
    const glob = isGlob(norm);
    this.st.put.run(norm, p.recursive ? 1 : 0, glob ? 1 : 0, p.priority, Date.now());
    generation++;
    return this.list().find((x) => x.path === norm)!;
  }

  /** Removes the pin on `p` (with `recursive`, every pin under it too); returns how many. */
  remove(p: string, recursive: boolean): number {
    const norm = normalizePinPath(p);
    const like = (norm === '/' ? '' : norm).replace(/[\\%_]/g, (c) => `\\${c}`) + '/%';
    const n = recursive ? this.st.delUnder.run(norm, like).changes : this.st.del.run(norm).changes;
    generation++;
    return n;
  }

  /** Every pin, highest priority first. */
  list(): Pin[] {
    return this.load().pins;
  }

  private load(): { pins: Pin[]; matchers: Map<string, (p: string) => boolean> } {
    if (!this.cache || this.cache.gen !== generation) {
      const pins = (this.st.all.all() as Row[]).map((r) => ({
        path: r.path, recursive: r.recursive === 1, glob: r.glob === 1, priority: r.priority, createdAt: r.created_at,
      }));
      const matchers = new Map<string, (p: string) => boolean>();
      for (const p of pins) if (p.glob) matchers.set(p.path, picomatch(p.path, { dot: true }));
      this.cache = { gen: generation, pins, matchers };
    }
    return this.cache;
  }

  /**
   * The pin (highest priority) that covers a path of the mount, or null. `isDir`: the path
   * is a directory (a non-recursive directory pin covers it and its direct entries).
   */
  covering(p: string): Pin | null {
    const { pins, matchers } = this.load();
    const norm = normalizePinPath(p);
    for (const pin of pins) {
      if (pin.glob) {
        if (matchers.get(pin.path)!(norm)) return pin;
        continue;
      }
      if (norm === pin.path) return pin;
      const prefix = pin.path === '/' ? '/' : pin.path + '/';
      if (!norm.startsWith(prefix)) continue;
      if (pin.recursive || !norm.slice(prefix.length).includes('/')) return pin;
    }
    return null;
  }

  /** The fixed directory a glob starts from (what a hoard walk lists to find its matches). */
  static globBase(pattern: string): string {
    const base = picomatch.scan(pattern).base;
    return normalizePinPath(base || '/');
  }
}
