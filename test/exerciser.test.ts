// A seeded random-operation exerciser: every operation is done on the mount and on a plain
// reference directory; both must agree on the result (bytes, or errno) after every step,
// and the whole trees (names, types, sizes, modes, link counts, contents, link targets)
// must be identical at checkpoints, after a remount, and on the backend itself.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { mountFresh, type Mounted, BACKEND_KINDS, skipKind } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';
import { mulberry32 } from './helpers/rng.js';


const SEED = Number(process.env.CACHEFS_EXERCISER_SEED ?? 20261121);
const OPS = Number(process.env.CACHEFS_EXERCISER_OPS ?? 6000);

function rng(seed: number) {
  const next = mulberry32(seed);
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
    bytes: (n: number) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = Math.floor(next() * 256);
      return b;
    },
  };
}

type Outcome = { ok: true; value?: unknown } | { ok: false; code: string };

async function attempt(fn: () => Promise<unknown>): Promise<Outcome> {
  try {
    const value = await fn();
    return { ok: true, value: Buffer.isBuffer(value) ? value.toString('base64') : value };
  } catch (e) {
    return { ok: false, code: (e as NodeJS.ErrnoException).code ?? String(e) };
  }
}

interface Entry { type: string; size: number; mode: number; nlink: number; hash?: string; target?: string }

async function snapshot(root: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  async function walk(rel: string): Promise<void> {
    const names = (await fsp.readdir(path.join(root, rel))).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const p = path.join(root, r);
      const st = await fsp.lstat(p);
      const e: Entry = {
        type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other',
        size: st.isDirectory() ? 0 : st.size, mode: st.mode, nlink: st.isDirectory() ? 0 : st.nlink,
      };
      if (st.isFile()) e.hash = createHash('sha1').update(await fsp.readFile(p)).digest('hex');
      if (st.isSymbolicLink()) e.target = await fsp.readlink(p);
      out.set(r, e);
      if (st.isDirectory()) await walk(r);
    }
  }
  await walk('');
  return out;
}

function diff(a: Map<string, Entry>, b: Map<string, Entry>, labelA: string, labelB: string): string[] {
  const problems: string[] = [];
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w) problems.push(`${k}: in ${labelA} only`);
    else if (JSON.stringify(v) !== JSON.stringify(w)) problems.push(`${k}: ${labelA} ${JSON.stringify(v)} vs ${labelB} ${JSON.stringify(w)}`);
  }
  for (const k of b.keys()) if (!a.has(k)) problems.push(`${k}: in ${labelB} only`);
  return problems;
}

