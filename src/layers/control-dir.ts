// The hidden control directory at the mount root (`/.cachefs`): conflicts' variants as files
// any tool can open. Served by the mount process itself from the cache directory; nothing in
// it is ever sent to the backend, and nothing in it is journalled.
//
//   /.cachefs/                      dr-x------  owner: the owner of the cache directory
//   /.cachefs/conflicts/            dr-x------  one directory per OPEN conflict, named by id
//   /.cachefs/conflicts/3/          drwx------  (writable only so that `resolved` can be created)
//   /.cachefs/conflicts/3/client    read-only: a file, a symlink, or a directory tree
//   /.cachefs/conflicts/3/server    read-only
//   /.cachefs/conflicts/3/base      read-only, only when the engine kept one
//   /.cachefs/conflicts/3/resolved  read-write regular file (open, create, O_TRUNC, write,
//                                   truncate, fsync, utimens); created by open(O_CREAT) when
//                                   absent. A directory or symlink `resolved` is read-only.
//   /.cachefs/conflicts/3/info      read-only JSON: the engine's info.json, or made from the row
//   /.cachefs/lost+found/...        read-only mirror of <cacheDir>/lost+found (variants a
//                                   resolution discarded); empty when that does not exist
//
// What must stay true:
// - `/.cachefs` is never listed in the root's readdir (reachable by name only, like ZFS's
//   snapdir=hidden); a backend entry named `.cachefs` at the root is shadowed by it.
// - Every mutation other than those on `resolved` answers EROFS (opening a read-only
//   variant for writing too); a missing name is ENOENT.
// - Inode numbers: the layer's object ids count up from 1, so control nodes take
//   [0xC0000000, 0xFFFFFFFF]: a hash of the path, probed to the next free number on a
//   collision, fixed for the life of the mount process (fuse/nodes.ts gives them node ids
//   above 2^48).
// - File handles: the layer's fds stay in [1, 0x7FFFFFFF]; control fds live in
//   [0x80000000, 0xFFFFFFFF], so fuse/ops.ts routes a handle with no lookup in the layer.
// - Only async fs calls (fs.promises / FileHandle): one slow request never blocks the others.
// - Symlinks are never followed on the daemon's side: the last component is lstat'ed or opened
//   O_NOFOLLOW, and a path below a variant must really lie inside it (realpath of the parent),
//   so a symlink swapped in under the kernel's dentry cache cannot lead out of the cache dir.
import { promises as fsp, constants as fsc, type BigIntStats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Conflict } from '../conflict/store.js';
import { FsError } from '../core/errors.js';
import { LOST_FOUND } from '../conflict/lost-found.js';
import { CONTROL_DIR_NAME } from '../core/names.js';

export { CONTROL_DIR_NAME };
const ROOT = `/${CONTROL_DIR_NAME}`;
const VARIANT_NAMES = ['client', 'server', 'base', 'resolved'] as const;
type Variant = typeof VARIANT_NAMES[number];

/**
 * What the control directory needs from the conflict store: the open conflicts, and (when
 * the store has it) one conflict by id, so a lookup does not list them all.
 */
export interface ConflictsView { list(): Conflict[]; get?(id: number): Conflict | null }

/** A stat of a control node (fuse/ops.ts turns it into the kernel's fuse_attr). */
export interface FuseStat {
  mode: number; uid: number; gid: number; size: number; dev: number; nlink: number; ino: number;
  rdev: number; blksize: number; blocks: number; atimeNs: bigint; mtimeNs: bigint; ctimeNs: bigint;
}

/** A time of SETATTR: ns since the epoch, now, or left as it is. */
export type ControlTime = bigint | 'now' | 'omit';

/** The first control fd; the layer's fds are below it. */
export const CONTROL_FD_BASE = 0x80000000;
const CONTROL_FD_SPAN = 0x7fffffff;
const INO_BASE = 0xc0000000;
const INO_SPAN = 0x40000000;

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const O_ACCMODE = 3;
const W_OK = 2;

