// The cache's lost+found: where a conflict resolution puts the variants it did not keep
// (src/conflict/resolve.ts keepDiscarded), instead of deleting them. One entry per discarded
// variant, directly in <cacheDir>/lost+found, named `ID-VARIANT-NAME` (the conflict's id,
// client|server|base|resolved, and the conflicted path's last name). The mount shows it
// read-only at <mountpoint>/.cachefs/lost+found; `cachefs lost-found` lists and empties it.
//
// What must stay true:
// - nothing here removes anything but a direct entry of lost+found named by the caller (or,
//   to empty it, the entries listed at that moment): an entry's name never leads elsewhere
//   (no '/', '.', '..'), and symlinks are removed, never followed;
// - the mount process may move a new entry in meanwhile: emptying leaves such an entry alone.
import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { FsError, fromNodeError } from '../core/errors.js';
import { fitName } from '../core/names.js';

export const LOST_FOUND = 'lost+found';

const VARIANTS = ['client', 'server', 'base', 'resolved'] as const;
const ENTRY_NAME = new RegExp(`^([1-9][0-9]*)-(${VARIANTS.join('|')})-(.+)$`, 's');

export function lostFoundDir(cacheDir: string): string {
  return path.join(cacheDir, LOST_FOUND);
}

/** One entry of lost+found: what it is, and what it was (when its name says). */
export interface LostEntry {
  /** Its name in lost+found. */
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  /** Bytes of file data in it (a directory: every regular file under it). */
  bytes: number;
  /** When it was moved there (its ctime), ISO. */
  movedAt: string;
  /**
   * The conflict it came from, the variant it was, and the conflicted path's last name (null:
   * not named so; a name near NAME_MAX is shortened to fit the entry's name).
   */
  conflict: number | null;
  variant: (typeof VARIANTS)[number] | null;
  original: string | null;
}

function typeOf(st: Stats): LostEntry['type'] {
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
}

/** Bytes of regular files at `p` (a directory: under it), symlinks not followed. */
async function bytesAt(p: string, st: Stats): Promise<number> {
  if (st.isFile()) return st.size;
  if (!st.isDirectory()) return 0;
  let n = 0;
  for (const name of await fsp.readdir(p).catch(() => [] as string[])) {
    const child = path.join(p, name);
    const cst = await fsp.lstat(child).catch(() => null);
    if (cst) n += await bytesAt(child, cst);
  }
  return n;
}

async function entryOf(dir: string, name: string): Promise<LostEntry | null> {
  let st: Stats;
  try {
    st = await fsp.lstat(path.join(dir, name));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null; // removed meanwhile
    throw fromNodeError(e, `lost+found/${name}`);
  }
  const m = ENTRY_NAME.exec(name);
  return {
    name, type: typeOf(st), bytes: await bytesAt(path.join(dir, name), st), movedAt: st.ctime.toISOString(),
    conflict: m ? Number(m[1]) : null,
    variant: m ? (m[2] as LostEntry['variant']) : null,
    original: m ? m[3]! : null,
  };
}

/** The entries of a cache's lost+found, oldest first (none when it does not exist). */
export async function listLostFound(cacheDir: string): Promise<LostEntry[]> {
  const dir = lostFoundDir(cacheDir);
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromNodeError(e, 'lost+found');
  }
  const out: LostEntry[] = [];
  for (const name of names) {
    const e = await entryOf(dir, name);
    if (e) out.push(e);
  }
  return out.sort((a, b) => a.movedAt.localeCompare(b.movedAt) || a.name.localeCompare(b.name));
}

/** Whether `name` can only mean a direct entry of lost+found. */
export function isEntryName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

/**
 * Removes entries of lost+found by name (a directory with everything in it); the entries
 * removed, in the order given. A name that is not an entry there throws FsError ENOENT
 * (EINVAL: not an entry name at all) before anything is removed.
 */
export async function removeLostFound(cacheDir: string, names: string[]): Promise<LostEntry[]> {
  const dir = lostFoundDir(cacheDir);
  const entries: LostEntry[] = [];
  for (const name of names) {
    if (!isEntryName(name)) throw new FsError('EINVAL', `"${name}" is not a name in lost+found`);
    const e = await entryOf(dir, name);
    if (!e) throw new FsError('ENOENT', `lost+found has no entry "${name}"`);
    entries.push(e);
  }
  return removeEntries(dir, entries);
}

/** Empties lost+found: removes every entry it has now; the entries removed. */
export async function emptyLostFound(cacheDir: string): Promise<LostEntry[]> {
  return removeEntries(lostFoundDir(cacheDir), await listLostFound(cacheDir));
}

async function removeEntries(dir: string, entries: LostEntry[]): Promise<LostEntry[]> {
  const removed: LostEntry[] = [];
  for (const e of entries) {
    const p = path.join(dir, e.name);
    try {
      // A variant keeps the modes it had: a read-only directory in it would stop rm, as it
      // stops `rm -rf` (the owner may always chmod it).
      if (e.type === 'dir') await ownerWritable(p);
      await fsp.rm(p, { recursive: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // gone meanwhile: nothing to do
      throw fromNodeError(err, `removing lost+found/${e.name}`);
    }
    removed.push(e);
  }
  return removed;
}

/** Gives the owner rwx on directory `p` and every directory under it (symlinks not followed). */
async function ownerWritable(p: string): Promise<void> {
  const st = await fsp.lstat(p);
  if (!st.isDirectory()) return;
  if ((st.mode & 0o700) !== 0o700) await fsp.chmod(p, (st.mode & 0o7777) | 0o700);
  for (const name of await fsp.readdir(p)) await ownerWritable(path.join(p, name));
}

/**
 * The lost+found name of variant `variant` of conflict `id` on a path ending in `base`: `base`
 * is shortened (whole characters) when the name would pass NAME_MAX bytes.
 */
export function lostFoundName(id: number, variant: string, base: string): string {
  return fitName(`${id}-${variant}-`, base || 'root');
}