for (const kind of BACKEND_KINDS) describe(`random-operation exerciser (${kind} backend)`, { skip: skipKind(kind) }, () => {
  let m: Mounted;
  let srv: NfsServer | undefined;
  after(async () => { await m?.cleanup(); await srv?.dispose(); });

  it(`${OPS} seeded operations leave the mount identical to a reference directory (seed ${SEED})`, async () => {
    // The default kernel timeouts (1 s): one kernel inode per object keeps every name of a
    // hard link current, as an independent exerciser run with the defaults would see it.
    srv = kind === 'nfs' ? await startNfsServer('exerciser') : undefined;
    m = await mountFresh('exerciser', { nfs: srv });
    const ref = path.join(m.root, 'reference');
    await fsp.mkdir(ref);
    const r = rng(SEED);
    const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'long name with spaces', 'ünïcødé'];
    const dirs = ['', 'x', 'y', 'x/z'];
    const randPath = () => {
      const d = r.pick(dirs);
      return d ? `${d}/${r.pick(names)}` : r.pick(names);
    };
    const ops: Record<string, (root: string, args: Record<string, unknown>) => Promise<unknown>> = {
      write: async (root, a) => {
        const h = await fsp.open(path.join(root, a.p as string), (a.flags as string));
        try { await h.write(a.data as Buffer, 0, (a.data as Buffer).length, a.off as number); } finally { await h.close(); }
      },
      read: async (root, a) => {
        const h = await fsp.open(path.join(root, a.p as string), 'r');
        try {
          const b = Buffer.alloc(a.len as number);
          const { bytesRead } = await h.read(b, 0, b.length, a.off as number);
          return b.subarray(0, bytesRead);
        } finally { await h.close(); }
      },
      truncate: (root, a) => fsp.truncate(path.join(root, a.p as string), a.size as number),
      mkdir: (root, a) => fsp.mkdir(path.join(root, a.p as string), { mode: a.mode as number }),
      rmdir: (root, a) => fsp.rmdir(path.join(root, a.p as string)),
      unlink: (root, a) => fsp.unlink(path.join(root, a.p as string)),
      rename: (root, a) => fsp.rename(path.join(root, a.p as string), path.join(root, a.q as string)),
      link: (root, a) => fsp.link(path.join(root, a.p as string), path.join(root, a.q as string)),
      symlink: (root, a) => fsp.symlink(a.target as string, path.join(root, a.p as string)),
      readlink: (root, a) => fsp.readlink(path.join(root, a.p as string)),
      chmod: (root, a) => fsp.chmod(path.join(root, a.p as string), a.mode as number),
      utimes: async (root, a) => {
        await fsp.utimes(path.join(root, a.p as string), a.t as number, a.t as number);
        const st = await fsp.stat(path.join(root, a.p as string));
        return st.mtimeMs;
      },
      stat: async (root, a) => {
        const st = await fsp.lstat(path.join(root, a.p as string));
        return { size: st.isDirectory() ? 0 : st.size, mode: st.mode, nlink: st.isDirectory() ? 0 : st.nlink };
      },
      readdir: async (root, a) => (await fsp.readdir(path.join(root, a.p as string))).sort(),
    };
    const kinds = Object.keys(ops);
    const weights: Record<string, number> = { write: 8, read: 6, truncate: 2, mkdir: 2, rmdir: 1, unlink: 2, rename: 3,
      link: 1, symlink: 1, readlink: 1, chmod: 1, utimes: 1, stat: 4, readdir: 2 };
    const bag = kinds.flatMap((k) => Array(weights[k] ?? 1).fill(k) as string[]);
    let agreed = 0;
    const succeeded = new Map<string, number>();
    for (let i = 0; i < OPS; i++) {
      const kind = r.pick(bag);
      const a: Record<string, unknown> = { p: randPath(), q: randPath() };
      switch (kind) {
        case 'write': {
          const big = r.next() < 0.05;
          a.data = r.bytes(big ? 150_000 + r.int(200_000) : 1 + r.int(9000));
          a.off = r.pick([0, r.int(20_000), r.int(400_000)]);
          a.flags = r.pick(['w', 'a', 'r+', 'wx']);
          if (a.flags === 'a') a.off = 0; // Node's 'a' ignores positions anyway on Linux
          break;
        }
        case 'read': a.off = r.int(300_000); a.len = 1 + r.int(200_000); break;
        case 'truncate': a.size = r.pick([0, r.int(5000), r.int(500_000)]); break;
        case 'mkdir': a.mode = r.pick([0o755, 0o700, 0o775]); a.p = r.next() < 0.5 ? r.pick(dirs.filter(Boolean)) : a.p; break;
        case 'rmdir': a.p = r.next() < 0.6 ? r.pick(dirs.filter(Boolean)) : a.p; break;
        case 'chmod': a.mode = r.pick([0o644, 0o600, 0o755, 0o444, 0o4755]); break;
        case 'utimes': a.t = 1_000_000_000 + r.int(500_000_000); break;
        case 'symlink': a.target = r.pick(['a', '../b', '/nonexistent', 'x/z/c']); break;
        case 'readdir': a.p = r.pick(dirs); break;
      }
      const want = await attempt(() => ops[kind]!(ref, a));
      const got = await attempt(() => ops[kind]!(m.mnt, a));
      assert.deepEqual(got, want, `op ${i} ${kind} ${JSON.stringify({ ...a, data: undefined })}`);
      agreed++;
      if (want.ok) succeeded.set(kind, (succeeded.get(kind) ?? 0) + 1);
      if (i % 1500 === 1499) {
        const problems = diff(await snapshot(ref), await snapshot(m.mnt), 'reference', 'mount');
        assert.deepEqual(problems, [], `trees differ after op ${i}`);
      }
    }
    assert.equal(agreed, OPS);
    // Not vacuous: every kind of operation succeeded many times, failures are the minority.
    for (const k of kinds) assert.ok((succeeded.get(k) ?? 0) >= OPS / 1000, `${k} succeeded ${succeeded.get(k) ?? 0} times`);
    const okTotal = [...succeeded.values()].reduce((x, y) => x + y, 0);
    assert.ok(okTotal > OPS * 0.5, `only ${okTotal} of ${OPS} operations succeeded`);
    const refSnap = await snapshot(ref);
    assert.ok(refSnap.size > 5, 'the exerciser built a tree worth comparing');
    assert.deepEqual(diff(refSnap, await snapshot(m.mnt), 'reference', 'mount'), []);
    assert.deepEqual(diff(refSnap, await snapshot(m.backend), 'reference', 'backend'), []);
    await m.remount();
    assert.deepEqual(diff(refSnap, await snapshot(m.mnt), 'reference', 'mount after remount'), []);
  });
});
