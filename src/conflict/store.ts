// The conflict store: conflicts found on replay, with the record that conflicted and the
// versions involved. A conflict row is never deleted before it is resolved: both variants
// are kept (the client's in the cache, the server's fetched) until the user chooses.
import { z } from 'zod';
import type { Db } from '../index/db.js';

export const ConflictKindSchema = z.enum([
  'update-update', 'update-remove', 'remove-update', 'create-create', 'rename-target',
  'file-dir', 'dir-removed-with-children', 'metadata', 'symlink-retarget',
]);
export type ConflictKind = z.infer<typeof ConflictKindSchema>;

export interface Conflict {
  id: number;
  kind: ConflictKind;
  path: string;
  object: number | null;
  baseVersion: string | null;
  serverVersion: string | null;
  detectedAt: number;
}

export class ConflictStore {
  private readonly st;
  constructor(db: Db) {
    this.st = {
      open: db.prepare(`SELECT * FROM conflicts WHERE resolved_at IS NULL ORDER BY id`),
      count: db.prepare(`SELECT COUNT(*) AS n FROM conflicts WHERE resolved_at IS NULL`),
      add: db.prepare(`INSERT INTO conflicts (kind, path, object, record, base_version, server_version, detected_at, client_copy, records)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      records: db.prepare(`SELECT records FROM conflicts WHERE id = ?`),
      setRecords: db.prepare(`UPDATE conflicts SET records = ? WHERE id = ?`),
    };
  }

  add(c: Omit<Conflict, 'id' | 'detectedAt'> & { record: unknown; clientCopy?: string | null }): number {
    const info = this.st.add.run(c.kind, c.path, c.object, JSON.stringify(c.record), c.baseVersion, c.serverVersion, Date.now(),
      c.clientCopy ?? null, JSON.stringify([c.record]));
    return Number(info.lastInsertRowid);
  }

  /** Parks one more record with a conflict (a later change to the same object). */
  addRecord(id: number, record: unknown): void {
    const row = this.st.records.get(id) as { records: string | null } | undefined;
    const list = row?.records ? JSON.parse(row.records) as unknown[] : [];
    list.push(record);
    this.st.setRecords.run(JSON.stringify(list), id);
  }

  openCount(): number {
    return (this.st.count.get() as { n: number }).n;
  }

  list(): Conflict[] {
    return (this.st.open.all() as { id: number; kind: string; path: string; object: number | null;
      base_version: string | null; server_version: string | null; detected_at: number }[])
      .map((r) => ({ id: r.id, kind: ConflictKindSchema.parse(r.kind), path: r.path, object: r.object,
        baseVersion: r.base_version, serverVersion: r.server_version, detectedAt: r.detected_at }));
  }
}
