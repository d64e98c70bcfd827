// Reconciliation: replaying records made while disconnected against a server that may have
// changed meanwhile (ARCHITECTURE §7). For each record the server's current state is
// compared with what the record was made against; a difference is a conflict, which is
//   - settled automatically where that is safe (identical content, metadata fields only one
//     side changed, directories both sides made, a clean three-way merge of text with a
//     known base, remove against update: the update stays), or
//   - parked: the record (and every later record of the same objects) leaves the journal
//     into the conflict store, the client's variant is copied out of the cache and the
//     server's fetched, and the server's variant stays where it is until the user chooses.
//
// What must stay true (invariant 3): no byte of either variant is dropped before a
// conflict row names the directory that holds both; an automatic rule acts only after its
// conflict row is stored open, and marks it resolved only once its backend work is done
// (a crash in between leaves an open conflict, never a silent loss). Parked records are
// found again after a crash through the rows of the current epoch.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { FsError, isFsError } from '../core/errors.js';
import { log } from '../core/log.js';
import { isConnectionError } from '../journal/replayer.js';
import type { Attr, Node } from '../backends/types.js';
import type { CachedObject } from '../index/objects.js';
import type { JournalEntry } from '../journal/journal.js';
import { changedObject as subjectOf, type JournalRecord } from '../journal/records.js';
import type { ReplayHint } from '../journal/replayer.js';
import type { ConflictDetail, ConflictKind, ConflictStore, Resolution, VariantInfo } from './store.js';
import type { OfflineBases } from './bases.js';
import { fullyCached, readVariant, saveClient, saveServer, type VariantDeps } from './variants.js';
import { isText } from './content.js';

/** What applying a record produced (the target's outcome type, kept structural here). */
export type Outcome =
  | { kind: 'done' }
  | { kind: 'created'; fh: Buffer; attr: Attr }
  | { kind: 'attr'; attr: Attr };

/** What reconciliation needs from the layer that owns the cache. */
export interface ReconcileGuard {
  store: ConflictStore;
  bases: OfflineBases;
  cacheDir: string;
  rootId(): number;
  pathOf(id: number): string | null;
  /** The object's cached data is a conflict's client variant now: the cache shows the server's. */
  onConflict(o: CachedObject): void;
  /** List this directory again once the replay is over (its names may be ours, not the server's). */
  relist(dirId: number): void;
  /** The pending records (this one included) that change object `id`. */
  pendingOf(id: number): JournalRecord[];
  /** The newest record in the journal (0: none). */
  lastSeq(): number;
}

/** How the target applies a record as it is, and notes the version it left. */
export interface PlainApply {
  apply(entry: JournalEntry, hint: ReplayHint | undefined): Promise<Outcome>;
  noteApplied(objId: number, out: Outcome): Promise<void>;
  alreadyThere(entry: JournalEntry, hint: ReplayHint | undefined, o: CachedObject, attr: Attr): Promise<boolean>;
}

/** Most bytes a text file may have for a three-way merge. */
const MERGE_MAX = 8 * 1024 * 1024;
const WRITE_SIZE = 1024 * 1024;
const META_FIELDS = ['mode', 'uid', 'gid'] as const;
type MetaField = typeof META_FIELDS[number];

export class Reconciler {
  /**
   * Object ids whose records this epoch's conflicts consume -> conflict id. `tree`: the
   * object was made offline, so records inside it (a directory) belong to the conflict too.
   */
  private parked = new Map<number, Parked>();
  private parkedEpoch = -1;
  /** The object the previous record was applied to (its version was read then). */
  private lastObj: number | null = null;

  constructor(
    private readonly d: VariantDeps,
    private readonly g: ReconcileGuard,
    private readonly plain: PlainApply,
    private readonly isProvisional: (fh: Buffer) => boolean,
    /** Tells the refusal of a write record whose cached bytes fail their CRC (see parkUnreplayable). */
    private readonly bytesLost: (e: unknown) => boolean = () => false,
  ) {}

  /** Replay stopped being a reintegration: forget per-replay state. */
  reset(): void {
    this.lastObj = null;
    this.parkedEpoch = -1;
  }

  private parkedMap(): Map<number, Parked> {
    const epoch = this.g.store.epoch();
    if (epoch !== this.parkedEpoch) {
      this.parked = new Map();
      for (const { conflict, records } of this.g.store.ofEpoch(epoch)) {
        if (!conflict.detail.parks) continue;
        const upTo = conflict.detail.upTo ?? Infinity;
        if (conflict.object !== null) this.parked.set(conflict.object, { id: conflict.id, tree: conflict.detail.createdOffline === true, upTo });
        for (const r of records) {
          const made = createdObj(r as JournalRecord);
          if (made !== undefined) this.parked.set(made, { id: conflict.id, tree: true, upTo });
        }
      }
      this.parkedEpoch = epoch;
    }
    return this.parked;
  }

