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

/** An object's attributes from what lstat(2) says of it; `version` moves with any change. */
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

/** What lstatAt gives, from Node's BigIntStats (the slower path off a local disk). */
export function lstatOf(st: BigIntStats): Lstat {
  return {
    mode: Number(st.mode), nlink: Number(st.nlink), uid: Number(st.uid), gid: Number(st.gid), size: Number(st.size),
    blocks: Number(st.blocks), ino: st.ino, dev: st.dev, rdev: Number(st.rdev), atimeNs: st.atimeNs, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs,
  };
}

export function toAttr(st: BigIntStats): Attr {
  return attrOf(lstatOf(st));
}
