// Offline bases: for each object that existed before going offline and was changed while
// disconnected, the attributes (and, for small files whose bytes were all cached, a copy of
// the bytes) it had before the first offline change. Replay compares them with the
// server's current attributes to tell whose change is whose (a metadata field only the
// server changed is no conflict), and the bytes are the base of a three-way merge.
//
// What must stay true: a base is taken before the first offline change reaches the cache
// file or the journal, and only from cached data that belongs to the base version; bases
// live until the reintegration that replays those changes has finished.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Db } from '../index/db.js';
import type { Attr } from '../backends/types.js';

export const BaseAttrSchema = z.object({
  type: z.string(), mode: z.number(), uid: z.number(), gid: z.number(), size: z.number(), mtimeNs: z.string(),
});
export type BaseAttr = z.infer<typeof BaseAttrSchema>;

export interface OfflineBase { object: number; version: string; attr: BaseAttr; data: string | null }

/** Files up to this size keep a copy of their base bytes (for three-way merges). */
export const BASE_COPY_MAX = 8 * 1024 * 1024;

export class OfflineBases {
  private readonly st;
  private readonly known = new Set<number>();

  constructor(db: Db, private readonly dir: string) {
    this.st = {
      get: db.prepare(`SELECT * FROM offline_bases WHERE object = ?`),
      put: db.prepare(`INSERT OR IGNORE INTO offline_bases (object, version, attr, data) VALUES (?, ?, ?, ?)`),
      ids: db.prepare(`SELECT object FROM offline_bases`),
      clear: db.prepare(`DELETE FROM offline_bases`),
    };
    for (const r of this.st.ids.all() as { object: number }[]) this.known.add(r.object);
  }

  has(id: number): boolean { return this.known.has(id); }

  /**
   * Records an object's base. `copy` (optional) writes the base bytes to the given path; it
   * runs before the row is inserted, so a row never names a file that is not whole.
   */
  async capture(id: number, version: string, attr: Attr, copy?: (dest: string) => Promise<void>): Promise<void> {
    if (this.known.has(id)) return;
    this.known.add(id);
    let data: string | null = null;
    if (copy) {
      const dest = path.join(this.dir, String(id));
      try {
        await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
        await copy(dest);
        data = dest;
      } catch {
        data = null; // no base bytes: a three-way merge is then not possible, nothing else changes
      }
    }
    const a: BaseAttr = { type: attr.type, mode: attr.mode, uid: attr.uid, gid: attr.gid, size: attr.size, mtimeNs: String(attr.mtimeNs) };
    this.st.put.run(id, version, JSON.stringify(a), data);
  }

  get(id: number): OfflineBase | null {
    const r = this.st.get.get(id) as { object: number; version: string; attr: string; data: string | null } | undefined;
    if (!r) return null;
    const attr = BaseAttrSchema.safeParse(JSON.parse(r.attr));
    return attr.success ? { object: r.object, version: r.version, attr: attr.data, data: r.data } : null;
  }

  /** After a reintegration: every offline change is on the backend or parked with a conflict. */
  async clear(): Promise<void> {
    this.st.clear.run();
    this.known.clear();
    await fsp.rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}
