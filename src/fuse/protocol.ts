// The FUSE kernel protocol, as include/uapi/linux/fuse.h defines it: opcodes, flags, and the
// byte layout of every request we read and every reply we write. Nothing here does I/O.
// Layouts are little-endian (every architecture Node runs FUSE on) and stable since 7.23,
// the oldest minor this session accepts is 7.31 (kernel 5.4); fields added later are used
// only where the kernel's minor says they exist.
//
// What must stay true: a decoder never reads past the request it was given (a short or
// malformed request throws ProtocolError, which the session answers with EINVAL or drops),
// and an encoder writes exactly the size the kernel expects for the negotiated minor.
import { nameFromBytes } from '../core/names.js';

export const FUSE_KERNEL_VERSION = 7;
/** The newest minor we speak (7.40: passthrough). */
export const OUR_MINOR = 40;
/** The oldest minor we accept (7.31: Linux 5.4). */
export const OLDEST_MINOR = 31;
export const FUSE_ROOT_ID = 1n;

export const Op = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9,
  UNLINK: 10, RMDIR: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17,
  RELEASE: 18, FSYNC: 20, SETXATTR: 21, GETXATTR: 22, LISTXATTR: 23, REMOVEXATTR: 24, FLUSH: 25,
  INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30, GETLK: 31, SETLK: 32,
  SETLKW: 33, ACCESS: 34, CREATE: 35, INTERRUPT: 36, BMAP: 37, DESTROY: 38, IOCTL: 39, POLL: 40,
  NOTIFY_REPLY: 41, BATCH_FORGET: 42, FALLOCATE: 43, READDIRPLUS: 44, RENAME2: 45, LSEEK: 46,
  COPY_FILE_RANGE: 47, SETUPMAPPING: 48, REMOVEMAPPING: 49, SYNCFS: 50, TMPFILE: 51, STATX: 52,
} as const;

/** Opcode number -> name, for logs and per-operation statistics. */
export const opName: Record<number, string> = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k.toLowerCase()]));

/** INIT flags (the first 32 bits in `flags`, the next 32 in `flags2` when FUSE_INIT_EXT). */
export const Init = {
  ASYNC_READ: 1n << 0n, POSIX_LOCKS: 1n << 1n, ATOMIC_O_TRUNC: 1n << 3n, EXPORT_SUPPORT: 1n << 4n,
  BIG_WRITES: 1n << 5n, DONT_MASK: 1n << 6n, AUTO_INVAL_DATA: 1n << 12n, DO_READDIRPLUS: 1n << 13n,
  READDIRPLUS_AUTO: 1n << 14n, ASYNC_DIO: 1n << 15n, WRITEBACK_CACHE: 1n << 16n,
  PARALLEL_DIROPS: 1n << 18n, HANDLE_KILLPRIV: 1n << 19n, MAX_PAGES: 1n << 22n,
  CACHE_SYMLINKS: 1n << 23n, HANDLE_KILLPRIV_V2: 1n << 28n, INIT_EXT: 1n << 30n,
  PASSTHROUGH: 1n << 37n,
} as const;

/** FOPEN_* flags of an open reply. */
export const Fopen = { DIRECT_IO: 1 << 0, KEEP_CACHE: 1 << 1, CACHE_DIR: 1 << 3, PASSTHROUGH: 1 << 7 } as const;

/** SETATTR's `valid` bits. */
export const Fattr = {
  MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5, FH: 1 << 6,
  ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8, LOCKOWNER: 1 << 9, CTIME: 1 << 10, KILL_SUIDGID: 1 << 11,
} as const;

export const Notify = { INVAL_INODE: 2, INVAL_ENTRY: 3 } as const;

export const GETATTR_FH = 1;
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;

export const IN_HEADER = 40;
export const OUT_HEADER = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
export const INIT_OUT_SIZE = 64;

/** A request the kernel should never send (or that was cut short): answered EINVAL. */
export class ProtocolError extends Error {}

export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: bigint;
  uid: number;
  gid: number;
  pid: number;
}

/** Reads the fields of one request's body, checking every read against its end. */
export class Body {
  private pos: number;
  constructor(private readonly buf: Buffer, start: number, private readonly end: number) { this.pos = start; }

