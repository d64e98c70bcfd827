// The conflict store: conflicts found on replay, with the records that were parked with
// them, the versions involved and where their variants are kept. A conflict row is never
// deleted: an open one holds both variants (the client's copied from the cache, the
// server's fetched) until the user chooses; a resolved one says who chose what and when.
//
// On disk each conflict has a directory (`dir`) holding its variants by name:
//   client    what this cache made of the object while disconnected
//   server    what the backend held when the conflict was found
//   base      what both started from, when the cache knew it (small files)
//   resolved  the user's (or the merge's) resolution, if any
// Each may be a regular file, a symlink or a directory tree, or absent (the side removed it).
import { z } from 'zod';
import type { Db } from '../index/db.js';

export const ConflictKindSchema = z.enum([
  'update-update', 'update-remove', 'remove-update', 'create-create', 'rename-target',
  'file-dir', 'dir-removed-with-children', 'metadata', 'symlink-retarget',
  // A journaled write whose bytes the cache file no longer holds as recorded (the process
  // died while they were on their way there): never dropped, shown with what the cache has.
  'unreplayable',
  // The server refused a change made offline (EACCES, EDQUOT, ENAMETOOLONG…): kept, shown.
  'refused',
]);
export type ConflictKind = z.infer<typeof ConflictKindSchema>;

/** How a conflict ended: a user's choice, or the automatic rule that settled it. */
export const ResolutionSchema = z.enum([
  'client', 'server', 'both', 'resolved',
  'auto-identical', 'auto-metadata-merged', 'auto-merged', 'auto-kept-update', 'auto-dirs-merged',
]);
export type Resolution = z.infer<typeof ResolutionSchema>;

export const VARIANTS = ['client', 'server', 'base', 'resolved'] as const;
export type VariantName = typeof VARIANTS[number];

