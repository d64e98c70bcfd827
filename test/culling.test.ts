// Keeping the cache within its size (ARCHITECTURE §8, invariant 4: dirty and pinned data is
// never culled). The culler alone against a fake layer, index and disk: least-recently-used
// clean data goes first, down to 90% of maxBytes; the cachefilesd-style disk thresholds
// (bcull/brun start and stop culling, bstop stops caching); offline writes are admitted
// against a running figure. Then real mounts, over a local directory and a real nfs-ganesha
// (as root): a workload three times the limit read while a pinned file and a dirty file
// (written offline, its replay held up by a slow backend) are in the cache; `cachefs evict`;
// and a full cache while disconnected (ENOSPC, nothing written before is damaged, a
// cache-full event for `cachefs watch`).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { cli, mountFresh, sleep, tempRoot, type Mounted, BACKEND_KINDS, skipKind } from './helpers/cachefs.js';
import { Watcher } from './helpers/watcher.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';
import { randomBytes } from 'node:crypto';
import { Culler, bytesOf, type CullLayer, type DiskSpace } from '../src/cache/culler.js';
import type { CachedDataRow, CachedObject } from '../src/index/objects.js';
import { DEFAULTS } from '../src/config/schema.js';
import { FsError } from '../src/core/errors.js';
import { MountEventSchema } from '../src/daemon/protocol.js';
import { formatWatchEvent } from '../src/cli/format.js';

const MiB = 1024 * 1024;

// ---------------------------------------------------------------- the culler alone

interface FakeObj { id: number; bytes: number; lastAccess: number; path: string; dirty?: boolean; open?: boolean }

/** A cache of whole 1 MiB chunks: each fake object's data is `bytes` long. */
function world(objs: FakeObj[], opts: { maxBytes?: number; pins?: string[]; disk?: DiskSpace } = {}) {
  const live = new Map(objs.map((o) => [o.id, { ...o }]));
  const evicted: number[] = [];
  const layer: CullLayer = {
    evict: (obj) => {
      const o = live.get(obj.id)!;
      if (o.dirty || o.open) return 0;
      live.delete(obj.id);
      evicted.push(obj.id);
      return o.bytes;
    },
    isDirty: (id) => live.get(id)?.dirty === true,
    isOpen: (id) => live.get(id)?.open === true,
    resolve: async (p) => {
      const o = [...live.values()].find((x) => x.path === p);
      if (!o) throw new FsError('ENOENT');
      return { id: o.id, attr: { type: 'file' }, cachedBytes: o.bytes } as unknown as CachedObject;
    },
    storeData: true,
    admitOffline: null,
  };
  const rows = (): CachedDataRow[] => [...live.values()].sort((a, b) => a.lastAccess - b.lastAccess).map((o) => ({
    id: o.id, size: o.bytes, cachedBytes: o.bytes, lastAccess: o.lastAccess, chunks: Math.ceil(o.bytes / MiB), maxChunk: Math.ceil(o.bytes / MiB) - 1,
  }));
  const disk = { current: opts.disk ?? { bsize: 4096, blocks: 1_000_000, bavail: 500_000, files: 1000, ffree: 900 } };
  const pins = opts.pins ?? [];
  const culler = new Culler({
    layer,
    index: {
      cachedData: rows,
      get: (id) => (live.has(id) ? ({ id, cachedBytes: live.get(id)!.bytes } as unknown as CachedObject) : undefined),
      // Every fake object sits in the root directory (id 1) under its name.
      parentOf: (id) => (live.has(id) ? { parent: 1, name: live.get(id)!.path.slice(1) } : null),
    },
    pins: { covering: (p) => (pins.includes(p) ? { path: p } : null), list: () => pins.map((p) => ({ path: p })) },
    rootId: () => 1,
    config: { ...DEFAULTS.culling, maxBytes: opts.maxBytes ?? 0, intervalS: 3600 },
    chunkSize: MiB,
    cacheDir: '/nowhere',
    statfs: async () => ({ ...disk.current }),
  });
  return { culler, layer, live, evicted, disk };
}

const objs = (n: number, extra: (i: number) => Partial<FakeObj> = () => ({})): FakeObj[] =>
  Array.from({ length: n }, (_, i) => ({ id: 10 + i, bytes: MiB, lastAccess: 1000 + i, path: `/f${i}`, ...extra(i) }));

