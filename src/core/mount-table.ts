// The kernel's table of mounts, as the CLI and the daemon ask it: is a FUSE file system
// mounted here, and the recovery for a dead one ("Transport endpoint is not connected").
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

/** Lazily detaches a mount (the recovery for "Transport endpoint is not connected"). */
export async function forceUnmount(mountpoint: string): Promise<void> {
  await promisify(execFile)('fusermount3', ['-u', '-z', mountpoint]);
}

/** True when the kernel lists a FUSE mount at `mountpoint`. */
export async function isMounted(mountpoint: string): Promise<boolean> {
  const text = await readFile('/proc/self/mounts', 'utf8');
  const esc = mountpoint.replace(/ /g, '\\040');
  return text.split('\n').some((l) => {
    const parts = l.split(' ');
    return parts[1] === esc && (parts[2] ?? '').startsWith('fuse');
  });
}
