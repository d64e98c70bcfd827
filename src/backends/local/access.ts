// Permission checks for the local backend, made for the user a change is applied for.
//
// The adapter runs as the mount (usually root), so the kernel would let it change anything.
// A change replayed from the journal was made by some process whose rights were checked by
// the kernel against what the cache showed then; the backend may have changed since (the
// owner made the file 0644 meanwhile). These are the checks the kernel makes on a local file
// system (inode_permission, may_delete, setattr_prepare), applied at the time of the change,
// so a refused change becomes a conflict exactly as an NFS server's NFS3ERR_ACCES does.
//
// What must stay true: root (uid 0) may do everything (CAP_DAC_OVERRIDE, CAP_FOWNER,
// CAP_CHOWN); the owner of a file may always write it (as NFS servers allow, so a file
// created read-only can still be written through the descriptor that created it: a write
// is checked at open by the kernel, not at each write(), and the owner could chmod anyway).
import { FsError } from '../../core/errors.js';
import type { Creds, SetAttr } from '../types.js';

/** What the checks read of an object: st_mode (with its type bits), st_uid, st_gid. */
export interface Owned { mode: number; uid: number; gid: number }

const W = 2;
const X = 1;
const S_ISVTX = 0o1000;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

function inGroup(c: Creds, gid: number): boolean {
  return c.gid === gid || (c.groups ?? []).includes(gid);
}

/** The rwx class that applies to `c` (owner, else group, else other), as POSIX picks it. */
function permits(o: Owned, c: Creds, want: number): boolean {
  if (c.uid === 0) return true;
  const bits = c.uid === o.uid ? (o.mode >> 6) & 7 : inGroup(c, o.gid) ? (o.mode >> 3) & 7 : o.mode & 7;
  return (bits & want) === want;
}

function refuse(code: 'EACCES' | 'EPERM', c: Creds, what: string): never {
  throw new FsError(code, `uid ${c.uid} may not ${what}`);
}

/** Writing a file's data (or truncating it). */
export function checkWrite(file: Owned, c: Creds): void {
  if (!permits(file, c, W) && c.uid !== file.uid) refuse('EACCES', c, 'write this file');
}

/** Adding a name to a directory (create, mkdir, symlink, mknod, link, rename's target). */
export function checkAddEntry(dir: Owned, c: Creds): void {
  if (!permits(dir, c, W | X)) refuse('EACCES', c, 'add names to this directory');
}

/** Removing `victim`'s name from `dir` (unlink, rmdir, rename's source or replaced target). */
export function checkRemoveEntry(dir: Owned, victim: Owned, c: Creds): void {
  if (!permits(dir, c, W | X)) refuse('EACCES', c, 'remove names from this directory');
  // The sticky bit (/tmp): only the owner of the entry or of the directory may remove it.
  if ((dir.mode & S_ISVTX) && c.uid !== 0 && c.uid !== dir.uid && c.uid !== victim.uid) {
    refuse('EPERM', c, 'remove an entry of another user from a sticky directory');
  }
}

/** Renaming `obj` from `fromDir` to `toDir` (replacing `target` there, if any). */
export function checkRename(fromDir: Owned, obj: Owned, toDir: Owned, target: Owned | null, c: Creds): void {
  checkRemoveEntry(fromDir, obj, c);
  checkAddEntry(toDir, c);
  if (target) checkRemoveEntry(toDir, target, c);
  // A directory moved to another parent has its ".." rewritten: that needs write access to it.
  const moved = fromDir !== toDir;
  if (moved && (obj.mode & S_IFMT) === S_IFDIR && !permits(obj, c, W)) refuse('EACCES', c, 'move this directory to another parent');
}

/** A setattr (chmod, chown, truncate, utimes) of `o`. */
export function checkSetattr(o: Owned, set: SetAttr, c: Creds): void {
  if (c.uid === 0) return;
  const owner = c.uid === o.uid;
  if (set.mode !== undefined && !owner) refuse('EPERM', c, 'change the mode of a file it does not own');
  if (set.uid !== undefined && set.uid !== o.uid) refuse('EPERM', c, 'give a file away');
  if (set.gid !== undefined && set.gid !== o.gid && !(owner && inGroup(c, set.gid))) {
    refuse('EPERM', c, `change the group to ${set.gid}`);
  }
  if (set.size !== undefined) checkWrite(o, c);
  const times = [set.atime, set.mtime];
  // An explicit time needs ownership; "now" (touch) needs ownership or write access.
  if (times.some((t) => t?.kind === 'set') && !owner) refuse('EPERM', c, 'set the times of a file it does not own');
  if (times.some((t) => t?.kind === 'now') && !owner && !permits(o, c, W)) refuse('EACCES', c, 'touch this file');
}
