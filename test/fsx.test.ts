// File data through real mounts, checked byte by byte: cfsx (test/fsx/cfsx.c, an fsx-style
// exerciser) does seeded random reads, writes (also past EOF: holes), mmap reads and writes,
// truncates, copy_file_range, O_DIRECT I/O, fsync and reopens on one file and compares every
// byte read and the size after every operation with its model of the file. Connected,
// on a file the backend already had (writes into chunks never fetched), offline (a file
// made offline, a file cached before), and across a disconnect/replay cycle. After a sync
// the backend's copy must equal the model cfsx saved (-w).
//
//   CFSX_OPS     operations per run (default 1100)
//   CFSX_SEEDS   seeds of the connected runs (default 1,2,3)
//   CFSX_CHUNK   the mount's cache.chunkSize (default 65536: many chunk boundaries per file)
import { describe, it, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { cli, mountFresh, type Mounted, BACKEND_KINDS, skipKind, type BackendKind } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';
import { runCfsx, describeRun, compareWithModel, buildCfsx, type CfsxRun } from './helpers/cfsx.js';

const OPS = Number(process.env.CFSX_OPS ?? 1100);
const SEEDS = (process.env.CFSX_SEEDS ?? '1,2,3').split(',').map(Number);
const CHUNK = Number(process.env.CFSX_CHUNK ?? 65536);
const MiB = 1024 * 1024;
/** A generous deadline per cfsx run: a hung mount must fail the test, not stall the suite. */
const RUN_MS = 60_000 + OPS * 40;

/** How to shrink a failure of this scenario to a few operations (bench/fsx-minimize.ts). */
const shrink = (kind: BackendKind, scenario: string, seed: number): string =>
  `shrink it: node dist/bench/fsx-minimize.js --backend ${kind} --scenario ${scenario} --seed ${seed} --ops ${OPS} --chunk ${CHUNK}`;

function assertOk(r: CfsxRun, hint: string): void {
  assert.equal(r.code, 0, `${describeRun(r)}\n${hint}`);
  assert.match(r.stdout, /cfsx: \d+ ops ok\n$/, `${describeRun(r)}\n${hint}`);
}

async function assertSame(file: string, model: string, hint: string): Promise<void> {
  const problem = await compareWithModel(file, model);
  assert.equal(problem, null, `${problem}\n${hint}`);
}

async function cachefs(...args: string[]): Promise<void> {
  const r = await cli(args, { timeoutMs: 120_000 });
  assert.equal(r.code, 0, `cachefs ${args.join(' ')}: exit ${r.code}\n${r.stdout}${r.stderr}`);
}

for (const kind of BACKEND_KINDS) describe(`cfsx file-data exerciser (${kind} backend)`, { skip: skipKind(kind), timeout: 600_000 }, () => {
  let srv: NfsServer | undefined;
  const mounts: Mounted[] = [];
  // each scenario's mount goes when it ends (a mount daemon each: not 9 at once)
  afterEach(async () => { for (const m of mounts.splice(0)) await m.cleanup(); });
  after(async () => {
    for (const m of mounts) await m.cleanup();
    await srv?.dispose();
  });

  /** A fresh backend directory and mount (and cache); each scenario has its own. */
  async function mount(tag: string): Promise<Mounted> {
    await buildCfsx();
    if (kind === 'nfs') srv ??= await startNfsServer('fsx');
    const m = await mountFresh(`fsx-${tag}`, { nfs: srv, config: { cache: { chunkSize: CHUNK } } });
    mounts.push(m);
    return m;
  }

  /** Random bytes on the backend itself, with a copy of them as the model (outside the mount). */
  async function preexisting(m: Mounted, name: string, bytes: number): Promise<string> {
    const data = randomBytes(bytes);
    await fsp.writeFile(m.b(name), data);
    const model = path.join(m.root, `${name}.initial`);
    await fsp.writeFile(model, data);
    return model;
  }

  const model = (m: Mounted, name: string): string => path.join(m.root, `${name}.model`);

  /** Disconnects the mount, with its root listed first: names can be made in it offline. */
  async function goOffline(m: Mounted): Promise<void> {
    await fsp.readdir(m.mnt);
    await cachefs('offline', m.mnt);
  }

  describe('connected', () => {
    for (const seed of SEEDS) {
      it(`seed ${seed}: ${OPS} operations of every kind; the backend then holds what the model says`, async () => {
        const m = await mount(`seed${seed}`);
        const hint = shrink(kind, 'connected', seed);
        assertOk(await runCfsx(['-S', String(seed), '-N', String(OPS), '-w', model(m, 'f'), m.m('f')], { timeoutMs: RUN_MS }), hint);
        await assertSame(m.b('f'), model(m, 'f'), hint);
      });
    }

    it(`two processes on one file (-P 2), one operation at a time: ${OPS} operations`, async () => {
      const m = await mount('p2');
      const hint = shrink(kind, 'p2', 101);
      assertOk(await runCfsx(['-S', '101', '-N', String(OPS), '-P', '2', '-w', model(m, 'shared'), m.m('shared')], { timeoutMs: RUN_MS }), hint);
      await assertSame(m.b('shared'), model(m, 'shared'), hint);
    });

    it(`two cfsx at once, each on its own file: ${OPS} operations each`, async () => {
      const m = await mount('pair');
      const files = ['a', 'b'];
      const runs = await Promise.all(files.map((f, i) =>
        runCfsx(['-S', String(201 + i), '-N', String(OPS), '-w', model(m, f), m.m(f)], { timeoutMs: RUN_MS })));
      for (const [i, r] of runs.entries()) assertOk(r, `${shrink(kind, 'connected', 201 + i)} (alone, it may pass)`);
      for (const [i, f] of files.entries()) await assertSame(m.b(f), model(m, f), shrink(kind, 'connected', 201 + i));
    });
  });

  it('issue 11 item 3: truncates, O_DIRECT writes and copies with 1 MiB chunks read what was written (seed 82 read zeros at op 240)', async () => {
    await buildCfsx();
    if (kind === 'nfs') srv ??= await startNfsServer('fsx');
    // The default chunk size: a chunk fetched for a write landed without being recorded (our
    // own answers moved the version meanwhile), and the next read fetched it again from a
    // backend that did not have the dirty run yet.
    const m = await mountFresh('fsx-item3', { nfs: srv });
    mounts.push(m);
    const weights = 'read=2,write=2,mapread=1,mapwrite=1,truncate=3,copy=3,dioread=4,diowrite=4,fsync=1';
    for (const seed of [82, 84]) {
      const f = `d${seed}`;
      assertOk(await runCfsx(['-S', String(seed), '-N', '2000', '-l', '2m', '-m', '128k', '-o', weights, '-w', model(m, f), m.m(f)], { timeoutMs: RUN_MS }), `seed ${seed}`);
      await assertSame(m.b(f), model(m, f), `seed ${seed}`);
    }
  });

  it(`a 2 MiB file the backend already has: ${OPS} operations, writes into chunks never fetched`, async () => {
    const m = await mount('pre');
    const hint = shrink(kind, 'pre', 301);
    const initial = await preexisting(m, 'pre', 2 * MiB);
    // -n: no whole-file check first, which would fetch every chunk before the first write
    assertOk(await runCfsx(['-S', '301', '-N', String(OPS), '-l', '4M', '-i', initial, '-n', '-w', model(m, 'pre'), m.m('pre')], { timeoutMs: RUN_MS }), hint);
    await assertSame(m.b('pre'), model(m, 'pre'), hint);
  });

  describe('offline, then online and sync', () => {
    it(`a file made offline: ${OPS} operations; after the sync the backend holds the model`, async () => {
      const m = await mount('off-new');
      const hint = shrink(kind, 'offline-new', 401);
      await goOffline(m);
      assertOk(await runCfsx(['-S', '401', '-N', String(OPS), '-w', model(m, 'made'), m.m('made')], { timeoutMs: RUN_MS }), hint);
      await cachefs('online', m.mnt);
      await cachefs('sync', m.mnt);
      await assertSame(m.b('made'), model(m, 'made'), hint);
      await assertSame(m.m('made'), model(m, 'made'), hint);
    });

    it(`a file cached (read whole) before going offline: ${OPS} operations; after the sync the backend holds the model`, async () => {
      const m = await mount('off-cached');
      const hint = shrink(kind, 'offline-cached', 402);
      const initial = await preexisting(m, 'cached', 768 * 1024);
      await assertSame(m.m('cached'), initial, hint); // reads it all through the mount: cached
      await goOffline(m);
      assertOk(await runCfsx(['-S', '402', '-N', String(OPS), '-i', initial, '-w', model(m, 'cached'), m.m('cached')], { timeoutMs: RUN_MS }), hint);
      await cachefs('online', m.mnt);
      await cachefs('sync', m.mnt);
      await assertSame(m.b('cached'), model(m, 'cached'), hint);
      await assertSame(m.m('cached'), model(m, 'cached'), hint);
    });
  });

  it(`across replay: ${Math.ceil(OPS / 2)} operations connected, as many offline from there, sync, as many connected again`, async () => {
    const m = await mount('replay');
    const hint = shrink(kind, 'replay', 501);
    const half = String(Math.ceil(OPS / 2));
    const m1 = model(m, 'f.1'), m2 = model(m, 'f.2'), m3 = model(m, 'f.3');
    assertOk(await runCfsx(['-S', '501', '-N', half, '-w', m1, m.m('f')], { timeoutMs: RUN_MS }), hint);
    await assertSame(m.b('f'), m1, hint);
    await goOffline(m);
    // starts from what the first run left (-i checks the whole file against it first)
    assertOk(await runCfsx(['-S', '502', '-N', half, '-i', m1, '-w', m2, m.m('f')], { timeoutMs: RUN_MS }), hint);
    await cachefs('online', m.mnt);
    await cachefs('sync', m.mnt);
    await assertSame(m.b('f'), m2, hint);
    // and connected again over the replayed file
    assertOk(await runCfsx(['-S', '503', '-N', half, '-i', m2, '-w', m3, m.m('f')], { timeoutMs: RUN_MS }), hint);
    await assertSame(m.b('f'), m3, hint);
  });
});
