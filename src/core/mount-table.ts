// The kernel's table of mounts, as the CLI and the daemon ask it: is a FUSE file system
// mounted here, and the recovery for a dead one ("Transport endpoint is not connected").
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const CONNECTIONS = '/sys/fs/fuse/connections';

/**
 * Lazily detaches a mount (the recovery for "Transport endpoint is not connected"), after
 * aborting its connection: a mount whose process is alive but hung then fails its
 * requests at once (ENOTCONN) instead of holding every process that touches it.
 */
export async function forceUnmount(mountpoint: string): Promise<void> {
  const n = connectionOf(mountpoint);
  if (n !== null) await abortConnection(n);
  await detachMount(mountpoint);
}

/** Detaches a mount lazily, its connection left alive: open files are still served. */
export async function detachMount(mountpoint: string): Promise<void> {
  await promisify(execFile)('fusermount3', ['-u', '-z', mountpoint]);
}

/**
 * The number of the FUSE connection mounted on `mountpoint` (its device minor, from
 * /proc/self/mountinfo: no request to the mount itself), or null.
 */
export function connectionOf(mountpoint: string): number | null {
  try {
    const unescape = (p: string) => p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    let found: number | null = null;
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const f = line.split(' ');
      const sep = f.indexOf('-');
      if (sep < 0 || !f[sep + 1]?.startsWith('fuse') || unescape(f[4] ?? '') !== mountpoint) continue;
      const [major, minor] = (f[2] ?? '').split(':').map(Number);
      if (major === 0 && minor !== undefined) found = minor; // the last one mounted there wins
    }
    return found;
  } catch {
    return null;
  }
}

/**
 * Aborts FUSE connection `n` (`echo 1 > /sys/fs/fuse/connections/N/abort`): every request
 * waiting on it fails with ENOTCONN and its server's reads end. Mounts fusectl there first
 * when root and it is missing. Quiet when the connection is gone already.
 */
export async function abortConnection(n: number): Promise<void> {
  const file = `${CONNECTIONS}/${n}/abort`;
  try {
    if (!existsSync(`${CONNECTIONS}/${n}`) && process.getuid?.() === 0) {
      await promisify(execFile)('mount', ['-t', 'fusectl', 'fusectl', CONNECTIONS]).catch(() => undefined);
    }
    if (!existsSync(`${CONNECTIONS}/${n}`)) return;
    await writeFile(file, '1');
  } catch {
    // Not ours to abort (another user's), or gone: the lazy detach still happens.
  }
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
