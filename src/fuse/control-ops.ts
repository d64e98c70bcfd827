// The FUSE request handlers of the control directory (`/.cachefs`, see
// layers/control-dir.ts): its nodes are path nodes of the NodeTable, its file handles the
// ControlDir's own. Which requests come here is decided in one place, ./route.ts; nothing
// else in fuse/ knows the control directory exists.
import { constants as fsc } from 'node:fs';
import { CONTROL_DIR_NAME, nameToBytes } from '../core/names.js';
import { FsError } from '../core/errors.js';
import type { ControlDir, FuseStat } from '../layers/control-dir.js';
import { DirHandles } from './dirs.js';
import { Fattr, Fopen, Op, attrOut, direntType, entryOut, namedIn, openOut, parseSetattr, writeOut, type FuseAttr } from './protocol.js';
import type { NodeTable } from './nodes.js';
import type { Handler } from './session.js';
import type { Timeouts } from './ops.js';

const CONTROL_ROOT = `/${CONTROL_DIR_NAME}`;

function ctlAttr(s: FuseStat): FuseAttr {
  return {
    ino: BigInt(s.ino), size: s.size, blocks: s.blocks, atimeNs: s.atimeNs, mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs,
    mode: s.mode, nlink: s.nlink, uid: s.uid, gid: s.gid, rdev: s.rdev, blksize: s.blksize,
  };
}

export function makeControlHandlers(control: ControlDir, nodes: NodeTable, t: Timeouts): Partial<Record<number, Handler>> {
  const dirs = new DirHandles(nodes, t);

  /** The control path of a node (routed here: a control node, or the root for `.cachefs`). */
  const pathOf = (node: bigint): string | null => {
    const r = nodes.ref(node);
    return r?.kind === 'ctl' ? r.path : null;
  };
  const own = (node: bigint): string => {
    const p = pathOf(node);
    if (p === null) throw new FsError('ESTALE', `node ${node} is not in the control directory`);
    return p;
  };
  /** The control path `name` in directory node `parent` leads to. */
  const child = (parent: bigint, name: string): string => {
    const p = pathOf(parent);
    if (p !== null) return `${p}/${name}`;
    if (name === CONTROL_DIR_NAME) return CONTROL_ROOT;
    throw new FsError('EROFS', `${name}: the control directory is read-only`);
  };
  const entry = async (path: string): Promise<Buffer> => {
    const st = await control.getattr(path);
    const node = nodes.ctlNode(path, st.ino);
    nodes.looked(node);
    return entryOut(node, ctlAttr(st), t.entry, t.attr);
  };

  const h: Partial<Record<number, Handler>> = {};

  h[Op.LOOKUP] = ({ h: hd, body }) => entry(child(hd.nodeid, body.cstr()));
  h[Op.GETATTR] = async ({ h: hd }) => attrOut(ctlAttr(await control.getattr(own(hd.nodeid))), t.attr);

  h[Op.SETATTR] = async ({ h: hd, body }) => {
    const { valid, fh, size, atime: at, mtime: mt } = parseSetattr(body);
    const p = own(hd.nodeid);
    if (valid & (Fattr.MODE | Fattr.UID | Fattr.GID)) await control.mutation('setattr', p);
    if (valid & Fattr.SIZE) await (fh !== 0 && control.ownsFd(fh) ? control.ftruncate(fh, size) : control.truncate(p, size));
    if (at !== 'omit' || mt !== 'omit') await control.utimens(p, at, mt);
    return attrOut(ctlAttr(await control.getattr(p)), t.attr);
  };

  h[Op.READLINK] = async ({ h: hd }) => nameToBytes(await control.readlink(own(hd.nodeid)));

  // Every change of names is refused (EROFS; EXDEV would not make `mv draft …/resolved`
  // work either: mv then unlinks the target first).
  const named = (op: string): Handler => async ({ h: hd, body }) => {
    const n = namedIn(hd.opcode, body);
    if (!n) throw new FsError('EINVAL', `opcode ${hd.opcode} names nothing`);
    await control.mutation(op, child(hd.nodeid, n.names[0]!));
  };
  h[Op.MKNOD] = named('mknod');
  h[Op.MKDIR] = named('mkdir');
  h[Op.SYMLINK] = named('symlink');
  h[Op.UNLINK] = named('unlink');
  h[Op.RMDIR] = named('rmdir');
  h[Op.LINK] = named('link');
  h[Op.RENAME] = named('rename');
  h[Op.RENAME2] = named('rename');

  h[Op.OPEN] = async ({ h: hd, body }) => {
    const flags = body.u32();
    const fh = await control.open(own(hd.nodeid), flags);
    // Atomic O_TRUNC: the kernel sends no truncate of its own after this open.
    if (flags & fsc.O_TRUNC) {
      try { await control.ftruncate(fh, 0); } catch (e) { await control.release(fh).catch(() => undefined); throw e; }
    }
    return openOut(BigInt(fh), Fopen.DIRECT_IO);
  };

  h[Op.CREATE] = async ({ h: hd, body }) => {
    body.u32();
    const mode = body.u32();
    body.skip(8); // umask, open_flags
    const p = child(hd.nodeid, body.cstr());
    const fh = await control.create(p, mode);
    return [await entry(p), openOut(BigInt(fh), Fopen.DIRECT_IO)];
  };

  h[Op.READ] = async ({ body }) => {
    const fh = body.num64();
    const pos = body.num64();
    const size = body.u32();
    const buf = Buffer.allocUnsafe(size);
    return buf.subarray(0, await control.read(fh, buf, size, pos));
  };

  h[Op.WRITE] = async ({ body }) => {
    const fh = body.num64();
    const pos = body.num64();
    const size = body.u32();
    body.skip(4 + 8 + 4 + 4); // write_flags, lock_owner, flags, padding
    // A copy: the body is a view of the session's request buffer.
    return writeOut(await control.write(fh, Buffer.from(body.bytes(size)), pos));
  };

  h[Op.RELEASE] = async ({ body }) => { await control.release(body.num64()); };
  h[Op.FSYNC] = async ({ body }) => {
    const fh = body.num64();
    await control.fsync(fh, (body.u32() & 1) !== 0);
  };
  h[Op.FLUSH] = async ({ body }) => { await control.flush(body.num64()); };

  h[Op.OPENDIR] = ({ h: hd }) => { own(hd.nodeid); return openOut(BigInt(dirs.opened()), 0); };
  const list = async (node: bigint) => {
    const l = await control.readdir(own(node));
    return l.names.map((name, i) => ({ name: nameToBytes(name), ino: BigInt(l.stats[i]!.ino), type: direntType(l.stats[i]!.mode) }));
  };
  h[Op.READDIR] = (req) => dirs.reply(req, false, list);
  h[Op.READDIRPLUS] = (req) => dirs.reply(req, true, list);
  h[Op.RELEASEDIR] = ({ body }) => { dirs.released(body.num64()); };

  h[Op.ACCESS] = async ({ h: hd, body }) => { await control.access(own(hd.nodeid), body.u32()); };

  return h;
}
