// The system calls a FUSE session needs and Node lacks, through koffi: mount(2) and umount2(2)
// (root mounts), socketpair(2) and recvmsg(2) with SCM_RIGHTS (the descriptor fusermount3
// passes back to an ordinary user), and the /dev/fuse ioctls of passthrough.
// umount2 runs on a pool thread: the kernel may need our answers (a last write-back) before
// it returns, and the event loop must stay free to give them.
import fs from 'node:fs';
import koffi from 'koffi';
import { FsError, errnoName } from '../core/errors.js';

const libc = koffi.load('libc.so.6');
const mountFn = libc.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)');
const umount2Fn = libc.func('int umount2(const char *target, int flags)');
const socketpairFn = libc.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)');
const recvmsgFn = libc.func('intptr_t recvmsg(int fd, void *msg, int flags)');
const ioctlPtr = libc.func('int ioctl(int fd, unsigned long request, uint8_t *arg)');
const readFn = libc.func('intptr_t read(int fd, uint8_t *buf, size_t count)');

function lastError(what: string, n = koffi.errno()): FsError {
  return new FsError(errnoName(n) ?? 'EIO', `${what}: ${errnoName(n) ?? `errno ${n}`}`);
}

export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MNT_FORCE = 1;
export const MNT_DETACH = 2;

export function mount(source: string, target: string, fstype: string, flags: number, data: string): void {
  if (mountFn(source, target, fstype, flags, data) !== 0) throw lastError(`mount ${target}`);
}

export function umount2(target: string, flags: number): Promise<void> {
  return new Promise((resolve, reject) => {
    umount2Fn.async(target, flags, (err: unknown, rc: number) => {
      if (err) reject(err);
      else if (rc !== 0) reject(lastError(`umount ${target}`));
      else resolve();
    });
  });
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const O_CLOEXEC = 0o2000000;

/** A connected pair of Unix stream sockets, close-on-exec (a child gets one by dup2, which clears that). */
export function socketPair(): [number, number] {
  const sv = [0, 0];
  if (socketpairFn(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) !== 0) throw lastError('socketpair');
  return [sv[0]!, sv[1]!];
}

const MSG_DONTWAIT = 0x40;
/** The descriptor received must not leak into our children: it would keep the mount alive. */
const MSG_CMSG_CLOEXEC = 0x40000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;

/**
 * Receives one descriptor sent with SCM_RIGHTS on `sock` (what fusermount3 does with the
 * /dev/fuse descriptor it opened). Throws EAGAIN when nothing was sent.
 */
export function receiveFd(sock: number): number {
  // One native block: msghdr at 0, iovec at 64, one data byte at 96, control at 128.
  const size = 192;
  const mem = koffi.alloc('uint8_t', size);
  try {
    const base = koffi.address(mem);
    const b = Buffer.from(koffi.view(mem, size));
    b.fill(0);
    b.writeBigUInt64LE(base + 64n, 16); // msg_iov
    b.writeBigUInt64LE(1n, 24); // msg_iovlen
    b.writeBigUInt64LE(base + 128n, 32); // msg_control
    b.writeBigUInt64LE(64n, 40); // msg_controllen
    b.writeBigUInt64LE(base + 96n, 64); // iov_base
    b.writeBigUInt64LE(1n, 72); // iov_len
    const n = Number(recvmsgFn(sock, mem, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
    if (n < 0) throw lastError('recvmsg');
    const cmsgLen = Number(b.readBigUInt64LE(128));
    const level = b.readInt32LE(136);
    const type = b.readInt32LE(140);
    if (cmsgLen < 20 || level !== SOL_SOCKET || type !== SCM_RIGHTS) throw new FsError('EIO', 'no descriptor came back from fusermount3');
    return b.readInt32LE(144);
  } finally {
    koffi.free(mem);
  }
}

// _IOR(229, 0, uint32_t).
const FUSE_DEV_IOC_CLONE = 0x8004e500;

/**
 * A second descriptor of the session on `devFd` (FUSE_DEV_IOC_CLONE, Linux 4.2), opened
 * non-blocking: the kernel hands each request to one reader of any of the two, and a reply
 * must go back on the descriptor its request was read from.
 */
export function cloneNonBlocking(devFd: number): number {
  const fd = fs.openSync('/dev/fuse', fs.constants.O_RDWR | fs.constants.O_NONBLOCK | O_CLOEXEC);
  const arg = Buffer.alloc(4);
  arg.writeUInt32LE(devFd, 0);
  if ((ioctlPtr(fd, FUSE_DEV_IOC_CLONE, arg) as number) < 0) {
    const e = lastError('FUSE_DEV_IOC_CLONE');
    fs.closeSync(fd);
    throw e;
  }
  return fd;
}

const EAGAIN = 11;
/**
 * read(2) without an exception for the expected answers: the byte count, or -1 when nothing
 * is there (EAGAIN), or -errno. Node's readSync would build an Error for each empty poll.
 */
export function readNow(fd: number, buf: Buffer): number {
  const n = Number(readFn(fd, buf, buf.length));
  if (n >= 0) return n;
  const e = koffi.errno();
  return e === EAGAIN ? -1 : -e;
}

// _IOW(229, 1, struct fuse_backing_map) and _IOW(229, 2, uint32_t).
const FUSE_DEV_IOC_BACKING_OPEN = 0x4010e501;
const FUSE_DEV_IOC_BACKING_CLOSE = 0x4004e502;

/** Registers `fd` as a backing file of the session on `devFd`; returns its backing id. */
export function backingOpen(devFd: number, fd: number): number {
  const map = Buffer.alloc(16);
  map.writeInt32LE(fd, 0);
  const id = ioctlPtr(devFd, FUSE_DEV_IOC_BACKING_OPEN, map) as number;
  if (id < 0) throw lastError('FUSE_DEV_IOC_BACKING_OPEN');
  return id;
}

export function backingClose(devFd: number, id: number): void {
  const arg = Buffer.alloc(4);
  arg.writeUInt32LE(id, 0);
  if ((ioctlPtr(devFd, FUSE_DEV_IOC_BACKING_CLOSE, arg) as number) < 0) throw lastError('FUSE_DEV_IOC_BACKING_CLOSE');
}
