// An object's attributes as the backend reports them (Attr), from lstat(2): Node's
// BigIntStats, or statx's answer read into a reused buffer (syscalls.ts lstatAt). Both give
// the same attributes and the same version string, which is what a cached object's data
// is checked against: ctime, mtime and size, so any change of content or metadata moves it.
import type { BigIntStats } from 'node:fs';
import type { Attr, ObjType } from '../types.js';
import type { Lstat } from './syscalls.js';

/** The type of an object by its mode's S_IFMT bits (what BigIntStats' is*() read). */
function typeOfMode(mode: number): ObjType {
  switch (mode & 0o170000) {
    case 0o100000: return 'file';
    case 0o040000: return 'dir';
    case 0o120000: return 'symlink';
    case 0o010000: return 'fifo';
    case 0o140000: return 'socket';
    case 0o020000: return 'chardev';
    default: return 'blockdev';
  }
}

/** toAttr of a statx answer (syscalls.ts lstatAt): the same attributes, the same version. */
export function attrOf(st: Lstat): Attr {
  return {
    type: typeOfMode(st.mode),
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    nlink: st.nlink,
    rdev: st.rdev,
    used: st.blocks * 512,
    atimeNs: st.atimeNs,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
    version: `${st.ctimeNs}:${st.mtimeNs}:${st.size}`,
  };
}

function typeOf(st: BigIntStats): ObjType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'chardev';
  return 'blockdev';
}

export function toAttr(st: BigIntStats): Attr {
  return {
    type: typeOf(st),
    mode: Number(st.mode),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    nlink: Number(st.nlink),
    rdev: Number(st.rdev),
    used: Number(st.blocks) * 512,
    atimeNs: st.atimeNs,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
    version: `${st.ctimeNs}:${st.mtimeNs}:${st.size}`,
  };
}
