// The cache directory as the CLI and the mount process both see it: made 0700, and claimed
// by one live mount process at a time through its pid file. Kept apart from daemon.ts so
// that the CLI checks and prepares a cache directory without loading the whole mount.
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { PID_FILE } from './protocol.js';
import { processAlive } from './registry.js';

export async function prepareCacheDir(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  await fsp.chmod(dir, 0o700);
}

/** The pid of a live mount process using this cache directory, or null. */
function cacheDirUser(cacheDir: string): number | null {
  try {
    const pid = Number(readFileSync(path.join(cacheDir, PID_FILE), 'utf8').trim());
    return pid && pid !== process.pid && processAlive(pid) ? pid : null;
  } catch {
    return null;
  }
}

/** Throws the user's error when another live mount process uses this cache directory. */
export function refuseIfInUse(cacheDir: string): void {
  const other = cacheDirUser(cacheDir);
  if (other !== null) {
    throw new UserError(`the cache directory ${cacheDir} is in use by mount process ${other}`, {
      hint: 'unmount the other mount first, or give this one its own --cache-dir',
    });
  }
}

/** Makes this process the cache directory's user; refuses while another live one is. */
export async function claimPidFile(cacheDir: string): Promise<string> {
  const file = path.join(cacheDir, PID_FILE);
  refuseIfInUse(cacheDir);
  await fsp.writeFile(file, `${process.pid}\n`, { mode: 0o600 });
  return file;
}
