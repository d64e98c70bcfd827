// Applies journal records to the backend: the ReplayTarget the composition root gives the
// replayer. Records name objects by index id; this is where ids become backend handles.
// Every backend call goes through `call`, which bounds concurrency and sets a deadline.
import { crc32 } from 'node:zlib';
import { FsError } from '../core/errors.js';
import type { Attr, Backend, Creds, SetAttr } from '../backends/types.js';
import type { ObjectIndex } from '../index/objects.js';
import type { DataStore } from '../store/data-store.js';
import type { JournalEntry } from '../journal/journal.js';
import type { SetAttrRecord } from '../journal/records.js';
import type { ReplayHint, ReplayTarget } from '../journal/replayer.js';

export type BackendCall = <T>(what: string, fn: () => Promise<T>) => Promise<T>;

/** A replay outcome with what the layer needs to update its cache. */
export type AppliedOutcome =
  | { kind: 'done' }
  | { kind: 'created'; fh: Buffer; attr: Attr }
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

  /**
   * A create replayed: an object made while disconnected (its record names it) gets the
   * backend's handle in place of its provisional one, keeping its id and cached data.
   */
  private created(obj: number | undefined, n: { fh: Buffer; attr: Attr }): AppliedOutcome {
    const o = obj !== undefined ? this.index.get(obj) : undefined;
    if (o && isProvisional(o.fh)) this.index.setHandle(o, n.fh);
    return { kind: 'created', fh: n.fh, attr: n.attr };
  }

  private fhOf(id: number): Buffer {
    const o = this.index.get(id);
    if (!o) throw new FsError('ESTALE', `object ${id} is no longer in the index`);
    // Replay is in journal order, so an object's create comes before any record using it.
    if (isProvisional(o.fh)) throw new FsError('ESTALE', `object ${id} was never created on the backend`);
    return o.fh;
  }

  async apply(entry: JournalEntry, hint: ReplayHint | undefined): Promise<AppliedOutcome> {
    const r = entry.record;
    const b = this.backend;
    switch (r.op) {
      case 'write': {
        // The bytes are in memory when this process wrote them, else in the cache file.
        let data = hint?.data;
        if (!data) {
          data = await this.store.read(r.obj, r.offset, r.length);
          // A later record (a write over these bytes, a truncate below their end) explains a
          // difference: the cache file holds the newer bytes, and sending them now is the
          // same as sending the old ones and letting that record overwrite them.
          if (crc32(data) !== r.crc && !this.laterChange(entry.seq, r.obj, r.offset, r.offset + r.length)) {
            // The process died before these bytes reached the cache file, so the write was
            // never acknowledged to anyone: drop it rather than send other bytes.
            const o = this.index.get(r.obj);
            if (o) { this.index.clearChunks(o); await this.store.truncate(o.id, 0).catch(() => undefined); }
            throw new FsError('EIO', `write record for object ${r.obj} lost its bytes in a crash; it was never acknowledged`);
          }
        }
        const fh = this.fhOf(r.obj);
        await this.call('write', () => b.write(fh, r.offset, data));
        return { kind: 'done' };
      }
      case 'commit': {
        const fh = this.fhOf(r.obj);
        const attr = await this.call('commit', () => b.commit(fh));
        return attr ? { kind: 'attr', attr } : { kind: 'done' };
      }
      case 'setattr': {
        const fh = this.fhOf(r.obj);
        const attr = await this.call('setattr', () => b.setattr(fh, toSetAttr(r.set)));
        return { kind: 'attr', attr };
      }
      case 'create': {
        const dir = this.fhOf(r.parent);
        const n = await this.call('create', () => b.create(dir, r.name, r.mode, credsOf(r), { exclusive: false }));
        return this.created(r.obj, n);
      }
      case 'mkdir': {
        const dir = this.fhOf(r.parent);
        const n = await this.call('mkdir', () => b.mkdir(dir, r.name, r.mode, credsOf(r)));
        return this.created(r.obj, n);
      }
      case 'symlink': {
        const dir = this.fhOf(r.parent);
        const n = await this.call('symlink', () => b.symlink(dir, r.name, r.target, credsOf(r)));
        return this.created(r.obj, n);
      }
      case 'mknod': {
        const dir = this.fhOf(r.parent);
        const n = await this.call('mknod', () => b.mknod(dir, r.name, r.mode, r.rdev, credsOf(r)));
        return this.created(r.obj, n);
      }
      case 'link': {
        const fh = this.fhOf(r.obj);
        const dir = this.fhOf(r.parent);
        const attr = await this.call('link', () => b.link(fh, dir, r.name));
        return { kind: 'attr', attr };
      }
      case 'unlink': {
        const dir = this.fhOf(r.parent);
        await this.call('unlink', () => b.unlink(dir, r.name));
        return { kind: 'done' };
      }
      case 'rmdir': {
        const dir = this.fhOf(r.parent);
        await this.call('rmdir', () => b.rmdir(dir, r.name));
        return { kind: 'done' };
      }
      case 'rename': {
        const from = this.fhOf(r.fromParent);
        const to = this.fhOf(r.toParent);
        await this.call('rename', () => b.rename(from, r.fromName, to, r.toName));
        return { kind: 'done' };
      }
    }
  }
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

function credsOf(r: { uid: number; gid: number; groups?: number[] | undefined }): Creds {
  return { uid: r.uid, gid: r.gid, ...(r.groups ? { groups: r.groups } : {}) };
}

/** Handles of objects made while disconnected start with this tag (never a backend's). */
export const PROVISIONAL_TAG = Buffer.from('cachefs-provisional:');

export function isProvisional(fh: Buffer): boolean {
  return fh.length > PROVISIONAL_TAG.length && fh.subarray(0, PROVISIONAL_TAG.length).equals(PROVISIONAL_TAG);
}
