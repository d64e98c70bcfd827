// The fuse-native operation table: translates the kernel's path-based requests into calls
// on the cache layer. Every handler is wrapped so that it answers exactly once, with an
// integer, whatever happens (a throw or a second answer would kill the process or leave the
// kernel waiting); errors go through the single errno translation in ./errno.ts.
// Paths inside the hidden control directory (`/.cachefs`, see ./control-dir.ts) and file
// handles it gave out never reach the layer: each handler hands them to the ControlDir.
import type { CacheLayer, TimeArg } from '../layers/cache-layer.js';
import type { CachedObject } from '../layers/cache-layer.js';
import type { Creds } from '../core/creds.js';
import { FsError } from '../core/errors.js';
import { log } from '../core/log.js';
import { toFuseErrno } from './errno.js';
import { BufferPool } from '../core/buffer-pool.js';
import type { ControlDir } from '../layers/control-dir.js';

type Cb = (...args: unknown[]) => void;

/** What the op table needs from the FUSE binding: the caller's credentials. */
export interface CallerContext { caller(): Creds }

const UNSET_ID = 0xffffffff; // chown's "-1": leave unchanged
const readPool = new BufferPool(128 * 1024, 16);

export function statOf(o: CachedObject) {
  const a = o.attr;
  return {
    mode: a.mode,
    uid: a.uid,
    gid: a.gid,
    size: a.size,
    dev: 0,
    nlink: a.nlink,
    ino: o.id,
    rdev: a.rdev,
    blksize: 4096,
    blocks: Math.ceil(a.used / 512),
    atimeNs: a.atimeNs,
    mtimeNs: a.mtimeNs,
    ctimeNs: a.ctimeNs,
  };
}

/**
 * Runs `fn` and answers `cb` once: `cb(0, ...result)` for results given as an array,
 * `cb(n)` for a number result (read/write sizes), `cb(-errno)` for errors.
 */
/** Per-operation counts and total handler time (ms), shown by `cachefs status --json`. */
export const opStats: Record<string, { count: number; ms: number; errors: number }> = {};

function answer(op: string, cb: Cb, fn: () => Promise<unknown[] | number | void>): void {
  let done = false;
  const t0 = performance.now();
  const reply = (...args: unknown[]) => {
    if (done) return;
    done = true;
    const s = (opStats[op] ??= { count: 0, ms: 0, errors: 0 });
    s.count++;
    s.ms += performance.now() - t0;
    if (typeof args[0] === 'number' && args[0] < 0) s.errors++;
    try { cb(...args); } catch (e) { log.error(`fuse-native rejected the answer to ${op}`, e); }
  };
  let p: Promise<unknown[] | number | void>;
  try { p = fn(); } catch (e) { reply(toFuseErrno(e, op)); return; }
  p.then(
    (r) => {
      if (typeof r === 'number') reply(r);
      else if (Array.isArray(r)) reply(0, ...r);
      else reply(0);
    },
    (e) => reply(toFuseErrno(e, op)),
  );
}

