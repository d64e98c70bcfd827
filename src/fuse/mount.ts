// Mounting with fuse-native, with the options fuse-native does not expose. What each option
// is for (measured in shared/lab/fuse/FUSE-NATIVE-NOTES.md):
// - big_writes,max_write: without them writes arrive in 4 KiB pieces (5.7x slower);
// - use_ino: st_ino comes from us (stable object ids), so hard links share an inode number;
// - entry_timeout/attr_timeout/negative_timeout passed raw: fuse-native drops a value of 0;
// - default_permissions: the kernel checks permissions against the attributes we report;
// - allow_other: a root mount answers other users with real permission checks.
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import type { Config } from '../config/schema.js';

const require = createRequire(import.meta.url);
// fuse-native is CommonJS without types; this is the narrow surface we use.
interface FuseNative {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
  context?: Uint32Array;
  _fuseOptions(): string;
}
type FuseCtor = new (mnt: string, ops: object, opts: object) => FuseNative;
const Fuse = require('fuse-native') as FuseCtor;

export interface MountOptions {
  mountpoint: string;
  fsname: string;
  config: Config;
}

export function fuseOptionList(o: MountOptions): string[] {
  const f = o.config.fuse;
  const isRoot = process.getuid?.() === 0;
  const allowOther = f.allowOther === 'auto' ? isRoot : f.allowOther;
  const opts = [
    `fsname=${o.fsname.replace(/[,\\]/g, '_')}`,
    'subtype=cachefs',
    'default_permissions',
    'use_ino',
    'big_writes',
    `max_write=${f.maxWrite}`,
    `entry_timeout=${f.entryTimeout}`,
    `attr_timeout=${f.attrTimeout}`,
    `negative_timeout=${f.negativeTimeout}`,
  ];
  if (allowOther) opts.push('allow_other');
  if (f.autoCache) opts.push('auto_cache');
  return opts;
}

export class FuseMount {
  private readonly fuse: FuseNative;

  constructor(private readonly o: MountOptions, ops: object) {
    const extra = fuseOptionList(o);
    class TunedFuse extends (Fuse as unknown as new (...a: unknown[]) => FuseNative) {
      override _fuseOptions(): string {
        const base = super._fuseOptions();
        const list = base ? base.replace(/^-o/, '').split(',').filter(Boolean) : [];
        return '-o' + [...list, ...extra].join(',');
      }
    }
    // The op timeout is fuse-native's last resort; our backend deadlines are far shorter.
    this.fuse = new TunedFuse(o.mountpoint, ops, { force: true, mkdir: false, timeout: 14_000 }) as FuseNative;
  }

  /** [uid, gid, pid] of the request being handled (valid until the handler's first await). */
  get context(): Uint32Array | undefined { return this.fuse.context; }

  mount(): Promise<void> {
    return new Promise((resolve, reject) => this.fuse.mount((err) => (err ? reject(err) : resolve())));
  }

  unmount(): Promise<void> {
    return new Promise((resolve, reject) => this.fuse.unmount((err) => (err ? reject(err) : resolve())));
  }
}

