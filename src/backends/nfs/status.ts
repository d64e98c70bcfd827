// nfsstat3 (RFC 1813 §2.6) and mountstat3 to errno names: the one table. What the codes
// mean to the cache above:
// - STALE / BADHANDLE: the object is gone on the server. ESTALE tells the cache to forget
//   the handle; it must never delete dirty data because of it (the journal keeps it).
// - JUKEBOX: the server is busy fetching data (HSM); the adapter retries until the deadline.
// - NOT_SYNC: a guarded SETATTR found the object changed since its base: a conflict.
import { FsError, type ErrnoName } from '../../core/errors.js';

export const NFS3_OK = 0;
export const NFS3ERR_NOENT = 2;
export const NFS3ERR_EXIST = 17;
export const NFS3ERR_NOTSUPP = 10004;
export const NFS3ERR_BAD_COOKIE = 10003;
export const NFS3ERR_TOOSMALL = 10005;
export const NFS3ERR_JUKEBOX = 10008;
export const NFS3ERR_NOT_SYNC = 10002;

const NFS3_ERRNO: ReadonlyMap<number, [ErrnoName, string]> = new Map([
  [1, ['EPERM', 'NFS3ERR_PERM']],
  [2, ['ENOENT', 'NFS3ERR_NOENT']],
  [5, ['EIO', 'NFS3ERR_IO']],
  [6, ['ENXIO', 'NFS3ERR_NXIO']],
  [13, ['EACCES', 'NFS3ERR_ACCES']],
  [17, ['EEXIST', 'NFS3ERR_EXIST']],
  [18, ['EXDEV', 'NFS3ERR_XDEV']],
  [19, ['ENODEV', 'NFS3ERR_NODEV']],
  [20, ['ENOTDIR', 'NFS3ERR_NOTDIR']],
  [21, ['EISDIR', 'NFS3ERR_ISDIR']],
  [22, ['EINVAL', 'NFS3ERR_INVAL']],
  [27, ['EFBIG', 'NFS3ERR_FBIG']],
  [28, ['ENOSPC', 'NFS3ERR_NOSPC']],
  [30, ['EROFS', 'NFS3ERR_ROFS']],
  [31, ['EMLINK', 'NFS3ERR_MLINK']],
  [63, ['ENAMETOOLONG', 'NFS3ERR_NAMETOOLONG']],
  [66, ['ENOTEMPTY', 'NFS3ERR_NOTEMPTY']],
  [69, ['EDQUOT', 'NFS3ERR_DQUOT']],
  [70, ['ESTALE', 'NFS3ERR_STALE']],
  [71, ['EIO', 'NFS3ERR_REMOTE (too many levels of remote in path)']],
  [10001, ['ESTALE', 'NFS3ERR_BADHANDLE']],
  [10002, ['EAGAIN', 'NFS3ERR_NOT_SYNC (changed on the server since)']],
  [10003, ['EIO', 'NFS3ERR_BAD_COOKIE']],
  [10004, ['EOPNOTSUPP', 'NFS3ERR_NOTSUPP']],
  [10005, ['EINVAL', 'NFS3ERR_TOOSMALL']],
  [10006, ['EIO', 'NFS3ERR_SERVERFAULT']],
  [10007, ['EINVAL', 'NFS3ERR_BADTYPE']],
  [10008, ['EAGAIN', 'NFS3ERR_JUKEBOX']],
]);

export function nfsStatusName(stat: number): string {
  return NFS3_ERRNO.get(stat)?.[1] ?? `nfsstat3 ${stat}`;
}

/** The error for a non-OK nfsstat3; unknown codes become EIO naming the number. */
export function nfsError(stat: number, what: string): FsError {
  const known = NFS3_ERRNO.get(stat);
  return new FsError(known?.[0] ?? 'EIO', `${what}: ${known?.[1] ?? `unknown nfsstat3 ${stat}`}`);
}

const MNT3_ERRNO: ReadonlyMap<number, [ErrnoName, string]> = new Map([
  [1, ['EPERM', 'MNT3ERR_PERM (not the owner)']], [2, ['ENOENT', 'MNT3ERR_NOENT (no such directory)']],
  [5, ['EIO', 'MNT3ERR_IO']], [13, ['EACCES', 'MNT3ERR_ACCES (not exported to this client, or no such export)']],
  [20, ['ENOTDIR', 'MNT3ERR_NOTDIR']], [22, ['EINVAL', 'MNT3ERR_INVAL']], [63, ['ENAMETOOLONG', 'MNT3ERR_NAMETOOLONG']],
  [10004, ['EOPNOTSUPP', 'MNT3ERR_NOTSUPP']], [10006, ['EIO', 'MNT3ERR_SERVERFAULT']],
]);

export function mountError(stat: number, what: string): FsError {
  const known = MNT3_ERRNO.get(stat);
  return new FsError(known?.[0] ?? 'EIO', `${what}: ${known?.[1] ?? `mountstat3 ${stat}`}`);
}
