// NFSv3 (RFC 1813) and MOUNT v3 data types: encoders for arguments, decoders for results.
// Only wire format lives here; what the calls mean to the cache is nfs-backend.ts.
import type { Attr, DirWcc, ObjType, SetAttr, SetTime } from '../types.js';
import { XdrError, type XdrReader, type XdrWriter } from './xdr.js';

export const NFS_PROGRAM = 100003;
export const NFS_V3 = 3;
export const MOUNT_PROGRAM = 100005;
export const MOUNT_V3 = 3;
export const PMAP_PROGRAM = 100000;
export const PMAP_V2 = 2;

export const enum Proc {
  NULL = 0, GETATTR = 1, SETATTR = 2, LOOKUP = 3, ACCESS = 4, READLINK = 5, READ = 6, WRITE = 7,
  CREATE = 8, MKDIR = 9, SYMLINK = 10, MKNOD = 11, REMOVE = 12, RMDIR = 13, RENAME = 14, LINK = 15,
  READDIR = 16, READDIRPLUS = 17, FSSTAT = 18, FSINFO = 19, PATHCONF = 20, COMMIT = 21,
}

export const NFS3_FHSIZE = 64;
export const NFS3_MAXNAMLEN = 255 * 4; // bytes of UTF-8 a server might send us
export const NFS3_MAXPATHLEN = 4096;
export const NFS3_WRITEVERFSIZE = 8;

export const enum Stable { UNSTABLE = 0, DATA_SYNC = 1, FILE_SYNC = 2 }
export const enum CreateMode { UNCHECKED = 0, GUARDED = 1, EXCLUSIVE = 2 }

const FTYPE: Record<number, ObjType> = { 1: 'file', 2: 'dir', 3: 'blockdev', 4: 'chardev', 5: 'symlink', 6: 'socket', 7: 'fifo' };
export const FTYPE_OF: Record<ObjType, number> = { file: 1, dir: 2, blockdev: 3, chardev: 4, symlink: 5, socket: 6, fifo: 7 };
const S_IFMT: Record<ObjType, number> = {
  file: 0o100000, dir: 0o040000, blockdev: 0o060000, chardev: 0o020000, symlink: 0o120000, socket: 0o140000, fifo: 0o010000,
};

/** fattr3 as it came from the server, plus our view of it. */
export interface Fattr3 {
  attr: Attr;
  fsid: bigint;
  fileid: bigint;
}

export function decodeHandle(r: XdrReader): Buffer {
  const fh = r.opaque(NFS3_FHSIZE, 'nfs_fh3');
  if (fh.length === 0) throw new XdrError('empty file handle');
  return Buffer.from(fh); // copied: it outlives the reply buffer
}

function nfstime(r: XdrReader, what: string): bigint {
  const sec = r.u32(`${what}.seconds`);
  const nsec = r.u32(`${what}.nseconds`);
  if (nsec >= 1_000_000_000) throw new XdrError(`${what}.nseconds ${nsec} is out of range`);
  return BigInt(sec) * 1_000_000_000n + BigInt(nsec);
}

/** Linux makedev() of glibc, from the major/minor pair NFS sends. */
export function makedev(major: number, minor: number): number {
  return (minor & 0xff) + (major & 0xfff) * 0x100 + Math.floor(minor / 0x100) * 0x100000 + Math.floor(major / 0x1000) * 0x100000000;
}

export function splitdev(rdev: number): [number, number] {
  const major = Math.floor(rdev / 0x100) & 0xfff | (Math.floor(rdev / 0x100000000) * 0x1000);
  const minor = (rdev & 0xff) | (Math.floor(rdev / 0x100000) & 0xfff00);
  return [major, minor];
}

