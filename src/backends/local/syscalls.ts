// Linux system calls Node does not expose, through koffi: name_to_handle_at (file handles),
// statx into a reused buffer (lstat of a listing's entries), open_by_handle_at (finding a
// renamed object again), utimensat and futimens (nanosecond times with UTIME_OMIT),
// mknodat, and copy_file_range and sendfile. Calls are synchronous: each is one short
// syscall on a dentry the adapter has just looked up (lstat first), so it does not block
// the event loop for long. The copies are the exception: they move megabytes, on
// koffi's worker threads (koffi keeps each asynchronous call's errno for its callback).
// Each names its object as one name below a directory descriptor (see dir-fds.ts), never by
// a path from the backend root, which may be longer than PATH_MAX.
import koffi from 'koffi';
import { fsName } from '../../core/names.js';
import { FsError, errnoName } from '../../core/errors.js';

export const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const MAX_HANDLE_SZ = 128;
export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;

const libc = koffi.load('libc.so.6');
// Raw pointers to scratch buffers reused by every call (calls are synchronous and this
// thread is the only caller): koffi then copies nothing in or out; a listing makes one
// call per entry, and per-call buffers and conversions were half of its cost.
const nameToHandleAt = libc.func('int name_to_handle_at(int dirfd, const char *pathname, void *handle, void *mount_id, int flags)');
const handleScratch = Buffer.alloc(8 + MAX_HANDLE_SZ);
const mountIdScratch = Buffer.alloc(4);
const openByHandleAt = libc.func('int open_by_handle_at(int mount_fd, uint8_t *handle, int flags)');
const utimensat = libc.func('int utimensat(int dirfd, const char *pathname, uint8_t *times, int flags)');
const futimens = libc.func('int futimens(int fd, uint8_t *times)');
const mknodat = libc.func('int mknodat(int dirfd, const char *pathname, uint32_t mode, uint64_t dev)');
const copyFileRangeFn = libc.func('intptr_t copy_file_range(int fd_in, _Inout_ int64_t *off_in, int fd_out, _Inout_ int64_t *off_out, size_t len, unsigned int flags)');
const sendfileFn = libc.func('intptr_t sendfile(int out_fd, int in_fd, _Inout_ int64_t *offset, size_t count)');
const lseek = libc.func('int64_t lseek(int fd, int64_t offset, int whence)');
const SEEK_SET = 0;


function lastError(what: string): FsError {
  const n = koffi.errno();
  return new FsError(errnoName(n) ?? 'EIO', `${what}: errno ${n}`);
}

export interface KernelHandle {
  /** handle_type (4 bytes LE) followed by the f_handle bytes: opaque to everyone else. */
  bytes: Buffer;
  mountId: number;
}

/**
 * name_to_handle_at(dirfd, name, …, 0): does not follow a final symlink. `tag`: a byte put
 * before the handle in `bytes` (the backend's handle kind), saving a copy.
 */
export function handleOf(dirfd: number, name: string, tag?: number): KernelHandle {
  const buf = handleScratch;
  buf.writeUInt32LE(MAX_HANDLE_SZ, 0);
  if (nameToHandleAt(dirfd, cName(name), buf, mountIdScratch, 0) !== 0) throw lastError(`name_to_handle_at ${name}`);
  const n = buf.readUInt32LE(0);
  const pre = tag === undefined ? 0 : 1;
  const bytes = Buffer.allocUnsafe(pre + 4 + n);
  if (tag !== undefined) bytes[0] = tag;
  buf.copy(bytes, pre, 4, 8 + n);
  return { bytes, mountId: mountIdScratch.readInt32LE(0) };
}

/** open_by_handle_at with O_PATH; needs CAP_DAC_READ_SEARCH. Returns an fd the caller closes. */
export function openHandle(mountFd: number, handle: Buffer): number {
  const buf = Buffer.alloc(4 + handle.length);
  buf.writeUInt32LE(handle.length - 4, 0);
  handle.copy(buf, 4);
  const O_PATH = 0o10000000;
  const fd = openByHandleAt(mountFd, buf, O_PATH) as number;
  if (fd < 0) throw lastError('open_by_handle_at');
  return fd;
}

/**
 * A name as a C string argument: koffi encodes a string as UTF-8, right for every name but
 * one that is not UTF-8 (core/names.ts), which goes as its bytes and a NUL.
 */
function cName(name: string): string | Buffer {
  const b = fsName(name);
  return typeof b === 'string' ? b : Buffer.concat([b, Buffer.of(0)]);
}

export type TimeSpec = { kind: 'set'; ns: bigint } | { kind: 'now' } | { kind: 'omit' };

/** utimensat(dirfd, name) without following a final symlink, to the nanosecond. */
export function setTimes(dirfd: number, name: string, atime: TimeSpec, mtime: TimeSpec): void {
  if (utimensat(dirfd, cName(name), timespecs(atime, mtime), AT_SYMLINK_NOFOLLOW) !== 0) throw lastError(`utimensat ${name}`);
}