/** What one variant is, as far as the store knows (the bytes are in the conflict's dir). */
export const VariantInfoSchema = z.object({
  type: z.enum(['file', 'dir', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev', 'absent']),
  size: z.number().optional(),
  sha256: z.string().optional(),
  mode: z.number().optional(),
  uid: z.number().optional(),
  gid: z.number().optional(),
  mtimeNs: z.string().optional(),
  target: z.string().optional(),
  /** False when only part of it could be kept (never fully cached, or too big to fetch). */
  complete: z.boolean().optional(),
});
export type VariantInfo = z.infer<typeof VariantInfoSchema>;

export const ConflictDetailSchema = z.object({
  /** For renames and links: where the client moved the object to. */
  to: z.string().optional(),
  client: VariantInfoSchema.optional(),
  server: VariantInfoSchema.optional(),
  base: VariantInfoSchema.optional(),
  /** Metadata fields both sides changed to different values. */
  fields: z.array(z.string()).optional(),
  /** For renames: where the object still is on the server (the conflict's path is the target). */
  from: z.string().optional(),
  resolved: VariantInfoSchema.optional(),
  /** The client's object was made while disconnected (it exists nowhere else). */
  createdOffline: z.boolean().optional(),
  /** The conflict took the object's later records (replay skips them: they are in the client variant). */
  parks: z.boolean().optional(),
  /** Of those, only records up to this journal seq (later ones were made against the server's variant). */
  upTo: z.number().optional(),
  /** One line for people: what happened. */
  note: z.string().optional(),
}).passthrough();
export type ConflictDetail = z.infer<typeof ConflictDetailSchema>;

export interface Conflict {
  id: number;
  kind: ConflictKind;
  /** The conflicted name, from the mount root (as the client knew it). */
  path: string;
  object: number | null;
  baseVersion: string | null;
  clientVersion: string | null;
  serverVersion: string | null;
  detectedAt: number;
  /** Where the variants are kept (see the file comment). */
  dir: string | null;
  epoch: number;
  resolvedAt: number | null;
  resolution: Resolution | null;
  resolvedBy: 'auto' | 'user' | null;
  detail: ConflictDetail;
}

export interface NewConflict {
  kind: ConflictKind;
  path: string;
  object: number | null;
  record: unknown;
  baseVersion: string | null;
  clientVersion?: string | null;
  serverVersion: string | null;
  dir?: string | null;
  epoch?: number;
  detail?: ConflictDetail;
  /** Settled on the spot by an automatic rule (the row is history, not a question). */
  resolved?: Resolution;
  /**
   * False: tell no one yet (an automatic rule is about to try; `announce` or `resolve`
   * tells). Listeners then hear of a conflict once, in its final state.
   */
  announce?: boolean;
}

interface Row {
  id: number; kind: string; path: string; object: number | null; base_version: string | null;
  client_version: string | null; server_version: string | null; detected_at: number; dir: string | null;
  epoch: number; resolved_at: number | null; resolution: string | null; resolved_by: string | null; detail: string | null;
  records: string | null;
}

type Listener = (c: Conflict) => void;

export class ConflictStore {
  private readonly st;
  private readonly listeners: Listener[] = [];

  constructor(readonly db: Db) {
    this.st = {
      epoch: db.prepare(`SELECT value FROM meta WHERE key = 'reintegration_epoch'`),
      setEpoch: db.prepare(`INSERT INTO meta (key, value) VALUES ('reintegration_epoch', ?)
                            ON CONFLICT(key) DO UPDATE SET value = excluded.value`),
      open: db.prepare(`SELECT * FROM conflicts WHERE resolved_at IS NULL ORDER BY id`),
      all: db.prepare(`SELECT * FROM conflicts ORDER BY id`),
      get: db.prepare(`SELECT * FROM conflicts WHERE id = ?`),
      ofEpoch: db.prepare(`SELECT * FROM conflicts WHERE epoch = ? ORDER BY id`),
      count: db.prepare(`SELECT COUNT(*) AS n FROM conflicts WHERE resolved_at IS NULL`),
      add: db.prepare(`INSERT INTO conflicts (kind, path, object, record, base_version, client_version, server_version,
                         detected_at, dir, records, epoch, detail, resolved_at, resolution, resolved_by)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      records: db.prepare(`SELECT records FROM conflicts WHERE id = ?`),
      setRecords: db.prepare(`UPDATE conflicts SET records = ? WHERE id = ?`),
      resolve: db.prepare(`UPDATE conflicts SET resolved_at = ?, resolution = ?, resolved_by = ? WHERE id = ? AND resolved_at IS NULL`),
      setDetail: db.prepare(`UPDATE conflicts SET detail = ? WHERE id = ?`),
    };
  }

  /**
   * The reintegration under way (or next): conflicts carry it, so a replay resumed after a
   * crash finds the conflicts it had already found and parks their later records with them.
   */
  epoch(): number {
    const r = this.st.epoch.get() as { value: string } | undefined;
    return r ? Number(r.value) : 0;
  }

  /** A reintegration finished: the next one is a new epoch. */
  nextEpoch(): void { this.st.setEpoch.run(String(this.epoch() + 1)); }

  /** Called for every conflict added or resolved (notifications). */
  onChange(fn: Listener): void { this.listeners.push(fn); }

  private emit(id: number): void {
    const c = this.get(id);
    if (c) for (const fn of this.listeners) { try { fn(c); } catch { /* a listener never breaks the store */ } }
  }

  add(c: NewConflict): number {
    const t = Date.now();
    const info = this.st.add.run(c.kind, c.path, c.object, JSON.stringify(c.record), c.baseVersion, c.clientVersion ?? null,
      c.serverVersion, t, c.dir ?? null, JSON.stringify([c.record]), c.epoch ?? 0, JSON.stringify(c.detail ?? {}),
      c.resolved ? t : null, c.resolved ?? null, c.resolved ? 'auto' : null);
    const id = Number(info.lastInsertRowid);
    if (c.announce !== false) this.emit(id);
    return id;
  }

  /** Tells listeners of a conflict added quietly (its automatic rule could not settle it). */
  announce(id: number): void { this.emit(id); }

  /** Parks one more record with a conflict (a later change to the same object). */
  addRecord(id: number, record: unknown): void {
    const list = this.records(id);
    list.push(record);
    this.st.setRecords.run(JSON.stringify(list), id);
  }

  /** The journal records parked with a conflict, the conflicting one first. */
  records(id: number): unknown[] {
    const row = this.st.records.get(id) as { records: string | null } | undefined;
    return row?.records ? JSON.parse(row.records) as unknown[] : [];
  }

  setDetail(id: number, detail: ConflictDetail): void {
    this.st.setDetail.run(JSON.stringify(detail), id);
  }

  /** Marks a conflict resolved; false if it was not open. */
  resolve(id: number, resolution: Resolution, by: 'auto' | 'user'): boolean {
    const ok = this.st.resolve.run(Date.now(), resolution, by, id).changes > 0;
    if (ok) this.emit(id);
    return ok;
  }

  openCount(): number {
    return (this.st.count.get() as { n: number }).n;
  }

  /** Open conflicts (or every conflict ever found, with `all`), oldest first. */
  list(opts: { all?: boolean } = {}): Conflict[] {
    return ((opts.all ? this.st.all : this.st.open).all() as Row[]).map(fromRow);
  }

  get(id: number): Conflict | null {
    const r = this.st.get.get(id) as Row | undefined;
    return r ? fromRow(r) : null;
  }

  /** Conflicts found by one reintegration, with their parked records (to resume it). */
  ofEpoch(epoch: number): { conflict: Conflict; records: unknown[] }[] {
    return (this.st.ofEpoch.all(epoch) as Row[]).map((r) => ({ conflict: fromRow(r), records: r.records ? JSON.parse(r.records) as unknown[] : [] }));
  }
}

function fromRow(r: Row): Conflict {
  let detail: ConflictDetail = {};
  try {
    const parsed = ConflictDetailSchema.safeParse(JSON.parse(r.detail ?? '{}'));
    if (parsed.success) detail = parsed.data;
  } catch { /* an unreadable detail is shown as none; the row itself stays */ }
  const res = r.resolution ? ResolutionSchema.safeParse(r.resolution) : null;
  return {
    id: r.id, kind: ConflictKindSchema.parse(r.kind), path: r.path, object: r.object,
    baseVersion: r.base_version, clientVersion: r.client_version, serverVersion: r.server_version,
    detectedAt: r.detected_at, dir: r.dir, epoch: r.epoch, resolvedAt: r.resolved_at,
    resolution: res?.success ? res.data : null,
    resolvedBy: r.resolved_by === 'auto' || r.resolved_by === 'user' ? r.resolved_by : null,
    detail,
  };
}
