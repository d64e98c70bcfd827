// The one place where errors become FUSE answers. FsError carries a POSIX errno name; other
// errors are translated by fromNodeError (Node's errno codes; SQLite's SQLITE_FULL, the cache
// disk is full, becomes ENOSPC); anything else is a bug or an unexpected failure: it becomes
// EIO and is logged.
import { FsError, errnoNumber, fromNodeError } from '../core/errors.js';
import { log } from '../core/log.js';

/** The negative errno of a FUSE reply for any thrown value. */
export function toFuseErrno(e: unknown, op: string): number {
  let fe: FsError;
  if (e instanceof FsError) fe = e;
  else {
    fe = fromNodeError(e);
    if (fe.code === 'EIO') log.error(`unexpected error in ${op}`, e);
  }
  if (fe.code === 'EIO') log.warn(`${op}: EIO`, fe.message);
  else log.debug(`${op}: ${fe.code}: ${fe.message}`);
  return -errnoNumber(fe.code);
}
