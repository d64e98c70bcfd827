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

/** Translates an error from Node's fs / net layer into an FsError, keeping the cause. */
export function fromNodeError(e: unknown, what?: string): FsError {
  if (e instanceof FsError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && KNOWN.has(code)) {
    return new FsError(code as ErrnoName, what ? `${what}: ${code}` : code, { cause: e });
  }
  return new FsError('EIO', what ? `${what}: ${String((e as Error)?.message ?? e)}` : 'EIO', { cause: e });
}

/** The positive errno number for a name (EIO for anything unknown). */
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
