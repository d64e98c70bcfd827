// Deadlines for backend calls. fuse-native answers ETIMEDOUT after 15 s and a handler that
// finishes after that can kill the process, so every backend call must give up well before.
import { FsError } from './errors.js';

/** Rejects with ETIMEDOUT if `p` has not settled after `ms`; the timer never keeps node alive. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  if (!Number.isFinite(ms) || ms <= 0) return p;
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new FsError('ETIMEDOUT', `${what}: no answer within ${ms} ms`)), ms);
    t.unref();
    p.then(
      (v) => { clearTimeout(t); resolve(v); },
      (e) => { clearTimeout(t); reject(e); },
    );
  });
}
