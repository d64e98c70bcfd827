// The one error type of cachefs. Every layer throws FsError carrying a POSIX errno name;
// adapters translate native errors at their edge (fromNodeError), and exactly one place
// (src/fuse/errno.ts) turns them into the negative numbers FUSE wants.
import { constants } from 'node:os';

export type ErrnoName = keyof typeof constants.errno;

export class FsError extends Error {
  readonly code: ErrnoName;
  constructor(code: ErrnoName, message?: string, options?: { cause?: unknown }) {
    super(message ?? code, options);
    this.code = code;
    this.name = 'FsError';
  }
}

export function isFsError(e: unknown, code?: ErrnoName): e is FsError {
  return e instanceof FsError && (code === undefined || e.code === code);
}

const KNOWN = new Set(Object.keys(constants.errno));

/**
 * The errno for a SQLite result code (better-sqlite3's SqliteError.code) that means the
 * cache's own disk failed: full (SQLITE_FULL, a write the database file or its WAL could not
 * grow for) or an I/O error (SQLITE_IOERR and its extended codes). Other SQLite codes are bugs.
 */
function sqliteErrno(code: string): ErrnoName | null {
  if (code === 'SQLITE_FULL') return 'ENOSPC';
  if (code === 'SQLITE_IOERR' || code.startsWith('SQLITE_IOERR_')) return 'EIO';
  return null;
}

/** Translates an error from Node's fs / net layer (or SQLite) into an FsError, keeping the cause. */
export function fromNodeError(e: unknown, what?: string): FsError {
  if (e instanceof FsError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && KNOWN.has(code)) {
    return new FsError(code as ErrnoName, what ? `${what}: ${code}` : code, { cause: e });
  }
  const sq = typeof code === 'string' ? sqliteErrno(code) : null;
  if (sq) {
    const msg = `the cache index: ${String((e as Error).message)} (${code as string})`;
    return new FsError(sq, what ? `${what}: ${msg}` : msg, { cause: e });
  }
  return new FsError('EIO', what ? `${what}: ${String((e as Error)?.message ?? e)}` : 'EIO', { cause: e });
}

/**
 * True when `e` says the cache's own storage failed, not the backend: SQLite could not write
 * the index or journal (its disk is full, or failing), directly or as the cause of an FsError,
 * or Node's fs answered ENOSPC/EDQUOT untranslated (backends always translate theirs, so an
 * FsError ENOSPC is the backend's answer and is not counted). Work that meets one must stop
 * and retry later, keeping every journal record: it is not the backend refusing anything.
 */
export function isCacheStorageError(e: unknown): boolean {
  const top = (e as { code?: unknown } | null)?.code;
  if (!(e instanceof FsError) && (top === 'ENOSPC' || top === 'EDQUOT')) return true;
  let x: unknown = e;
  for (let depth = 0; x && depth < 8; depth++) {
    const code = (x as { code?: unknown }).code;
    if (typeof code === 'string' && sqliteErrno(code) !== null) return true;
    x = (x as { cause?: unknown }).cause;
  }
  return false;
}

/** True when a cache storage error is the disk being full (rather than failing). */
export function isCacheFull(e: unknown): boolean {
  if (!isCacheStorageError(e)) return false;
  let x: unknown = e;
  for (let depth = 0; x && depth < 8; depth++) {
    const code = (x as { code?: unknown }).code;
    if (code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT') return true;
    x = (x as { cause?: unknown }).cause;
  }
  return false;
}

/** The positive errno number for a name (EIO for anything unknown). */
const BY_NUMBER = new Map<number, ErrnoName>(Object.entries(constants.errno).map(([k, v]) => [v, k as ErrnoName]));

/** The name of errno `n` (what a system call through koffi set), or undefined. */
export function errnoName(n: number): ErrnoName | undefined {
  return BY_NUMBER.get(n);
}

export function errnoNumber(code: ErrnoName): number {
  return constants.errno[code] ?? constants.errno.EIO;
}

/**
 * A user-facing error of the CLI or the configuration: a message plus a hint that says
 * how to fix it. The CLI's single exit point prints these; library code only throws them.
 */
export class UserError extends Error {
  readonly hint: string | undefined;
  readonly exitCode: number;
  constructor(message: string, opts: { hint?: string; exitCode?: number } = {}) {
    super(message);
    this.name = 'UserError';
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? 2;
  }
}
