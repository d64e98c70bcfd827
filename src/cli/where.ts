// Which cachefs mount a path of the file system is in, and where in it; and the one error
// every command gives for a path that is not in a mount (the same words, the same exit status).
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { lookupMount } from '../daemon/registry.js';

/**
 * The exit status of every command given a mountpoint that is not a (live) cachefs mount, or
 * a path in none: 1, as for the other failures of what was asked (2 is for wrong usage: an
 * unknown flag, a bad value, a bad configuration). README "The command line" says so.
 */
export const EXIT_NOT_A_MOUNT = 1;

/** `p` is not a cachefs mount (a mountpoint was asked for); `hint` says what to do instead. */
export function notAMount(p: string, hint: string): UserError {
  return new UserError(`${path.resolve(p)} is not a cachefs mount`, { hint, exitCode: EXIT_NOT_A_MOUNT });
}

/** `p` is in no cachefs mount (a path inside one was asked for). */
export function notInAMount(p: string, hint: string): UserError {
  return new UserError(`${path.resolve(p)} is not in a cachefs mount`, { hint, exitCode: EXIT_NOT_A_MOUNT });
}

/** The mount holding `p` (a mountpoint or a path inside one), and `p` from its root; null if none. */
export function mountOf(p: string): { mountpoint: string; rel: string } | null {
  const abs = path.resolve(p);
  for (let cur = abs; ;) {
    if (lookupMount(cur)) return { mountpoint: cur, rel: '/' + path.relative(cur, abs).split(path.sep).join('/') };
    const up = path.dirname(cur);
    if (up === cur) return null;
    cur = up;
  }
}

/** mountOf, or the not-in-a-mount error with `hint`. */
export function requireMountOf(p: string, hint: string): { mountpoint: string; rel: string } {
  const where = mountOf(p);
  if (!where) throw notInAMount(p, hint);
  return where;
}