  async apply(entry: JournalEntry, hint: ReplayHint | undefined): Promise<Outcome> {
    try {
      return await this.applyChecked(entry, hint);
    } catch (e) {
      if (entry.record.op === 'write' && this.bytesLost(e)) return this.parkUnreplayable(entry, entry.record, e as Error);
      const r = entry.record;
      if (isConnectionError(e) || !isFsError(e) || !('offline' in r) || !r.offline) throw e;
      return this.parkRefused(entry, e);
    }
  }

  /**
   * The server refused a change made offline. It is never dropped with only a log line:
   * it becomes a conflict the user sees, with the object as the cache has it (the client
   * variant) and as the server has it; the object's later records join it.
   */
  private async parkRefused(entry: JournalEntry, e: FsError): Promise<Outcome> {
    const r = entry.record;
    const subject = subjectOf(r) ?? createdObj(r);
    const o = subject !== undefined ? this.d.index.get(subject) : undefined;
    if (!o) throw e;
    const dir = await this.conflictDir(o.id, entry.seq);
    const client = await saveClient(this.d, o, path.join(dir, 'client'));
    let server: Attr | null = null;
    if (!this.isProvisional(o.fh)) {
      try {
        server = await this.d.call('getattr', () => this.d.backend.getattr(o.fh));
      } catch (x) {
        if (!isFsError(x, 'ESTALE')) throw x;
      }
    }
    const serverV: VariantInfo = server ? await saveServer(this.d, o.fh, server, path.join(dir, 'server')) : { type: 'absent' };
    const where = ('parent' in r && 'name' in r) ? path.posix.join(this.g.pathOf(r.parent) ?? '/', r.name)
      : r.op === 'rename' ? path.posix.join(this.g.pathOf(r.fromParent) ?? '/', r.fromName) : undefined;
    const id = this.park('refused', o, entry, {
      ...(where !== undefined ? { path: where } : {}),
      clientVersion: clientVersion(client, o), serverVersion: server?.version ?? null, dir,
      detail: { client, server: serverV, parks: true, createdOffline: this.isProvisional(o.fh),
        note: `the server refused this ${r.op} made offline: ${e.code} (${e.message})` },
    });
    this.lastObj = null;
    log.warn(`conflict ${id} (refused): the server refused ${r.op} of ${where ?? `object ${o.id}`} with ${e.code}; what the cache has is kept in ${dir}`);
    return { kind: 'done' };
  }

  /**
   * A write record whose bytes the cache file no longer holds as journaled (the mount died
   * while they were on their way there): it is never dropped silently. It becomes a conflict
   * the user sees, whose client variant is the object as the cache file holds it (with every
   * later change of ours), and the server's as it is; later records of the object join it.
   */
  private async parkUnreplayable(entry: JournalEntry, r: Extract<JournalRecord, { op: 'write' }>, e: Error): Promise<Outcome> {
    const o = this.d.index.get(r.obj);
    if (!o || this.isProvisional(o.fh)) throw e;
    const dir = await this.conflictDir(o.id, entry.seq);
    const client = await saveClient(this.d, o, path.join(dir, 'client'));
    let server: Attr | null = null;
    try {
      server = await this.d.call('getattr', () => this.d.backend.getattr(o.fh));
    } catch (x) {
      if (!isFsError(x, 'ESTALE')) throw x;
    }
    const serverV: VariantInfo = server ? await saveServer(this.d, o.fh, server, path.join(dir, 'server')) : { type: 'absent' };
    const id = this.park('unreplayable', o, entry, {
      clientVersion: clientVersion(client, o), serverVersion: server?.version ?? null, dir,
      detail: { client, server: serverV, parks: true, note: 'bytes written here did not all reach the cache file before the mount stopped; the client variant is what the cache holds' },
    });
    this.lastObj = null;
    log.warn(`conflict ${id} (unreplayable) on ${this.g.pathOf(o.id) ?? `(object ${o.id})`}: ${e.message}; both variants are kept in ${dir}`);
    return { kind: 'done' };
  }

