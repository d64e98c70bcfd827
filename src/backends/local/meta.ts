// Metadata system calls of the local backend, in two flavours. On a local disk file system
// a metadata call (lstat, mkdir, rename…) takes a few microseconds, while a trip through
// libuv's thread pool costs 50-150 µs under load, and FUSE sends most of them one at a
// time: there they run synchronously. On a network or FUSE file system (NFS, SMB, sshfs)
// a call may block for long, so there they stay asynchronous. Data transfers are always
// asynchronous (see LocalBackend.read/write).
//
// Paths given here are short: the local backend names objects below an open directory
// descriptor (dir-fds.ts), never by their whole path from the backend root.
import { promises as fsp, readFileSync, constants as fsc, type BigIntStats, type PathLike } from 'node:fs';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { decodedExactly, fsName, nameFromBytes } from '../../core/names.js';

/** Linux's O_PATH (the same on x86-64 and arm64; Node does not export it). */
export const O_PATH = 0o10000000;
/** How dir-fds.ts opens a directory: a reference only, and never through a symlink. */
const DIR_FLAGS = O_PATH | fsc.O_DIRECTORY | fsc.O_NOFOLLOW;
const openCb = promisify(fs.open);
const fstatCb = promisify(fs.fstat);

export interface MetaCalls {
  readonly sync: boolean;
  lstat(p: PathLike): Promise<BigIntStats>;
  readdir(p: PathLike): Promise<string[]>;
  readlink(p: PathLike): Promise<string>;
  lchown(p: PathLike, uid: number, gid: number): Promise<void>;
  chmod(p: PathLike, mode: number): Promise<void>;
  mkdir(p: PathLike, mode: number): Promise<void>;
  symlink(target: string, p: PathLike): Promise<void>;
  link(existing: PathLike, p: PathLike): Promise<void>;
  unlink(p: PathLike): Promise<void>;
  rmdir(p: PathLike): Promise<void>;
  rename(from: PathLike, to: PathLike): Promise<void>;
  truncate(p: PathLike, size: number): Promise<void>;
  /** Creates (or opens) a regular file and closes it again. */
  createFile(p: PathLike, flags: number, mode: number): Promise<void>;
  /** Opens the directory at `p` as an O_PATH descriptor (not following a final symlink). */
  openDir(p: PathLike): Promise<number>;
  fstat(fd: number): Promise<BigIntStats>;
}

/**
 * A directory's names, exactly (core/names.ts): Node decodes them as UTF-8 with replacement
 * characters, which is exact only when none came out (nor one of our escapes): else they
 * are read again as bytes. Costs nothing for the usual listing.
 */
async function exactNames(names: string[], asBytes: () => Promise<Buffer[]>): Promise<string[]> {
  if (names.every(decodedExactly)) return names;
  return (await asBytes()).map((b) => nameFromBytes(b));
}

const asyncCalls: MetaCalls = {
  sync: false,
  lstat: (p) => fsp.lstat(p, { bigint: true }),
  readdir: async (p) => exactNames(await fsp.readdir(p), async () => fsp.readdir(p, { encoding: 'buffer' })),
  readlink: async (p) => nameFromBytes(await fsp.readlink(p, { encoding: 'buffer' })),
  lchown: (p, u, g) => fsp.lchown(p, u, g),
  chmod: (p, m) => fsp.chmod(p, m),
  mkdir: async (p, m) => { await fsp.mkdir(p, { mode: m }); },
  symlink: (t, p) => fsp.symlink(fsName(t), p),
  link: (a, b) => fsp.link(a, b),
  unlink: (p) => fsp.unlink(p),
  rmdir: (p) => fsp.rmdir(p),
  rename: (a, b) => fsp.rename(a, b),
  truncate: (p, n) => fsp.truncate(p, n),
  createFile: async (p, flags, mode) => { const h = await fsp.open(p, flags, mode); await h.close(); },
  openDir: (p) => openCb(p, DIR_FLAGS),
  fstat: (fd) => fstatCb(fd, { bigint: true }) as Promise<BigIntStats>,
};

// Each wrapper is async so that a thrown error becomes a rejection, as with fs.promises.
const syncCalls: MetaCalls = {
  sync: true,
  lstat: async (p) => fs.lstatSync(p, { bigint: true }),
  readdir: async (p) => exactNames(fs.readdirSync(p), async () => fs.readdirSync(p, { encoding: 'buffer' })),
  readlink: async (p) => nameFromBytes(fs.readlinkSync(p, { encoding: 'buffer' })),
  lchown: async (p, u, g) => fs.lchownSync(p, u, g),
  chmod: async (p, m) => fs.chmodSync(p, m),
  mkdir: async (p, m) => { fs.mkdirSync(p, { mode: m }); },
  symlink: async (t, p) => fs.symlinkSync(fsName(t), p),
  link: async (a, b) => fs.linkSync(a, b),
  unlink: async (p) => fs.unlinkSync(p),
  rmdir: async (p) => fs.rmdirSync(p),
  rename: async (a, b) => fs.renameSync(a, b),
  truncate: async (p, n) => fs.truncateSync(p, n),
  createFile: async (p, flags, mode) => { fs.closeSync(fs.openSync(p, flags, mode)); },
  openDir: async (p) => fs.openSync(p, DIR_FLAGS),
  fstat: async (fd) => fs.fstatSync(fd, { bigint: true }),
};

const LOCAL_DISK_TYPES = new Set(['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'tmpfs', 'f2fs', 'zfs', 'jfs',
  'reiserfs', 'overlay', 'ramfs', 'bcachefs']);

/** The file system type holding `dir`, from /proc/self/mountinfo (null if unknown). */
export function fsTypeOf(dir: string): string | null {
  let text: string;
  try { text = readFileSync('/proc/self/mountinfo', 'utf8'); } catch { return null; }
  let best: { mp: string; type: string } | null = null;
  for (const line of text.split('\n')) {
    const parts = line.split(' ');
    const sep = parts.indexOf('-');
    if (sep < 0 || parts.length < sep + 2) continue;
    const mp = parts[4]!.replace(/\\040/g, ' ');
    const inside = dir === mp || dir.startsWith(mp.endsWith('/') ? mp : mp + '/');
    if (inside && (!best || mp.length >= best.mp.length)) best = { mp, type: parts[sep + 1]! };
  }
  return best?.type ?? null;
}

export function metaCallsFor(dir: string): MetaCalls {
  const type = fsTypeOf(path.resolve(dir));
  return type !== null && LOCAL_DISK_TYPES.has(type) ? syncCalls : asyncCalls;
}