export function makeOps(layer: CacheLayer, ctx: CallerContext, control?: ControlDir) {
  /** Whether `path` belongs to the control directory (never to the layer). */
  const ctl = (path: string): ControlDir | undefined => (control?.owns(path) ? control : undefined);
  /** Whether `fd` is a control directory's file handle. */
  const ctlFd = (fd: number): ControlDir | undefined => (fd && control?.ownsFd(fd) ? control : undefined);
  /** Answers EROFS for a change to the control directory; false when `paths` are not in it. */
  const readOnly = (op: string, cb: Cb, ...paths: string[]): boolean => {
    const c = paths.map(ctl).find(Boolean);
    if (!c) return false;
    answer(op, cb, () => c.mutation(op, paths.join(' -> ')));
    return true;
  };
  return {
    init(cb: Cb) { cb(0); },
    access(path: string, mode: number, cb: Cb) {
      const c = ctl(path);
      if (c) { answer('access', cb, () => c.access(path, mode)); return; }
      // Permission checks are the kernel's (default_permissions); this only says it exists.
      answer('access', cb, async () => { await layer.resolve(path); });
    },
    statfs(_path: string, cb: Cb) {
      answer('statfs', cb, async () => {
        const s = await layer.statfs();
        return [{ bsize: s.bsize, frsize: s.frsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail,
          files: s.files, ffree: s.ffree, favail: s.ffree, fsid: 0, flag: 0, namemax: s.namemax }];
      });
    },
    getattr(path: string, cb: Cb) {
      const c = ctl(path);
      if (c) { answer('getattr', cb, async () => [await c.getattr(path)]); return; }
      answer('getattr', cb, async () => [statOf(await layer.getattr(path))]);
    },
    fgetattr(path: string, fd: number, cb: Cb) {
      const c = ctl(path);
      if (c) { answer('fgetattr', cb, async () => [await c.getattr(path)]); return; }
      answer('fgetattr', cb, async () => {
        if (!fd) return [statOf(await layer.getattr(path))];
        return [statOf(layer.fileOf(fd).obj)];
      });
    },
    readdir(path: string, cb: Cb) {
      const c = ctl(path);
      if (c) {
        answer('readdir', cb, async () => { const r = await c.readdir(path); return [r.names, r.stats]; });
        return;
      }
      answer('readdir', cb, async () => {
        const { dir, entries } = await layer.readdir(path);
        const names = ['.', '..'];
        const stats = [statOf(dir), statOf(dir)];
        // The control directory is reachable by name only; it shadows a backend `.cachefs`.
        const hidden = path === '/' ? control : undefined;
        for (const e of entries) {
          if (hidden?.hides(e.name)) continue;
          names.push(e.name); stats.push(statOf(e.obj));
        }
        return [names, stats];
      });
    },
    readlink(path: string, cb: Cb) {
      const c = ctl(path);
      if (c) { answer('readlink', cb, async () => [await c.readlink(path)]); return; }
      answer('readlink', cb, async () => [await layer.readlink(path)]);
    },
    open(path: string, flags: number, cb: Cb) {
      const c = ctl(path);
      if (c) { answer('open', cb, async () => [await c.open(path, flags)]); return; }
      // A descriptor that can write carries its opener's credentials: its writes replay as them.
      const by = (flags & 3) !== 0 ? ctx.caller() : undefined;
      answer('open', cb, async () => [await layer.open(path, flags, by)]);
    },
    opendir(_path: string, _flags: number, cb: Cb) { cb(0, 0); },
    releasedir(_path: string, _fd: number, cb: Cb) { cb(0); },
    create(path: string, mode: number, cb: Cb) {
      const c = ctl(path);
      if (c) { answer('create', cb, async () => [await c.create(path, mode)]); return; }
      const creds = ctx.caller();
      // libfuse2 passes no open flags to create; the kernel opens for writing (O_CREAT|O_WRONLY
      // at least), and reads through the fd are still allowed by our layer for O_RDWR callers.
      answer('create', cb, async () => [await layer.create(path, mode, 2 /* O_RDWR */, creds)]);
    },
    read(_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) {
      const c = ctlFd(fd);
      if (c) { answer('read', cb, () => c.read(fd, buf, len, pos)); return; }
      answer('read', cb, async () => {
        // `buf` is detached by fuse-native if we answer after its timeout: the layer reads
        // into it only when the read completes without waiting on I/O; otherwise into pooled
        // scratch space, copied only while `buf` lives.
        const scratch = readPool.acquire(len);
        try {
          const data = await layer.read(fd, pos, len, scratch, buf);
          const inPlace = data.buffer === buf.buffer && data.byteOffset === buf.byteOffset;
          if (!inPlace && buf.length) data.copy(buf, 0, 0, Math.min(data.length, buf.length));
          return data.length;
        } finally {
          readPool.release(scratch);
        }
      });
    },
    write(_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) {
      // `buf` is the kernel's and is reused after we answer: the layer copies it (into its
      // dirty run) before answering, and checks it was not detached by a timeout.
      const c = ctlFd(fd);
      if (c) {
        // Copied before the first await, for the same reason (inside answer: a throw is an errno).
        answer('write', cb, () => c.write(fd, Buffer.from(buf.subarray(0, len)), pos));
        return;
      }
      answer('write', cb, async () => layer.write(fd, pos, buf.subarray(0, len)));
    },
    flush(_path: string, fd: number, cb: Cb) {
      const c = ctlFd(fd);
      if (c) { answer('flush', cb, () => c.flush(fd)); return; }
      answer('flush', cb, async () => { if (fd) await layer.flush(fd); });
    },
    fsync(_path: string, datasync: number, fd: number, cb: Cb) {
      const c = ctlFd(fd);
      if (c) { answer('fsync', cb, () => c.fsync(fd, !!datasync)); return; }
      answer('fsync', cb, async () => { if (fd) await layer.fsync(fd); });
    },
    fsyncdir(_path: string, _datasync: number, _fd: number, cb: Cb) { cb(0); },
    release(_path: string, fd: number, cb: Cb) {
      const c = ctlFd(fd);
      if (c) { answer('release', cb, () => c.release(fd)); return; }
      answer('release', cb, async () => { await layer.release(fd); });
    },
    truncate(path: string, size: number, cb: Cb) {
      const c = ctl(path);
      if (c) { answer('truncate', cb, () => c.truncate(path, size)); return; }
      const by = ctx.caller();
      answer('truncate', cb, async () => { await layer.truncate(path, size, by); });
    },
    ftruncate(path: string, fd: number, size: number, cb: Cb) {
      const c = ctlFd(fd) ?? ctl(path);
      if (c) {
        answer('ftruncate', cb, () => (c.ownsFd(fd) ? c.ftruncate(fd, size) : c.truncate(path, size)));
        return;
      }
      const by = fd ? undefined : ctx.caller();
      answer('ftruncate', cb, async () => {
        if (fd) await layer.ftruncate(fd, size); else await layer.truncate(path, size, by);
      });
    },
    chmod(path: string, mode: number, cb: Cb) {
      if (readOnly('chmod', cb, path)) return;
      const by = ctx.caller();
      answer('chmod', cb, async () => { await layer.chmod(path, mode, by); });
    },
    chown(path: string, uid: number, gid: number, cb: Cb) {
      if (readOnly('chown', cb, path)) return;
      const by = ctx.caller();
      answer('chown', cb, async () => {
        await layer.chown(path, uid === UNSET_ID ? undefined : uid, gid === UNSET_ID ? undefined : gid, by);
      });
    },
    utimens(path: string, atime: TimeArg, mtime: TimeArg, cb: Cb) {
      const by = ctx.caller();
      answer('utimens', cb, async () => {
        if (typeof atime !== 'bigint' && atime !== 'now' && atime !== 'omit') {
          throw new FsError('EIO', 'fuse-native without the cachefs patch: run npm ci');
        }
        const c = ctl(path);
        if (c) { await c.utimens(path, atime, mtime); return; }
        await layer.utimens(path, atime, mtime, by);
      });
    },
    mknod(path: string, mode: number, dev: number, cb: Cb) {
      if (readOnly('mknod', cb, path)) return;
      const creds = ctx.caller();
      answer('mknod', cb, async () => { await layer.mknod(path, mode, dev, creds); });
    },
    mkdir(path: string, mode: number, cb: Cb) {
      if (readOnly('mkdir', cb, path)) return;
      const creds = ctx.caller();
      answer('mkdir', cb, async () => { await layer.mkdir(path, mode | 0o40000, creds); });
    },
    symlink(target: string, path: string, cb: Cb) {
      if (readOnly('symlink', cb, path)) return;
      const creds = ctx.caller();
      answer('symlink', cb, async () => { await layer.symlink(target, path, creds); });
    },
    link(src: string, dest: string, cb: Cb) {
      if (readOnly('link', cb, src, dest)) return;
      const by = ctx.caller();
      answer('link', cb, async () => { await layer.link(src, dest, by); });
    },
    unlink(path: string, cb: Cb) {
      if (readOnly('unlink', cb, path)) return;
      const by = ctx.caller();
      answer('unlink', cb, async () => { await layer.unlink(path, by); });
    },
    rmdir(path: string, cb: Cb) {
      if (readOnly('rmdir', cb, path)) return;
      const by = ctx.caller();
      answer('rmdir', cb, async () => { await layer.rmdir(path, by); });
    },
    rename(src: string, dest: string, cb: Cb) {
      // Into, out of or within the control directory: EROFS. (EXDEV would not make
      // `mv draft …/resolved` work either: mv then unlinks the target first.)
      if (readOnly('rename', cb, src, dest)) return;
      const by = ctx.caller();
      answer('rename', cb, async () => { await layer.rename(src, dest, by); });
    },
  };
}
