// The mount's own operations by path, acting as one user, as conflict resolution needs them
// (conflict/resolve.ts declares ResolveFs). Every change goes through the layer's entry
// points, so through the journal, like one an application makes: connected or not, a
// resolution is replayed and checked like any other change.
import { promises as fsp } from 'node:fs';
import { isFsError } from '../core/errors.js';
import type { Creds } from '../backends/types.js';
import type { CachedObject } from '../index/objects.js';
import type { ResolveFs } from '../conflict/resolve.js';
import { DIRTY_RUN_MAX } from './write-back.js';

const O_WRONLY = 1;
const O_RDWR = 2;

/** The layer's entry points a resolution uses (CacheLayer has them). */
export interface PathOps {
  getattr(p: string): Promise<CachedObject>;
  open(p: string, flags: number, by?: Creds): Promise<number>;
  create(p: string, mode: number, flags: number, creds: Creds): Promise<number>;
  ftruncate(fd: number, size: number): Promise<void>;
  write(fd: number, pos: number, data: Buffer): Promise<number>;
  flush(fd: number): Promise<void>;
  release(fd: number): Promise<void>;
  symlink(target: string, p: string, creds: Creds): Promise<void>;
  mkdir(p: string, mode: number, creds: Creds): Promise<void>;
  unlink(p: string, by?: Creds): Promise<void>;
  rmdir(p: string, by?: Creds): Promise<void>;
  chmod(p: string, mode: number, by?: Creds): Promise<void>;
  chown(p: string, uid: number | undefined, gid: number | undefined, by?: Creds): Promise<void>;
}

/**
 * `ops` acting as `creds`, by path from the mount root. `changed` is told each path a
 * resolution changed: the kernel did not ask for these changes, so its caches must be told.
 */
export function resolveFsOf(ops: PathOps, creds: Creds, changed: (p: string) => Promise<void> = async () => undefined): ResolveFs {
  const fs = resolveFsBy(ops, creds);
  const after = <A extends unknown[]>(fn: (p: string, ...a: A) => Promise<void>) => async (p: string, ...a: A): Promise<void> => {
    try { await fn(p, ...a); } finally { await changed(p); }
  };
  return {
    stat: fs.stat,
    writeFile: after(fs.writeFile),
    symlink: async (target, p) => { try { await fs.symlink(target, p); } finally { await changed(p); } },
    mkdir: after(fs.mkdir),
    unlink: after(fs.unlink),
    rmdir: after(fs.rmdir),
    chmod: after(fs.chmod),
    chown: after(fs.chown),
  };
}

function resolveFsBy(ops: PathOps, creds: Creds): ResolveFs {
  return {
    stat: async (p) => {
      try {
        const o = await ops.getattr(p);
        return { type: o.attr.type, mode: o.attr.mode, uid: o.attr.uid, gid: o.attr.gid, size: o.attr.size };
      } catch (e) {
        if (isFsError(e, 'ENOENT')) return null;
        throw e;
      }
    },
    writeFile: async (p, src, mode) => {
      let fd: number;
      try {
        fd = await ops.open(p, O_WRONLY, creds);
        try { await ops.ftruncate(fd, 0); } catch (e) { await ops.release(fd); throw e; }
      } catch (e) {
        if (!isFsError(e, 'ENOENT')) throw e;
        fd = await ops.create(p, mode, O_RDWR, creds);
      }
      try {
        const h = await fsp.open(src, 'r');
        try {
          const buf = Buffer.allocUnsafe(DIRTY_RUN_MAX);
          for (let pos = 0; ;) {
            const { bytesRead } = await h.read(buf, 0, buf.length, pos);
            if (bytesRead === 0) break;
            await ops.write(fd, pos, Buffer.from(buf.subarray(0, bytesRead)));
            pos += bytesRead;
          }
        } finally {
          await h.close();
        }
        await ops.flush(fd);
      } finally {
        await ops.release(fd);
      }
    },
    symlink: (target, p) => ops.symlink(target, p, creds),
    mkdir: (p, mode) => ops.mkdir(p, 0o040000 | mode, creds),
    unlink: (p) => ops.unlink(p, creds),
    rmdir: (p) => ops.rmdir(p, creds),
    chmod: (p, mode) => ops.chmod(p, mode, creds),
    chown: (p, uid, gid) => ops.chown(p, uid, gid, creds),
  };
}
