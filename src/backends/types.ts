// The lower layer: what a backend (a POSIX directory, an NFSv3 export) must offer to the
// cache. Everything is addressed by file handle, never by path; the adapters know nothing
// of caching. All methods reject with FsError only.
import type { Creds } from '../core/creds.js';

/** Object types, as the kernel names them. */
export type ObjType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev';

/** Attributes as the backend reports them; times are nanoseconds since the epoch. */
export interface Attr {
  type: ObjType;
  /** Full st_mode including the type bits. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  rdev: number;
  /** Bytes the backend has allocated (for st_blocks). */
  used: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  /**
   * What changes whenever the object's data or metadata changes: the backend's change
   * attribute where it has one, else ctime/mtime/size. Compared as an opaque string.
   */
  version: string;
}

/** A found or created object: its opaque handle and its attributes. */
export interface Node {
  fh: Buffer;
  attr: Attr;
}

/**
 * A directory around a change of ours to its names, when the call gives it for free (NFS's
 * wcc data; on a local disk an lstat just before and just after): its version just before
 * the change and its attributes just after. When `before` is the version the cache holds,
 * the change was the only one, and the cache adopts `after` instead of asking again.
 */
export interface DirWcc {
  before: string;
  after: Attr;
}

/** A created object; `dir`: its directory around the create, when known. */
export interface Made extends Node {
  dir?: DirWcc;
}

/**
 * What a rename may answer with: the directory the name left and the one it went to (one
 * directory: `from` only), around the rename, and the object's attributes after it (its
 * ctime moved).
 */
export interface Renamed {
  from?: DirWcc;
  to?: DirWcc;
  attr?: Attr;
}

export interface DirEntry extends Node {
  name: string;
}

export type { Creds } from '../core/creds.js';

/** A time in a setattr: an exact time, or "now" on the backend's clock. */
export type SetTime = { kind: 'set'; ns: bigint } | { kind: 'now' };

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: SetTime;
  mtime?: SetTime;
  /**
   * Apply only if the object's ctime is still this (NFS's guarded SETATTR); otherwise
   * reject with EAGAIN: someone changed the object since.
   */
  guardCtimeNs?: bigint;
}

export interface StatFs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  namemax: number;
}

/**
 * Offered with bytes a caller would otherwise reuse once a call returns (a pooled buffer):
 * calling it makes them stay unchanged until the release it returns is called (once). It
 * may be called more than once; each call pins them once more.
 */
export type KeepBytes = () => () => void;

/** Bytes a backend lends (Backend.readLent): valid until release(), to be called once. */
export interface LentBytes { data: Buffer; release(): void }

