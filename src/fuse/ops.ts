// The FUSE request handlers of the cache: each opcode's body decoded (./protocol.ts), turned
// into a call on the cache layer by object, and its reply encoded. The session
// (./session.ts) answers every request exactly once with what a handler returns or throws;
// errors become errnos in one place (./errno.ts). Requests about the control directory
// never come here: ./route.ts sends them to ./control-ops.ts.
import fs, { constants as fsc } from 'node:fs';
import { log } from '../core/log.js';
import { nameToBytes } from '../core/names.js';
import type { CacheLayer, CachedObject } from '../layers/cache-layer.js';
import type { Creds } from '../core/creds.js';
import { BufferPool } from '../core/buffer-pool.js';
import { FsError, isFsError } from '../core/errors.js';
import type { SetAttrRecord } from '../layers/cache-layer.js';
import {
  Fattr, Fopen, GETATTR_FH, Init, Op, RENAME_NOREPLACE, attrOut, direntType,
  entryOut, negativeEntryOut, openOut, parseSetattr, statfsOut, writeOut, type FuseAttr, type InHeader,
} from './protocol.js';
import type { NodeTable } from './nodes.js';
import type { Handler, Negotiated } from './session.js';
import { DirHandles, type DirEntry } from './dirs.js';
import type { KernelCaching } from './kernel-caching.js';

export { opStats, sessionStats } from './session.js';

/**
 * What the handlers need of the cache layer: objects by id (a node id is an object id),
 * names in directories, open files. Nothing here takes a path.
 */
export type NodeFs = Pick<CacheLayer,
  | 'objectOrStale' | 'lookup' | 'parentDirOf' | 'getattrOf' | 'setattr' | 'readlinkOf' | 'readdirOf' | 'statfs'
  | 'mknodAt' | 'mkdirAt' | 'symlinkAt' | 'linkAt' | 'unlinkAt' | 'rmdirAt' | 'renameAt' | 'createAt'
  | 'openObject' | 'wholeCacheFile' | 'openDirect' | 'followDirect' | 'fileOf' | 'read' | 'write' | 'ftruncate' | 'flush' | 'fsync' | 'release'>;

/** How long the kernel may trust names and attributes, seconds (read at each reply). */
export type Timeouts = Pick<KernelCaching, 'entry' | 'attr' | 'negative'>;

export interface OpsDeps {
  layer: NodeFs;
  nodes: NodeTable;
  /** Names of the root its listing leaves out (the control directory's, which shadows them). */
  hiddenInRoot?: (name: string) => boolean;
  /** The kernel's timeouts, and whether it may keep directory listings (kernel-caching.ts). */
  caching: KernelCaching;
  /** The control directory's timeouts (nobody tells the kernel of its changes). */
  controlTimeouts: Timeouts;
  /** The credentials of a request's caller (supplementary groups where the backend needs them). */
  creds(h: InHeader): Creds;
  /** Whether an unchanged file's pages may stay in the kernel's cache across opens. */
  autoCache: boolean;
  /** What INIT settled (read at each request: features such as atomic O_TRUNC). */
  negotiated(): Negotiated | null;
  /** Registers a backing file with the kernel (FUSE passthrough); absent: no passthrough. */
  backing?: { open(fd: number): number; close(id: number): void };
  /** Opens for writing may be passthrough too (fuse.passthroughWrites). */
  passthroughWrites?: boolean;
}

const WRITE_KILL_SUIDGID = 1 << 2;
const OPEN_KILL_SUIDGID = 1 << 0;

/** The set-ID bits a write by someone else drops: S_ISUID, and S_ISGID when group-executable. */
function suidgidBits(mode: number): number {
  return (mode & 0o4000) | ((mode & 0o2010) === 0o2010 ? 0o2000 : 0);
}
const S_IFDIR = 0o040000;

export function attrOf(o: CachedObject): FuseAttr {
  const a = o.attr;
  return {
    ino: BigInt(o.id), size: a.size, blocks: Math.ceil(a.used / 512), atimeNs: a.atimeNs, mtimeNs: a.mtimeNs,
    ctimeNs: a.ctimeNs, mode: a.mode, nlink: a.nlink, uid: a.uid, gid: a.gid, rdev: a.rdev, blksize: 4096,
  };
}