/** futimens(fd): the times of the file open as `fd`, to the nanosecond. */
export function setTimesFd(fd: number, atime: TimeSpec, mtime: TimeSpec): void {
  if (futimens(fd, timespecs(atime, mtime)) !== 0) throw lastError('futimens');
}

/** struct timespec[2] for utimensat and futimens. */
function timespecs(atime: TimeSpec, mtime: TimeSpec): Buffer {
  const buf = Buffer.alloc(32);
  writeTs(buf, 0, atime);
  writeTs(buf, 16, mtime);
  return buf;
}

function writeTs(buf: Buffer, off: number, t: TimeSpec): void {
  if (t.kind === 'now') { buf.writeBigInt64LE(0n, off); buf.writeBigInt64LE(BigInt(UTIME_NOW), off + 8); return; }
  if (t.kind === 'omit') { buf.writeBigInt64LE(0n, off); buf.writeBigInt64LE(BigInt(UTIME_OMIT), off + 8); return; }
  let sec = t.ns / 1_000_000_000n;
  let nsec = t.ns % 1_000_000_000n;
  if (nsec < 0n) { nsec += 1_000_000_000n; sec -= 1n; }
  buf.writeBigInt64LE(sec, off);
  buf.writeBigInt64LE(nsec, off + 8);
}

const statxFn = libc.func('int statx(int dirfd, const char *pathname, int flags, unsigned int mask, uint8_t *statxbuf)');
const statxScratch = Buffer.alloc(256);
const STATX_BASIC_STATS = 0x7ff;

/**
 * What lstat tells of one name in a directory, read by statx(2) into a reused buffer: the
 * listing of a directory the cache has not seen since a remount lstats every entry, and
 * Node's BigIntStats (18 BigInts and an object each) was a fifth of that listing's time
 * with the garbage it left. Numbers where they fit; ino, dev and the times as BigInts.
 */
export interface Lstat {
  mode: number; nlink: number; uid: number; gid: number; size: number; blocks: number;
  ino: bigint; dev: bigint; rdev: number; atimeNs: bigint; mtimeNs: bigint; ctimeNs: bigint;
}

/** lstat of `name` in the directory open as `dirfd` (statx, not following a final symlink). */
export function lstatAt(dirfd: number, name: string): Lstat {
  const b = statxScratch;
  if (statxFn(dirfd, cName(name), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, b) !== 0) throw lastError(`lstat ${name}`);
  const ts = (off: number): bigint => b.readBigInt64LE(off) * 1_000_000_000n + BigInt(b.readUInt32LE(off + 8));
  return {
    nlink: b.readUInt32LE(16), uid: b.readUInt32LE(20), gid: b.readUInt32LE(24), mode: b.readUInt16LE(28),
    ino: b.readBigUInt64LE(32), size: Number(b.readBigUInt64LE(40)), blocks: Number(b.readBigUInt64LE(48)),
    atimeNs: ts(64), ctimeNs: ts(96), mtimeNs: ts(112),
    rdev: Number(makedev(b.readUInt32LE(128), b.readUInt32LE(132))),
    dev: makedev(b.readUInt32LE(136), b.readUInt32LE(140)),
  };
}

/** glibc's makedev (what Node reports as st_dev and st_rdev). */
function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major), mi = BigInt(minor);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

export function mknod(dirfd: number, name: string, mode: number, rdev: number): void {
  if (mknodat(dirfd, cName(name), mode, rdev) !== 0) throw lastError(`mknod ${name}`);
}

/**
 * Copies up to `length` bytes at `offset` of `fdIn` to the same offset of `fdOut` inside the
 * kernel (no byte passes through this process), on a worker thread: copy_file_range(2), or
 * where the kernel will not copy between these two file systems (EXDEV: a cache on tmpfs,
 * say), sendfile(2) from that offset into `fdOut` positioned there (so `fdOut` must be a
 * descriptor of the caller's own, not shared). Resolves to the bytes copied: 0 at the end of
 * `fdIn`, fewer than asked when the kernel stops early (the caller loops). Both descriptors
 * must stay open until it settles.
 */
export async function copyFileRange(fdIn: number, fdOut: number, offset: number, length: number): Promise<number> {
  try {
    return await callAsync('copy_file_range', copyFileRangeFn, [fdIn, [BigInt(offset)], fdOut, [BigInt(offset)], length, 0]);
  } catch (e) {
    if (!(e instanceof FsError) || !['EXDEV', 'EINVAL', 'EOPNOTSUPP', 'ENOSYS'].includes(e.code)) throw e;
  }
  if (lseek(fdOut, BigInt(offset), SEEK_SET) < 0n) throw lastError('lseek');
  return callAsync('sendfile', sendfileFn, [fdOut, fdIn, [BigInt(offset)], length]);
}

function callAsync(what: string, fn: ReturnType<typeof libc.func>, args: unknown[]): Promise<number> {
  return new Promise((resolve, reject) => {
    fn.async(...args, (err: unknown, n: number | bigint) => {
      if (err) { reject(new FsError('EIO', `${what}: ${String(err)}`)); return; }
      if (Number(n) < 0) { reject(lastError(what)); return; }
      resolve(Number(n));
    });
  });
}
