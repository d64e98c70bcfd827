// Applies journal records to the backend: the ReplayTarget the composition root gives the
// replayer. Records name objects by index id; this is where ids become backend handles.
// Every backend call goes through `call`, which bounds concurrency and sets a deadline.
import { crc32 } from 'node:zlib';
import { FsError, isFsError } from '../core/errors.js';
import { log } from '../core/log.js';
import { Reconciler, type ReconcileGuard } from '../conflict/reconcile.js';
import type { Attr, Backend, BackendCall, DirWcc, Made, SetAttr } from '../backends/types.js';
import type { CachedObject, ObjectIndex } from '../index/objects.js';
import type { DataStore } from '../store/data-store.js';
import type { JournalEntry } from '../journal/journal.js';
import { changedObject as subjectOf, creatorOf, type SetAttrRecord } from '../journal/records.js';
import type { ReplayHint, ReplayTarget } from '../journal/replayer.js';

/** KeepBytes for bytes nobody else holds: the backend's reference keeps them. */
const unpinned = (): (() => void) => () => undefined;

export type { BackendCall } from '../backends/types.js';

/**
 * What applying a record produced: what the layer needs to update its cache. `dir`: the directory around a change of its names
 * (DirWcc); for a rename, the directory the name left, `toDir` the one it went to (when
 * another) and `moved` the object's attributes after it.
 */
export type AppliedOutcome =
  | { kind: 'done'; dir?: DirWcc; toDir?: DirWcc; moved?: Attr }
  | { kind: 'created'; fh: Buffer; attr: Attr; dir?: DirWcc }
  | { kind: 'attr'; attr: Attr };

export class BackendTarget implements ReplayTarget {
  constructor(
    private readonly backend: Backend,
    private readonly index: ObjectIndex,
    private readonly store: DataStore,
    private readonly call: BackendCall,
  ) {}

  /** Tells whether a later pending record changes bytes [from, to) of object `obj`. */
  laterChange: (seq: number, obj: number, from: number, to: number) => boolean = () => false;

  /** Set by the layer: while `checking()` (reintegrating), records made offline are reconciled. */
  private reconciler: Reconciler | null = null;
  private checking: () => boolean = () => false;

  /** The first record this process applied: it may have reached the backend before a crash. */
  private firstSeq: number | null = null;

  enableConflicts(guard: ReconcileGuard, checking: () => boolean, chunkSize: number): void {
    this.checking = checking;
    this.reconciler = new Reconciler(
      { backend: this.backend, call: this.call, index: this.index, store: this.store, chunkSize },
      guard,
      { apply: (e, h) => this.applyPlain(e, h), noteApplied: (id, out) => this.noteApplied(id, out), alreadyThere: (e, h, o, a) => this.alreadyThere(e, h, o, a) },
      isProvisional, isBytesLost,
    );
  }

  /**
   * A create replayed: an object made while disconnected (its record names it) gets the
   * backend's handle in place of its provisional one, keeping its id and cached data.
   */
  private created(obj: number | undefined, n: Made): AppliedOutcome {
    const o = obj !== undefined ? this.index.get(obj) : undefined;
    if (o && isProvisional(o.fh)) this.index.setHandle(o, n.fh);
    return { kind: 'created', fh: n.fh, attr: n.attr, ...(n.dir ? { dir: n.dir } : {}) };
  }

  /**
   * EEXIST on replaying the create of an object made offline: if an earlier attempt got
   * through before the connection broke or the process died (its answer lost), the name
   * holds our object. Only a record that may have been sent before counts (one that failed
   * on a connection error, or the first this process replays); a type that matches is
   * taken as ours. Anything else is someone else's object: an error (or, reintegrating, a
   * create/create conflict).
   *
   * An object whose handle is no longer provisional was made by a run that stored the
   * backend's handle and died before deleting the record: the name holds that very handle.
   */
  private async madeBefore(e: unknown, entry: JournalEntry, obj: number | undefined, dir: Buffer, name: string): Promise<{ fh: Buffer; attr: Attr }> {
    const o = obj !== undefined ? this.index.get(obj) : undefined;
    if (!isFsError(e, 'EEXIST') || !o) throw e;
    if (!isProvisional(o.fh)) {
      const n = await this.call('lookup', () => this.backend.lookup(dir, name));
      if (!n.fh.equals(o.fh)) throw e;
      log.info(`replay: ${name} is already the object record ${entry.seq} made (the run that made it died before the record was deleted)`);
      return n;
    }
    const offline = 'offline' in entry.record && entry.record.offline;
    if (offline && entry.attempts === 0 && entry.seq !== this.firstSeq) throw e;
    const n = await this.call('lookup', () => this.backend.lookup(dir, name));
    if (n.attr.type !== o.attr.type || this.index.byHandle(n.fh)) throw e;
    log.info(`replay: ${name} already exists as a ${n.attr.type}; taking it as the one this record made before the connection broke`);
    return n;
  }

