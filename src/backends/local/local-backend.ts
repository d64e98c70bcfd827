// The "local" backend: a POSIX directory (which may itself be a kernel NFS/SMB/sshfs mount).
//
// Identity: a file handle is the kernel's name_to_handle_at handle, taken on the backing
// filesystem (never on a FUSE mount), prefixed with 'H'; where the filesystem has none it is
// 'I' + st_dev + st_ino. Handles survive renames, so the cache above keeps its data.
//
// Paths are this adapter's private business: it remembers where it last saw each handle and
// checks (by inode number) before every use that the path still names that object. If it does
// not (someone renamed it behind our back) it finds the object again with open_by_handle_at,
// and answers ESTALE only when the object is really gone.
//
// No system call is given a path from the backend root: every object is named as one name
// below an open descriptor of its directory (dir-fds.ts), so an object whose path is longer
// than PATH_MAX below the root (the mount's paths fit PATH_MAX, the root's own path does not
// count there) is reached like any other.
import { promises as fsp, constants as fsc, writeSync, fstatSync, fchmodSync, fchownSync, ftruncateSync, openSync, closeSync, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { FsError, fromNodeError, isFsError } from '../../core/errors.js';
import { log } from '../../core/log.js';
import { FdFile, type DataFile } from '../../core/fd-file.js';
import type { Attr, Backend, Creds, DirEntry, DirWcc, Made, Node, Renamed, OutsideChange, SetAttr, StatFs, WatchOptions } from '../types.js';
import { AT_FDCWD, copyFileRange, handleOf, lstatAt, mknod, openHandle, setTimes, setTimesFd, type Lstat, type TimeSpec } from './syscalls.js';
import { attrOf, lstatOf, toAttr } from './attrs.js';
import { InotifyDirWatcher, PollingDirWatcher, type DirWatching } from './watcher.js';
import { metaCallsFor, O_PATH, type MetaCalls } from './meta.js';
import { checkAddEntry, checkRemoveEntry, checkRename, checkSetattr, checkWrite, type Owned } from './access.js';
import { DirFds, procPath } from './dir-fds.js';
import { nameFromBytes } from '../../core/names.js';
import { Places } from './places.js';
import { atOrBelow, rebased } from './rel.js';

/** The first byte of a handle that is the kernel's file handle ('H'); 'I' is dev+inode. */
const HANDLE_TAG = 0x48;

/** An object found where it was remembered: its path below the root and its lstat. */
interface Located { rel: string; st: BigIntStats }

const MAX_OPEN_FDS = 128;
/** Directory descriptors kept open besides those in use (see dir-fds.ts). */
const MAX_DIR_FDS = 64;
const SYNC_WRITE_MAX = 256 * 1024;
/** Most inode -> path entries kept from a walk that looked for a file by inode. */
const INO_PATHS_MAX = 200_000;

export class LocalBackend implements Backend {
  /** Checks the rights of the user a change is made for (access.ts): it needs their groups. */
  readonly needsGroups = true;
  readonly description: string;
  fsid = '';
  private readonly rootPath: string;
  /** rootPath with its symlinks resolved, as /proc/self/fd names things. */
  private realRoot = '';
  private rootDev = -1n;
  private rootIno = -1n;
  private dirs: DirFds | null = null;
  /** Where each object we gave a handle for was last seen (places.ts). */
  private readonly where = new Places();
  private useKernelHandles = true;
  private mountFd: fsp.FileHandle | null = null;
  private readonly fds = new Map<string, { fh: DataFile; writable: boolean }>();
  private watcher: DirWatching | null = null;
  /** Directories (relative paths) seen through this adapter; the watcher watches these. */
  private readonly knownDirs = new Set<string>(['']);
  private rootFh: Buffer = Buffer.alloc(0);
  /** Metadata calls: synchronous on a local disk, asynchronous on a network file system. */
  private meta: MetaCalls = metaCallsFor('/');

  private readonly workInRoot: boolean;

  /**
   * `workInRoot`: chdir into the backend (one backend per process). Objects are reached
   * through directory descriptors either way (dir-fds.ts); the working directory is kept
   * for whoever resolves relative paths in this process.
   */
  constructor(rootPath: string, opts: { workInRoot?: boolean } = {}) {
    this.rootPath = path.resolve(rootPath);
    this.description = `file://${this.rootPath}`;
    this.workInRoot = opts.workInRoot ?? false;
  }

  /** Checks the directory and fixes the fsid. Must be called before anything else. */
  async open(): Promise<void> {
    let st: BigIntStats;
    try {
      st = await fsp.stat(this.rootPath, { bigint: true });
    } catch (e) {
      throw fromNodeError(e, `backend ${this.rootPath}`);
    }
    if (!st.isDirectory()) throw new FsError('ENOTDIR', `backend ${this.rootPath} is not a directory`);
    try {
      handleOf(AT_FDCWD, this.rootPath);
    } catch (e) {
      if (isFsError(e) && (e.code === 'EOPNOTSUPP' || e.code === 'ENOTSUP' || e.code === 'ENOSYS')) {
        this.useKernelHandles = false;
        log.info(`backend ${this.rootPath}: no kernel file handles; using (st_dev, st_ino)`);
      } else throw e;
    }
    try {
      this.mountFd = await fsp.open(this.rootPath, fsc.O_RDONLY | fsc.O_DIRECTORY);
    } catch { this.mountFd = null; }
    let rootFd: number;
    try {
      rootFd = openSync(this.rootPath, O_PATH | fsc.O_DIRECTORY);
    } catch (e) { throw fromNodeError(e, `backend ${this.rootPath}`); }
    this.dirs = new DirFds({ fd: rootFd, ino: st.ino, refs: 0, dead: false }, {
      openDir: (p) => this.meta.openDir(p),
      inoOf: async (fd) => (await this.meta.fstat(fd)).ino,
      close: (fd) => closeSync(fd),
    }, MAX_DIR_FDS);
    try {
      await fsp.lstat(procPath(rootFd, '.'));
    } catch (e) {
      this.dirs.close();
      this.dirs = null;
      throw new FsError('EIO', `backend ${this.rootPath}: /proc must be mounted (files are reached as /proc/self/fd/N/name)`, { cause: e });
    }
    this.rootDev = st.dev;
    this.rootIno = st.ino;
    if (this.workInRoot) process.chdir(this.rootPath);
    this.rootFh = this.handleFor(AT_FDCWD, this.rootPath, st);
    this.remember(this.rootFh, '', st.ino, st.isDirectory());
    const real = await fsp.realpath(this.rootPath);
    this.realRoot = real;
    this.meta = metaCallsFor(real);
    log.info(`backend ${real}: ${this.meta.sync ? 'local disk, synchronous' : 'asynchronous'} metadata calls`);
    this.fsid = `local:${real}#${this.rootFh.toString('hex')}`;
  }

  /** The handle of the object `name` in the directory open as `dirFd` (lstat'ed as `st`). */
  private handleFor(dirFd: number, name: string, st: { dev: bigint; ino: bigint }): Buffer {
    if (this.useKernelHandles) {
      try {
        return handleOf(dirFd, name, HANDLE_TAG).bytes;
      } catch (e) {
        if (!isFsError(e) || (e.code !== 'EOPNOTSUPP' && e.code !== 'ENOTSUP')) throw e;
        // Some objects (e.g. on a few special filesystems) refuse handles: fall back for them.
      }
    }
    const b = Buffer.alloc(17);
    b.write('I', 0);
    b.writeBigUInt64LE(BigInt.asUintN(64, st.dev), 1);
    b.writeBigUInt64LE(BigInt.asUintN(64, st.ino), 9);
    return b;
  }

  private remember(fh: Buffer, rel: string, ino: bigint, isDir: boolean): void {
    this.where.set(fh.toString('hex'), rel, ino, isDir);
  }

  private get dirFds(): DirFds {
    if (!this.dirs) throw new FsError('EBADF', 'the local backend is not open');
    return this.dirs;
  }

  /**
   * Runs `fn` on the object at `rel`, named as `name` in its directory, which is held open
   * as `dirFd` meanwhile; `p` is the short path of the pair (/proc/self/fd/N/name). The root
   * is '.' in itself.
   */
  private async at<T>(rel: string, fn: (dirFd: number, name: string, p: string | Buffer) => Promise<T>): Promise<T> {
    const i = rel.lastIndexOf('/');
    const dir = rel === '' || i < 0 ? '' : rel.slice(0, i);
    const name = rel === '' ? '.' : rel.slice(i + 1);
    const d = await this.dirFds.acquire(dir).catch((e) => { throw fromNodeError(e, `open directory ${dir}`); });
    try { return await fn(d.fd, name, procPath(d.fd, name)); } finally { this.dirFds.release(d); }
  }

  /** Runs `fn` with the directory `d` (as pathOf found it) held open as `dirFd`. */
  private async inDir<T>(d: Located, fn: (dirFd: number) => Promise<T>): Promise<T> {
    const h = await this.dirFds.acquire(d.rel, d.st.ino).catch((e) => { throw fromNodeError(e, `open directory ${d.rel}`); });
    try { return await fn(h.fd); } finally { this.dirFds.release(h); }
  }

  private lstatAt(rel: string): Promise<BigIntStats> {
    return this.at(rel, (_dirFd, _name, p) => this.meta.lstat(p));
  }

  /** Where an object is now, verified by inode number. */
  private async pathOf(fh: Buffer): Promise<Located> {
    const key = fh.toString('hex');
    const w = this.where.get(key);
    if (w) {
      try {
        const st = await this.lstatAt(w.rel);
        if (st.ino === w.ino) return { rel: w.rel, st };
      } catch (e) {
        if (!isMissing(e)) throw fromNodeError(e, 'lstat');
      }
    }
    return this.refind(fh);
  }

  /** Finds an object whose remembered path went away (renamed from outside). */
  private async refind(fh: Buffer): Promise<Located> {
    if (fh[0] === HANDLE_TAG && this.mountFd) {
      let fd = -1;
      try {
        fd = openHandle(this.mountFd.fd, fh.subarray(1));
        const rel = await this.relOfFd(fd);
        if (rel !== null) {
          const st = await this.lstatAt(rel);
          this.remember(fh, rel, st.ino, st.isDirectory());
          return { rel, st };
        }
      } catch (e) {
        if (isFsError(e) && e.code !== 'ESTALE' && e.code !== 'EPERM' && e.code !== 'ENOENT') {
          log.debug('refind failed', e);
        }
      } finally {
        if (fd >= 0) await closeFd(fd);
      }
    }
    this.where.delete(fh.toString('hex'));
    this.dropFd(fh);
    throw new FsError('ESTALE', 'the object is gone from the backend');
  }

  /** Where below the root the object open as `fd` is; null if it is not below it, or deleted. */
  private async relOfFd(fd: number): Promise<string | null> {
    let target: string;
    try {
      target = nameFromBytes(await fsp.readlink(`/proc/self/fd/${fd}`, { encoding: 'buffer' }));
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'ENAMETOOLONG') throw fromNodeError(e, 'readlink /proc/self/fd');
      // Deeper than /proc prints a path (PATH_MAX): a directory climbs its '..' entries, a
      // file (which has no '..') is looked for by its inode number.
      const st = fstatSync(fd, { bigint: true });
      if (st.isDirectory()) return this.climb(fd, st);
      return (await this.findByInode(st.ino))?.rel ?? null;
    }
    const rel = path.relative(this.realRoot, target);
    if (rel !== '..' && !rel.startsWith('../') && !path.isAbsolute(rel) && !target.endsWith(' (deleted)') && target !== '/') {
      return rel;
    }
    if (target === '/' && !this.rootPath.startsWith('/proc')) {
      // The handle opens, but the kernel cannot name the file: its dentry was evicted
      // (a reboot, memory pressure, drop_caches) and file handles of non-directories do
      // not carry their parent. The file exists; find it by its inode number.
      const found = await this.findByInode(fstatSync(fd, { bigint: true }).ino);
      if (found) return found.rel;
    }
    return null;
  }

  /**
   * The path below the root of the directory open as `fd`, found by climbing '..' and
   * looking in each parent for the child's inode number (one descriptor open at a time).
   * Null if the climb reaches '/' without meeting the root.
   */
  private async climb(fd: number, st: BigIntStats): Promise<string | null> {
    const names: string[] = [];
    let cur = fd;
    let curSt = st;
    try {
      while (curSt.ino !== this.rootIno || curSt.dev !== this.rootDev) {
        const up = await this.meta.openDir(procPath(cur, '..'));
        if (cur !== fd) closeSync(cur);
        cur = up;
        const upSt = await this.meta.fstat(up);
        if (upSt.ino === curSt.ino && upSt.dev === curSt.dev) return null; // '/' is its own parent
        let name: string | null = null;
        for (const n of await this.meta.readdir(procPath(up, '.'))) {
          const s = await this.meta.lstat(procPath(up, n)).catch(() => null);
          if (s && s.ino === curSt.ino && s.dev === curSt.dev) { name = n; break; }
        }
        if (name === null) return null;
        names.push(name);
        curSt = upSt;
      }
      return names.reverse().join('/');
    } finally {
      if (cur !== fd) closeSync(cur);
    }
  }

  /** Paths by inode number, learnt by the last walk of findByInode (entries checked on use). */
  private readonly inoPaths = new Map<bigint, string>();

  /**
   * Where in the backend a file with inode `ino` is: remembered from an earlier walk, else
   * found by walking the tree (directories of other file systems are not entered). Every
   * path seen on the way is remembered (up to INO_PATHS_MAX), so a cold start finds many
   * files with one walk.
   */
  private async findByInode(ino: bigint): Promise<{ rel: string; st: BigIntStats } | null> {
    const known = this.inoPaths.get(ino);
    if (known !== undefined) {
      const st = await this.lstatAt(known).catch(() => null);
      if (st && st.ino === ino) return { rel: known, st };
      this.inoPaths.delete(ino);
    }
    const root = await this.lstatAt('');
    const queue: string[] = [''];
    let found: { rel: string; st: BigIntStats } | null = null;
    while (queue.length > 0) {
      const dir = queue.shift()!;
      // Failures mean the directory went away (or cannot be read) since it was queued.
      await this.dirFds.with(dir, async (d) => {
        for (const name of await this.meta.readdir(procPath(d.fd, '.'))) {
          const rel = dir === '' ? name : `${dir}/${name}`;
          let st: BigIntStats;
          try { st = await this.meta.lstat(procPath(d.fd, name)); } catch { continue; }
          if (this.inoPaths.size < INO_PATHS_MAX) this.inoPaths.set(st.ino, rel);
          if (st.ino === ino && !st.isDirectory()) found ??= { rel, st };
          if (st.isDirectory() && st.dev === root.dev) queue.push(rel);
        }
      }).catch(() => undefined);
      if (found && this.inoPaths.size >= INO_PATHS_MAX) break;
    }
    return found;
  }

  private childRel(dirRel: string, name: string): string {
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      throw new FsError('EINVAL', `bad name ${JSON.stringify(name)}`);
    }
    return dirRel === '' ? name : `${dirRel}/${name}`;
  }

  /** The node `name` in the directory `dirRel`, open as `dirFd` (the name checked first). */
  private async nodeIn(dirFd: number, dirRel: string, name: string): Promise<Node> {
    const rel = this.childRel(dirRel, name);
    let st: Lstat;
    if (this.meta.sync) {
      // On a local disk: statx into a reused buffer, no BigIntStats (see syscalls.ts lstatAt).
      st = lstatAt(dirFd, name);
    } else {
      try {
        st = lstatOf(await this.meta.lstat(procPath(dirFd, name)));
      } catch (e) { throw fromNodeError(e, `lstat ${rel}`); }
    }
    const fh = this.handleFor(dirFd, name, st);
    const attr = attrOf(st);
    this.remember(fh, rel, st.ino, attr.type === 'dir');
    if (attr.type === 'dir') this.noteDir(rel);
    return { fh, attr };
  }

  /** A directory we know of: the watcher watches it (see watch()). */
  private noteDir(rel: string): void {
    if (this.knownDirs.has(rel)) return;
    this.knownDirs.add(rel);
    this.watcher?.add(this.watchPath(rel));
  }

  async root(): Promise<Node> {
    const st = await this.lstatAt('').catch((e) => { throw fromNodeError(e, 'backend root'); });
    return { fh: this.rootFh, attr: toAttr(st) };
  }

  async getattr(fh: Buffer): Promise<Attr> {
    const kept = this.keptFd(fh);
    if (kept) return toAttr(kept.st);
    const { st } = await this.pathOf(fh);
    return toAttr(st);
  }

  /**
   * The descriptor kept open for the object's data (fdFor, create), with its attributes, if
   * there is one and the file still has a name: a call on it reaches the object itself, with
   * no path to walk and check (`tar x` sets three attributes of each file it writes, and
   * close() reads them back). Only on a local disk, where an fstat cannot block for long. A
   * file with no name left goes the path's way, which answers ESTALE for it.
   */
  private keptFd(fh: Buffer): { fd: number; writable: boolean; st: BigIntStats } | null {
    if (!this.meta.sync) return null;
    const have = this.fds.get(fh.toString('hex'));
    if (!have) return null;
    try {
      const fd = have.fh.fd;
      const st = fstatSync(fd, { bigint: true });
      return st.nlink > 0n ? { fd, writable: have.writable, st } : null;
    } catch {
      return null; // closed meanwhile: the path's way
    }
  }

  async lookup(dir: Buffer, name: string): Promise<Node> {
    const d = await this.pathOf(dir);
    if (!d.st.isDirectory()) throw new FsError('ENOTDIR');
    this.childRel(d.rel, name);
    return this.inDir(d, (dirFd) => this.nodeIn(dirFd, d.rel, name));
  }

  async readdir(dir: Buffer): Promise<DirEntry[]> {
    const d = await this.pathOf(dir);
    return this.inDir(d, async (dirFd) => {
      let names: string[];
      try {
        names = await this.meta.readdir(procPath(dirFd, '.'));
      } catch (e) { throw fromNodeError(e, `readdir ${d.rel}`); }
      const out: DirEntry[] = [];
      // lstat in bounded batches: enough parallelism to hide latency on a network filesystem
      // without flooding libuv's thread pool.
      const BATCH = 64;
      for (let i = 0; i < names.length; i += BATCH) {
        const part = names.slice(i, i + BATCH);
        const nodes = await Promise.all(part.map(async (name) => {
          try {
            return { name, ...(await this.nodeIn(dirFd, d.rel, name)) };
          } catch (e) {
            if (isFsError(e, 'ENOENT')) return null; // removed while we listed: not an entry any more
            throw e;
          }
        }));
        for (const n of nodes) if (n) out.push(n);
      }
      return out;
    });
  }

  async readlink(fh: Buffer): Promise<string> {
    const { rel } = await this.pathOf(fh);
    return this.at(rel, async (_dirFd, _name, p) => {
      try { return await this.meta.readlink(p); } catch (e) { throw fromNodeError(e, 'readlink'); }
    });
  }

  private async fdFor(fh: Buffer, writable: boolean): Promise<DataFile> {
    const key = fh.toString('hex');
    const have = this.fds.get(key);
    if (have && (have.writable || !writable)) {
      // Re-insert to keep the map in least-recently-used order.
      this.fds.delete(key);
      this.fds.set(key, have);
      return have.fh;
    }
    const { rel, st } = await this.pathOf(fh);
    if (!st.isFile()) throw new FsError(st.isDirectory() ? 'EISDIR' : 'EINVAL');
    // On a local disk the open is synchronous (core/fd-file.ts): `tar x` opens each file it
    // makes here once, one request after the other. Elsewhere through the thread pool.
    const flags = writable ? fsc.O_RDWR : fsc.O_RDONLY;
    const handle = await this.at(rel, async (_dirFd, _name, p): Promise<DataFile> => {
      try {
        return this.meta.sync ? FdFile.openSync(p, flags) : await fsp.open(p, flags);
      } catch (e) { throw fromNodeError(e, `open ${rel}`); }
    });
    // Concurrent first reads of a file all get here: one that opened meanwhile wins, and
    // this descriptor goes (kept unreferenced, it was closed by the garbage collector).
    const now = this.fds.get(key);
    if (now && (now.writable || !writable)) {
      void handle.close().catch(() => undefined);
      return now.fh;
    }
    this.keepFd(key, handle, writable);
    return handle;
  }

  /** Keeps `handle` as the descriptor of the object with handle `key` (least recently used go). */
  private keepFd(key: string, handle: DataFile, writable: boolean): void {
    const now = this.fds.get(key);
    if (now) { this.fds.delete(key); void now.fh.close().catch(() => undefined); }
    this.fds.set(key, { fh: handle, writable });
    while (this.fds.size > MAX_OPEN_FDS) {
      const [oldKey, old] = this.fds.entries().next().value as [string, { fh: DataFile }];
      this.fds.delete(oldKey);
      void old.fh.close().catch(() => undefined);
    }
  }

  async copyInto(fh: Buffer, destFd: number, offset: number, length: number): Promise<Attr> {
    // On a network or FUSE file system a copy could block for long: reads go in chunks there.
    if (!this.meta.sync) throw new FsError('EOPNOTSUPP', 'kernel copies only from a local disk');
    const { rel, st } = await this.pathOf(fh);
    if (!st.isFile()) throw new FsError(st.isDirectory() ? 'EISDIR' : 'EINVAL');
    // A descriptor of its own, not one of `fds` (which may close it while the copy runs on
    // koffi's thread, and the number be reused), opened without following a symlink and
    // checked to be the object: a name swapped for a link since the lstat could otherwise
    // have the copy read a file outside the root.
    const src = await this.at(rel, async (_dirFd, _name, p) => {
      try { return await fsp.open(p, fsc.O_RDONLY | fsc.O_NOFOLLOW); } catch (e) { throw fromNodeError(e, `open ${rel}`); }
    });
    try {
      if ((await src.stat({ bigint: true })).ino !== st.ino) throw new FsError('ESTALE', `${rel} was replaced`);
      for (let done = 0; done < length;) {
        const n = await copyFileRange(src.fd, destFd, offset + done, length - done);
        if (n === 0) break;
        done += n;
      }
      return toAttr(await src.stat({ bigint: true }));
    } catch (e) {
      throw fromNodeError(e, `copy ${rel}`);
    } finally {
      await src.close().catch(() => undefined);
    }
  }

  /**
   * A name of the object with handle `key` went: if it was its last, the descriptor kept for
   * its reads and writes goes too, or the file's disk space would stay taken until that
   * descriptor left the LRU (up to MAX_OPEN_FDS deleted files).
   */
  private nameGone(key: string | undefined): void {
    const have = key === undefined ? undefined : this.fds.get(key);
    if (!have || key === undefined) return;
    let links = 0;
    try { links = fstatSync(have.fh.fd).nlink; } catch { /* closed already: drop it */ }
    if (links > 0) return;
    this.fds.delete(key);
    void have.fh.close().catch(() => undefined);
  }

  private dropFd(fh: Buffer): void {
    const key = fh.toString('hex');
    const have = this.fds.get(key);
    if (have) { this.fds.delete(key); void have.fh.close().catch(() => undefined); }
  }

  async read(fh: Buffer, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const h = await this.fdFor(fh, false);
    const buf = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    let got = 0;
    try {
      // Not synchronous (unlike small writes): a read may have to go to the disk (a cold
      // file: ~250 µs, measured by bench/hoard.ts), which would stall every other request.
      while (got < length) {
        const { bytesRead } = await h.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (e) { throw fromNodeError(e, 'read'); }
    return got === length ? buf : buf.subarray(0, got);
  }

  async write(fh: Buffer, offset: number, data: Buffer, creds?: Creds): Promise<Attr | void> {
    const h = await this.fdFor(fh, true);
    if (actsFor(creds)) checkWrite(owned(fstatSync(h.fd, { bigint: true })), creds);
    let done = 0;
    try {
      // Small writes to a local disk land in the page cache in microseconds (see meta.ts).
      if (this.meta.sync && data.length <= SYNC_WRITE_MAX) {
        while (done < data.length) done += writeSync(h.fd, data, done, data.length - done, offset + done);
        return toAttr(fstatSync(h.fd, { bigint: true }));
      }
      while (done < data.length) {
        const { bytesWritten } = await h.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
      return toAttr(fstatSync(h.fd, { bigint: true }));
    } catch (e) { throw fromNodeError(e, 'write'); }
  }

  async commit(fh: Buffer): Promise<void> {
    const have = this.fds.get(fh.toString('hex'));
    if (!have?.writable) return; // nothing written through us since the fd was opened
    try { await have.fh.datasync(); } catch (e) { throw fromNodeError(e, 'fsync'); }
  }

  /** The owner and mode of the object at `p` (not following a symlink). */
  private async ownedAt(p: string | Buffer): Promise<Owned> {
    try { return owned(await this.meta.lstat(p)); } catch (e) { throw fromNodeError(e, 'lstat'); }
  }

  private async chownNew(p: string | Buffer, creds: Creds): Promise<void> {
    if (process.getuid?.() !== 0) return; // only root can give objects away
    if (creds.uid === 0 && creds.gid === (process.getgid?.() ?? 0)) return; // already ours
    try { await this.meta.lchown(p, creds.uid, creds.gid); } catch (e) { throw fromNodeError(e, 'chown'); }
  }

  async create(dir: Buffer, name: string, mode: number, creds: Creds, opts: { exclusive: boolean }): Promise<Made> {
    const d = await this.pathOf(dir);
    if (actsFor(creds)) checkAddEntry(owned(d.st), creds);
    const rel = this.childRel(d.rel, name);
    return this.inDir(d, async (dirFd) => {
      const before = await this.dirVersion(dirFd);
      const p = procPath(dirFd, name);
      const flags = fsc.O_CREAT | fsc.O_RDWR | (opts.exclusive ? fsc.O_EXCL : 0);
      // On a local disk the descriptor of the create is kept for the file's first write (and
      // the attributes set after it, see keptFd): one open of the new file, not two.
      let kept: FdFile | null = null;
      try {
        if (this.meta.sync) kept = FdFile.openSync(p, flags, mode & 0o7777);
        else await this.meta.createFile(p, flags, mode & 0o7777);
      } catch (e) { throw fromNodeError(e, `create ${rel}`); }
      try {
        await this.chownNew(p, creds);
        if ((mode & 0o7000) !== 0) {
          // open() drops set-id bits; chown() too, so this comes after it.
          await this.meta.chmod(p, mode & 0o7777).catch((e) => { throw fromNodeError(e, 'chmod'); });
        }
        const made = await this.madeIn(dirFd, d.rel, name, before);
        if (kept) { this.keepFd(made.fh.toString('hex'), kept, true); kept = null; }
        return made;
      } finally {
        if (kept) void kept.close().catch(() => undefined);
      }
    });
  }

  async mkdir(dir: Buffer, name: string, mode: number, creds: Creds): Promise<Made> {
    const d = await this.pathOf(dir);
    if (actsFor(creds)) checkAddEntry(owned(d.st), creds);
    const rel = this.childRel(d.rel, name);
    return this.inDir(d, async (dirFd) => {
      const before = await this.dirVersion(dirFd);
      const p = procPath(dirFd, name);
      try { await this.meta.mkdir(p, mode & 0o7777); } catch (e) { throw fromNodeError(e, `mkdir ${rel}`); }
      await this.chownNew(p, creds);
      if ((mode & 0o7000) !== 0) await this.meta.chmod(p, mode & 0o7777).catch((e) => { throw fromNodeError(e, 'chmod'); });
      return this.madeIn(dirFd, d.rel, name, before);
    });
  }

  async symlink(dir: Buffer, name: string, target: string, creds: Creds): Promise<Made> {
    const d = await this.pathOf(dir);
    if (actsFor(creds)) checkAddEntry(owned(d.st), creds);
    const rel = this.childRel(d.rel, name);
    return this.inDir(d, async (dirFd) => {
      const before = await this.dirVersion(dirFd);
      const p = procPath(dirFd, name);
      try { await this.meta.symlink(target, p); } catch (e) { throw fromNodeError(e, `symlink ${rel}`); }
      await this.chownNew(p, creds);
      return this.madeIn(dirFd, d.rel, name, before);
    });
  }

  async mknod(dir: Buffer, name: string, mode: number, rdev: number, creds: Creds): Promise<Made> {
    const d = await this.pathOf(dir);
    if (actsFor(creds)) checkAddEntry(owned(d.st), creds);
    this.childRel(d.rel, name);
    return this.inDir(d, async (dirFd) => {
      const before = await this.dirVersion(dirFd);
      mknod(dirFd, name, mode, rdev);
      await this.chownNew(procPath(dirFd, name), creds);
      return this.madeIn(dirFd, d.rel, name, before);
    });
  }

  /**
   * The version of the directory open as `dirFd`, taken right before a change of ours to
   * its names (DirWcc: on a local disk these lstats are synchronous, so nothing of ours runs
   * between them and the change; someone else's change in between shows as a `before` the
   * cache does not hold). Null when it cannot be had: the cache then asks again, as before.
   */
  private async dirVersion(dirFd: number): Promise<string | null> {
    return this.meta.sync ? (await this.dirAttr(dirFd))?.version ?? null : null;
  }

  /** The directory around a change of ours: its version before, its attributes now. */
  private async dirAround(dirFd: number, before: string | null): Promise<DirWcc | undefined> {
    const after = before === null ? null : await this.dirAttr(dirFd);
    return after && before !== null ? { before, after } : undefined;
  }

  /** The attributes of the directory open as `dirFd`; null if they cannot be had. */
  private async dirAttr(dirFd: number): Promise<Attr | null> {
    try { return toAttr(await this.meta.lstat(procPath(dirFd, '.'))); } catch { return null; }
  }

  /** A new object `name` in the directory open as `dirFd`, with the directory around its making. */
  private async madeIn(dirFd: number, dirRel: string, name: string, before: string | null): Promise<Made> {
    const node = await this.nodeIn(dirFd, dirRel, name);
    const dir = await this.dirAround(dirFd, before);
    return dir ? { ...node, dir } : node;
  }

  async link(fh: Buffer, dir: Buffer, name: string, creds?: Creds): Promise<Attr> {
    const src = await this.pathOf(fh);
    const d = await this.pathOf(dir);
    if (actsFor(creds)) checkAddEntry(owned(d.st), creds);
    const rel = this.childRel(d.rel, name);
    return this.at(src.rel, (_srcDirFd, _srcName, srcP) => this.inDir(d, async (dirFd) => {
      try { await this.meta.link(srcP, procPath(dirFd, name)); } catch (e) { throw fromNodeError(e, `link ${rel}`); }
      return toAttr(await this.meta.lstat(srcP));
    }));
  }

  async unlink(dir: Buffer, name: string, creds?: Creds): Promise<DirWcc | undefined> {
    const d = await this.pathOf(dir);
    const rel = this.childRel(d.rel, name);
    return this.inDir(d, async (dirFd) => {
      const p = procPath(dirFd, name);
      if (actsFor(creds)) checkRemoveEntry(owned(d.st), await this.ownedAt(p), creds);
      const before = await this.dirVersion(dirFd);
      try { await this.meta.unlink(p); } catch (e) { throw fromNodeError(e, `unlink ${name}`); }
      this.nameGone(this.where.forget(rel));
      return this.dirAround(dirFd, before);
    });
  }

  async rmdir(dir: Buffer, name: string, creds?: Creds): Promise<DirWcc | undefined> {
    const d = await this.pathOf(dir);
    const rel = this.childRel(d.rel, name);
    const wcc = await this.inDir(d, async (dirFd) => {
      const p = procPath(dirFd, name);
      if (actsFor(creds)) checkRemoveEntry(owned(d.st), await this.ownedAt(p), creds);
      const before = await this.dirVersion(dirFd);
      try { await this.meta.rmdir(p); } catch (e) { throw fromNodeError(e, `rmdir ${name}`); }
      return this.dirAround(dirFd, before);
    });
    this.dirFds.dropped(rel);
    this.where.forget(rel);
    // It was empty: nothing below it is known any more (what is, is stale and harmless).
    this.knownDirs.delete(rel);
    this.watcher?.remove(this.watchPath(rel));
    return wcc;
  }

  /** Answers with the directories around the rename and the object's attributes after it. */
  async rename(fromDir: Buffer, fromName: string, toDir: Buffer, toName: string, creds?: Creds): Promise<Renamed> {
    const a = await this.pathOf(fromDir);
    const b = await this.pathOf(toDir);
    const fromRel = this.childRel(a.rel, fromName);
    const toRel = this.childRel(b.rel, toName);
    const oneDir = a.st.ino === b.st.ino;
    const renamed = await this.inDir(a, (fromFd) => this.inDir(b, async (toFd): Promise<Renamed> => {
      const fromP = procPath(fromFd, fromName);
      const toP = procPath(toFd, toName);
      if (actsFor(creds)) {
        const target = await this.ownedAt(toP).catch((e) => { if (isFsError(e, 'ENOENT')) return null; throw e; });
        const from = owned(a.st);
        checkRename(from, await this.ownedAt(fromP), oneDir ? from : owned(b.st), target, creds);
      }
      const fromBefore = await this.dirVersion(fromFd);
      const toBefore = oneDir ? null : await this.dirVersion(toFd);
      try { await this.meta.rename(fromP, toP); } catch (e) { throw fromNodeError(e, `rename ${fromName}`); }
      const from = await this.dirAround(fromFd, fromBefore);
      const to = await this.dirAround(toFd, toBefore);
      let attr: Attr | undefined;
      if (this.meta.sync) try { attr = toAttr(await this.meta.lstat(toP)); } catch { /* asked again later */ }
      return { ...(from ? { from } : {}), ...(to ? { to } : {}), ...(attr ? { attr } : {}) };
    }));
    this.dirFds.moved(fromRel, toRel);
    // Keep remembered paths right for the moved object and everything below it.
    const { notDir, replaced } = this.where.moved(fromRel, toRel);
    this.nameGone(replaced);
    if (!notDir) {
      for (const d of [...this.knownDirs]) {
        if (!atOrBelow(d, fromRel)) continue;
        this.knownDirs.delete(d);
        this.knownDirs.add(rebased(d, fromRel, toRel));
      }
    }
    this.watcher?.rename(this.watchPath(fromRel), this.watchPath(toRel));
    return renamed;
  }

  async setattr(fh: Buffer, set: SetAttr, creds?: Creds): Promise<Attr> {
    const kept = this.keptFd(fh);
    if (kept && (set.size === undefined || kept.writable)) {
      admitSetattr(kept.st, set, creds);
      return this.setattrFd(kept.fd, set);
    }
    const { rel, st } = await this.pathOf(fh);
    admitSetattr(st, set, creds);
    return this.at(rel, async (dirFd, name, p) => {
      try {
        if (set.uid !== undefined || set.gid !== undefined) {
          await this.meta.lchown(p, set.uid ?? -1, set.gid ?? -1);
        }
        if (set.mode !== undefined && !st.isSymbolicLink()) await this.meta.chmod(p, set.mode & 0o7777);
        if (set.size !== undefined) {
          const have = this.fds.get(fh.toString('hex'));
          if (have?.writable) await have.fh.truncate(set.size);
          else await this.meta.truncate(p, set.size);
        }
        if (set.atime || set.mtime) {
          const omit: TimeSpec = { kind: 'omit' };
          setTimes(dirFd, name, set.atime ?? omit, set.mtime ?? omit);
        }
      } catch (e) { throw fromNodeError(e, 'setattr'); }
      return toAttr(await this.meta.lstat(p));
    });
  }

  /** setattr through the descriptor kept for a regular file (see keptFd), as the path's way does it. */
  private setattrFd(fd: number, set: SetAttr): Attr {
    try {
      if (set.uid !== undefined || set.gid !== undefined) fchownSync(fd, set.uid ?? -1, set.gid ?? -1);
      if (set.mode !== undefined) fchmodSync(fd, set.mode & 0o7777);
      if (set.size !== undefined) ftruncateSync(fd, set.size);
      if (set.atime || set.mtime) {
        const omit: TimeSpec = { kind: 'omit' };
        setTimesFd(fd, set.atime ?? omit, set.mtime ?? omit);
      }
      return toAttr(fstatSync(fd, { bigint: true }));
    } catch (e) { throw fromNodeError(e, 'setattr'); }
  }

  async statfs(): Promise<StatFs> {
    const s = await this.at('', (_dirFd, _name, p) => fsp.statfs(p)).catch((e) => { throw fromNodeError(e, 'statfs'); });
    return { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail,
      files: s.files, ffree: s.ffree, namemax: 255 };
  }

  async watch(onChange: (change: OutsideChange) => void, opts: WatchOptions = { mode: 'auto', pollIntervalMs: 5000 }): Promise<void> {
    // Events come in bursts (every write() of a big file is one): collect them for a moment
    // and report each changed name once.
    const pending = new Map<string, { dirAbs: string; name: string }>();
    let timer: NodeJS.Timeout | null = null;
    const flush = async () => {
      timer = null;
      const batch = [...pending.values()];
      pending.clear();
      const dirs = new Map<string, Buffer | null>();
      for (const { dirAbs, name } of batch) {
        const dirRel = path.relative(this.rootPath, path.resolve(this.rootPath, dirAbs));
        if (dirRel === '..' || dirRel.startsWith('../')) continue;
        let dir = dirs.get(dirRel);
        if (dir === undefined) {
          // A directory gone (or unnamed) by now has nothing left to report.
          dir = await this.handleForExisting(dirRel).catch(() => null);
          dirs.set(dirRel, dir);
        }
        if (!dir) continue;
        onChange(name ? { dir, name } : { dir });
      }
    };
    const onEvent = (dirAbs: string, name: string) => {
      pending.set(`${dirAbs}\0${name}`, { dirAbs, name });
      if (!timer) { timer = setTimeout(() => { void flush(); }, 50); timer.unref(); }
    };
    const mode = opts.mode === 'auto' ? (this.meta.sync ? 'inotify' : 'poll') : opts.mode;
    this.watcher = mode === 'inotify'
      ? new InotifyDirWatcher(onEvent)
      : await PollingDirWatcher.start(onEvent, opts.pollIntervalMs);
    log.info(`watching the backend for outside changes (${mode})`);
    for (const rel of this.knownDirs) this.watcher.add(this.watchPath(rel));
  }

  notifiesChanges(): boolean {
    return this.watcher?.complete ?? false;
  }

  /** Watchers get absolute paths (their events are matched against the root). */
  private watchPath(rel: string): string {
    return rel === '' ? this.rootPath : path.join(this.rootPath, rel);
  }

  private async handleForExisting(rel: string): Promise<Buffer> {
    if (rel === '') return this.rootFh;
    if (!this.useKernelHandles) throw new FsError('ENOTSUP');
    return this.at(rel, async (dirFd, name) => handleOf(dirFd, name, HANDLE_TAG).bytes);
  }

  async close(): Promise<void> {
    this.watcher?.close();
    for (const { fh } of this.fds.values()) await fh.close().catch(() => undefined);
    this.fds.clear();
    await this.mountFd?.close().catch(() => undefined);
    this.dirs?.close();
    this.dirs = null;
  }
}

function isMissing(e: unknown): boolean {
  const c = (e as { code?: string })?.code;
  return c === 'ENOENT' || c === 'ENOTDIR';
}

async function closeFd(fd: number): Promise<void> {
  const { close } = await import('node:fs');
  await new Promise<void>((r) => close(fd, () => r()));
}


/** Refuses a setattr of the object `st` describes that `creds` may not make, or whose guard failed. */
function admitSetattr(st: BigIntStats, set: SetAttr, creds: Creds | undefined): void {
  if (actsFor(creds)) checkSetattr(owned(st), set, creds);
  if (set.guardCtimeNs !== undefined && st.ctimeNs !== set.guardCtimeNs) {
    // Best effort (not atomic, unlike NFS's guarded SETATTR): the object changed since.
    throw new FsError('EAGAIN', 'setattr: the object changed since its guard ctime');
  }
}

/** Whether a change is made for a user whose rights must be checked (root may do anything). */
function actsFor(creds: Creds | undefined): creds is Creds {
  return creds !== undefined && creds.uid !== 0;
}

function owned(st: BigIntStats): Owned {
  return { mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid) };
}