  private async applyChecked(entry: JournalEntry, hint: ReplayHint | undefined): Promise<Outcome> {
    const r = entry.record;
    const parked = this.parkedMap();
    const subject = subjectOf(r) ?? createdObj(r);
    // Only records made before the conflict was found: later ones were made against what the
    // cache showed since (the server's variant), and are reconciled like any other.
    const into = [subject !== undefined ? parked.get(subject) : undefined, ...dirsOf(r).map((id) => {
      const p = parked.get(id);
      return p?.tree ? p : undefined;
    })].find((p) => p !== undefined && entry.seq <= p.upTo);
    if (into !== undefined) {
      // A later change to an object (or inside a directory made offline) already in
      // conflict: it belongs to the client's variant, which the conflict holds whole.
      this.g.store.addRecord(into.id, r);
      const made = createdObj(r);
      if (made !== undefined) parked.set(made, { id: into.id, tree: true, upTo: into.upTo });
      this.lastObj = null;
      return { kind: 'done' };
    }
    if (!('offline' in r) || !r.offline) {
      // Made while connected (left by an earlier run): applied as it comes, as NFS would.
      this.lastObj = null;
      const out = await this.plain.apply(entry, hint);
      const subject = subjectOf(r);
      if (subject !== undefined) await this.plain.noteApplied(subject, out);
      return out;
    }
    switch (r.op) {
      case 'write': case 'setattr': case 'link': return this.update(entry, hint, r);
      case 'unlink': case 'rmdir': return this.remove(entry, hint, r);
      case 'rename': return this.rename(entry, hint, r);
      case 'create': case 'mkdir': case 'symlink': case 'mknod': return this.create(entry, hint, r);
      default: return this.plain.apply(entry, hint);
    }
  }

  private async plainNoted(entry: JournalEntry, hint: ReplayHint | undefined, objId: number): Promise<Outcome> {
    this.lastObj = null;
    const out = await this.plain.apply(entry, hint);
    await this.plain.noteApplied(objId, out);
    this.lastObj = objId;
    return out;
  }

  // ------------------------------------------------------------------ updates

  private async update(entry: JournalEntry, hint: ReplayHint | undefined, r: Extract<JournalRecord, { op: 'write' | 'setattr' | 'link' }>): Promise<Outcome> {
    const o = this.d.index.get(r.obj);
    if (!o || this.isProvisional(o.fh) || r.base === null || r.base.startsWith('provisional:')) return this.plain.apply(entry, hint);
    // Right after our own record to the same object, the version read then is current.
    if (this.lastObj === o.id) return this.plainNoted(entry, hint, o.id);
    const expected = this.d.index.replayVersion(o.id) ?? r.base;
    let attr: Attr | null;
    try {
      attr = await this.d.call('getattr', () => this.d.backend.getattr(o.fh));
    } catch (e) {
      if (!isFsError(e, 'ESTALE')) throw e;
      log.debug(`replay of record ${entry.seq} (${entry.record.op}): object ${o.id} is gone from the backend (${(e as Error).message})`);
      attr = null;
    }
    if (attr?.version === expected) return this.plainNoted(entry, hint, o.id);
    // A record applied just before a crash, whose new version was not noted: the backend
    // already holds exactly its change.
    if (attr && await this.plain.alreadyThere(entry, hint, o, attr)) return this.plainNoted(entry, hint, o.id);
    this.lastObj = null;
    if (attr === null) return this.updateRemoved(entry, o);
    return this.updateChanged(entry, hint, o, attr);
  }