export function decodeFattr3(r: XdrReader): Fattr3 {
  const t = r.u32('fattr3.type');
  const type = FTYPE[t];
  if (!type) throw new XdrError(`fattr3.type ${t} is not a file type`);
  const mode = r.u32('fattr3.mode') & 0o7777;
  const nlink = r.u32('fattr3.nlink');
  const uid = r.u32('fattr3.uid');
  const gid = r.u32('fattr3.gid');
  const size = r.size64('fattr3.size');
  const used = r.size64('fattr3.used');
  const major = r.u32('rdev.major');
  const minor = r.u32('rdev.minor');
  const fsid = r.u64('fattr3.fsid');
  const fileid = r.u64('fattr3.fileid');
  const atimeNs = nfstime(r, 'atime');
  const mtimeNs = nfstime(r, 'mtime');
  const ctimeNs = nfstime(r, 'ctime');
  return {
    fsid,
    fileid,
    attr: {
      type, mode: S_IFMT[type] | mode, uid, gid, size, nlink, rdev: makedev(major, minor), used,
      atimeNs, mtimeNs, ctimeNs,
      version: versionOf(ctimeNs, mtimeNs, size),
    },
  };
}

export function decodePostOpAttr(r: XdrReader): Fattr3 | undefined {
  return r.optional('post_op_attr', decodeFattr3);
}

/**
 * An object's version (types.ts Attr.version). NFSv3 has no change attribute: ctime moves on
 * every data or metadata change, and mtime/size guard against servers with coarse ctime.
 * The pre-operation half of wcc data carries exactly these three.
 */
function versionOf(ctimeNs: bigint, mtimeNs: bigint, size: number): string {
  return `${ctimeNs}:${mtimeNs}:${size}`;
}

export interface WccAttr { size: number; mtimeNs: bigint; ctimeNs: bigint }
export interface WccData { before?: WccAttr; after?: Fattr3 }

export function decodeWcc(r: XdrReader): WccData {
  const before = r.optional('pre_op_attr', (x) => ({
    size: x.size64('wcc.size'), mtimeNs: nfstime(x, 'wcc.mtime'), ctimeNs: nfstime(x, 'wcc.ctime'),
  }));
  const after = decodePostOpAttr(r);
  return { ...(before ? { before } : {}), ...(after ? { after } : {}) };
}

/** A directory's wcc data as the cache takes it (types.ts DirWcc): both halves, or nothing. */
export function dirWcc(w: WccData): DirWcc | undefined {
  if (!w.before || !w.after) return undefined;
  return { before: versionOf(w.before.ctimeNs, w.before.mtimeNs, w.before.size), after: w.after.attr };
}

export function decodePostOpFh(r: XdrReader): Buffer | undefined {
  return r.optional('post_op_fh3', decodeHandle);
}

/** nfstime3 has unsigned 32-bit seconds: 1970-01-01 to 2106-02-07. */
const MAX_NFSTIME_S = 2n ** 32n - 1n;

function encodeTime(w: XdrWriter, t: SetTime | undefined): void {
  if (!t) { w.u32(0); return; }
  if (t.kind === 'now') { w.u32(1); return; }
  // Clamped to what the protocol can carry, as Linux clamps times to a file system's range
  // (timestamp_truncate); never wrapped, which would turn 2106 into 1970.
  if (t.ns < 0n) { w.u32(2).u32(0).u32(0); return; }
  const s = t.ns / 1_000_000_000n;
  if (s > MAX_NFSTIME_S) { w.u32(2).u32(Number(MAX_NFSTIME_S)).u32(0); return; }
  w.u32(2).u32(Number(s)).u32(Number(t.ns % 1_000_000_000n));
}

export function encodeSattr3(w: XdrWriter, s: SetAttr): void {
  if (s.mode !== undefined) w.u32(1).u32(s.mode & 0o7777); else w.u32(0);
  if (s.uid !== undefined) w.u32(1).u32(s.uid); else w.u32(0);
  if (s.gid !== undefined) w.u32(1).u32(s.gid); else w.u32(0);
  if (s.size !== undefined) w.u32(1).u64(s.size); else w.u32(0);
  encodeTime(w, s.atime);
  encodeTime(w, s.mtime);
}

