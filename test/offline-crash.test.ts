// Crash safety of disconnected operation: kill -9 of the mount process at seeded random points
// while working offline and while replaying the journal. After a remount (which replays what
// is left) and a sync, the backend must hold exactly what an uninterrupted run gives, and
// every operation acknowledged before the kill must be in it.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { mountFresh, sleep, type Mounted } from './helpers/cachefs.js';
import { sendControl } from '../src/daemon/control.js';
import { mulberry32 } from './helpers/rng.js';

const SEED = Number(process.env.CACHEFS_CRASH_SEED ?? 20261122);
const WORK_POINTS = Number(process.env.CACHEFS_CRASH_WORK_POINTS ?? 10);
const REPLAY_POINTS = Number(process.env.CACHEFS_CRASH_REPLAY_POINTS ?? 7);
const OPS = 40;

function rng(seed: number): { next(): number; int(n: number): number } {
  const next = mulberry32(seed);
  return { next, int: (n) => Math.floor(next() * n) };
}

type Op = { kind: string; a: string; b?: string; data?: string; n?: number };

/** A deterministic offline workload over a small tree; every op succeeds on the model. */
function workload(seed: number): Op[] {
  const r = rng(seed);
  const files = new Set<string>(['base.txt', 'dir/inner.txt']);
  const dirs = new Set<string>(['dir']);
  const ops: Op[] = [];
  let k = 0;
  const pick = <T>(s: Set<T>): T => [...s][r.int(s.size)]!;
  while (ops.length < OPS) {
    const c = r.int(8);
    const where = r.int(3) === 0 ? '' : pick(dirs) + '/';
    if (c === 0 || files.size < 2) { const f = `${where}f${k++}.txt`; files.add(f); ops.push({ kind: 'write', a: f, data: `new file ${k} `.repeat(1 + r.int(200)) }); }
    else if (c === 1) ops.push({ kind: 'append', a: pick(files), data: `+${k++}` });
    else if (c === 2) ops.push({ kind: 'patch', a: pick(files), data: 'XY', n: r.int(50) });
    else if (c === 3) ops.push({ kind: 'truncate', a: pick(files), n: r.int(30) });
    else if (c === 4) { const d = `${where}d${k++}`; dirs.add(d); ops.push({ kind: 'mkdir', a: d }); }
    else if (c === 5) { const from = pick(files); const to = `${pick(dirs)}/r${k++}.txt`; files.delete(from); files.add(to); ops.push({ kind: 'rename', a: from, b: to }); }
    else if (c === 6 && files.size > 3) { const f = pick(files); files.delete(f); ops.push({ kind: 'unlink', a: f }); }
    else ops.push({ kind: 'chmod', a: pick(files), n: [0o600, 0o644, 0o640][r.int(3)] });
  }
  return ops;
}

async function apply(root: string, op: Op): Promise<void> {
  const p = (x: string): string => path.join(root, x);
  switch (op.kind) {
    case 'write': await fsp.writeFile(p(op.a), op.data!); break;
    case 'append': await fsp.appendFile(p(op.a), op.data!); break;
    case 'patch': {
      const h = await fsp.open(p(op.a), 'r+');
      try { await h.write(op.data!, op.n!); } finally { await h.close(); }
      break;
    }
    case 'truncate': await fsp.truncate(p(op.a), op.n!); break;
    case 'mkdir': await fsp.mkdir(p(op.a)); break;
    case 'rename': await fsp.rename(p(op.a), p(op.b!)); break;
    case 'unlink': await fsp.unlink(p(op.a)); break;
    case 'chmod': await fsp.chmod(p(op.a), op.n!); break;
  }
}

async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(path.join(root, rel))).sort()) {
      const r = path.join(rel, name);
      const st = await fsp.lstat(path.join(root, r));
      if (st.isDirectory()) { out[r] = 'dir'; await walk(r); } else out[r] = `${(st.mode & 0o777).toString(8)}:${await fsp.readFile(path.join(root, r), 'utf8')}`;
    }
  };
  await walk('');
  return out;
}

/** The control socket, from this process: no CLI process per step (50 crash points). */
async function ctl(m: Mounted, op: 'status' | 'offline' | 'online'): Promise<{ pid: number; state: string; journal: { pending: number } }> {
  return await sendControl(path.join(m.cache, 'control.sock'), { op }, 120_000) as { pid: number; state: string; journal: { pending: number } };
}

async function pidOf(m: Mounted): Promise<number> {
  return (await ctl(m, 'status')).pid;
}

async function kill9(m: Mounted): Promise<void> {
  const pid = await pidOf(m);
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 200; i++) { try { process.kill(pid, 0); await sleep(10); } catch { break; } }
}

