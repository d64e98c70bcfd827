// Mounting a FUSE file system without libfuse. As root (CAP_SYS_ADMIN): open /dev/fuse and
// mount(2) with its descriptor in the `fd=` option. As anyone else: `fusermount3` (setuid
// root) opens /dev/fuse, mounts, and passes the descriptor back over a socket named by
// _FUSE_COMMFD, as libfuse does. The options users know stay: fsname and subtype (shown in
// /proc/mounts as `fsname mountpoint fuse.cachefs`), default_permissions (the kernel checks
// permissions against the attributes we report), allow_other.
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import type { Config } from '../config/schema.js';
import { FsError, isFsError } from '../core/errors.js';
import { log } from '../core/log.js';
import { MNT_DETACH, MS_NODEV, MS_NOSUID, mount, receiveFd, socketPair, umount2 } from './sys.js';

export interface MountOptions {
  mountpoint: string;
  fsname: string;
  config: Config;
}

/** The options every mount gets, in fusermount3's syntax. */
export function fuseOptionList(o: MountOptions): string[] {
  const f = o.config.fuse;
  const isRoot = process.getuid?.() === 0;
  const allowOther = f.allowOther === 'auto' ? isRoot : f.allowOther;
  const opts = [`fsname=${o.fsname.replace(/[,\\]/g, '_')}`, 'subtype=cachefs', 'default_permissions'];
  if (allowOther) opts.push('allow_other');
  return opts;
}

/** A mounted FUSE file system: the /dev/fuse descriptor its session reads. */
export interface Mounted { fd: number; how: 'mount(2)' | 'fusermount3' }

export async function mountFuse(o: MountOptions): Promise<Mounted> {
  if (process.getuid?.() === 0) {
    try {
      return { fd: mountDirect(o), how: 'mount(2)' };
    } catch (e) {
      // Root without CAP_SYS_ADMIN (a container): fusermount3 may still be allowed.
      if (!isFsError(e, 'EPERM')) throw e;
      log.info('mount(2) refused (EPERM); mounting through fusermount3');
    }
  }
  return { fd: await mountWithFusermount(o), how: 'fusermount3' };
}

function mountDirect(o: MountOptions): number {
  const fd = fs.openSync('/dev/fuse', fs.constants.O_RDWR) // libuv opens close-on-exec;
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const list = fuseOptionList(o);
  const fsname = list.find((x) => x.startsWith('fsname='))!.slice(7);
  const data = [`fd=${fd}`, 'rootmode=40000', `user_id=${uid}`, `group_id=${gid}`, ...list.filter((x) => !x.startsWith('fsname=') && !x.startsWith('subtype='))].join(',');
  try {
    mount(fsname, o.mountpoint, 'fuse.cachefs', MS_NOSUID | MS_NODEV, data);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  return fd;
}

function mountWithFusermount(o: MountOptions): Promise<number> {
  const [mine, theirs] = socketPair();
  return new Promise<number>((resolve, reject) => {
    let stderr = '';
    const child = spawn('fusermount3', ['-o', fuseOptionList(o).join(','), '--', o.mountpoint], {
      stdio: ['ignore', 'ignore', 'pipe', theirs],
      env: { ...process.env, _FUSE_COMMFD: '3' },
    });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', (e) => finish(new FsError('ENOENT', `cannot run fusermount3 (${e.message}): install the fuse3 package`)));
    child.on('close', (code) => {
      if (code !== 0) { finish(new FsError('EPERM', `fusermount3 could not mount ${o.mountpoint}: ${stderr.trim() || `exit ${code}`}`)); return; }
      try { finish(null, receiveFd(mine)); } catch (e) { finish(e as Error); }
    });
    let settled = false;
    const finish = (err: Error | null, fd?: number) => {
      if (settled) return;
      settled = true;
      try { fs.closeSync(mine); } catch { /* closed */ }
      if (err) reject(err); else resolve(fd!);
    };
    // Our copy of the child's end: closed once the child has it.
    child.on('spawn', () => { try { fs.closeSync(theirs); } catch { /* closed */ } });
  });
}

/** Unmounts `mountpoint` (lazily: `lazy`), as root directly, otherwise through fusermount3. */
export async function unmountFuse(mountpoint: string, lazy = false): Promise<void> {
  if (process.getuid?.() === 0) {
    try {
      await umount2(mountpoint, lazy ? MNT_DETACH : 0);
      return;
    } catch (e) {
      if (!isFsError(e, 'EPERM')) throw e;
    }
  }
  await new Promise<void>((resolve, reject) => {
    let stderr = '';
    const child = spawn('fusermount3', lazy ? ['-u', '-z', '--', mountpoint] : ['-u', '--', mountpoint], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new FsError('EBUSY', `fusermount3 -u ${mountpoint}: ${stderr.trim() || `exit ${code}`}`))));
  });
}

/**
 * Lets the kernel read ahead `bytes` at a time on connection `n` (its backing device's
 * read_ahead_kb, 128 KiB by default, bounds every buffered read request whatever max_pages
 * says). Root only; quiet when it cannot.
 */
export function setReadahead(n: number, bytes: number): void {
  if (process.getuid?.() !== 0) return;
  try {
    fs.writeFileSync(`/sys/class/bdi/0:${n}/read_ahead_kb`, String(Math.floor(bytes / 1024)));
  } catch (e) {
    log.debug(`cannot set read-ahead of FUSE connection ${n}`, e);
  }
}