export function encodeDirop(w: XdrWriter, dir: Buffer, name: string): void {
  w.opaque(dir).string(name);
}

// ---------------------------------------------------------------- results

export interface FsInfo {
  rtmax: number; rtpref: number; wtmax: number; wtpref: number; dtpref: number;
  maxFileSize: number; timeDeltaNs: bigint; properties: number;
}

export function decodeFsInfo(r: XdrReader): FsInfo {
  const rtmax = r.u32('rtmax');
  const rtpref = r.u32('rtpref');
  r.u32('rtmult');
  const wtmax = r.u32('wtmax');
  const wtpref = r.u32('wtpref');
  r.u32('wtmult');
  const dtpref = r.u32('dtpref');
  const max = r.u64('maxfilesize');
  const timeDeltaNs = nfstime(r, 'time_delta');
  const properties = r.u32('properties');
  return {
    rtmax, rtpref, wtmax, wtpref, dtpref, timeDeltaNs, properties,
    maxFileSize: max > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(max),
  };
}

export interface FsStat { tbytes: number; fbytes: number; abytes: number; tfiles: number; ffiles: number; afiles: number }

export function decodeFsStat(r: XdrReader): FsStat {
  const big = (what: string): number => {
    const v = r.u64(what);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  };
  const out = { tbytes: big('tbytes'), fbytes: big('fbytes'), abytes: big('abytes'), tfiles: big('tfiles'), ffiles: big('ffiles'), afiles: big('afiles') };
  r.u32('invarsec');
  return out;
}

export interface PathConf { linkmax: number; nameMax: number; noTrunc: boolean; chownRestricted: boolean; caseInsensitive: boolean; casePreserving: boolean }

export function decodePathConf(r: XdrReader): PathConf {
  return {
    linkmax: r.u32('linkmax'), nameMax: r.u32('name_max'), noTrunc: r.bool('no_trunc'),
    chownRestricted: r.bool('chown_restricted'), caseInsensitive: r.bool('case_insensitive'), casePreserving: r.bool('case_preserving'),
  };
}

export interface PlusEntry { fileid: bigint; name: string; cookie: bigint; attr?: Fattr3; fh?: Buffer }

/** dirlistplus3 (or dirlist3 when `plus` is false): the entries and the eof flag. */
export function decodeDirList(r: XdrReader, plus: boolean, maxEntries: number): { entries: PlusEntry[]; eof: boolean } {
  const entries: PlusEntry[] = [];
  while (r.bool('entry follows')) {
    if (entries.length >= maxEntries) throw new XdrError(`directory reply has more than ${maxEntries} entries`);
    const fileid = r.u64('fileid');
    const name = r.string(NFS3_MAXNAMLEN, 'filename3');
    const cookie = r.u64('cookie');
    const e: PlusEntry = { fileid, name, cookie };
    if (plus) {
      const a = decodePostOpAttr(r);
      const fh = decodePostOpFh(r);
      if (a) e.attr = a;
      if (fh) e.fh = fh;
    }
    entries.push(e);
  }
  return { entries, eof: r.bool('eof') };
}

export interface ExportEntry { dir: string; groups: string[] }

export function decodeExports(r: XdrReader): ExportEntry[] {
  const out: ExportEntry[] = [];
  while (r.bool('exportnode follows')) {
    if (out.length >= 10_000) throw new XdrError('export list longer than 10000 entries');
    const dir = r.string(1024, 'ex_dir');
    const groups: string[] = [];
    while (r.bool('groupnode follows')) {
      if (groups.length >= 10_000) throw new XdrError('export group list longer than 10000 entries');
      groups.push(r.string(255, 'gr_name'));
    }
    out.push({ dir, groups });
  }
  return out;
}
