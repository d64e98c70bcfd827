// Deadlines for backend calls: no application may hang on the mount, so every backend call
// gives up after its deadline (backendTimeoutMs, at most 10 s) and the mount goes disconnected.
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