  private need(n: number): number {
    const at = this.pos;
    if (at + n > this.end) throw new ProtocolError(`request body too short: wanted ${n} bytes at ${at}, it ends at ${this.end}`);
    this.pos += n;
    return at;
  }
  u32(): number { return this.buf.readUInt32LE(this.need(4)); }
  i32(): number { return this.buf.readInt32LE(this.need(4)); }
  u64(): bigint { return this.buf.readBigUInt64LE(this.need(8)); }
  /** A u64 that must fit a JavaScript number exactly (offsets, sizes, file handles). */
  num64(): number {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(`value ${v} is out of range`);
    return Number(v);
  }
  skip(n: number): void { this.need(n); }
  /** A NUL-terminated name (its bytes as core/names.ts maps them: nothing is lost). */
  cstr(): string {
    const nul = this.buf.indexOf(0, this.pos);
    if (nul < 0 || nul >= this.end) throw new ProtocolError('name is not NUL-terminated');
    const s = nameFromBytes(this.buf, this.pos, nul);
    this.pos = nul + 1;
    return s;
  }
  /** The rest of the body, `n` bytes of it (a write's data): a view, not a copy. */
  bytes(n: number): Buffer { const at = this.need(n); return this.buf.subarray(at, at + n); }
  get remaining(): number { return this.end - this.pos; }
  /** A reader of the rest of the body that leaves this one where it is (to look ahead). */
  ahead(): Body { return new Body(this.buf, this.pos, this.end); }
}

/**
 * The name(s) a request that names something in its directory node carries (the first is in
 * that directory), and the other nodes it names (a link's old node, a rename's new
 * directory, with the new name). Null for other opcodes. Reads `b` from where it stands.
 */
export function namedIn(op: number, b: Body): { names: string[]; nodes: bigint[]; newdir?: bigint; newname?: string } | null {
  switch (op) {
    case Op.LOOKUP: case Op.UNLINK: case Op.RMDIR: case Op.SYMLINK: return { names: [b.cstr()], nodes: [] };
    case Op.MKDIR: b.skip(8); return { names: [b.cstr()], nodes: [] };
    case Op.MKNOD: case Op.CREATE: b.skip(16); return { names: [b.cstr()], nodes: [] };
    case Op.LINK: { const old = b.u64(); return { names: [b.cstr()], nodes: [old] }; }
    case Op.RENAME: case Op.RENAME2: {
      const newdir = b.u64();
      if (op === Op.RENAME2) b.skip(8);
      return { names: [b.cstr()], nodes: [newdir], newdir, newname: b.cstr() };
    }
    default: return null;
  }
}

/** A time a SETATTR sets: nanoseconds since the epoch, now, or left alone. */
export type SetTime = bigint | 'now' | 'omit';

/** The body of SETATTR (struct fuse_setattr_in): which fields are valid, and their values. */
export interface SetattrIn {
  valid: number;
  /** The open file the change comes through (FATTR_FH), else 0. */
  fh: number;
  size: number;
  atime: SetTime;
  mtime: SetTime;
  mode: number;
  uid: number;
  gid: number;
}

export function parseSetattr(body: Body): SetattrIn {
  const valid = body.u32();
  body.skip(4);
  const fh = body.num64();
  const size = body.num64();
  body.skip(8); // lock_owner
  const atime = body.u64(), mtime = body.u64();
  body.skip(8); // ctime
  const atimensec = body.u32(), mtimensec = body.u32();
  body.skip(4);
  const mode = body.u32();
  body.skip(4);
  const uid = body.u32(), gid = body.u32();
  const ns = (s: bigint, n: number) => BigInt.asIntN(64, s) * 1_000_000_000n + BigInt(n);
  return {
    valid, fh: valid & Fattr.FH ? fh : 0, size, mode, uid, gid,
    atime: valid & Fattr.ATIME_NOW ? 'now' : valid & Fattr.ATIME ? ns(atime, atimensec) : 'omit',
    mtime: valid & Fattr.MTIME_NOW ? 'now' : valid & Fattr.MTIME ? ns(mtime, mtimensec) : 'omit',
  };
}