describe('the culler (fake layer, index and disk)', () => {
  it('counts an appended file by its chunks and size, not the undercounted cachedBytes', () => {
    // Written offline in 128 KiB pieces: the index counted only the first piece of each chunk.
    const r: CachedDataRow = { id: 1, size: 2.5 * MiB, cachedBytes: 384 * 1024, lastAccess: 0, chunks: 3, maxChunk: 2 };
    assert.equal(bytesOf(r, MiB), 2.5 * MiB);
    assert.equal(bytesOf({ ...r, chunks: 1, maxChunk: 0 }, MiB), MiB, 'a cached first chunk of a longer file is whole');
    assert.equal(bytesOf({ ...r, size: 100, chunks: 1, maxChunk: 0, cachedBytes: 100 }, MiB), 100);
  });

  it('over maxBytes: drops least-recently-used clean data down to 90%, never pinned, dirty or open data', async () => {
    // 12 MiB in 12 files, limit 8 MiB: f0 pinned, f1 dirty, f2 open are the oldest.
    const w = world(objs(12, (i) => (i === 1 ? { dirty: true } : i === 2 ? { open: true } : {})), { maxBytes: 8 * MiB, pins: ['/f0'] });
    await w.culler.start();
    w.culler.stop();
    // 12 - 0.9 * 8 = 4.8 MiB to drop: five files, the oldest clean ones (f3..f7).
    assert.deepEqual(w.evicted, [13, 14, 15, 16, 17]);
    const u = w.culler.usage();
    assert.equal(u.bytes, 7 * MiB);
    assert.deepEqual([u.pinned, u.dirty, u.clean], [MiB, MiB, 5 * MiB]);
    assert.equal(u.pinned + u.dirty + u.clean, u.bytes);
    assert.equal(u.storing, true);
    assert.equal(w.layer.admitOffline, null, 'stop() gives the admission back');
  });

  it('pinned and dirty data past the limit: nothing is dropped, and nothing new is kept until there is room', async () => {
    const w = world(objs(10, (i) => (i % 2 ? { dirty: true } : {})), { maxBytes: 8 * MiB, pins: ['/f0', '/f2', '/f4', '/f6', '/f8'] });
    await w.culler.start();
    assert.deepEqual(w.evicted, []);
    assert.equal(w.layer.storeData, false);
    assert.equal(w.culler.usage().storing, false);
    assert.equal(w.layer.admitOffline!(1), false, 'a write while disconnected does not fit');
    // Replay made the dirty ones clean: the next check drops them and caching resumes.
    for (const o of w.live.values()) o.dirty = false;
    await w.culler.check('test');
    assert.equal(w.layer.storeData, true);
    assert.ok(w.culler.usage().bytes <= 0.9 * 8 * MiB);
    assert.ok(w.evicted.every((id) => id % 2 === 1), 'only the formerly dirty, unpinned files went');
    w.culler.stop();
  });

  it('offline writes are admitted against a running figure; clean data is dropped to make room', async () => {
    const w = world(objs(4), { maxBytes: 6 * MiB });
    await w.culler.start();
    const admit = w.layer.admitOffline!;
    // A file written offline grows in the cache (dirty), 128 KiB a write.
    const written = { id: 99, bytes: 0, lastAccess: 9999, path: '/new', dirty: true };
    w.live.set(99, written);
    const write = () => { written.bytes += 128 * 1024; w.culler.noteStored(128 * 1024); };
    // 4 MiB cached: 2 MiB more fit without dropping anything.
    for (let i = 0; i < 16; i++) { assert.equal(admit(128 * 1024), true); write(); }
    assert.deepEqual(w.evicted, []);
    // The next write would pass the limit: the oldest clean file goes, synchronously.
    assert.equal(admit(128 * 1024), true);
    assert.deepEqual(w.evicted, [10]);
    write();
    // Only dirty data left beyond what fits: refused.
    for (const o of w.live.values()) o.dirty = true;
    for (let i = 0; i < 7; i++) { assert.equal(admit(128 * 1024), true); write(); }
    assert.equal(w.layer.offlineRefusal, undefined, 'nothing refused yet');
    assert.equal(admit(128 * 1024), false);
    assert.equal(w.layer.offlineRefusal, 'maxBytes', 'the refusal names the size limit, not the disk (500 MiB free)');
    w.culler.stop();
  });

  it('disk thresholds (cachefilesd): below bcull culls up to brun; below bstop nothing is stored; back above, it is', async () => {
    // 100 files of 1 MiB on a 1000 MiB disk with 6% free (bcull 7, brun 10): cull 4% = 40 MiB.
    const blocks = 1000 * 256;
    const w = world(objs(100), { disk: { bsize: 4096, blocks, bavail: 0.06 * blocks, files: 1000, ffree: 900 } });
    await w.culler.start();
    assert.equal(w.evicted.length, 40);
    assert.deepEqual(w.evicted.slice(0, 3), [10, 11, 12], 'least recently used first');
    assert.equal(w.culler.usage().diskFreePercent, 10);
    assert.equal(w.layer.storeData, true);
    // Something else fills the disk to 2% free (bstop 3) and nothing is left to drop.
    for (const o of w.live.values()) o.open = true;
    w.disk.current = { ...w.disk.current, bavail: 0.02 * blocks };
    await w.culler.check('test');
    assert.equal(w.layer.storeData, false);
    assert.equal(w.layer.admitOffline!(4096), false);
    assert.equal(w.layer.offlineRefusal, 'disk', 'no maxBytes here: the refusal names the disk');
    w.disk.current = { ...w.disk.current, bavail: 0.5 * blocks };
    await w.culler.check('test');
    assert.equal(w.layer.storeData, true);
    assert.equal(w.layer.admitOffline!(4096), true);
    // Few free files (inodes) below fstop: dropping data cannot help, so caching stops.
    w.disk.current = { ...w.disk.current, ffree: 20 };
    await w.culler.check('test');
    assert.equal(w.layer.storeData, false);
    w.culler.stop();
  });

  it('data arriving past the limit is culled at once, not at the next interval', async () => {
    const w = world(objs(6), { maxBytes: 8 * MiB });
    await w.culler.start();
    for (let i = 0; i < 6; i++) w.live.set(100 + i, { id: 100 + i, bytes: MiB, lastAccess: 5000 + i, path: `/new${i}` });
    w.culler.noteStored(6 * MiB);
    await new Promise((r) => setImmediate(r));
    assert.ok(w.culler.usage().bytes <= 0.9 * 8 * MiB, JSON.stringify(w.culler.usage()));
    assert.deepEqual(w.evicted.slice(0, 2), [10, 11]);
    w.culler.stop();
  });

  it('evictPaths: drops a clean file, keeps dirty, open and pinned ones (pinned: unless forced), says why', async () => {
    const w = world(objs(4, (i) => (i === 1 ? { dirty: true } : i === 2 ? { open: true } : {})), { pins: ['/f3'] });
    await w.culler.start();
    const r = await w.culler.evictPaths(['/f0', 'f1', '/f2', '/f3', '/nope'], { recursive: false, force: false });
    assert.equal(r.freed, MiB);
    assert.deepEqual(r.paths.map((p) => [p.freed, p.kept.map((k) => k.reason).join(), p.error ?? '']),
      [[MiB, '', ''], [0, 'dirty', ''], [0, 'open', ''], [0, 'pinned', ''], [0, '', 'no such file or directory']]);
    const forced = await w.culler.evictPaths(['/f3'], { recursive: false, force: true });
    assert.equal(forced.freed, MiB);
    w.culler.stop();
  });
});