  /**
   * EEXIST on replaying a link: if the name already holds the object (a run that died after
   * the backend made the link and before the record was deleted), the link is there.
   */
  private async linkedBefore(e: unknown, fh: Buffer, dir: Buffer, name: string): Promise<Attr> {
    if (!isFsError(e, 'EEXIST') || !(await this.holds(dir, name, fh))) throw e;
    return await this.call('getattr', () => this.backend.getattr(fh));
  }

  /** Whether name `name` in directory `dir` is the object with handle `fh` on the backend. */
  private async holds(dir: Buffer, name: string, fh: Buffer): Promise<boolean> {
    try {
      return (await this.call('lookup', () => this.backend.lookup(dir, name))).fh.equals(fh);
    } catch (e) {
      if (isFsError(e, 'ENOENT') || isFsError(e, 'ESTALE')) return false;
      throw e;
    }
  }

  private fhOf(id: number): Buffer {
    const o = this.index.get(id);
    if (!o) throw new FsError('ESTALE', `object ${id} is no longer in the index`);
    // Replay is in journal order, so an object's create comes before any record using it.
    if (isProvisional(o.fh)) throw new FsError('ESTALE', `object ${id} was never created on the backend`);
    return o.fh;
  }

  /** While reconciling, only records nothing needs to check can go out together. */
  batchable(entry: JournalEntry): boolean {
    return !this.checking() || !needsCheck(entry.record);
  }

  async apply(entry: JournalEntry, hint: ReplayHint | undefined): Promise<AppliedOutcome> {
    this.firstSeq ??= entry.seq;
    if (!this.reconciler || !this.checking()) {
      this.reconciler?.reset();
      return this.applyPlain(entry, hint);
    }
    return this.reconciler.apply(entry, hint);
  }

  async alreadyThere(entry: JournalEntry, hint: ReplayHint | undefined, o: CachedObject, attr: Attr): Promise<boolean> {
    const r = entry.record;
    if (r.op === 'write') {
      if (attr.size < r.offset + r.length) return false;
      const ours = hint?.data ?? await this.store.read(o.id, r.offset, r.length);
      if (ours.length !== r.length) return false;
      const theirs = await this.call('read', () => this.backend.read(o.fh, r.offset, r.length));
      return theirs.equals(ours);
    }
    if (r.op === 'link') {
      const dir = this.index.get(r.parent);
      return dir !== undefined && !isProvisional(dir.fh) && await this.holds(dir.fh, r.name, o.fh);
    }
    if (r.op === 'setattr') {
      const s = r.set;
      return (s.mode === undefined || (attr.mode & 0o7777) === (s.mode & 0o7777)) && (s.uid === undefined || attr.uid === s.uid)
        && (s.gid === undefined || attr.gid === s.gid) && (s.size === undefined || attr.size === s.size)
        && (s.mtime?.kind !== 'set' || attr.mtimeNs === BigInt(s.mtime.ns)) && (s.atime?.kind !== 'set' || attr.atimeNs === BigInt(s.atime.ns))
        && s.mtime?.kind !== 'now' && s.atime?.kind !== 'now';
    }
    return false;
  }

  /** Our own replayed record moved the object's version (ctime at least): remember where to. */
  async noteApplied(objId: number, out: AppliedOutcome): Promise<void> {
    const o = this.index.get(objId);
    if (!o || isProvisional(o.fh)) return;
    if (out.kind === 'attr') { this.index.setReplayVersion(objId, out.attr.version); return; }
    try {
      this.index.setReplayVersion(objId, (await this.call('getattr', () => this.backend.getattr(o.fh))).version);
    } catch (e) {
      if (!isFsError(e, 'ESTALE')) throw e;
      this.index.setReplayVersion(objId, null); // our unlink removed it
    }
  }