/** Parses the header of the request in `buf[0..n)`. Throws ProtocolError when it is not one. */
export function parseHeader(buf: Buffer, n: number): InHeader {
  if (n < IN_HEADER) throw new ProtocolError(`request of ${n} bytes is shorter than its header`);
  const len = buf.readUInt32LE(0);
  if (len !== n) throw new ProtocolError(`request says it has ${len} bytes, ${n} were read`);
  const extlen = buf.readUInt16LE(36) * 8;
  if (IN_HEADER + extlen > len) throw new ProtocolError('request extensions overrun it');
  return {
    len: len - extlen, // extensions (security context, supplementary group) follow the body: not ours
    opcode: buf.readUInt32LE(4),
    unique: buf.readBigUInt64LE(8),
    nodeid: buf.readBigUInt64LE(16),
    uid: buf.readUInt32LE(24),
    gid: buf.readUInt32LE(28),
    pid: buf.readUInt32LE(32),
  };
}

export function outHeader(len: number, error: number, unique: bigint): Buffer {
  const b = Buffer.allocUnsafe(OUT_HEADER);
  b.writeUInt32LE(len, 0);
  b.writeInt32LE(error, 4);
  b.writeBigUInt64LE(unique, 8);
  return b;
}

/** What we report of an object (st_* in the kernel's units). */
export interface FuseAttr {
  ino: bigint;
  size: number;
  blocks: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  blksize: number;
}

const NS = 1_000_000_000n;
function secs(ns: bigint): [bigint, number] {
  let s = ns / NS;
  let r = ns % NS;
  if (r < 0n) { r += NS; s -= 1n; }
  return [s, Number(r)];
}

export function writeAttr(b: Buffer, at: number, a: FuseAttr): void {
  b.writeBigUInt64LE(a.ino, at);
  b.writeBigUInt64LE(BigInt(Math.max(0, a.size)), at + 8);
  b.writeBigUInt64LE(BigInt(Math.max(0, a.blocks)), at + 16);
  const [as, an] = secs(a.atimeNs), [ms, mn] = secs(a.mtimeNs), [cs, cn] = secs(a.ctimeNs);
  b.writeBigInt64LE(as, at + 24);
  b.writeBigInt64LE(ms, at + 32);
  b.writeBigInt64LE(cs, at + 40);
  b.writeUInt32LE(an, at + 48);
  b.writeUInt32LE(mn, at + 52);
  b.writeUInt32LE(cn, at + 56);
  b.writeUInt32LE(a.mode >>> 0, at + 60);
  b.writeUInt32LE(a.nlink >>> 0, at + 64);
  b.writeUInt32LE(a.uid >>> 0, at + 68);
  b.writeUInt32LE(a.gid >>> 0, at + 72);
  b.writeUInt32LE(a.rdev >>> 0, at + 76);
  b.writeUInt32LE(a.blksize >>> 0, at + 80);
  b.writeUInt32LE(0, at + 84);
}

/** A validity in seconds as the kernel's (seconds, nanoseconds) pair. */
function validity(s: number): [bigint, number] {
  const whole = Math.floor(s);
  return [BigInt(whole), Math.round((s - whole) * 1e9)];
}

/** `generation`: with the node id, what a file handle of the mount names (see nodes.ts). */
export function writeEntry(b: Buffer, at: number, nodeid: bigint, a: FuseAttr, entryS: number, attrS: number, generation = 0): void {
  const [es, en] = validity(entryS), [as, an] = validity(attrS);
  b.writeBigUInt64LE(nodeid, at);
  b.writeBigUInt64LE(BigInt(generation), at + 8);
  b.writeBigUInt64LE(es, at + 16);
  b.writeBigUInt64LE(as, at + 24);
  b.writeUInt32LE(en, at + 32);
  b.writeUInt32LE(an, at + 36);
  writeAttr(b, at + 40, a);
}

export function entryOut(nodeid: bigint, a: FuseAttr, entryS: number, attrS: number, generation = 0): Buffer {
  const b = Buffer.alloc(ENTRY_OUT_SIZE);
  writeEntry(b, 0, nodeid, a, entryS, attrS, generation);
  return b;
}

/** A negative entry: "no such name", cached for `entryS` seconds (nodeid 0). */
export function negativeEntryOut(entryS: number): Buffer {
  const b = Buffer.alloc(ENTRY_OUT_SIZE);
  const [es, en] = validity(entryS);
  b.writeBigUInt64LE(es, 16);
  b.writeUInt32LE(en, 32);
  return b;
}

export function attrOut(a: FuseAttr, attrS: number): Buffer {
  const b = Buffer.alloc(ATTR_OUT_SIZE);
  const [s, n] = validity(attrS);
  b.writeBigUInt64LE(s, 0);
  b.writeUInt32LE(n, 8);
  writeAttr(b, 16, a);
  return b;
}