/** Requests that change nothing, which an INTERRUPT may answer EINTR at once. */
export const INTERRUPTIBLE: ReadonlySet<number> = new Set([
  Op.LOOKUP, Op.GETATTR, Op.READLINK, Op.READ, Op.READDIR, Op.READDIRPLUS, Op.STATFS, Op.ACCESS, Op.FSYNC, Op.FSYNCDIR,
]);

export function makeHandlers(d: OpsDeps): Partial<Record<number, Handler>> {
  const { layer, nodes, caching: t } = d;
  // Reply buffers for READ, used again once their reply is written: a fresh 1 MiB buffer per
  // request was a fresh mapping the kernel faulted in and zeroed, then garbage (a quarter of
  // the cold-read profile was the collector).
  const readBuffers = new BufferPool(1 << 20, 16);
  const dirs = new DirHandles(nodes, t);
  /**
   * Passthrough: per object, the backing id the kernel reads (and, `writable`, writes) it
   * through and how many opens use it; per open file handle, its object. The kernel refuses
   * (EIO) a non-passthrough open of an inode that has passthrough opens, so while they last
   * every open of that object must be one too: a read-only open shares the backing, an open
   * for writing shares a writable one (passthroughWrites), any other is ETXTBSY.
   */
  const backings = new Map<number, { id: number; opens: number; writable: boolean }>();
  const passthroughFh = new Map<number, number>();
  /**
   * Per object, its opens the ordinary way (through the session), and per such file handle,
   * its object. The kernel refuses (EIO) a passthrough open of an inode it has open the
   * ordinary way, so while any lasts, no open of that object is offered passthrough.
   */
  const ordinaryOpens = new Map<number, number>();
  const ordinaryFh = new Map<number, number>();
  const openedOrdinarily = (fd: number, o: CachedObject): void => {
    ordinaryFh.set(fd, o.id);
    ordinaryOpens.set(o.id, (ordinaryOpens.get(o.id) ?? 0) + 1);
  };
  const releaseOrdinary = (fh: number): void => {
    const id = ordinaryFh.get(fh);
    if (id === undefined) return;
    ordinaryFh.delete(fh);
    const n = (ordinaryOpens.get(id) ?? 1) - 1;
    if (n <= 0) ordinaryOpens.delete(id); else ordinaryOpens.set(id, n);
  };

  const ref = (node: bigint) => {
    const r = nodes.ref(node);
    if (!r) throw new FsError('ESTALE', `node ${node} is not known`);
    return r;
  };
  const objOf = (node: bigint): CachedObject => {
    const r = ref(node);
    if (r.kind !== 'obj') throw new FsError('ESTALE', `node ${node} is not an object`);
    return layer.objectOrStale(r.id);
  };
  /** An object's attributes for a reply, noting the version the kernel is given. */
  const attrs = (o: CachedObject): FuseAttr => {
    nodes.gave(nodes.nodeOf(o.id), o.attr.version);
    const a = attrOf(o);
    // The kernel may be writing its cache file directly: the size and times are the file's.
    const now = d.passthroughWrites ? layer.followDirect(o) : null;
    if (now) return { ...a, size: now.size, mtimeNs: now.mtimeNs, ctimeNs: now.ctimeNs, blocks: Math.ceil(now.used / 512) };
    return a;
  };

  const entry = (o: CachedObject): Buffer => {
    const node = nodes.nodeOf(o.id);
    nodes.looked(node);
    return entryOut(node, attrs(o), t.entry, t.attr, nodes.generationOf(node));
  };

  const h: Partial<Record<number, Handler>> = {};

  h[Op.LOOKUP] = async ({ h: hd, body }) => {
    const name = body.cstr();
    // A file handle's node the kernel no longer holds (EXPORT_SUPPORT): the node itself, or
    // (reconnecting a directory to the tree) its parent.
    if (name === '.') return entry(objOf(hd.nodeid));
    if (name === '..') return entry(layer.parentDirOf(objOf(hd.nodeid)));
    try {
      return entry(await layer.lookup(objOf(hd.nodeid), name));
    } catch (e) {
      // A negative entry lets the kernel remember the absence (negative_timeout).
      if (isFsError(e, 'ENOENT') && t.negative > 0) return negativeEntryOut(t.negative);
      throw e;
    }
  };

  h[Op.GETATTR] = async ({ h: hd, body }) => {
    const flags = body.u32();
    body.skip(4);
    const fh = body.num64();
    // fstat(): the open file's object, as the descriptor sees it (no revalidation).
    if (flags & GETATTR_FH && fh) {
      try { return attrOut(attrs(layer.fileOf(fh).obj), t.attr); } catch (e) { if (!isFsError(e, 'EBADF')) throw e; }
    }
    return attrOut(attrs(await layer.getattrOf(objOf(hd.nodeid))), t.attr);
  };

  h[Op.SETATTR] = async ({ h: hd, body }) => {
    const { valid, fh, size, atime, mtime, mode, uid, gid } = parseSetattr(body);
    const obj = objOf(hd.nodeid);
    const set: SetAttrRecord = {};
    if (valid & Fattr.MODE) set.mode = mode & 0o7777;
    // Set-ID bits to drop after this change (handle_killpriv_v2): a truncate by someone
    // without CAP_FSETID, and any chown of a non-directory (as the kernel does otherwise).
    const kill = !(valid & Fattr.MODE) && ((valid & Fattr.KILL_SUIDGID) || ((valid & (Fattr.UID | Fattr.GID)) && obj.attr.type !== 'dir'));
    if (valid & Fattr.UID) set.uid = uid;
    if (valid & Fattr.GID) set.gid = gid;
    if (valid & Fattr.SIZE) {
      if (obj.attr.type === 'dir') throw new FsError('EISDIR');
      set.size = size;
    }
    if (atime !== 'omit') set.atime = atime === 'now' ? { kind: 'now' } : { kind: 'set', ns: String(atime) };
    if (mtime !== 'omit') set.mtime = mtime === 'now' ? { kind: 'now' } : { kind: 'set', ns: String(mtime) };
    if (Object.keys(set).length > 0) {
      // ftruncate(): as the opener (the kernel checked the right at open), like a write.
      if (fh !== 0 && Object.keys(set).length === 1 && set.size !== undefined) await layer.ftruncate(fh, size);
      else await layer.setattr(obj, set, d.creds(hd));
    }
    if (kill) await killSuidgid(obj);
    return attrOut(attrs(obj), t.attr);
  };

  h[Op.READLINK] = async ({ h: hd }) => {
    return nameToBytes(await layer.readlinkOf(objOf(hd.nodeid)));
  };

  h[Op.MKNOD] = async ({ h: hd, body }) => {
    const mode = body.u32(), rdev = body.u32();
    body.skip(8);
    const name = body.cstr();
    const dir = objOf(hd.nodeid);
    return entry(await layer.mknodAt(dir, name, mode, rdev, d.creds(hd)));
  };

  h[Op.MKDIR] = async ({ h: hd, body }) => {
    const mode = body.u32();
    body.skip(4);
    const name = body.cstr();
    const dir = objOf(hd.nodeid);
    return entry(await layer.mkdirAt(dir, name, mode | S_IFDIR, d.creds(hd)));
  };

  h[Op.SYMLINK] = async ({ h: hd, body }) => {
    const name = body.cstr();
    const target = body.cstr();
    const dir = objOf(hd.nodeid);
    return entry(await layer.symlinkAt(dir, name, target, d.creds(hd)));
  };

  h[Op.UNLINK] = async ({ h: hd, body }) => {
    const name = body.cstr();
    await layer.unlinkAt(objOf(hd.nodeid), name, d.creds(hd));
  };

  h[Op.RMDIR] = async ({ h: hd, body }) => {
    const name = body.cstr();
    await layer.rmdirAt(objOf(hd.nodeid), name, d.creds(hd));
  };

  const rename = async (hd: InHeader, newdir: bigint, flags: number, from: string, to: string): Promise<void> => {
    const src = objOf(hd.nodeid);
    const dst = objOf(newdir);
    if (flags & ~RENAME_NOREPLACE) throw new FsError('EINVAL', 'RENAME_EXCHANGE and RENAME_WHITEOUT are not supported');
    await layer.renameAt(src, from, dst, to, d.creds(hd), (flags & RENAME_NOREPLACE) !== 0);
  };
  h[Op.RENAME] = async ({ h: hd, body }) => {
    const newdir = body.u64();
    const from = body.cstr(), to = body.cstr();
    await rename(hd, newdir, 0, from, to);
  };
  h[Op.RENAME2] = async ({ h: hd, body }) => {
    const newdir = body.u64();
    const flags = body.u32();
    body.skip(4);
    const from = body.cstr(), to = body.cstr();
    await rename(hd, newdir, flags, from, to);
  };

  h[Op.LINK] = async ({ h: hd, body }) => {
    const old = body.u64();
    const name = body.cstr();
    const dir = objOf(hd.nodeid);
    return entry(await layer.linkAt(objOf(old), dir, name, d.creds(hd)));
  };

  /**
   * handle_killpriv_v2: the kernel leaves it to us to drop set-user-ID (and set-group-ID
   * with group execute) when someone without CAP_FSETID writes, truncates or opens with
   * O_TRUNC; the write itself is the caller's right, so this mode change is the mount's.
   */
  const killSuidgid = async (o: CachedObject): Promise<void> => {
    const kill = suidgidBits(o.attr.mode);
    if (kill) await layer.setattr(o, { mode: o.attr.mode & 0o7777 & ~kill });
  };

  /** FOPEN_KEEP_CACHE when the file is as it was at its last open (libfuse's auto_cache). */
  const keepCache = (node: bigint, o: CachedObject): number => {
    if (!d.autoCache) return 0;
    return nodes.sameAsLastOpen(node, `${o.attr.mtimeNs}:${o.attr.size}`) ? Fopen.KEEP_CACHE : 0;
  };

  /**
   * Under the kernel's writeback cache it reads pages to fill partial writes (also through a
   * write-only descriptor) and does O_APPEND itself: the layer is told O_RDWR, no O_APPEND.
   */
  const openFlags = (flags: number): number => {
    const n = d.negotiated();
    if (!n || !(n.flags & Init.WRITEBACK_CACHE)) return flags;
    let f = flags & ~fsc.O_APPEND;
    if ((f & 3) === fsc.O_WRONLY) f = (f & ~3) | fsc.O_RDWR;
    return f;
  };

  h[Op.OPEN] = async ({ h: hd, body }) => {
    const flags = openFlags(body.u32());
    const killOnTrunc = (body.u32() & OPEN_KILL_SUIDGID) !== 0;
    const o = objOf(hd.nodeid);
    const readOnly = (flags & 3) === 0 && (flags & fsc.O_TRUNC) === 0;
    if (!readOnly && backings.has(o.id) && !backings.get(o.id)!.writable) throw new FsError('ETXTBSY', 'the file is open for reading through passthrough');
    // A descriptor that can write carries its opener's credentials: its writes replay as them.
    const by = readOnly ? undefined : d.creds(hd);
    const fd = await layer.openObject(o, flags, by);
    const n = d.negotiated();
    if (flags & fsc.O_TRUNC && n && n.flags & Init.ATOMIC_O_TRUNC && o.attr.size !== 0) {
      try {
        await layer.ftruncate(fd, 0);
        if (killOnTrunc) await killSuidgid(o);
      } catch (e) { await layer.release(fd).catch(() => undefined); throw e; }
    }
    const id = await offerPassthrough(o, fd, readOnly);
    if (id !== null) return openOut(BigInt(fd), Fopen.PASSTHROUGH, id);
    if (backings.has(o.id)) { await layer.release(fd); throw new FsError('ETXTBSY', 'the file is open for reading through passthrough'); }
    openedOrdinarily(fd, o);
    return openOut(BigInt(fd), keepCache(hd.nodeid, o));
  };

  /**
   * The backing id open file `fd` of `o` is to be answered with (counted as a passthrough
   * open), or null: an ordinary open (not negotiated, an ordinary open of `o` already there,
   * or the layer cannot hand this file over).
   */
  const offerPassthrough = async (o: CachedObject, fd: number, readOnly: boolean): Promise<number | null> => {
    const n = d.negotiated();
    if (!(readOnly || d.passthroughWrites) || !d.backing || !n || !(n.flags & Init.PASSTHROUGH) || ordinaryOpens.has(o.id)) return null;
    try {
      const id = readOnly ? await backingFor(o) : await backingForWrite(o, fd);
      if (id === null) return null;
      passthroughFh.set(fd, o.id);
      // An ordinary open answered while the backing was being registered wins.
      if (!ordinaryOpens.has(o.id)) return id;
      releasePassthrough(fd);
    } catch (e) {
      log.debug(`no passthrough for object ${o.id}`, e);
    }
    return null;
  };

  /** The backing id of `o`'s cache file, one more open counted; null: not wholly cached. */
  const backingFor = async (o: CachedObject): Promise<number | null> => {
    const have = backings.get(o.id);
    if (have) { have.opens++; return have.id; }
    const file = await layer.wholeCacheFile(o);
    if (file === null) return null;
    const again = backings.get(o.id); // another open registered it meanwhile
    if (again) { again.opens++; return again.id; }
    return register(o, file);
  };

  /**
   * For an open for writing: the backing id of `o`'s cache file, which the kernel then
   * writes directly (the layer journals what it wrote: direct-writes.ts), one more open
   * counted; null: the layer cannot follow this file, or it is open read-only passthrough.
   */
  const backingForWrite = async (o: CachedObject, fh: number): Promise<number | null> => {
    const have = backings.get(o.id);
    if (have && !have.writable) return null;
    const file = await layer.openDirect(fh);
    if (file === null) return null;
    const again = backings.get(o.id); // registered meanwhile
    if (again) {
      if (!again.writable) return null;
      again.opens++;
      return again.id;
    }
    return register(o, file);
  };

  /** Hands the kernel `o`'s cache file (writable where opens may write); one open counted. */
  const register = (o: CachedObject, file: string): number => {
    const writable = d.passthroughWrites === true;
    const fd = fs.openSync(file, writable ? 'r+' : 'r');
    try {
      const id = d.backing!.open(fd);
      backings.set(o.id, { id, opens: 1, writable });
      return id;
    } finally {
      fs.closeSync(fd); // the kernel holds the file now
    }
  };

  const releasePassthrough = (fh: number): void => {
    const id = passthroughFh.get(fh);
    if (id === undefined) return;
    passthroughFh.delete(fh);
    const b = backings.get(id);
    if (b && --b.opens <= 0) {
      backings.delete(id);
      try { d.backing?.close(b.id); } catch (e) { log.debug(`closing backing id ${b.id} failed`, e); }
    }
  };

  h[Op.READ] = async (req) => {
    const { body } = req;
    const fh = body.num64();
    const pos = body.num64();
    const size = body.u32();
    const buf = readBuffers.acquire(size);
    // Bytes just fetched may be replied from the fetcher's buffer itself: it is lent until
    // the reply is written.
    let lent: (() => void) | undefined;
    req.done = () => { readBuffers.release(buf); lent?.(); };
    return layer.read(fh, pos, size, buf.subarray(0, size), (release) => { lent = release; });
  };

  h[Op.WRITE] = async ({ body, keep }) => {
    const fh = body.num64();
    const pos = body.num64();
    const size = body.u32();
    const writeFlags = body.u32();
    body.skip(8 + 4 + 4); // lock_owner, flags, padding
    const data = body.bytes(size);
    // `data` is a view of the request's buffer: whoever keeps it past the reply (a dirty run
    // that is this write alone) keeps the buffer with `keep`, others copy it.
    const n = await layer.write(fh, pos, data, keep);
    if (writeFlags & WRITE_KILL_SUIDGID) await killSuidgid(layer.fileOf(fh).obj);
    return writeOut(n);
  };

  h[Op.STATFS] = async () => {
    const s = await layer.statfs();
    return statfsOut({ blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, bsize: s.bsize, namelen: s.namemax, frsize: s.frsize });
  };

  h[Op.RELEASE] = async ({ body }) => {
    const fh = body.num64();
    releasePassthrough(fh);
    releaseOrdinary(fh);
    await layer.release(fh);
  };

  h[Op.FSYNC] = async ({ body }) => {
    const fh = body.num64();
    const flags = body.u32();
    if (fh) await layer.fsync(fh);
  };

  h[Op.FLUSH] = async ({ body }) => {
    const fh = body.num64();
    if (fh) await layer.flush(fh);
  };

  /**
   * Where the kernel keeps the names' attributes for long (kernel-caching.ts), it also keeps
   * the listing it read of a directory (FOPEN_CACHE_DIR), and serves the next opendir's
   * reads from it (FOPEN_KEEP_CACHE) only if the directory is still the version it was at
   * the last opendir: an opendir revalidates the directory as an open revalidates a file
   * (close-to-open), and an outside change the cache learns of meanwhile drops the kernel's
   * copy (INVAL_INODE). The kernel drops it too on changes made through the mount.
   */
  h[Op.OPENDIR] = async ({ h: hd }) => {
    const listings = t.listings;
    const o = listings ? await layer.getattrOf(objOf(hd.nodeid)) : objOf(hd.nodeid);
    if (o.attr.type !== 'dir') throw new FsError('ENOTDIR');
    if (!listings) return openOut(BigInt(dirs.opened()), 0);
    const keep = nodes.sameAsLastOpen(hd.nodeid, o.attr.version);
    return openOut(BigInt(dirs.opened()), Fopen.CACHE_DIR | (keep ? Fopen.KEEP_CACHE : 0));
  };

  /** The listing of a directory node: `.` and `..` first, then its entries. */
  const listing = async (node: bigint, plus: boolean): Promise<DirEntry[]> => {
    const { dir, entries } = await layer.readdirOf(objOf(node), plus ? 'attrs-if-cheap' : 'names');
    const self = { ino: BigInt(dir.id), type: direntType(S_IFDIR) };
    const out: DirEntry[] = [{ name: Buffer.from('.'), ...self }, { name: Buffer.from('..'), ...self }];
    const hidden = node === 1n ? d.hiddenInRoot : undefined;
    for (const e of entries) {
      if (hidden?.(e.name)) continue;
      const ent: DirEntry = { name: nameToBytes(e.name), ino: BigInt(e.obj.id), type: direntType(e.obj.attr.mode) };
      // Attributes due for revalidation are not given: the kernel would keep them for its
      // attribute timeout; it looks such a name up itself when it needs it.
      if (plus && !e.stale) { ent.node = nodes.nodeOf(e.obj.id); ent.attr = attrs(e.obj); }
      out.push(ent);
    }
    return out;
  };

  h[Op.READDIR] = (req) => dirs.reply(req, false, listing);
  h[Op.READDIRPLUS] = (req) => dirs.reply(req, true, listing);

  h[Op.RELEASEDIR] = ({ body }) => { dirs.released(body.num64()); };
  h[Op.FSYNCDIR] = () => undefined;

  h[Op.ACCESS] = async ({ h: hd, body }) => {
    body.u32(); // mask: permission checks are the kernel's (default_permissions)
    objOf(hd.nodeid); // the node exists
  };

  h[Op.CREATE] = async ({ h: hd, body }) => {
    const flags = openFlags(body.u32()), mode = body.u32();
    body.skip(8); // umask (applied by the kernel), open_flags
    const name = body.cstr();
    const dir = objOf(hd.nodeid);
    const { fd, obj } = await layer.createAt(dir, name, mode, flags, d.creds(hd));
    nodes.sameAsLastOpen(nodes.nodeOf(obj.id), `${obj.attr.mtimeNs}:${obj.attr.size}`);
    const id = await offerPassthrough(obj, fd, false);
    if (id !== null) return [entry(obj), openOut(BigInt(fd), Fopen.PASSTHROUGH, id)];
    openedOrdinarily(fd, obj);
    return [entry(obj), openOut(BigInt(fd), 0)];
  };

  return h;
}