/** Crash points run a few at a time: each has its own backend, cache and mount. */
async function inParallel<T>(items: T[], fn: (item: T, i: number) => Promise<void>, width = 3): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  }));
}

async function settle(m: Mounted): Promise<void> {
  const s = await ctl(m, 'online'); // answers once the journal is replayed
  assert.equal(s.state, 'connected');
  assert.equal(s.journal.pending, 0);
}

async function fresh(tag: string, optimize = true): Promise<Mounted> {
  const m = await mountFresh(tag, { config: { fuse: { attrTimeout: 0, entryTimeout: 0, negativeTimeout: 0 }, reintegration: { optimize } } });
  await fsp.mkdir(m.b('dir'));
  await fsp.writeFile(m.b('base.txt'), 'base file, there before');
  await fsp.writeFile(m.b('dir/inner.txt'), 'inner file, there before');
  // what the cache knows before the laptop leaves: every directory listed, every file read
  for (const f of ['base.txt', 'dir/inner.txt']) await fsp.readFile(m.m(f));
  await fsp.readdir(m.m('dir'));
  await fsp.readdir(m.m(''));
  return m;
}

async function offline(m: Mounted): Promise<void> {
  assert.equal((await ctl(m, 'offline')).state, 'disconnected');
}

describe('crash safety of disconnected operation (local backend)', () => {
  const mounts: Mounted[] = [];
  after(async () => { for (const m of mounts) await m.cleanup(); });
  const ops = workload(SEED);
  let reference: Record<string, string> = {};

  it(`an uninterrupted run of ${OPS} offline operations and a sync (seed ${SEED})`, async () => {
    const m = await fresh('crash-ref');
    mounts.push(m);
    await offline(m);
    for (const op of ops) await apply(m.mnt, op);
    const offlineView = await snapshot(m.mnt);
    await settle(m);
    reference = await snapshot(m.backend);
    assert.deepEqual(reference, offlineView, 'the replay gives the backend what the mount showed offline');
    assert.ok(Object.keys(reference).length > 10);
    const logText = await fsp.readFile(path.join(m.cache, 'cachefs.log'), 'utf8');
    const dropped = /journal optimized before replay: (\d+) records, (\d+) no longer needed/.exec(logText);
    assert.ok(dropped && Number(dropped[2]) > 0, 'the optimizer removed records before this replay');
  });

  it('the raw journal (optimization off) replays to the same server state as the optimized one', async () => {
    const m = await fresh('crash-raw', false);
    mounts.push(m);
    await offline(m);
    for (const op of ops) await apply(m.mnt, op);
    await settle(m);
    assert.deepEqual(await snapshot(m.backend), reference);
    assert.doesNotMatch(await fsp.readFile(path.join(m.cache, 'cachefs.log'), 'utf8'), /journal optimized/);
  });

  it(`kill -9 at ${WORK_POINTS} points while working offline: acknowledged operations survive and replay`, async () => {
    const r = rng(SEED + 1);
    const points = Array.from({ length: WORK_POINTS }, () => 1 + r.int(ops.length - 1)); // ops before it were acknowledged
    await inParallel(points, async (at, i) => {
      const m = await fresh(`crash-w${i}`);
      mounts.push(m);
      await offline(m);
      for (const op of ops.slice(0, at)) await apply(m.mnt, op);
      await kill9(m);
      await m.mount(); // detaches the dead mount, then replays the records left behind
      await settle(m);
      // After a crash, cached data the journal may not cover is dropped and fetched again:
      // read the tree (as a user would before leaving again) so the rest can run offline.
      await snapshot(m.mnt);
      await offline(m);
      for (const op of ops.slice(at)) await apply(m.mnt, op);
      await settle(m);
      assert.deepEqual(await snapshot(m.backend), reference, `crash after operation ${at} (point ${i})`);
      await m.cleanup();
    });
  });

  it(`kill -9 at ${REPLAY_POINTS} points during the replay: the next mount finishes it, same result`, async () => {
    const r = rng(SEED + 2);
    const delays = Array.from({ length: REPLAY_POINTS }, () => r.int(120));
    await inParallel(delays, async (delay, i) => {
      const m = await fresh(`crash-r${i}`);
      mounts.push(m);
      await offline(m);
      for (const op of ops) await apply(m.mnt, op);
      const sync = ctl(m, 'online').catch(() => undefined); // cut short by the kill
      await sleep(delay);
      await kill9(m);
      await sync;
      await m.mount();
      await settle(m);
      assert.deepEqual(await snapshot(m.backend), reference, `crash during replay after ${delay} ms (point ${i})`);
      await m.cleanup();
    });
  });
});