/** A control-directory path, resolved. */
type Node =
  | { kind: 'dir'; p: string; nlink: number; timeNs: bigint; perm: number; list: () => Promise<string[]> }
  | { kind: 'info'; p: string; conflict: Conflict; data: Buffer }
  | { kind: 'real'; p: string; real: string; st: BigIntStats; writable: boolean };

/** An open control file: a handle on a file in the cache directory, or a snapshot. */
interface OpenControlFile { handle: FileHandle | null; data: Buffer | null; writable: boolean }

export class ControlDir {
  private readonly inodes = new Map<string, number>();
  private readonly inodeUsed = new Set<number>();
  private readonly files = new Map<number, OpenControlFile>();
  private nextFd = 0;
  private owner: Promise<{ uid: number; gid: number; timeNs: bigint }> | null = null;

  constructor(readonly deps: { conflicts: ConflictsView; cacheDir: string }) {}

  /** Whether a mount path is inside the control directory. */
  owns(p: string): boolean {
    return p === ROOT || p.startsWith(`${ROOT}/`);
  }

  /** Whether a file handle is one of ours (see the file comment: the upper half of uint32). */
  ownsFd(fd: number): boolean {
    return fd >= CONTROL_FD_BASE;
  }

  /** Whether a name in the mount root's listing is hidden by the control directory. */
  hides(name: string): boolean {
    return name === CONTROL_DIR_NAME;
  }

  // ---------------------------------------------------------------- lookups

  private ownerOf(): Promise<{ uid: number; gid: number; timeNs: bigint }> {
    this.owner ??= fsp.stat(this.deps.cacheDir, { bigint: true }).then(
      (s) => ({ uid: Number(s.uid), gid: Number(s.gid), timeNs: s.mtimeNs }),
      (e) => { this.owner = null; throw e; },
    );
    return this.owner;
  }

  private conflict(idName: string): Conflict {
    if (!/^[1-9][0-9]{0,15}$/.test(idName)) throw new FsError('ENOENT');
    const id = Number(idName);
    const view = this.deps.conflicts;
    const c = view.get ? view.get(id) : view.list().find((x) => x.id === id);
    if (!c || c.resolvedAt !== null) throw new FsError('ENOENT', `no open conflict ${idName}`);
    return c;
  }

  private variantsDir(c: Conflict): string | null {
    return c.dir === null ? null : path.resolve(this.deps.cacheDir, c.dir);
  }

  /**
   * lstat of `base/...rest`, refusing a path whose parent is not really inside `base`
   * (a symlink in the middle): the kernel only asks for such a path from a stale dentry.
   */
  private async lstatInside(base: string, rest: string[]): Promise<{ real: string; st: BigIntStats }> {
    const real = path.join(base, ...rest);
    if (rest.length > 1) {
      const [baseReal, parentReal] = await Promise.all([fsp.realpath(base), fsp.realpath(path.dirname(real))]);
      if (parentReal !== path.join(baseReal, ...rest.slice(0, -1))) throw new FsError('ENOENT', 'a symlink in the path');
    }
    return { real, st: await fsp.lstat(real, { bigint: true }) };
  }

