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

  private fhOf(id: number): Buffer {
    const o = this.index.get(id);
    if (!o) throw new FsError('ESTALE', `object ${id} is no longer in the index`);
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
          if (crc32(data) !== r.crc) {
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
        return { kind: 'created', fh: n.fh, attr: n.attr };
      }
      case 'mkdir': {
        const dir = this.fhOf(r.parent);
        const n = await this.call('mkdir', () => b.mkdir(dir, r.name, r.mode, credsOf(r)));
        return { kind: 'created', fh: n.fh, attr: n.attr };
      }
      case 'symlink': {
        const dir = this.fhOf(r.parent);
        const n = await this.call('symlink', () => b.symlink(dir, r.name, r.target, credsOf(r)));
        return { kind: 'created', fh: n.fh, attr: n.attr };
      }
      case 'mknod': {
        const dir = this.fhOf(r.parent);
        const n = await this.call('mknod', () => b.mknod(dir, r.name, r.mode, r.rdev, credsOf(r)));
        return { kind: 'created', fh: n.fh, attr: n.attr };
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