// ---------------------------------------------------------------- real mounts

interface CacheJson { bytes: number; objects: number; pinned: number; dirty: number; clean: number; limit: number; diskFreePercent: number | null; storing: boolean }
interface StatusJson { state: string; cache: CacheJson; journal: { pending: number } }

async function codeOf(p: Promise<unknown>): Promise<string> {
  try { await p; } catch (e) { return (e as NodeJS.ErrnoException).code ?? String(e); }
  return 'no error';
}

const status = async (m: Mounted): Promise<StatusJson> => (await m.statusDirect()) as unknown as StatusJson;

async function ok(args: string[]): Promise<string> {
  const r = await cli(args, { timeoutMs: 120_000 });
  assert.equal(r.code, 0, `cachefs ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Where mountFresh puts the backend directory of a mount rooted at `root`. */
function backendOf(root: string, srv: NfsServer | undefined): string {
  return srv ? path.join(srv.exportDir, path.basename(root)) : path.join(root, 'backend');
}

/**
 * The kernel's page cache would serve a file's pages after the cache dropped them (FUSE
 * auto_cache keeps them across opens of an unchanged file): without it, a read shows what
 * the cache holds.
 */
const NO_PAGE_CACHE = { autoCache: false };

function assertClasses(c: CacheJson): void {
  assert.equal(c.pinned + c.dirty + c.clean, c.bytes, `classes add up: ${JSON.stringify(c)}`);
}


for (const kind of BACKEND_KINDS) describe(`culling through a real mount (${kind} backend)`, { skip: skipKind(kind) }, () => {
  const LIMIT = 8 * MiB;
  const bytes = (n: number) => randomBytes(n);
  let srv: NfsServer | undefined;
  let m: Mounted;
  let faults: string;
  const workload = new Map<string, Buffer>();
  let pinned: Buffer;
  let dirty: Buffer;

  before(async () => {
    srv = kind === 'nfs' ? await startNfsServer('culling') : undefined;
    const root = tempRoot('culling');
    faults = path.join(root, 'faults.json');
    // The backend's files are there before the mount, so the root's listing is current.
    const backend = backendOf(root, srv);
    await fsp.mkdir(backend, { recursive: true });
    pinned = bytes(2 * MiB);
    await fsp.writeFile(path.join(backend, 'pinned.bin'), pinned);
    for (let i = 0; i < 24; i++) {
      const name = `w${String(i).padStart(2, '0')}.bin`;
      workload.set(name, bytes(MiB));
      await fsp.writeFile(path.join(backend, name), workload.get(name)!);
    }
    m = await mountFresh('culling', {
      root, nfs: srv, env: { CACHEFS_FAULTS_FILE: faults },
      // A long deadline: the test slows the backend's writes (not its reads) to hold up a replay.
      config: { backendTimeoutMs: 10_000, culling: { maxBytes: LIMIT, intervalS: 0.2 }, hoard: { afterReconnect: false }, fuse: NO_PAGE_CACHE },
    });
    await fsp.readdir(m.m('')); // the root's names, for working offline
  });
  after(async () => {
    await fsp.rm(faults, { force: true });
    await m?.cleanup();
    await srv?.dispose();
  });

  it('a workload three times the limit stays within it, while pinned and dirty data survive', async () => {
    await ok(['pin', m.m('pinned.bin')]); // pins and fetches it (a hoard walk)
    let s = await status(m);
    assert.equal(s.cache.pinned, pinned.length, JSON.stringify(s.cache));
    assert.equal(s.cache.limit, LIMIT);

    // A dirty file: written offline; its replay is then held up by a slow backend (writes
    // take 8 s each) while the workload is read, connected, during the reintegration.
    await ok(['offline', m.mnt]);
    dirty = bytes(2 * MiB);
    await fsp.writeFile(m.m('dirty.bin'), dirty);
    s = await status(m);
    assert.equal(s.cache.dirty, dirty.length, JSON.stringify(s.cache));
    assertClasses(s.cache);
    await fsp.writeFile(faults, JSON.stringify({ delayMs: { write: 8000 } }));
    const online = cli(['online', m.mnt], { timeoutMs: 120_000 });
    for (let i = 0; (await status(m)).state !== 'reintegrating'; i++) {
      assert.ok(i < 100, 'the mount starts reintegrating');
      await sleep(50);
    }

    let most = 0;
    for (const [name, data] of workload) {
      assert.ok((await fsp.readFile(m.m(name))).equals(data), name);
      s = await status(m);
      most = Math.max(most, s.cache.bytes);
      assertClasses(s.cache);
    }
    s = await status(m);
    assert.equal(s.state, 'reintegrating', 'the dirty file was still waiting for the backend all along');
    assert.equal(s.cache.dirty, dirty.length, 'dirty data is never culled');
    assert.equal(s.cache.pinned, pinned.length, 'pinned data is never culled');
    // At most one chunk over while a fetch lands, and within the limit once the culler ran.
    assert.ok(most <= LIMIT + MiB, `usage peaked at ${most} (limit ${LIMIT})`);
    await sleep(500);
    s = await status(m);
    assert.ok(s.cache.bytes <= LIMIT, JSON.stringify(s.cache));
    assert.ok(s.cache.clean > 0 && s.cache.clean < 24 * MiB, 'some of the workload stays cached');
    assert.equal(s.cache.storing, true);

    // The dirty file replays; then, offline, the pinned file is still all there.
    const r = await online;
    assert.equal(r.code, 0, r.stderr);
    await fsp.rm(faults, { force: true });
    assert.ok((await fsp.readFile(m.b('dirty.bin'))).equals(dirty), 'the dirty file reached the backend');
    await ok(['offline', m.mnt]);
    assert.ok((await fsp.readFile(m.m('pinned.bin'))).equals(pinned), 'pinned data reads offline');
    assert.equal(await codeOf(fsp.readFile(m.m('w00.bin'))), 'ENODATA', 'the oldest of the workload was culled');
    await ok(['online', m.mnt]);
  });

  it('cachefs evict drops a clean file, keeps dirty and pinned ones (saying why), and errs outside a mount', async () => {
    const last = 'w23.bin';
    assert.ok((await fsp.readFile(m.m(last))).equals(workload.get(last)!));
    const out = JSON.parse(await ok(['evict', m.m(last), '--json'])) as { freed: number; paths: { path: string; freed: number; files: number }[] };
    assert.equal(out.freed, MiB);
    assert.deepEqual(out.paths.map((p) => [p.path, p.freed, p.files]), [[m.m(last), MiB, 1]]);

    await ok(['offline', m.mnt]);
    await assert.rejects(fsp.readFile(m.m(last)), { code: 'ENODATA' });
    const note = bytes(300_000);
    await fsp.writeFile(m.m('offline-note.bin'), note);
    const kept = await ok(['evict', m.m('offline-note.bin'), m.m('pinned.bin')]);
    assert.match(kept, /offline-note\.bin.*\n\s+kept \(293\.0 KiB\): dirty: holds changes not yet on the backend/);
    assert.match(kept, /pinned\.bin.*\n\s+kept \(2\.00 MiB\): pinned \(`cachefs unpin/);
    assert.ok((await fsp.readFile(m.m('offline-note.bin'))).equals(note), 'the dirty file is intact');
    assert.ok((await fsp.readFile(m.m('pinned.bin'))).equals(pinned));
    const s = await status(m);
    assertClasses(s.cache);
    assert.ok(s.cache.dirty >= note.length);

    const outside = await cli(['evict', path.dirname(m.mnt)]);
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /is not in a cachefs mount\n\s+hint: give files or directories inside a mount/);
    const missing = await cli(['evict', m.m('no-such-file')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no-such-file: no such file or directory/);
    const dir = await cli(['evict', m.mnt]);
    assert.equal(dir.code, 1);
    assert.match(dir.stderr, /is a directory \(give -r/);

    await ok(['online', m.mnt]);
    assert.ok((await fsp.readFile(m.b('offline-note.bin'))).equals(note));
    // -r over the whole mount: everything clean goes, the pinned file stays (no --force).
    const all = JSON.parse(await ok(['evict', '-r', m.mnt, '--json'])) as { freed: number; paths: { kept: { path: string; reason: string }[] }[] };
    assert.ok(all.freed > 0);
    assert.deepEqual(all.paths[0]!.kept.map((k) => [k.path, k.reason]), [[m.m('pinned.bin'), 'pinned']]);
    const after = await status(m);
    assert.equal(after.cache.bytes, pinned.length, JSON.stringify(after.cache));
    assert.equal(after.cache.clean, 0);
    const human = await ok(['status', m.mnt]);
    assert.match(human, /2\.00 MiB pinned, 0 B dirty \(not yet on the backend\), 0 B clean/);
  });
});