  /** Both sides changed an object that still exists: merge what can be merged. */
  private async updateChanged(entry: JournalEntry, hint: ReplayHint | undefined, o: CachedObject, server: Attr): Promise<Outcome> {
    const base = this.g.bases.get(o.id);
    const mine = this.g.pendingOf(o.id);
    const clientData = mine.some((x) => x.op === 'write' || (x.op === 'setattr' && x.set.size !== undefined));
    const clientFields = new Set<MetaField>();
    for (const x of mine) if (x.op === 'setattr') for (const f of META_FIELDS) if (x.set[f] !== undefined) clientFields.add(f);
    const serverData = !base || server.size !== base.attr.size || String(server.mtimeNs) !== base.attr.mtimeNs;
    const value = (a: { mode: number; uid: number; gid: number }, f: MetaField) => (f === 'mode' ? a.mode & 0o7777 : a[f]);
    const clash = [...clientFields].filter((f) => (!base || value(server, f) !== value(base.attr, f)) && value(server, f) !== value(o.attr, f));
    const where = this.g.pathOf(o.id) ?? `(object ${o.id})`;

    if (!(clientData && serverData) && clash.length === 0) {
      // Only one side changed the bytes, and no metadata field was changed by both: our
      // records set only what we changed, so applying them on top keeps both changes.
      const out = await this.plainNoted(entry, hint, o.id);
      this.g.store.add({
        kind: clientData ? 'update-update' : 'metadata', path: where, object: o.id, record: entry.record,
        baseVersion: entry.record.base ?? null, clientVersion: o.attr.version, serverVersion: server.version,
        epoch: this.g.store.epoch(), resolved: 'auto-metadata-merged',
        detail: { note: clientData ? 'the server changed only metadata; our data change applied on top'
          : serverData ? 'we changed only metadata; applied on top of the server\'s new data' : 'metadata fields changed on each side were different ones' },
      });
      return out;
    }

    const dir = await this.conflictDir(o.id, entry.seq);
    const client = await saveClient(this.d, o, path.join(dir, 'client'));
    const serverV = await saveServer(this.d, o.fh, server, path.join(dir, 'server'));
    const baseV = await this.saveBase(base?.data ?? null, o, dir);
    const kind: ConflictKind = clientData && serverData ? 'update-update' : 'metadata';
    const detail: ConflictDetail = { client, server: serverV, ...(baseV ? { base: baseV } : {}), parks: true,
      ...(clash.length ? { fields: clash } : {}) };
    const auto = kind === 'update-update' && clash.length === 0;
    const id = this.park(kind, o, entry, { clientVersion: clientVersion(client, o), serverVersion: server.version, dir, detail, announce: !auto });

    if (auto) {
      const settled = await this.tryAutoData(id, o, server, client, serverV, baseV ? path.join(dir, 'base') : null, dir);
      if (settled) return { kind: 'done' };
      this.g.store.announce(id);
    }
    log.warn(`conflict ${id} (${kind}) on ${where}: changed here while disconnected and on the server too; `
      + `both variants are kept in ${dir}`);
    return { kind: 'done' };
  }

  /** Identical content, or a clean three-way merge of text: settle it without the user. */
  private async tryAutoData(id: number, o: CachedObject, server: Attr, client: VariantInfo, serverV: VariantInfo,
    basePath: string | null, dir: string): Promise<boolean> {
    if (client.complete === false || serverV.complete === false) return false;
    const meta = this.clientMeta(o, server);
    if (client.sha256 !== undefined && client.sha256 === serverV.sha256) {
      await this.setMeta(o, meta);
      this.settle(id, 'auto-identical');
      return true;
    }
    if (!basePath) return false;
    const [b, c, s] = await Promise.all([readVariant(basePath, MERGE_MAX), readVariant(path.join(dir, 'client'), MERGE_MAX),
      readVariant(path.join(dir, 'server'), MERGE_MAX)]);
    if (!b || !c || !s || !isText(b) || !isText(c) || !isText(s)) return false;
    const { threeWayMerge } = await import('./merge.js'); // the diff libraries, only now
    const m = threeWayMerge(b.toString('utf8'), c.toString('utf8'), s.toString('utf8'));
    await fsp.writeFile(path.join(dir, 'resolved'), m.merged, { mode: 0o600 });
    if (!m.clean) return false;
    const merged = Buffer.from(m.merged, 'utf8');
    await this.writeWhole(o.fh, merged);
    await this.setMeta(o, meta);
    const d = this.g.store.get(id)?.detail ?? {};
    this.g.store.setDetail(id, { ...d, resolved: { type: 'file', size: merged.length } });
    this.settle(id, 'auto-merged');
    return true;
  }

  /** The metadata fields our records set (applied on top of an automatic resolution). */
  private clientMeta(o: CachedObject, server: Attr): { mode?: number; uid?: number; gid?: number } {
    const out: { mode?: number; uid?: number; gid?: number } = {};
    for (const x of this.g.pendingOf(o.id)) {
      if (x.op !== 'setattr') continue;
      if (x.set.mode !== undefined && (o.attr.mode & 0o7777) !== (server.mode & 0o7777)) out.mode = o.attr.mode & 0o7777;
      if (x.set.uid !== undefined && o.attr.uid !== server.uid) out.uid = o.attr.uid;
      if (x.set.gid !== undefined && o.attr.gid !== server.gid) out.gid = o.attr.gid;
    }
    return out;
  }

  private async setMeta(o: CachedObject, meta: { mode?: number; uid?: number; gid?: number }): Promise<void> {
    if (Object.keys(meta).length === 0) return;
    await this.d.call('setattr', () => this.d.backend.setattr(o.fh, meta));
  }