  async applyPlain(entry: JournalEntry, hint: ReplayHint | undefined): Promise<AppliedOutcome> {
    const r = entry.record;
    const b = this.backend;
    switch (r.op) {
      case 'write': {
        // The bytes are in memory when this process wrote them (pinned by the hint's keep
        // for as long as the backend wants them), else in the cache file (a buffer of their
        // own: nothing else reuses it, so there is nothing to pin).
        let data = hint?.data;
        let keep = data ? hint?.keep : undefined;
        if (!data) {
          keep = unpinned;
          data = await this.store.read(r.obj, r.offset, r.length);
          // A later record (a write over these bytes, a truncate below their end) explains a
          // difference: the cache file holds the newer bytes, and sending them now is the
          // same as sending the old ones and letting that record overwrite them.
          if (crc32(data) !== r.crc && !this.laterChange(entry.seq, r.obj, r.offset, r.offset + r.length)) {
            // The process died before these bytes reached the cache file (so that write() had
            // not returned), or later unjournaled bytes overwrote them there. Other bytes are
            // never sent in their place, and nothing is thrown away: with a conflict store the
            // reconciler parks the record as an 'unreplayable' conflict whose client variant is
            // what the cache file holds; the cache file and later records stay as they are.
            throw new FsError('EIO', `write record ${entry.seq} of object ${r.obj}: its bytes in the cache file are not the ones journaled (the mount died before they landed)`, { cause: BYTES_LOST });
          }
        }
        const fh = this.fhOf(r.obj);
        const attr = await this.call('write', () => b.write(fh, r.offset, data, r.by, keep));
        return attr ? { kind: 'attr', attr } : { kind: 'done' };
      }
      case 'commit': {
        const fh = this.fhOf(r.obj);
        const attr = await this.call('commit', () => b.commit(fh));
        return attr ? { kind: 'attr', attr } : { kind: 'done' };
      }
      case 'setattr': {
        const fh = this.fhOf(r.obj);
        const attr = await this.call('setattr', () => b.setattr(fh, toSetAttr(r.set), r.by));
        return { kind: 'attr', attr };
      }
      case 'create': {
        const dir = this.fhOf(r.parent);
        // Made offline, the name must still be free: an unchecked create would open (and a
        // later write overwrite) a file the server made there meanwhile.
        const exclusive = r.offline === true;
        const n = await this.call('create', () => b.create(dir, r.name, r.mode, creatorOf(r), { exclusive })).catch((e) => this.madeBefore(e, entry, r.obj, dir, r.name));
        return this.created(r.obj, n);
      }
      case 'mkdir': {
        const dir = this.fhOf(r.parent);
        const n = await this.call('mkdir', () => b.mkdir(dir, r.name, r.mode, creatorOf(r))).catch((e) => this.madeBefore(e, entry, r.obj, dir, r.name));
        return this.created(r.obj, n);
      }
      case 'symlink': {
        const dir = this.fhOf(r.parent);
        const n = await this.call('symlink', () => b.symlink(dir, r.name, r.target, creatorOf(r))).catch((e) => this.madeBefore(e, entry, r.obj, dir, r.name));
        return this.created(r.obj, n);
      }
      case 'mknod': {
        const dir = this.fhOf(r.parent);
        const n = await this.call('mknod', () => b.mknod(dir, r.name, r.mode, r.rdev, creatorOf(r))).catch((e) => this.madeBefore(e, entry, r.obj, dir, r.name));
        return this.created(r.obj, n);
      }
      case 'link': {
        const fh = this.fhOf(r.obj);
        const dir = this.fhOf(r.parent);
        const attr = await this.call('link', () => b.link(fh, dir, r.name, r.by)).catch((e) => this.linkedBefore(e, fh, dir, r.name));
        return { kind: 'attr', attr };
      }
      case 'unlink': {
        const dir = this.fhOf(r.parent);
        return done(await this.call('unlink', () => b.unlink(dir, r.name, r.by)));
      }
      case 'rmdir': {
        const dir = this.fhOf(r.parent);
        return done(await this.call('rmdir', () => b.rmdir(dir, r.name, r.by)));
      }
      case 'rename': {
        const from = this.fhOf(r.fromParent);
        const to = this.fhOf(r.toParent);
        const got = await this.call('rename', () => b.rename(from, r.fromName, to, r.toName, r.by));
        return {
          kind: 'done',
          ...(got?.from ? { dir: got.from } : {}), ...(got?.to ? { toDir: got.to } : {}), ...(got?.attr ? { moved: got.attr } : {}),
        };
      }
    }
  }
}

function done(dir: DirWcc | void): AppliedOutcome {
  return dir ? { kind: 'done', dir } : { kind: 'done' };
}

export function toSetAttr(s: SetAttrRecord): SetAttr {
  const out: SetAttr = {};
  if (s.mode !== undefined) out.mode = s.mode;
  if (s.uid !== undefined) out.uid = s.uid;
  if (s.gid !== undefined) out.gid = s.gid;
  if (s.size !== undefined) out.size = s.size;
  if (s.atime) out.atime = s.atime.kind === 'now' ? { kind: 'now' } : { kind: 'set', ns: BigInt(s.atime.ns) };
  if (s.mtime) out.mtime = s.mtime.kind === 'now' ? { kind: 'now' } : { kind: 'set', ns: BigInt(s.mtime.ns) };
  return out;
}


/** The cause of the EIO a write record whose cached bytes fail their CRC is refused with. */
export const BYTES_LOST = 'journaled bytes lost from the cache file';

export function isBytesLost(e: unknown): boolean {
  return isFsError(e, 'EIO') && (e as Error).cause === BYTES_LOST;
}

/** Handles of objects made while disconnected start with this tag (never a backend's). */
export const PROVISIONAL_TAG = Buffer.from('cachefs-provisional:');

export function isProvisional(fh: Buffer): boolean {
  return fh.length > PROVISIONAL_TAG.length && fh.subarray(0, PROVISIONAL_TAG.length).equals(PROVISIONAL_TAG);
}


/**
 * Whether replaying this record must consider other clients' changes: records of objects
 * that existed before going offline (made or changing them offline), and our renames and
 * unlinks of such objects (they move its ctime). Connected records and records of objects
 * made offline need nothing.
 */
function needsCheck(r: JournalEntry['record']): boolean {
  if (!('offline' in r) || !r.offline) return subjectOf(r) !== undefined; // connected records move versions too
  return !(r.base ?? '').startsWith('provisional:');
}
