// Which cachefs mount a path of the file system is in, and where in it.
import path from 'node:path';
import { lookupMount } from '../daemon/registry.js';

/** The mount holding `p` (a mountpoint or a path inside one), and `p` from its root; null if none. */
export function mountOf(p: string): { mountpoint: string; rel: string } | null {
  const abs = path.resolve(p);
  for (let cur = abs; ;) {
    if (lookupMount(cur)) return { mountpoint: cur, rel: '/' + path.relative(cur, abs).split(path.sep).join('/') };
    const up = path.dirname(cur);
    if (up === cur) return null;
    cur = up;
  }
}