  private async resolve(p: string): Promise<Node> {
    const parts = p.split('/').filter(Boolean).slice(1); // drop ".cachefs"
    const owner = await this.ownerOf();
    if (parts.length === 0) {
      return { kind: 'dir', p, nlink: 4, timeNs: owner.timeNs, perm: 0o500, list: async () => ['conflicts', LOST_FOUND] };
    }
    const [top, ...rest] = parts as [string, ...string[]];
    if (top === 'conflicts') {
      if (rest.length === 0) {
        const open = this.deps.conflicts.list();
        return { kind: 'dir', p, nlink: 2 + open.length, timeNs: owner.timeNs, perm: 0o500,
          list: async () => this.deps.conflicts.list().map((c) => String(c.id)) };
      }
      const c = this.conflict(rest[0]!);
      const dir = this.variantsDir(c);
      if (rest.length === 1) {
        const present = dir === null ? [] : await this.presentVariants(dir);
        return { kind: 'dir', p, nlink: 2 + present.filter((v) => v.dir).length,
          timeNs: BigInt(c.detectedAt) * 1_000_000n, perm: 0o700,
          list: async () => [...(dir === null ? [] : await this.presentVariants(dir)).map((v) => v.name), 'info'] };
      }
      const name = rest[1]!;
      if (name === 'info' && rest.length === 2) {
        if (dir !== null) {
          const engine = await fsp.lstat(path.join(dir, 'info.json'), { bigint: true }).catch(notFound);
          if (engine?.isFile()) return { kind: 'real', p, real: path.join(dir, 'info.json'), st: engine, writable: false };
        }
        return { kind: 'info', p, conflict: c, data: synthesizeInfo(c) };
      }
      if (!(VARIANT_NAMES as readonly string[]).includes(name) || dir === null) throw new FsError('ENOENT');
      const { real, st } = await this.lstatInside(dir, rest.slice(1));
      const writable = (name as Variant) === 'resolved' && rest.length === 2 && st.isFile();
      return { kind: 'real', p, real, st, writable };
    }
    if (top === LOST_FOUND) {
      const base = path.join(this.deps.cacheDir, LOST_FOUND);
      if (rest.length === 0) {
        const st = await fsp.lstat(base, { bigint: true }).catch(notFound);
        if (!st) return { kind: 'dir', p, nlink: 2, timeNs: owner.timeNs, perm: 0o500, list: async () => [] };
        if (!st.isDirectory()) throw new FsError('ENOENT');
        return { kind: 'real', p, real: base, st, writable: false };
      }
      const { real, st } = await this.lstatInside(this.deps.cacheDir, [LOST_FOUND, ...rest]);
      return { kind: 'real', p, real, st, writable: false };
    }
    throw new FsError('ENOENT');
  }

  private async presentVariants(dir: string): Promise<{ name: Variant; dir: boolean }[]> {
    const out: { name: Variant; dir: boolean }[] = [];
    const sts = await Promise.all(VARIANT_NAMES.map((v) => fsp.lstat(path.join(dir, v)).catch(notFound)));
    VARIANT_NAMES.forEach((v, i) => { const st = sts[i]; if (st) out.push({ name: v, dir: st.isDirectory() }); });
    return out;
  }

  /** A stable inode number for a control path, never one of the layer's object ids. */
  private ino(p: string): number {
    let ino = this.inodes.get(p);
    if (ino !== undefined) return ino;
    let h = 0x811c9dc5; // FNV-1a
    for (const b of Buffer.from(p)) { h ^= b; h = Math.imul(h, 0x01000193) >>> 0; }
    let n = h % INO_SPAN;
    while (this.inodeUsed.has(INO_BASE + n)) n = (n + 1) % INO_SPAN;
    ino = INO_BASE + n;
    this.inodes.set(p, ino);
    this.inodeUsed.add(ino);
    return ino;
  }

  private async statOf(n: Node): Promise<FuseStat> {
    const owner = await this.ownerOf();
    const common = { uid: owner.uid, gid: owner.gid, dev: 0, rdev: 0, blksize: 4096, ino: this.ino(n.p) };
    switch (n.kind) {
      case 'dir':
        return { ...common, mode: S_IFDIR | n.perm, size: 4096, nlink: n.nlink, blocks: 8,
          atimeNs: n.timeNs, mtimeNs: n.timeNs, ctimeNs: n.timeNs };
      case 'info': {
        const t = BigInt(n.conflict.detectedAt) * 1_000_000n;
        return { ...common, mode: S_IFREG | 0o400, size: n.data.length, nlink: 1, blocks: Math.ceil(n.data.length / 512),
          atimeNs: t, mtimeNs: t, ctimeNs: t };
      }
      case 'real': {
        const s = n.st;
        const type = Number(s.mode) & 0o170000;
        const perm = Number(s.mode) & 0o777;
        // Read-only mirror: no write bits, and the owner can always read (and search dirs).
        let mode = n.writable ? 0o600 | (perm & 0o100) : (perm & 0o555) | (s.isDirectory() ? 0o500 : 0o400);
        if (s.isSymbolicLink()) mode = 0o777;
        return { ...common, mode: type | mode, size: Number(s.size), nlink: Number(s.nlink),
          blocks: Number(s.blocks), atimeNs: s.atimeNs, mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs };
      }
    }
  }