export function openOut(fh: bigint, flags: number, backingId = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(fh, 0);
  b.writeUInt32LE(flags, 8);
  b.writeInt32LE(backingId, 12);
  return b;
}

export function writeOut(size: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(size, 0);
  return b;
}

export interface StatfsOut { blocks: number; bfree: number; bavail: number; files: number; ffree: number; bsize: number; namelen: number; frsize: number }

export function statfsOut(s: StatfsOut): Buffer {
  const b = Buffer.alloc(80);
  const u = (v: number) => BigInt(Math.max(0, Math.floor(v)));
  b.writeBigUInt64LE(u(s.blocks), 0);
  b.writeBigUInt64LE(u(s.bfree), 8);
  b.writeBigUInt64LE(u(s.bavail), 16);
  b.writeBigUInt64LE(u(s.files), 24);
  b.writeBigUInt64LE(u(s.ffree), 32);
  b.writeUInt32LE(s.bsize >>> 0, 40);
  b.writeUInt32LE(s.namelen >>> 0, 44);
  b.writeUInt32LE(s.frsize >>> 0, 48);
  return b;
}

const align8 = (n: number) => (n + 7) & ~7;

/** The size of one READDIR entry for `name` (dirent header 24 bytes + name, 8-aligned). */
export function direntSize(name: Buffer): number { return align8(24 + name.length); }
/** The size of one READDIRPLUS entry (an entry_out before the dirent). */
export function direntPlusSize(name: Buffer): number { return ENTRY_OUT_SIZE + direntSize(name); }

export function writeDirent(b: Buffer, at: number, ino: bigint, off: number, type: number, name: Buffer): number {
  b.writeBigUInt64LE(ino, at);
  b.writeBigUInt64LE(BigInt(off), at + 8);
  b.writeUInt32LE(name.length, at + 16);
  b.writeUInt32LE(type, at + 20);
  name.copy(b, at + 24);
  const size = direntSize(name);
  b.fill(0, at + 24 + name.length, at + size);
  return size;
}

/** The dirent `type` (DT_*) of a mode. */
export function direntType(mode: number): number { return (mode & 0o170000) >> 12; }

export interface InitIn { major: number; minor: number; maxReadahead: number; flags: bigint }

export function parseInit(body: Body): InitIn {
  const major = body.u32();
  const minor = body.u32();
  const maxReadahead = body.u32();
  let flags = BigInt(body.u32());
  // flags2 exists from 7.36, and means something only with FUSE_INIT_EXT.
  if (body.remaining >= 4 && (flags & Init.INIT_EXT)) flags |= BigInt(body.u32()) << 32n;
  return { major, minor, maxReadahead, flags };
}

export interface InitOut {
  minor: number;
  maxReadahead: number;
  flags: bigint;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  maxPages: number;
  maxStackDepth: number;
}

export function initOut(o: InitOut): Buffer {
  const b = Buffer.alloc(INIT_OUT_SIZE);
  b.writeUInt32LE(FUSE_KERNEL_VERSION, 0);
  b.writeUInt32LE(o.minor, 4);
  b.writeUInt32LE(o.maxReadahead, 8);
  b.writeUInt32LE(Number(o.flags & 0xffffffffn), 12);
  b.writeUInt16LE(o.maxBackground, 16);
  b.writeUInt16LE(o.congestionThreshold, 18);
  b.writeUInt32LE(o.maxWrite, 20);
  b.writeUInt32LE(1, 24); // time_gran: nanoseconds
  b.writeUInt16LE(o.maxPages, 28);
  b.writeUInt16LE(0, 30); // map_alignment
  b.writeUInt32LE(Number((o.flags >> 32n) & 0xffffffffn), 32);
  b.writeUInt32LE(o.maxStackDepth, 36);
  return b;
}

export function notifyInvalInode(ino: bigint, off: number, len: number): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(ino, 0);
  b.writeBigInt64LE(BigInt(off), 8);
  b.writeBigInt64LE(BigInt(len), 16);
  return b;
}

export function notifyInvalEntry(parent: bigint, name: Buffer): Buffer {
  const b = Buffer.alloc(16 + name.length + 1);
  b.writeBigUInt64LE(parent, 0);
  b.writeUInt32LE(name.length, 8);
  name.copy(b, 16);
  return b;
}