export interface Backend {
  /**
   * True when data written is durable on the backend only after commit() (NFS UNSTABLE
   * writes): the cache then commits at close, for close-to-open durability.
   */
  readonly commitOnClose?: boolean;
  /**
   * True when the backend checks permissions itself as the creating user, so it needs the
   * caller's supplementary groups too (NFS AUTH_SYS); the kernel has checked them already.
   */
  readonly needsGroups?: boolean;
  /** Names the backend filesystem and the exported root (unique across servers/exports). */
  readonly fsid: string;
  /** A human-readable description (the URL it was opened from). */
  readonly description: string;
  root(): Promise<Node>;
  getattr(fh: Buffer): Promise<Attr>;
  lookup(dir: Buffer, name: string): Promise<Node>;
  readdir(dir: Buffer): Promise<DirEntry[]>;
  readlink(fh: Buffer): Promise<string>;
  /**
   * Up to `length` bytes at `offset` (fewer at the end of the file). `into` (at least
   * `length` bytes): where to put them, if the backend can; the result is then a part of
   * it. A backend may ignore it and return a buffer of its own.
   */
  read(fh: Buffer, offset: number, length: number, into?: Buffer): Promise<Buffer>;
  /**
   * As read(), for a caller that can give the bytes back: they may be a view of a buffer the
   * backend lends (an NFS READ reply's record, so no copy of the data is made), valid until
   * release(), which the caller must call once, when nothing refers to them any more. A
   * backend without it: the caller uses read().
   */
  readLent?(fh: Buffer, offset: number, length: number): Promise<LentBytes>;
  /**
   * Copies the bytes [offset, offset+length) of the file (fewer at its end) to the same
   * offsets of the open file `destFd` by a kernel copy, no byte passing through this
   * process, and returns the file's attributes after the copy: the caller keeps the bytes
   * only if their version is the one it expected. Offered where such a copy is cheap and
   * cannot hang (a local directory on a local disk); elsewhere absent, or EOPNOTSUPP.
   */
  copyInto?(fh: Buffer, destFd: number, offset: number, length: number): Promise<Attr>;
  /**
   * Returns the object's attributes after the write when they come for free (NFS's wcc
   * data, a local fstat): the cache then knows the version its own write produced, so a
   * change made right after, offline, is not taken for someone else's.
   * `data` may change once write() returns, unless the backend calls `keep`: a backend that
   * needs the bytes later (NFS: UNSTABLE writes are sent again if the server restarts
   * before their COMMIT) keeps them that way, or copies them when no `keep` is offered.
   */
  write(fh: Buffer, offset: number, data: Buffer, creds?: Creds, keep?: KeepBytes): Promise<Attr | void>;
  /**
   * Makes written data durable on the backend (fsync / NFS COMMIT). May answer with the
   * attributes after it (NFS wcc data), sparing the cache a getattr.
   */
  commit(fh: Buffer): Promise<Attr | void>;
  create(dir: Buffer, name: string, mode: number, creds: Creds, opts: { exclusive: boolean }): Promise<Made>;
  mkdir(dir: Buffer, name: string, mode: number, creds: Creds): Promise<Made>;
  symlink(dir: Buffer, name: string, target: string, creds: Creds): Promise<Made>;
  mknod(dir: Buffer, name: string, mode: number, rdev: number, creds: Creds): Promise<Made>;
  link(fh: Buffer, dir: Buffer, name: string, creds?: Creds): Promise<Attr>;
  /** May answer with the directory around the removal (DirWcc). */
  unlink(dir: Buffer, name: string, creds?: Creds): Promise<DirWcc | void>;
  rmdir(dir: Buffer, name: string, creds?: Creds): Promise<DirWcc | void>;
  rename(fromDir: Buffer, fromName: string, toDir: Buffer, toName: string, creds?: Creds): Promise<Renamed | void>;
  setattr(fh: Buffer, set: SetAttr, creds?: Creds): Promise<Attr>;
  statfs(): Promise<StatFs>;
  /** Starts noticing changes made to the backend from outside (if the backend can). */
  watch?(onChange: (change: OutsideChange) => void, opts?: WatchOptions): Promise<void>;
  /**
   * Whether watch() reports, now and promptly, every change made from outside to the
   * directories seen through this adapter and to the objects in them (names, attributes
   * and file contents). The kernel is given long timeouts only while it does. Absent: never.
   */
  notifiesChanges?(): boolean;
  close(): Promise<void>;
  /** Figures for `cachefs status` (transfer sizes, counters); plain JSON. */
  info?(): Record<string, unknown>;
}

export interface WatchOptions {
  /** auto: inotify on a local disk, polling (chokidar) on a network file system. */
  mode: 'auto' | 'inotify' | 'poll';
  pollIntervalMs: number;
}

/** A change made to the backend by someone else, as far as the adapter can tell. */
export interface OutsideChange {
  /** Handle of the directory whose entries may have changed, when known. */
  dir?: Buffer;
  /** Name inside `dir` that changed, when known. */
  name?: string;
  /** Handle of the object whose data or attributes may have changed, when known. */
  fh?: Buffer;
}

/**
 * How the layer calls its backend: bounded in concurrency and with a deadline, a
 * connection error switching the mount to disconnected (src/layers/gated-backend.ts).
 */
export type BackendCall = <T>(what: string, fn: () => Promise<T>) => Promise<T>;