  // ---------------------------------------------------------------- operations

  async getattr(p: string): Promise<FuseStat> {
    return this.statOf(await this.resolve(p));
  }

  async access(p: string, mode: number): Promise<void> {
    const n = await this.resolve(p);
    if (mode & W_OK && !(n.kind === 'real' && n.writable) && !(n.kind === 'dir' && n.perm & 0o200)) {
      throw new FsError('EROFS');
    }
  }

  async readdir(p: string): Promise<{ names: string[]; stats: FuseStat[] }> {
    const n = await this.resolve(p);
    const self = await this.statOf(n);
    let names: string[];
    if (n.kind === 'dir') names = await n.list();
    else if (n.kind === 'real' && n.st.isDirectory()) names = await fsp.readdir(n.real);
    else throw new FsError('ENOTDIR');
    const out = { names: ['.', '..'], stats: [self, self] };
    // Entries that vanish between the listing and their stat are left out.
    for (let i = 0; i < names.length; i += 64) {
      const batch = names.slice(i, i + 64);
      const stats = await Promise.all(batch.map((name) => this.getattr(`${p}/${name}`).catch(notFound)));
      batch.forEach((name, j) => { const st = stats[j]; if (st) { out.names.push(name); out.stats.push(st); } });
    }
    return out;
  }

  async readlink(p: string): Promise<string> {
    const n = await this.resolve(p);
    if (n.kind !== 'real' || !n.st.isSymbolicLink()) throw new FsError('EINVAL');
    return fsp.readlink(n.real);
  }