  /** Makes the server's object hold exactly `data` (durably, on backends that write unstably). */
  private async writeWhole(fh: Buffer, data: Buffer): Promise<void> {
    for (let pos = 0; pos < data.length; pos += WRITE_SIZE) {
      const part = data.subarray(pos, Math.min(data.length, pos + WRITE_SIZE));
      await this.d.call('write', () => this.d.backend.write(fh, pos, part));
    }
    await this.d.call('setattr', () => this.d.backend.setattr(fh, { size: data.length }));
    await this.d.call('commit', () => this.d.backend.commit(fh));
  }

  /**
   * We changed an object the server removed meanwhile. Remove against update keeps the
   * update: the file is made again at its name, with our bytes (when the cache holds them all).
   */
  private async updateRemoved(entry: JournalEntry, o: CachedObject): Promise<Outcome> {
    const dir = await this.conflictDir(o.id, entry.seq);
    const client = await saveClient(this.d, o, path.join(dir, 'client'));
    const where = this.g.pathOf(o.id) ?? `(object ${o.id})`;
    const id = this.park('update-remove', o, entry, {
      clientVersion: clientVersion(client, o), serverVersion: null, dir,
      detail: { client, server: { type: 'absent' }, parks: true, note: 'removed on the server, changed here' }, announce: false,
    });
    const named = this.d.index.parentOf(o.id);
    if (named && o.attr.type === 'file' && client.complete !== false) {
      try {
        const parentFh = await this.ensureDir(named.parent);
        const n = await this.d.call('create', () => this.d.backend.create(parentFh, named.name, o.attr.mode & 0o7777,
          { uid: o.attr.uid, gid: o.attr.gid }, { exclusive: true }));
        await this.writeWhole(n.fh, await fsp.readFile(path.join(dir, 'client')));
        if (!this.d.index.byHandle(n.fh)) this.d.index.setHandle(o, n.fh);
        this.g.relist(named.parent);
        this.settle(id, 'auto-kept-update');
        log.info(`conflict ${id}: ${where} was removed on the server but changed here: made again with our bytes`);
        return { kind: 'done' };
      } catch (e) {
        if (isConnectionError(e)) throw e;
        log.warn(`conflict ${id}: cannot make ${where} again (${(e as Error).message}); it waits for you`);
      }
    }
    this.g.store.announce(id);
    log.warn(`conflict ${id} (update-remove) on ${where}: both variants are kept in ${dir}`);
    return { kind: 'done' };
  }

  /**
   * The backend handle of directory `dirId`, making the directory again (with its parents)
   * if the server removed it while we put things in it: remove against update keeps the update.
   */
  private async ensureDir(dirId: number, depth = 0): Promise<Buffer> {
    const d = this.d.index.get(dirId);
    if (!d) throw new FsError('ESTALE', `directory ${dirId} is no longer in the index`);
    if (this.isProvisional(d.fh)) throw new FsError('ESTALE', `directory ${dirId} was never made on the backend`);
    try {
      await this.d.call('getattr', () => this.d.backend.getattr(d.fh));
      return d.fh;
    } catch (e) {
      if (!isFsError(e, 'ESTALE') || dirId === this.g.rootId() || depth > 64) throw e;
    }
    const named = this.d.index.parentOf(dirId);
    if (!named) throw new FsError('ESTALE', `directory ${dirId} has no cached name to make it again under`);
    const parentFh = await this.ensureDir(named.parent, depth + 1);
    let n: Node;
    try {
      n = await this.d.call('mkdir', () => this.d.backend.mkdir(parentFh, named.name, d.attr.mode & 0o7777, { uid: d.attr.uid, gid: d.attr.gid }));
    } catch (e) {
      if (!isFsError(e, 'EEXIST')) throw e;
      n = await this.d.call('lookup', () => this.d.backend.lookup(parentFh, named.name));
      if (n.attr.type !== 'dir') throw e;
    }
    const where = this.g.pathOf(dirId) ?? `(directory ${dirId})`;
    if (!this.d.index.byHandle(n.fh)) this.d.index.setHandle(d, n.fh);
    d.attrAt = 0;
    this.g.relist(named.parent);
    this.g.relist(dirId);
    this.g.store.add({
      kind: 'dir-removed-with-children', path: where, object: dirId, record: { op: 'mkdir', parent: named.parent, name: named.name },
      baseVersion: d.attr.version, serverVersion: null, epoch: this.g.store.epoch(), resolved: 'auto-kept-update',
      detail: { note: 'the server removed this directory while we changed things in it: made again to hold our changes' },
    });
    log.info(`${where} was removed on the server while we changed things in it: made again`);
    return n.fh;
  }

  // ------------------------------------------------------------------ removals

