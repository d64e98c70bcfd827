// Open directories and their READDIR / READDIRPLUS replies, for both kinds of directory node:
// the cache's (./ops.ts) and the control directory's (./control-ops.ts).
//
// What must stay true: a listing is taken once per pass (at offset 0, or at the first read
// of a handle) and every later READDIR of the pass continues from it, so a directory that
// changes while it is read is neither repeated nor skipped. Offsets are positions in it.
import { FsError } from '../core/errors.js';
import { ENTRY_OUT_SIZE, direntPlusSize, direntSize, writeDirent, writeEntry, type FuseAttr } from './protocol.js';
import type { NodeTable } from './nodes.js';
import type { Request } from './session.js';

/**
 * One name of a listing. With `node` and `attr` a READDIRPLUS reply gives the kernel the
 * entry (a lookup it need not make); without, it gives none and the kernel looks it up.
 */
export interface DirEntry { name: Buffer; ino: bigint; type: number; node?: bigint; attr?: FuseAttr }

export class DirHandles {
  private readonly open = new Map<number, { entries: DirEntry[] | null }>();
  private next = 1;

  constructor(private readonly nodes: NodeTable, private readonly timeouts: { entry: number; attr: number }) {}

  /** OPENDIR: a new handle. */
  opened(): number {
    const fh = this.next++;
    this.open.set(fh, { entries: null });
    return fh;
  }

  /** RELEASEDIR. */
  released(fh: number): void { this.open.delete(fh); }

  /** The reply to READDIR (or READDIRPLUS: `plus`) of the directory `list` lists. */
  async reply(req: Request, plus: boolean, list: (node: bigint, plus: boolean) => Promise<DirEntry[]>): Promise<Buffer> {
    const fh = req.body.num64();
    const offset = req.body.num64();
    const size = req.body.u32();
    const dh = this.open.get(fh);
    if (!dh) throw new FsError('EBADF');
    if (offset === 0 || !dh.entries) dh.entries = await list(req.h.nodeid, plus);
    const entries = dh.entries;
    const out = Buffer.alloc(size);
    let used = 0;
    for (let i = offset; i < entries.length; i++) {
      const e = entries[i]!;
      const need = plus ? direntPlusSize(e.name) : direntSize(e.name);
      if (used + need > size) break;
      if (plus) {
        if (e.node !== undefined && e.attr) {
          writeEntry(out, used, e.node, e.attr, this.timeouts.entry, this.timeouts.attr, this.nodes.generationOf(e.node));
          this.nodes.looked(e.node);
        } else {
          out.fill(0, used, used + ENTRY_OUT_SIZE); // no entry: the kernel looks the name up itself
        }
        used += ENTRY_OUT_SIZE;
      }
      used += writeDirent(out, used, e.ino, i + 1, e.type, e.name);
    }
    return out.subarray(0, used);
  }
}