  async open(p: string, flags: number): Promise<number> {
    const n = await this.resolve(p);
    const wants = (flags & O_ACCMODE) !== fsc.O_RDONLY || (flags & fsc.O_TRUNC) !== 0;
    // The kernel opens directories with opendir; open() of one only comes with write access.
    if (n.kind === 'dir' || (n.kind === 'real' && n.st.isDirectory())) throw new FsError('EISDIR');
    if (wants && !(n.kind === 'real' && n.writable)) throw new FsError('EROFS', `${p} is read-only`);
    if (n.kind === 'info') return this.addFile({ handle: null, data: n.data, writable: false });
    if (!n.st.isFile()) throw new FsError('EINVAL', 'not a regular file');
    // O_NONBLOCK: a fifo swapped in since the lstat must not hang a pool thread.
    const handle = await fsp.open(n.real, (flags & O_ACCMODE) | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    try {
      if (!(await handle.stat()).isFile()) throw new FsError('EINVAL', 'not a regular file');
    } catch (e) {
      await handle.close().catch(() => undefined);
      throw e;
    }
    return this.addFile({ handle, data: null, writable: n.writable });
  }

  /** create(): only `conflicts/<id>/resolved` can be made. */
  async create(p: string, _mode: number): Promise<number> {
    const parts = p.split('/').filter(Boolean);
    if (parts.length !== 4 || parts[1] !== 'conflicts' || parts[3] !== 'resolved') {
      throw new FsError('EROFS', 'only conflicts/<id>/resolved can be created');
    }
    const c = this.conflict(parts[2]!);
    const dir = this.variantsDir(c);
    if (dir === null) throw new FsError('EROFS', `conflict ${c.id} keeps no variants`);
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    const handle = await fsp.open(path.join(dir, 'resolved'), fsc.O_CREAT | fsc.O_RDWR | fsc.O_NOFOLLOW | fsc.O_NONBLOCK, 0o600);
    try {
      if (!(await handle.stat()).isFile()) throw new FsError('EISDIR');
    } catch (e) {
      await handle.close().catch(() => undefined);
      throw e;
    }
    return this.addFile({ handle, data: null, writable: true });
  }

  private addFile(f: OpenControlFile): number {
    for (let i = 0; i < CONTROL_FD_SPAN; i++) {
      const fd = CONTROL_FD_BASE + this.nextFd;
      this.nextFd = (this.nextFd + 1) % CONTROL_FD_SPAN;
      if (!this.files.has(fd)) { this.files.set(fd, f); return fd; }
    }
    throw new FsError('EMFILE');
  }

  private fileOf(fd: number): OpenControlFile {
    const f = this.files.get(fd);
    if (!f) throw new FsError('EBADF');
    return f;
  }

  /**
   * Reads into `buf`: into a private buffer first, copied only while `buf` is still
   * attached (a buffer whose request was given up on may have been detached).
   */
  async read(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const f = this.fileOf(fd);
    if (f.data) {
      const part = f.data.subarray(Math.min(pos, f.data.length), Math.min(pos + len, f.data.length));
      if (buf.length) part.copy(buf);
      return part.length;
    }
    const scratch = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await f.handle!.read(scratch, got, len - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (buf.length) scratch.copy(buf, 0, 0, got);
    return got;
  }

  /** Writes `data` (already copied from the kernel's buffer) at `pos`. */
  async write(fd: number, data: Buffer, pos: number): Promise<number> {
    const f = this.fileOf(fd);
    if (!f.writable || !f.handle) throw new FsError('EBADF');
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await f.handle.write(data, done, data.length - done, pos + done);
      done += bytesWritten;
    }
    return done;
  }

  async ftruncate(fd: number, size: number): Promise<void> {
    const f = this.fileOf(fd);
    if (!f.writable || !f.handle) throw new FsError('EROFS');
    await f.handle.truncate(size);
  }

  async fsync(fd: number, datasync: boolean): Promise<void> {
    const f = this.fileOf(fd);
    if (!f.handle || !f.writable) return;
    if (datasync) await f.handle.datasync(); else await f.handle.sync();
  }

  async flush(fd: number): Promise<void> {
    this.fileOf(fd); // writes went straight to the cache file: nothing to push
  }

  async release(fd: number): Promise<void> {
    const f = this.files.get(fd);
    if (!f) return;
    this.files.delete(fd);
    await f.handle?.close();
  }

  async truncate(p: string, size: number): Promise<void> {
    const n = await this.resolve(p);
    if (n.kind !== 'real' || !n.writable) throw new FsError(n.kind === 'dir' || (n.kind === 'real' && n.st.isDirectory()) ? 'EISDIR' : 'EROFS');
    // Opened O_NOFOLLOW: a symlink swapped in after the lstat is refused, not followed.
    const h = await fsp.open(n.real, fsc.O_WRONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    try { await h.truncate(size); } finally { await h.close(); }
  }

  async utimens(p: string, atime: ControlTime, mtime: ControlTime): Promise<void> {
    const n = await this.resolve(p);
    if (n.kind !== 'real' || !n.writable) throw new FsError('EROFS');
    const sec = (t: ControlTime, cur: bigint) =>
      t === 'now' ? Date.now() / 1000 : Number(t === 'omit' ? cur : t) / 1e9;
    await fsp.lutimes(n.real, sec(atime, n.st.atimeNs), sec(mtime, n.st.mtimeNs));
  }

  /** Every other change (mkdir, unlink, rename, chmod, symlink, link…): read-only. */
  async mutation(op: string, p: string): Promise<never> {
    throw new FsError('EROFS', `${op} ${p}: the control directory is read-only`);
  }
}

/** The info file made from the conflict row, when the engine wrote no info.json. */
function synthesizeInfo(c: Conflict): Buffer {
  return Buffer.from(JSON.stringify({
    id: c.id,
    kind: c.kind,
    path: c.path,
    detectedAt: new Date(c.detectedAt).toISOString(),
    versions: { base: c.baseVersion, client: c.clientVersion, server: c.serverVersion },
    detail: c.detail,
  }, null, 2) + '\n');
}

/** undefined for a name that is not there; every other error goes on. */
function notFound(e: unknown): undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
  throw e;
}