  private async remove(entry: JournalEntry, hint: ReplayHint | undefined, r: Extract<JournalRecord, { op: 'unlink' | 'rmdir' }>): Promise<Outcome> {
    const o = r.obj !== undefined ? this.d.index.get(r.obj) : undefined;
    const dir = this.d.index.get(r.parent);
    this.lastObj = null;
    if (!o || !dir || this.isProvisional(o.fh) || this.isProvisional(dir.fh)) return this.plain.apply(entry, hint);
    let n: Node;
    try {
      n = await this.d.call('lookup', () => this.d.backend.lookup(dir.fh, r.name));
    } catch (e) {
      // Gone already (the server removed it too, or its whole directory): nothing to do.
      if (isFsError(e, 'ENOENT') || isFsError(e, 'ESTALE')) return { kind: 'done' };
      throw e;
    }
    // An object made offline (provisional base) existed nowhere else before this replay:
    // nobody else can have changed it, only its name can have been taken over.
    const madeHere = (r.objBase ?? '').startsWith('provisional:');
    const expected = madeHere ? null : this.d.index.replayVersion(o.id) ?? r.objBase ?? null;
    let why: string | null = null;
    if (!n.fh.equals(o.fh)) why = 'the server put another object at this name';
    else if (r.op === 'unlink' && expected !== null && n.attr.version !== expected) why = 'changed on the server';
    if (why === null) {
      try {
        const out = await this.plain.apply(entry, hint);
        await this.plain.noteApplied(o.id, out);
        return out;
      } catch (e) {
        if (!(r.op === 'rmdir' && (isFsError(e, 'ENOTEMPTY') || isFsError(e, 'EEXIST')))) throw e;
        why = 'the server put new entries in it';
      }
    }
    // Remove against update keeps the update: the server's object stays.
    const where = path.posix.join(this.g.pathOf(r.parent) ?? '/', r.name);
    this.g.store.add({
      kind: 'remove-update', path: where, object: o.id, record: r, baseVersion: expected, serverVersion: n.attr.version,
      epoch: this.g.store.epoch(), resolved: 'auto-kept-update',
      detail: { note: `removed here while disconnected, but ${why}: the server's stays` },
    });
    this.g.relist(r.parent);
    o.attrAt = 0;
    log.info(`${where}: removed here, but ${why}; kept`);
    return { kind: 'done' };
  }

  // ------------------------------------------------------------------ renames