for (const kind of BACKEND_KINDS) describe(`a full cache while disconnected (${kind} backend)`, { skip: skipKind(kind) }, () => {
  const LIMIT = 4 * MiB;
  const bytes = (n: number) => randomBytes(n);
  let srv: NfsServer | undefined;
  let m: Mounted;
  let watcher: Watcher | undefined;
  const pinned = bytes(2 * MiB);
  const clean = bytes(MiB);

  before(async () => {
    srv = kind === 'nfs' ? await startNfsServer('cachefull') : undefined;
    const root = tempRoot('cachefull');
    const backend = backendOf(root, srv);
    await fsp.mkdir(backend, { recursive: true });
    await fsp.writeFile(path.join(backend, 'p.bin'), pinned);
    await fsp.writeFile(path.join(backend, 'c.bin'), clean);
    m = await mountFresh('cachefull', { root, nfs: srv, config: { culling: { maxBytes: LIMIT, intervalS: 0.2 }, fuse: NO_PAGE_CACHE } });
  });
  after(async () => {
    watcher?.kill();
    await m?.cleanup();
    await srv?.dispose();
  });

  it('a write that cannot be kept fails with ENOSPC, nothing written before is damaged, and watch hears cache-full', async () => {
    await ok(['pin', m.m('p.bin')]);
    assert.ok((await fsp.readFile(m.m('c.bin'))).equals(clean));
    await fsp.readdir(m.m(''));
    watcher = new Watcher(m.mnt);
    await watcher.waitFor('state');

    await ok(['offline', m.mnt]);
    const a = bytes(768 * 1024);
    await fsp.writeFile(m.m('a.bin'), a); // fits: 3.75 of 4 MiB
    const big = bytes(2 * MiB);
    // Room is made by dropping the clean file, then the rest is pinned or dirty: ENOSPC.
    await assert.rejects(fsp.writeFile(m.m('b.bin'), big), { code: 'ENOSPC' });
    const full = await watcher.waitFor('cache-full');
    assert.equal(full.path, '/b.bin');
    assert.match(full.message ?? '', /cache is full/);

    assert.ok((await fsp.readFile(m.m('a.bin'))).equals(a), 'an earlier offline write is intact');
    assert.ok((await fsp.readFile(m.m('p.bin'))).equals(pinned), 'pinned data was not dropped');
    assert.equal(await codeOf(fsp.readFile(m.m('c.bin'))), 'ENODATA', 'the clean file made room');
    const partial = await fsp.readFile(m.m('b.bin'));
    assert.ok(partial.length > 0 && partial.length < big.length, `b.bin holds what was admitted (${partial.length})`);
    assert.ok(partial.equals(big.subarray(0, partial.length)), 'what b.bin kept is exactly what was written');
    const s = await status(m);
    assertClasses(s.cache);
    assert.ok(s.cache.bytes <= LIMIT, JSON.stringify(s.cache));
    assert.equal(s.cache.pinned, pinned.length);
    assert.equal(s.cache.dirty, a.length + partial.length);
    assert.equal(await codeOf(fsp.writeFile(m.m('more.bin'), bytes(2 * MiB))), 'ENOSPC', 'still full');

    await ok(['sync', m.mnt]);
    assert.ok((await fsp.readFile(m.b('a.bin'))).equals(a), 'replayed intact');
    assert.ok((await fsp.readFile(m.b('b.bin'))).equals(partial));
  });

  it('at culling.maxBytes (the disk has room), cache-full names the size limit, and watch says evict, unpin or raise it', async () => {
    const json = new Watcher(m.mnt);
    try {
      await json.waitFor('state');
      await ok(['offline', m.mnt]);
      // 2 MiB pinned, the rest clean: 3 MiB more cannot fit under 4 MiB.
      assert.equal(await codeOf(fsp.writeFile(m.m('over.bin'), bytes(3 * MiB))), 'ENOSPC');
      await json.waitFor('cache-full');
      const raw = json.lines.find((l) => l.includes('"cache-full"'))!;
      const event = MountEventSchema.parse(JSON.parse(raw));
      assert.equal(event.type === 'cache-full' && event.cause, 'maxBytes', raw);
      const sentence = formatWatchEvent(event, m.mnt);
      assert.match(sentence, /size limit \(culling\.maxBytes\).*cachefs evict.*cachefs unpin.*raise culling\.maxBytes/);
      assert.doesNotMatch(sentence, /disk/);
    } finally {
      json.kill();
      await ok(['sync', m.mnt]);
    }
  });
});
