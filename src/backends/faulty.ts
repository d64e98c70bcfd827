// Fault injection on top of a real backend, for tests only: delays, errors and hangs on
// chosen operations. Enabled by the CACHEFS_FAULTS environment variable of the mount process
// (JSON, validated); never used otherwise.
import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { FsError, type ErrnoName } from '../core/errors.js';
import type { Backend, Creds, KeepBytes } from './types.js';

const OpName = z.enum(['getattr', 'lookup', 'readdir', 'readlink', 'read', 'write', 'commit', 'create', 'mkdir',
  'symlink', 'mknod', 'link', 'unlink', 'rmdir', 'rename', 'setattr', 'statfs', 'root']);
type OpName = z.infer<typeof OpName>;

export const FaultsSchema = z.object({
  /** Milliseconds to wait before each call of these operations. */
  delayMs: z.record(OpName, z.number().int().nonnegative()).optional(),
  /** Fail every call of these operations with this errno. */
  fail: z.record(OpName, z.string()).optional(),
  /** These operations never answer (the deadline must save the caller). */
  hang: z.array(OpName).optional(),
}).strict();
export type Faults = z.infer<typeof FaultsSchema>;

/** Where the faults come from: fixed (CACHEFS_FAULTS) or a file tests rewrite at run time. */
export type FaultSource = () => Faults;

/**
 * CACHEFS_FAULTS: JSON faults for the whole run. CACHEFS_FAULTS_FILE: a JSON file read again
 * whenever it changes (a stat per backend call: tests only), so a test can make the backend unreachable and
 * reachable again under a running mount. An unreadable file means no faults.
 */
export function faultsFromEnv(env: NodeJS.ProcessEnv): FaultSource | null {
  const raw = env.CACHEFS_FAULTS;
  if (raw) {
    const fixed = FaultsSchema.parse(JSON.parse(raw));
    return () => fixed;
  }
  const file = env.CACHEFS_FAULTS_FILE;
  if (!file) return null;
  let current: Faults = {};
  let mtime = -1;
  return () => {
    try {
      const st = statSync(file);
      if (st.mtimeMs !== mtime) {
        mtime = st.mtimeMs;
        current = FaultsSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
      }
    } catch {
      current = {};
      mtime = -1;
    }
    return current;
  };
}

export function withFaults(inner: Backend, source: FaultSource): Backend {
  const wrap = <A extends unknown[], R>(op: OpName, fn: (...a: A) => Promise<R>) => async (...a: A): Promise<R> => {
    const faults = source();
    const d = faults.delayMs?.[op];
    if (d) await new Promise((r) => setTimeout(r, d));
    if (faults.hang?.includes(op)) return new Promise<R>(() => undefined);
    const f = faults.fail?.[op];
    if (f) throw new FsError(f as ErrnoName, `injected fault on ${op}`);
    return fn(...a);
  };
  return {
    get fsid() { return inner.fsid; },
    get description() { return inner.description; },
    ...(inner.commitOnClose ? { commitOnClose: true } : {}),
    ...(inner.needsGroups ? { needsGroups: true } : {}),
    root: wrap('root', () => inner.root()),
    getattr: wrap('getattr', (fh: Buffer) => inner.getattr(fh)),
    lookup: wrap('lookup', (d: Buffer, n: string) => inner.lookup(d, n)),
    readdir: wrap('readdir', (d: Buffer) => inner.readdir(d)),
    readlink: wrap('readlink', (fh: Buffer) => inner.readlink(fh)),
    read: wrap('read', (fh: Buffer, o: number, l: number, into?: Buffer) => inner.read(fh, o, l, into)),
    ...(inner.readLent ? { readLent: wrap('read', (fh: Buffer, o: number, l: number) => inner.readLent!(fh, o, l)) } : {}),
    // A kernel copy is a read: faults injected on reads apply to it too.
    ...(inner.copyInto ? { copyInto: wrap('read', (fh: Buffer, fd: number, o: number, l: number) => inner.copyInto!(fh, fd, o, l)) } : {}),
    write: wrap('write', (fh: Buffer, o: number, d: Buffer, c?: Creds, k?: KeepBytes) => inner.write(fh, o, d, c, k)),
    commit: wrap('commit', (fh: Buffer) => inner.commit(fh)),
    create: wrap('create', (d: Buffer, n: string, m: number, c, o) => inner.create(d, n, m, c, o)),
    mkdir: wrap('mkdir', (d: Buffer, n: string, m: number, c) => inner.mkdir(d, n, m, c)),
    symlink: wrap('symlink', (d: Buffer, n: string, t: string, c) => inner.symlink(d, n, t, c)),
    mknod: wrap('mknod', (d: Buffer, n: string, m: number, r: number, c) => inner.mknod(d, n, m, r, c)),
    link: wrap('link', (fh: Buffer, d: Buffer, n: string, c?: Creds) => inner.link(fh, d, n, c)),
    unlink: wrap('unlink', (d: Buffer, n: string, c?: Creds) => inner.unlink(d, n, c)),
    rmdir: wrap('rmdir', (d: Buffer, n: string, c?: Creds) => inner.rmdir(d, n, c)),
    rename: wrap('rename', (a: Buffer, an: string, b: Buffer, bn: string, c?: Creds) => inner.rename(a, an, b, bn, c)),
    setattr: wrap('setattr', (fh: Buffer, s, c?: Creds) => inner.setattr(fh, s, c)),
    statfs: wrap('statfs', () => inner.statfs()),
    ...(inner.watch ? { watch: (...a: Parameters<NonNullable<Backend['watch']>>) => inner.watch!(...a) } : {}),
    ...(inner.notifiesChanges ? { notifiesChanges: () => inner.notifiesChanges!() } : {}),
    close: () => inner.close(),
    ...(inner.info ? { info: () => inner.info!() } : {}),
  };
}
