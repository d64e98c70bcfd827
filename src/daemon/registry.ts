// Where the CLI finds a running mount: a small record per mountpoint, in a private runtime
// directory (0700), naming the cache directory (which holds the control socket). Written by
// the mount process with temp + rename, removed when it unmounts cleanly.
import { promises as fsp, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { MountInfoSchema, type MountInfo } from './protocol.js';

export function registryDir(): string {
  const base = process.env.CACHEFS_RUNTIME_DIR
    ?? (process.env.XDG_RUNTIME_DIR ? path.join(process.env.XDG_RUNTIME_DIR, 'cachefs')
      : path.join(os.tmpdir(), `cachefs-${process.getuid?.() ?? 'user'}`));
  return base;
}

function entryFile(mountpoint: string): string {
  const h = createHash('sha256').update(path.resolve(mountpoint)).digest('hex').slice(0, 32);
  return path.join(registryDir(), `${h}.json`);
}

export async function register(info: MountInfo): Promise<void> {
  const dir = registryDir();
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = entryFile(info.mountpoint);
  const tmp = `${file}.${process.pid}.tmp`;
  await fsp.writeFile(tmp, JSON.stringify(info) + '\n', { mode: 0o600 });
  await fsp.rename(tmp, file);
}

/**
 * Removes this process's record for `mountpoint`. A record another process has written
 * since (a new mount on the same mountpoint, made after ours was unmounted from outside)
 * stays: the CLI finds that mount by it.
 */
export async function unregister(mountpoint: string): Promise<void> {
  const now = lookupMount(mountpoint);
  if (now && now.pid !== process.pid) return;
  await fsp.rm(entryFile(mountpoint), { force: true });
}

/** The record for a mountpoint, or null if none (or unreadable: treated as absent). */
export function lookupMount(mountpoint: string): MountInfo | null {
  try {
    const r = MountInfoSchema.safeParse(JSON.parse(readFileSync(entryFile(mountpoint), 'utf8')));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

export function processAlive(pid: number): boolean {
  try { process.kill(pid, 0); } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
  // kill(pid, 0) also succeeds on a zombie (exited, not yet reaped by its parent): not alive.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false; // gone between the two looks
  }
}