  private async rename(entry: JournalEntry, hint: ReplayHint | undefined, r: Extract<JournalRecord, { op: 'rename' }>): Promise<Outcome> {
    this.lastObj = null;
    const o = r.obj !== undefined ? this.d.index.get(r.obj) : undefined;
    const to = this.d.index.get(r.toParent);
    if (!o || !to || this.isProvisional(to.fh) || this.isProvisional(o.fh)) return this.plain.apply(entry, hint);
    let toFh = to.fh;
    let there: Node | null = null;
    try {
      there = await this.d.call('lookup', () => this.d.backend.lookup(toFh, r.toName));
    } catch (e) {
      if (isFsError(e, 'ESTALE')) toFh = await this.ensureDir(r.toParent);
      else if (!isFsError(e, 'ENOENT')) throw e;
    }
    if (there && there.fh.equals(o.fh)) return { kind: 'done' }; // applied before a crash
    if (there) {
      const t = r.target !== undefined ? this.d.index.get(r.target) : undefined;
      const expectedT = r.target === undefined || (r.targetBase ?? '').startsWith('provisional:') ? null
        : this.d.index.replayVersion(r.target) ?? r.targetBase ?? null;
      // The record's target never reached the server (made here, its create optimized away
      // with the renames that replaced it, as in git's index.lock -> index done twice): the
      // name still holds what it held before our changes. That is no conflict if it is an
      // object we know and the server has not changed since we cached it (invariant 9).
      const neverThere = !t || this.isProvisional(t.fh);
      const known = neverThere ? this.d.index.byHandle(there.fh) : undefined;
      const knownUnchanged = known !== undefined && known !== o
        && there.attr.version === (this.d.index.replayVersion(known.id) ?? known.attr.version);
      const why = r.target === undefined ? 'the server created the name meanwhile'
        : neverThere ? (knownUnchanged ? null : `the name holds an object we did not replace (${known ? `object ${known.id} at version ${this.d.index.replayVersion(known.id) ?? known.attr.version}, the server's ${there.attr.version}` : 'unknown here'})`)
        : !there.fh.equals(t.fh) ? 'the name holds another object on the server now'
        : expectedT !== null && there.attr.version !== expectedT ? `the server changed it meanwhile (version ${there.attr.version}, ours ${expectedT})` : null;
      if (why !== null) { log.debug(`replay of rename record ${entry.seq}: ${why}`); return this.parkRename(entry, r, o, there); }
    }
    try {
      const out = await this.plain.apply(entry, hint);
      await this.plain.noteApplied(o.id, out);
      // The object it replaced lost a name: one with other links lives on, and our rename
      // moved its ctime (its version) on the server. A later record of it (rsync -H writing
      // a hard-linked file anew renames over each name in turn) is based on what it was
      // before: it must find that our change, not someone else's (invariant 9).
      if (there && r.target !== undefined && r.target !== o.id) await this.plain.noteApplied(r.target, { kind: 'done' });
      return out;
    } catch (e) {
      // The object itself is gone from the server (removed there while we renamed it).
      if (isFsError(e, 'ENOENT') && o.attr.type === 'file') return this.updateRemoved(entry, o);
      throw e;
    }
  }

  private async parkRename(entry: JournalEntry, r: Extract<JournalRecord, { op: 'rename' }>, o: CachedObject, there: Node): Promise<Outcome> {
    const dir = await this.conflictDir(o.id, entry.seq);
    const client = await saveClient(this.d, o, path.join(dir, 'client'));
    const server = await saveServer(this.d, there.fh, there.attr, path.join(dir, 'server'));
    const kind: ConflictKind = o.attr.type === 'symlink' && there.attr.type === 'symlink' ? 'symlink-retarget' : 'rename-target';
    const toPath = path.posix.join(this.g.pathOf(r.toParent) ?? '/', r.toName);
    const fromPath = path.posix.join(this.g.pathOf(r.fromParent) ?? '/', r.fromName);
    const createdOffline = (r.base ?? '').startsWith('provisional:');
    const id = this.park(kind, o, entry, {
      path: toPath, clientVersion: clientVersion(client, o), serverVersion: there.attr.version, dir,
      detail: { client, server, parks: true, from: fromPath, to: toPath, createdOffline,
        note: r.target === undefined ? 'renamed here onto a name the server created meanwhile' : 'renamed here onto a name the server changed meanwhile' },
    });
    this.g.relist(r.fromParent);
    this.g.relist(r.toParent);
    log.warn(`conflict ${id} (${kind}): ${fromPath} -> ${toPath}; the server's ${toPath} stays, ours is kept in ${dir}`);
    return { kind: 'done' };
  }

  // ------------------------------------------------------------------ creates

  private async create(entry: JournalEntry, hint: ReplayHint | undefined,
    r: Extract<JournalRecord, { op: 'create' | 'mkdir' | 'symlink' | 'mknod' }>, retried = false): Promise<Outcome> {
    this.lastObj = null;
    try {
      return await this.plain.apply(entry, hint);
    } catch (e) {
      const parent = this.d.index.get(r.parent);
      // The directory is gone from the server (ESTALE; some servers answer ENOENT for a
      // handle of a removed directory): made again if it is, the create then tried once more.
      if ((isFsError(e, 'ESTALE') || isFsError(e, 'ENOENT')) && parent && !this.isProvisional(parent.fh) && !retried) {
        const fh = parent.fh;
        if (!(await this.ensureDir(r.parent)).equals(fh)) return this.create(entry, hint, r, true);
      }
      if (!isFsError(e, 'EEXIST')) throw e;
      return this.collision(entry, r, e);
    }
  }

  /** We made a name the server made too. */
  private async collision(entry: JournalEntry, r: Extract<JournalRecord, { op: 'create' | 'mkdir' | 'symlink' | 'mknod' }>, err: unknown): Promise<Outcome> {
    const prov = r.obj !== undefined ? this.d.index.get(r.obj) : undefined;
    const dirObj = this.d.index.get(r.parent);
    if (!prov || !dirObj) throw err;
    const there = await this.d.call('lookup', () => this.d.backend.lookup(dirObj.fh, r.name));
    const where = path.posix.join(this.g.pathOf(r.parent) ?? '/', r.name);
    const known = this.d.index.byHandle(there.fh);
    const adopt = (resolution: Resolution, note: string): Outcome => {
      this.d.index.setHandle(prov, there.fh);
      this.g.store.add({ kind: 'create-create', path: where, object: prov.id, record: r, baseVersion: r.base, serverVersion: there.attr.version,
        epoch: this.g.store.epoch(), resolved: resolution, detail: { note } });
      this.g.relist(r.parent);
      log.info(`${where}: made here and on the server; ${note}`);
      return { kind: 'created', fh: there.fh, attr: there.attr };
    };
    if (!known && prov.attr.type === 'dir' && there.attr.type === 'dir') {
      this.g.relist(prov.id);
      return adopt('auto-dirs-merged', 'both directories merged into one');
    }
    if (!known && prov.attr.type === 'symlink' && there.attr.type === 'symlink') {
      const target = await this.d.call('readlink', () => this.d.backend.readlink(there.fh));
      if (target === prov.symlink) return adopt('auto-identical', 'both point to the same target');
    }
    const dir = await this.conflictDir(prov.id, entry.seq);
    const client = await saveClient(this.d, prov, path.join(dir, 'client'));
    const server = await saveServer(this.d, there.fh, there.attr, path.join(dir, 'server'));
    if (!known && prov.attr.type === 'file' && there.attr.type === 'file' && client.complete !== false && server.complete !== false
      && client.sha256 === server.sha256) {
      await fsp.rm(dir, { recursive: true, force: true });
      return adopt('auto-identical', 'both have the same bytes');
    }
    const types = new Set([prov.attr.type, there.attr.type]);
    const kind: ConflictKind = types.has('dir') && types.size > 1 ? 'file-dir'
      : prov.attr.type === 'symlink' && there.attr.type === 'symlink' ? 'symlink-retarget' : 'create-create';
    const id = this.park(kind, prov, entry, {
      path: where, clientVersion: clientVersion(client, prov), serverVersion: there.attr.version, dir,
      detail: { client, server, parks: true, createdOffline: true, note: `made here while disconnected; the server made a ${there.attr.type} there too` },
    });
    this.g.relist(r.parent);
    log.warn(`conflict ${id} (${kind}) on ${where}: the server's stays; ours is kept in ${dir}`);
    return { kind: 'done' };
  }

  // ------------------------------------------------------------------ helpers

  /**
   * A fresh directory for a conflict's variants, named by the record that found it. A
   * leftover of the same name is from a run that died before its conflict row was stored
   * (the record is still in the journal): nothing refers to it, so it is started over.
   */
  private async conflictDir(objId: number, seq: number): Promise<string> {
    const dir = path.join(this.g.cacheDir, 'conflicts', `${objId}-${seq}`);
    await fsp.rm(dir, { recursive: true, force: true });
    return dir;
  }

  private async saveBase(data: string | null, o: CachedObject, dir: string): Promise<VariantInfo | null> {
    if (!data) return null;
    try {
      await fsp.copyFile(data, path.join(dir, 'base'));
      const st = await fsp.stat(path.join(dir, 'base'));
      return { type: 'file', size: st.size, mode: o.attr.mode & 0o7777 };
    } catch {
      return null;
    }
  }

  /** Stores an open conflict that consumes this object's records from now on. */
  private park(kind: ConflictKind, o: CachedObject, entry: JournalEntry,
    x: { path?: string; clientVersion: string; serverVersion: string | null; dir: string; detail: ConflictDetail; announce?: boolean }): number {
    const r = entry.record;
    const upTo = this.g.lastSeq();
    const id = this.g.store.add({
      kind, path: x.path ?? this.g.pathOf(o.id) ?? `(object ${o.id})`, object: o.id, record: r,
      baseVersion: 'base' in r ? r.base ?? null : null, clientVersion: x.clientVersion, serverVersion: x.serverVersion,
      dir: x.dir, epoch: this.g.store.epoch(), detail: { ...x.detail, upTo }, announce: x.announce !== false,
    });
    this.parkedMap().set(o.id, { id, tree: x.detail.createdOffline === true, upTo });
    const named = this.d.index.parentOf(o.id);
    if (named) this.g.relist(named.parent);
    this.g.onConflict(o);
    return id;
  }

  private settle(id: number, how: Resolution): void {
    this.g.store.resolve(id, how, 'auto');
  }
}

interface Parked { id: number; tree: boolean; upTo: number }

function clientVersion(v: VariantInfo, o: CachedObject): string {
  return v.sha256 ? `sha256:${v.sha256}` : o.attr.version;
}

/** The object a record makes (creates made offline name it). */
function createdObj(r: JournalRecord): number | undefined {
  switch (r.op) {
    case 'create': case 'mkdir': case 'symlink': case 'mknod': return r.obj;
    default: return undefined;
  }
}

/** The directories a record works in. */
function dirsOf(r: JournalRecord): number[] {
  switch (r.op) {
    case 'write': case 'setattr': case 'commit': return [];
    case 'rename': return [r.fromParent, r.toParent];
    default: return [r.parent];
  }
}

