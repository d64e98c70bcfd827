// A full cache disk (ARCHITECTURE §10: "faults at every point of every data path: … the cache
// disk full; each acknowledged byte accounted for afterwards").
//
// First the pieces, with SQLite failing as it does on a full disk (SqliteError SQLITE_FULL,
// from stubs or from a database held to its size): the errno it becomes, a replay that
// stalls and resumes without dropping or repeating a record, the index mirror after a
// refused write, the culler's reserve for the index and its timers, the log file.
//
// Then real mounts whose cache directory is a small tmpfs (24 MiB), the backend a local
// directory, no culling.maxBytes: only the disk limits the cache.
// - Offline, files are written until one fails: it fails with ENOSPC (never EIO), watchers
//   hear `cache-full`, metadata changes (mkdir, rename, touch, create) succeed or fail with
//   ENOSPC (never EIO), the mount process stays up and `status` answers; once room is made
//   (through the mount), `cachefs online` replays, and the backend holds exactly every file
//   whose write succeeded, byte for byte; unmount and mount again work.
// - The disk filling up from outside while the journal is replayed: the mount does not crash,
//   nothing leaves the journal that did not reach the backend, and once the filler is gone a
//   `cachefs sync` finishes the replay.
// - A mount that cannot start on a full disk says why (and starts once there is room).
// - The backend coming back while the disk is full (the mount reintegrates by itself): an
//   index failure no part of the mount expected is logged and shown by `status`, and the
//   process stays up, and reconnects by itself once there is room.
// Runs as root (tmpfs); each tmpfs is unmounted in `after`. KEEP_DISKFULL=1 keeps each
// mount's root (with a copy of its log) for a post-mortem.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { constants } from 'node:os';
import { cli, sh, sleep, tempRoot, Mounted, fuseMounted } from './helpers/cachefs.js';
import { Watcher } from './helpers/watcher.js';
import { waitUntil } from './helpers/wait.js';
import { layerHere } from './helpers/layer.js';
import { FsError, fromNodeError, isCacheStorageError } from '../src/core/errors.js';
import { toFuseErrno } from '../src/fuse/errno.js';
import { openDb, type Db } from '../src/index/db.js';
import { ObjectIndex } from '../src/index/objects.js';
import { Journal, type JournalEntry } from '../src/journal/journal.js';
import { Replayer, type ReplayTarget } from '../src/journal/replayer.js';
import type { JournalRecord } from '../src/journal/records.js';
import { Culler, type CullLayer, type DiskSpace } from '../src/cache/culler.js';
import type { CachedObject } from '../src/index/objects.js';
import { DEFAULTS } from '../src/config/schema.js';
import { LogFile } from '../src/daemon/log-file.js';
import type { Attr } from '../src/backends/types.js';

const MiB = 1024 * 1024;
const asRoot = process.getuid?.() === 0;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try { await p; } catch (e) { return (e as NodeJS.ErrnoException).code ?? String(e); }
  return 'ok';
}

interface StatusJson {
  state: string; reason: string; pid: number;
  journal: { pending: number; bytes?: number; stalled?: { reason: string; since: string } | null };
  cache: { diskFreePercent: number | null; storing: boolean; storageError?: { message: string; at: string } | null };
  counters: { bytesFromBackend: number };
}


function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

/** Fills the file system of `dir` to the last byte with a file of our own; returns its path. */
async function fill(dir: string): Promise<string> {
  const file = path.join(dir, 'filler.bin');
  const h = await fsp.open(file, 'w');
  try {
    for (const size of [MiB, 64 * 1024, 4096, 512]) {
      const buf = Buffer.alloc(size, 0x5a);
      for (;;) {
        try { await h.write(buf, 0, size); } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw e;
        }
      }
    }
  } finally {
    await h.close().catch(() => undefined);
  }
  return file;
}

/** The backend's files, recursively: relative path -> bytes (directories as null). */
async function tree(dir: string, rel = ''): Promise<Map<string, Buffer | null>> {
  const out = new Map<string, Buffer | null>();
  for (const e of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) {
      out.set(p, null);
      for (const [k, v] of await tree(dir, p)) out.set(k, v);
    } else out.set(p, await fsp.readFile(path.join(dir, p)));
  }
  return out;
}

function assertTree(actual: Map<string, Buffer | null>, expected: Map<string, Buffer | null>): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort(), 'the backend holds exactly the expected names');
  for (const [k, v] of expected) {
    const got = actual.get(k);
    if (v === null) assert.equal(got, null, `${k} is a directory`);
    else assert.ok(got && got.equals(v), `${k}: ${got?.length} bytes on the backend, ${v.length} expected, or they differ`);
  }
}

/** A mount whose cache directory is a fresh tmpfs of `sizeMiB`. */
class TmpfsMount {
  readonly root = tempRoot('diskfull');
  readonly m = new Mounted(this.root);
  /** The mount's fault file (src/backends/faulty.ts): a test makes the backend fail with it. */
  readonly faults = path.join(this.root, 'faults.json');
  private tmpfs = false;

  async start(config: Record<string, unknown> = {}): Promise<void> {
    await fsp.mkdir(this.m.backend, { recursive: true });
    await fsp.mkdir(this.m.mnt, { recursive: true });
    await fsp.mkdir(this.m.cache, { recursive: true });
    const r = await sh('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0700', 'tmpfs', this.m.cache]);
    assert.equal(r.code, 0, `mount -t tmpfs: ${r.stderr}`);
    this.tmpfs = true;
    this.m.env = { CACHEFS_FAULTS_FILE: this.faults };
    await fsp.writeFile(this.m.configFile, JSON.stringify({
      backend: this.m.backend, mountpoint: this.m.mnt, cacheDir: this.m.cache, log: 'info',
      culling: { intervalS: 0.5 }, ...config,
    }, null, 2));
  }

  async status(): Promise<StatusJson> { return await this.m.statusDirect() as unknown as StatusJson; }

  /**
   * Empties the index's write-ahead log (a checkpoint from a second connection, as SQLite
   * allows): the room it kept from earlier writes would let the next ones through on a full
   * disk, as it would not after a fresh mount. Then the next index write needs the disk.
   */
  truncateWal(): void {
    const db = new Database(path.join(this.m.cache, 'index.sqlite'));
    try {
      db.pragma('busy_timeout = 5000');
      const [cp] = db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number }[];
      assert.deepEqual([cp!.busy, cp!.log], [0, 0], 'the write-ahead log was emptied');
    } finally {
      db.close();
    }
  }

  async waitState(state: string, ms = 15_000): Promise<StatusJson> {
    let s = await this.status();
    for (const t0 = Date.now(); s.state !== state && Date.now() - t0 < ms; s = await this.status()) await sleep(100);
    assert.equal(s.state, state, JSON.stringify(s));
    return s;
  }

  async dispose(): Promise<void> {
    await this.m.umount().catch(() => undefined);
    if (await fuseMounted(this.m.mnt)) await sh('fusermount3', ['-u', '-z', this.m.mnt]);
    if (process.env.KEEP_DISKFULL) await fsp.copyFile(path.join(this.m.cache, 'cachefs.log'), path.join(this.root, 'cachefs.log')).catch(() => undefined);
    if (this.tmpfs) {
      const r = await sh('umount', [this.m.cache]);
      if (r.code !== 0) await sh('umount', ['-l', this.m.cache]);
    }
    if (!process.env.KEEP_DISKFULL) await fsp.rm(this.root, { recursive: true, force: true });
  }
}

async function ok(args: string[]): Promise<string> {
  const r = await cli(args, { timeoutMs: 120_000 });
  assert.equal(r.code, 0, `cachefs ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}


// ---------------------------------------------------------------- the pieces

/** What SQLite throws when the database or its write-ahead log cannot grow. */
const sqliteFull = () => new Database.SqliteError('database or disk is full', 'SQLITE_FULL');

/** Collects unhandled rejections while `fn` runs (each one would end a mount process). */
async function noUnhandled(fn: () => Promise<void>): Promise<void> {
  const seen: unknown[] = [];
  const on = (e: unknown) => { seen.push(e); };
  process.on('unhandledRejection', on);
  try {
    await fn();
    await sleep(20);
  } finally {
    process.off('unhandledRejection', on);
  }
  assert.deepEqual(seen.map(String), [], 'no unhandled rejection');
}

type Out = { kind: 'done'; seq: number };

class Target implements ReplayTarget<Out> {
  applied: number[] = [];
  /** Seqs whose next apply fails with this error (once). */
  failOnce = new Map<number, unknown>();
  async apply(entry: JournalEntry): Promise<Out> {
    const f = this.failOnce.get(entry.seq);
    this.applied.push(entry.seq);
    if (f) { this.failOnce.delete(entry.seq); throw f; }
    return { kind: 'done', seq: entry.seq };
  }
}

const rec = (n: number): JournalRecord => ({ op: 'setattr', obj: n, set: { mode: 0o644 }, base: null });

const attr = (v: string): Attr => ({
  type: 'dir', mode: 0o40755, uid: 0, gid: 0, size: 4096, nlink: 2, rdev: 0, used: 4096,
  atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n, version: v,
});

describe('the pieces on a full cache disk (SQLite failing as it does there)', () => {
  const root = tempRoot('diskfull-unit');
  after(() => fsp.rm(root, { recursive: true, force: true }));
  let n = 0;
  const freshDb = (): Db => openDb(path.join(root, `db${++n}.sqlite`));

  it('SQLITE_FULL becomes ENOSPC (not EIO) in the one errno place; only the cache\'s own failures count as storage errors', () => {
    assert.equal(fromNodeError(sqliteFull()).code, 'ENOSPC');
    assert.equal(toFuseErrno(sqliteFull(), 'mkdir'), -constants.errno.ENOSPC);
    assert.equal(toFuseErrno(new Database.SqliteError('disk I/O error', 'SQLITE_IOERR_WRITE'), 'mkdir'), -constants.errno.EIO);
    assert.equal(isCacheStorageError(sqliteFull()), true);
    assert.equal(isCacheStorageError(fromNodeError(sqliteFull(), 'index')), true, 'an FsError caused by it');
    assert.equal(isCacheStorageError(Object.assign(new Error('write'), { code: 'ENOSPC' })), true, 'Node fs on the cache disk');
    assert.equal(isCacheStorageError(fromNodeError(Object.assign(new Error('write'), { code: 'ENOSPC' }), 'backend write')), false,
      'a backend\'s ENOSPC (translated at its edge) is the backend refusing');
    assert.equal(isCacheStorageError(new FsError('EEXIST')), false);
  });

  it('replay: a journal row that cannot be deleted stalls the replay (no unhandled rejection); resumed, it is deleted, not applied again', async () => {
    await noUnhandled(async () => {
      const j = new Journal(freshDb());
      const t = new Target();
      const r = new Replayer(j, t);
      const stalls: string[] = [];
      r.onStall = (why) => stalls.push(why);
      const remove = j.remove.bind(j);
      let failing = true;
      j.remove = (seq: number) => { if (failing) throw sqliteFull(); remove(seq); };
      const [a, b, c] = [1, 2, 3].map((i) => r.append(rec(i)));
      const outA = await r.waitFor(a!);
      assert.equal(outA.kind, 'done', 'the backend applied it: its caller hears so');
      await r.drained();
      assert.deepEqual(t.applied, [a], 'nothing after it went out');
      assert.equal(r.isPaused, true);
      assert.match(r.stalled?.reason ?? '', /cache disk is full: replay waits for room; 3 change\(s\) stay safe/);
      assert.equal(stalls.length, 1);
      assert.equal(j.pending(), 3, 'every row is still there');
      failing = false;
      r.resume();
      await Promise.all([r.waitFor(b!), r.waitFor(c!)]);
      assert.deepEqual(t.applied, [a, b, c], 'the applied record was not sent twice');
      assert.equal(j.pending(), 0);
      assert.equal(r.stalled, null);
    });
  });

  it('replay: a record whose outcome the cache cannot record stays (not refused, not dropped) and its caller still waits', async () => {
    await noUnhandled(async () => {
      const j = new Journal(freshDb());
      const t = new Target();
      const r = new Replayer(j, t);
      const [a, b, c] = [1, 2, 3].map((i) => r.append(rec(i)));
      t.failOnce.set(b!, sqliteFull());
      let outB: unknown = null;
      const waitB = r.waitFor(b!).then((o) => { outB = o; return o; });
      await r.waitFor(a!);
      await r.drained();
      assert.equal(outB, null, 'no answer yet: the record is neither applied for sure nor refused');
      assert.deepEqual(r.pendingEntries().map((e) => [e.seq, e.attempts]), [[b, 1], [c, 0]]);
      assert.equal(j.pending(), 2);
      assert.equal(t.applied.includes(c!), false, 'order kept: nothing after it went out');
      r.resume();
      assert.equal((await waitB).kind, 'done');
      await r.drained();
      assert.deepEqual(t.applied, [a, b, b, c]);
      assert.equal(j.pending(), 0);
    });
  });

  it('replay: an optimization that cannot be written is skipped, the records replay as they are', async () => {
    const j = new Journal(freshDb());
    const t = new Target();
    const r = new Replayer(j, t);
    r.pause();
    const seqs = [1, 2, 3].map((i) => r.append(rec(i)));
    j.transaction = () => { throw sqliteFull(); };
    assert.equal(r.optimize((es) => ({ keep: es.slice(2), drop: es.slice(0, 2).map((e) => e.seq) })), 0);
    assert.deepEqual(r.pendingEntries().map((e) => e.seq), seqs);
    r.resume();
    await r.drained();
    assert.deepEqual(t.applied, seqs);
  });

  it('the journal refuses a record its admission check turns down: ENOSPC, nothing queued', () => {
    const j = new Journal(freshDb());
    const r = new Replayer(j, new Target());
    r.pause();
    j.admit = (x) => x.op === 'write';
    assert.throws(() => r.append(rec(1)), (e: unknown) => e instanceof FsError && e.code === 'ENOSPC');
    assert.equal(r.pendingCount, 0);
    assert.equal(j.pending(), 0);
  });

  it('the index: access times that cannot be written are kept for the next flush (it runs from a timer: no throw)', () => {
    const db = freshDb();
    const index = new ObjectIndex(db, 'fs1');
    const o = index.upsert({ fh: Buffer.from('a'), attr: attr('v1') }, 1);
    index.touch(o, 12345);
    const st = (index as unknown as { st: { saveAccess: { run: (...a: unknown[]) => unknown } } }).st;
    const run = st.saveAccess.run.bind(st.saveAccess);
    st.saveAccess.run = () => { throw sqliteFull(); };
    index.flushAccessTimes();
    st.saveAccess.run = run;
    index.flushAccessTimes();
    assert.equal((db.prepare('SELECT last_access FROM objects WHERE id = ?').get(o.id) as { last_access: number }).last_access, 12345);
  });

  it('the index: an access time or block count the backend moved is kept in memory when SQLite cannot store it; other changes still fail', () => {
    const db = freshDb();
    const index = new ObjectIndex(db, 'fs1');
    const o = index.upsert({ fh: Buffer.from('a'), attr: attr('v1') }, 1);
    const st = (index as unknown as { st: { saveAttr: { run: (...a: unknown[]) => unknown } } }).st;
    st.saveAttr.run = () => { throw sqliteFull(); };
    index.setAttr(o, { ...attr('v1'), atimeNs: 5n, used: 8192 }, 2); // before: SQLITE_FULL, and the open or stat that revalidated failed with ENOSPC
    assert.equal(o.attr.atimeNs, 5n, 'the new access time is shown');
    assert.equal(o.attr.used, 8192, 'and the blocks used');
    assert.equal(o.attrAt, 2, 'and the attributes count as checked');
    assert.throws(() => index.setAttr(o, { ...attr('v2'), atimeNs: 5n }, 3), /full/, 'a new version must be stored (cached data depends on it)');
    assert.equal(o.attr.version, 'v1');
  });

  it('the index: a refused write leaves the mirror as SQLite has it (a provisional handle stays provisional)', () => {
    const db = freshDb();
    const index = new ObjectIndex(db, 'fs1');
    const o = index.upsert({ fh: Buffer.from('provisional-1'), attr: attr('v1') }, 1);
    const st = (index as unknown as { st: { setHandle: { run: (...a: unknown[]) => unknown } } }).st;
    st.setHandle.run = () => { throw sqliteFull(); };
    assert.throws(() => index.setHandle(o, Buffer.from('real-1')), /full/);
    assert.equal(o.fh.toString(), 'provisional-1');
    assert.equal(index.byHandle(Buffer.from('real-1')), undefined);
    assert.equal(index.byHandle(Buffer.from('provisional-1')), o);
  });

  it('the index: a batch that SQLite cannot commit leaves the mirror as SQLite has it', () => {
    const db = freshDb();
    const index = new ObjectIndex(db, 'fs1');
    const dir = index.upsert({ fh: Buffer.from('d'), attr: attr('v1') }, 1);
    const kid = index.upsert({ fh: Buffer.from('k'), attr: attr('v1') }, 1);
    index.replaceListing(dir, [{ name: 'old', id: kid.id }], 'v1');
    index.setDataVersion(kid, 'v1');
    // The database may not grow any more: the big listing cannot be stored.
    db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
    const many = Array.from({ length: 5000 }, (_, i) => ({ name: `name-${i}-${'x'.repeat(40)}`, id: kid.id }));
    assert.throws(() => index.batch(() => {
      index.setDataVersion(kid, 'self');
      index.replaceListing(dir, many, 'v2');
    }), (e: unknown) => (e as { code?: string }).code === 'SQLITE_FULL');
    assert.equal(dir.namesVersion, 'v1');
    assert.deepEqual([...index.namesOf(dir).keys()], ['old']);
    assert.equal(kid.dataVersion, 'v1');
  });

  it('the layer: a lookup that keeps a never-listed directory\'s listing for offline use goes on when the index cannot store it', async () => {
    const h = await layerHere('diskfull-keep', {
      fill: async (b) => {
        await fsp.mkdir(path.join(b, 'worked-in'));
        for (let i = 0; i < 20; i++) await fsp.writeFile(path.join(b, 'worked-in', `f${i}.c`), `int f${i};\n`);
      },
    });
    try {
      const index = (h.layer as unknown as { index: ObjectIndex }).index;
      const dir = await h.layer.resolve('/worked-in');
      assert.ok(!dir.complete && dir.stale === null, 'never listed, nothing kept yet');
      // The next batch (the one that stores the listing) fails as on a full cache disk.
      const batch = index.batch.bind(index);
      let refused = 0;
      index.batch = (<T>(fn: () => T): T => {
        if (refused === 0) { refused++; throw sqliteFull(); }
        return batch(fn);
      }) as typeof index.batch;
      const f = await h.layer.resolve('/worked-in/f3.c');
      assert.equal(refused, 1, 'the listing was refused by the index');
      assert.equal(f.attr.size, 'int f3;\n'.length, 'the lookup answered from the backend all the same');
      assert.equal(dir.stale, null, 'no listing is kept for the disconnected answer');
      // Not tried again at every lookup: the next lookup in it asks for the name alone.
      assert.equal((await h.layer.resolve('/worked-in/f4.c')).attr.size, 'int f4;\n'.length);
      assert.equal(dir.stale, null);
    } finally {
      await h.dispose();
    }
  });

  describe('the culler on a small cache disk (24 MiB)', () => {
    const MiB24 = (24 * MiB) / 4096;
    const world = (free: number, evict: CullLayer['evict'] = () => 0) => {
      const disk = { current: { bsize: 4096, blocks: MiB24, bavail: free / 4096, files: 10000, ffree: 9000 } as DiskSpace };
      const layer: CullLayer = {
        evict, isDirty: () => false, isOpen: () => false,
        resolve: async () => { throw new FsError('ENOENT'); }, storeData: true, admitOffline: null,
      };
      const objs = [{ id: 7, size: MiB, cachedBytes: MiB, lastAccess: 1, chunks: 1, maxChunk: 0 }];
      const culler = new Culler({
        layer,
        index: { cachedData: () => objs, get: (id) => ({ id, cachedBytes: MiB } as unknown as CachedObject), parentOf: () => null },
        pins: { covering: () => null, list: () => [] },
        rootId: () => 1,
        config: { ...DEFAULTS.culling, intervalS: 3600 },
        chunkSize: MiB, cacheDir: '/nowhere',
        statfs: async () => ({ ...disk.current }),
        statfsSync: () => ({ ...disk.current }),
      });
      return { culler, layer, disk };
    };

    it('keeps a reserve for the index and journal: offline data stops at 6 MiB free (bstop alone would allow 0.7 MiB)', async () => {
      const w = world(7 * MiB);
      await w.culler.start();
      assert.equal(w.layer.admitOffline!(512 * 1024), true);
      assert.equal(w.layer.admitOffline!(2 * MiB), false, 'it would leave 5 MiB');
      assert.equal(w.culler.journalRoom(), true);
      w.culler.stop();
    });

    it('reads the disk again near the threshold: what the index and the log took since is seen', async () => {
      const w = world(12 * MiB);
      await w.culler.start();
      // The index grew by 5 MiB since the last reading; no running figure counts it.
      w.disk.current = { ...w.disk.current, bavail: (7 * MiB) / 4096 };
      await sleep(60);
      assert.equal(w.layer.admitOffline!(2 * MiB), false);
      w.culler.stop();
    });

    it('changes made offline are journaled only while half the reserve is left', async () => {
      const w = world(4 * MiB);
      await w.culler.start();
      assert.equal(w.culler.journalRoom(), true);
      w.disk.current = { ...w.disk.current, bavail: (2 * MiB) / 4096 };
      await sleep(60);
      assert.equal(w.culler.journalRoom(), false);
      w.culler.stop();
    });

    it('culling from its timer survives an eviction the index cannot write (the data is kept)', async () => {
      await noUnhandled(async () => {
        const w = world(MiB, () => { throw sqliteFull(); });
        await w.culler.start(); // culls at once: below bcull
        await w.culler.check('interval');
        assert.equal(w.layer.storeData, false, 'still full: nothing new is kept');
        w.culler.stop();
      });
    });
  });

  it('the log file on a full disk drops lines instead of ending the process', async () => {
    await noUnhandled(async () => {
      const seen: unknown[] = [];
      const on = (e: unknown) => { seen.push(e); };
      process.on('uncaughtException', on);
      try {
        const f = new LogFile('/dev/full'); // every write: ENOSPC
        for (let i = 0; i < 50; i++) f.write(`line ${i}`);
        await sleep(50);
        f.write('one more');
        await f.close();
      } finally {
        process.off('uncaughtException', on);
      }
      assert.deepEqual(seen.map(String), []);
    });
  });
});

// ---------------------------------------------------------------- real mounts
const SKIP = asRoot ? false : 'tmpfs needs root';

/** One suite's mount over a fresh 24 MiB tmpfs, a backend with a file, and a watcher. */
function suite() {
  const t = new TmpfsMount();
  const ctx = { t, m: t.m, watcher: undefined as Watcher | undefined, expected: new Map<string, Buffer | null>() };
  before(async () => {
    await t.start();
    const keep = randomBytes(10_000);
    await fsp.mkdir(t.m.b('docs'));
    await fsp.writeFile(t.m.b('docs', 'keep.txt'), keep);
    ctx.expected.set('docs', null);
    ctx.expected.set('docs/keep.txt', keep);
    await t.m.mount();
    await fsp.readdir(t.m.m('')); // the names, for working offline
    await fsp.readdir(t.m.m('docs'));
    ctx.watcher = new Watcher(t.m.mnt);
    await ctx.watcher.waitFor('state');
  });
  after(async () => {
    ctx.watcher?.kill();
    await t.dispose();
  });
  return ctx;
}

describe('a full cache disk: offline writes, metadata changes, replay once there is room (local backend, 24 MiB tmpfs cache)', { skip: SKIP }, () => {
  const c = suite();

  it('offline: a write that does not fit fails with ENOSPC (cache-full), metadata changes never EIO, the mount stays up; after room is made the replay brings every acknowledged file', async (ctx) => {
    const { t, m, watcher, expected } = c;
    assert.ok(watcher);
    const { pid } = await t.status();
    await ok(['offline', m.mnt]);

    const written = new Map<string, Buffer>();
    let failed: { name: string; code: string } | null = null;
    for (let i = 0; i < 40 && !failed; i++) {
      const name = `f${String(i).padStart(2, '0')}.bin`;
      const data = randomBytes(MiB);
      const code = await codeOf(fsp.writeFile(m.m(name), data));
      if (code === 'ok') written.set(name, data);
      else failed = { name, code };
    }
    assert.ok(failed, 'the 24 MiB cache disk filled up');
    assert.equal(failed.code, 'ENOSPC', `the write that did not fit (${failed.name})`);
    assert.ok(written.size >= 10, `${written.size} files fit before the disk was full`);
    const full = await watcher.waitFor('cache-full');
    assert.equal(full.path, `/${failed.name}`);
    assert.equal(await codeOf(fsp.writeFile(m.m('more.bin'), randomBytes(MiB))), 'ENOSPC', 'still full');

    // Metadata changes: each succeeds (journaled) or fails with ENOSPC, never EIO; many of
    // them, to use up whatever the index keeps for itself.
    const codes = new Set<string>();
    const note = (what: string, code: string) => {
      codes.add(code);
      assert.ok(code === 'ok' || code === 'ENOSPC', `${what}: ${code}`);
      return code === 'ok';
    };
    const names = [...written.keys()];
    if (note('rename', await codeOf(fsp.rename(m.m(names[0]!), m.m('renamed.bin'))))) {
      written.set('renamed.bin', written.get(names[0]!)!);
      written.delete(names[0]!);
    }
    const when = new Date('2001-02-03T04:05:06Z');
    const touched = note('touch', await codeOf(fsp.utimes(m.m(names[1]!), when, when))) ? names[1]! : null;
    assert.ok(names.length >= 10);
    for (let i = 0; i < 200; i++) {
      if (note(`mkdir d${i}`, await codeOf(fsp.mkdir(m.m(`d${i}`))))) expected.set(`d${i}`, null);
      if (note(`create e${i}`, await codeOf(fsp.writeFile(m.m(`e${i}.txt`), '')))) expected.set(`e${i}.txt`, Buffer.alloc(0));
    }
    // The disk filled up to the last byte from outside: the journal cannot take a change, and
    // each one says ENOSPC (the index's SQLITE_FULL, or the journal's own refusal), never EIO.
    const filler = await fill(m.cache);
    const tight = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const codes = [
        await codeOf(fsp.mkdir(m.m(`full-d${i}`))),
        await codeOf(fsp.writeFile(m.m(`full-e${i}.txt`), '')),
        await codeOf(fsp.utimes(m.m(names[3]!), when, when)),
        await codeOf(fsp.rename(m.m(names[4 + i]!), m.m(`full-r${i}.bin`))),
      ];
      codes.forEach((c) => tight.add(c));
      assert.ok(codes.every((c) => c === 'ok' || c === 'ENOSPC'), `on a full disk: ${codes.join(', ')}`);
      if (codes[0] === 'ok') expected.set(`full-d${i}`, null);
      if (codes[1] === 'ok') expected.set(`full-e${i}.txt`, Buffer.alloc(0));
      if (codes[3] === 'ok') {
        written.set(`full-r${i}.bin`, written.get(names[4 + i]!)!);
        written.delete(names[4 + i]!);
      }
    }
    assert.ok(tight.has('ENOSPC'), `metadata changes on a full disk: ${[...tight].join(', ')}`);
    assert.ok(alive(pid), 'the mount process is alive on a full disk');
    assert.equal((await t.status()).state, 'disconnected', 'status answers on a full disk');
    await fsp.rm(filler);

    // The mount process is alive and answers.
    assert.ok(alive(pid), 'the mount process is alive');
    let s = await t.status();
    ctx.diagnostic(`${written.size} files of 1 MiB fit; metadata changes: ${[...codes].join(', ')}, on a full disk: ${[...tight].join(', ')}; ${JSON.stringify(s.cache)}`);
    assert.equal(s.state, 'disconnected');
    assert.ok(s.journal.pending > written.size, JSON.stringify(s.journal));
    await ok(['status', m.mnt]);

    // Room is made through the mount: the file that did not fit, and one that did.
    await fsp.rm(m.m(failed.name));
    await fsp.rm(m.m('more.bin'), { force: true });
    const dropped = names[2]!;
    await fsp.rm(m.m(dropped));
    written.delete(dropped);

    const r = await cli(['online', m.mnt], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(alive(pid), 'the mount process survived the replay');
    s = await t.status();
    assert.equal(s.state, 'connected', JSON.stringify(s));
    assert.equal(s.journal.pending, 0);
    for (const [k, v] of written) expected.set(k, v);
    assertTree(await tree(m.backend), expected);
    if (touched) assert.equal((await fsp.stat(m.b(touched))).mtime.getTime(), when.getTime(), 'the touch was replayed');
    assert.ok(codes.size > 0);

    // Unmount and mount again: the cache is usable.
    await m.remount();
    assert.equal((await t.status()).state, 'connected');
    for (const [k, v] of written) assert.ok((await fsp.readFile(m.m(k))).equals(v!), `${k} through the mount after remounting`);
  });
});

describe('a full cache disk during the replay (local backend, 24 MiB tmpfs cache)', { skip: SKIP }, () => {
  const c = suite();

  it('the disk filling up from outside during the replay: no crash, nothing lost; a later sync finishes it', async (ctx) => {
    const { t, m, watcher, expected } = c;
    assert.ok(watcher);
    const { pid } = await t.status();
    await ok(['offline', m.mnt]);
    const made = new Map<string, Buffer>();
    await fsp.mkdir(m.m('late'));
    expected.set('late', null);
    for (let i = 0; i < 150; i++) {
      const data = randomBytes(i % 10 === 0 ? 300_000 : 2000);
      await fsp.writeFile(m.m('late', `g${i}.bin`), data);
      made.set(`late/g${i}.bin`, data);
    }
    const before = (await t.status()).journal.pending;
    assert.ok(before >= 300, `${before} records`);

    // The replay's first index update must need the disk to grow.
    t.truncateWal();
    const filler = await fill(m.cache);
    const r = await cli(['online', m.mnt], { timeoutMs: 120_000 });
    assert.ok(alive(pid), `the mount process survived a replay onto a full cache disk (online: ${r.code} ${r.stderr})`);
    const s = await t.status();
    ctx.diagnostic(`online onto a full disk: exit ${r.code} ${r.stdout.trim()} ${r.stderr.trim()}; journal ${JSON.stringify(s.journal)}`);
    // Whatever left the journal is on the backend; the rest waits in the journal.
    const onBackend = await tree(m.backend);
    let missing = 0;
    for (const [k, v] of made) {
      const got = onBackend.get(k);
      if (got && got.equals(v)) continue;
      missing++;
    }
    assert.ok(missing === 0 || s.journal.pending > 0, `${missing} files are not on the backend, yet the journal is empty: ${JSON.stringify(s)}`);
    // The replay could not record its progress: it waits, and says why.
    assert.ok(s.journal.pending > 0, 'the replay stalled on the full disk');
    assert.equal(s.state, 'disconnected');
    assert.match(s.reason, /cache disk is full/);
    assert.match(s.journal.stalled?.reason ?? '', /cache disk is full: replay waits for room/);
    assert.match(await ok(['status', m.mnt]), /replay held up since .*: the cache disk is full/);
    for (let i = 0; i < 100 && !watcher.events().some((e) => e.type === 'offline' && /cache disk is full/.test((e as { reason?: string }).reason ?? '')); i++) await sleep(50);
    assert.ok(watcher.events().some((e) => e.type === 'offline' && /cache disk is full/.test((e as { reason?: string }).reason ?? '')),
      `watch hears why:\n${watcher.lines.join('\n')}`);

    await fsp.rm(filler);
    const again = await cli(['sync', m.mnt], { timeoutMs: 120_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.ok(alive(pid));
    for (let i = 0; i < 100 && (await t.status()).state !== 'connected'; i++) await sleep(100);
    const after = await t.status();
    assert.equal(after.state, 'connected', JSON.stringify(after));
    assert.equal(after.journal.pending, 0);
    for (const [k, v] of made) expected.set(k, v);
    assertTree(await tree(m.backend), expected);
    await m.remount();
    assert.equal((await t.status()).state, 'connected');
  });
});

describe('mounting on a full cache disk (local backend, 24 MiB tmpfs cache)', { skip: SKIP }, () => {
  const c = suite();

  it('a mount on a full cache disk starts, or says why it cannot; once there is room it starts', async (ctx) => {
    const { t, m, expected } = c;
    await fsp.writeFile(m.m('before.bin'), randomBytes(3 * MiB));
    expected.set('before.bin', await fsp.readFile(m.b('before.bin')));
    let r = await m.umount();
    assert.equal(r.code, 0, r.stderr);
    const filler = await fill(m.cache);
    r = await cli(['mount', m.source, m.mnt, '--cache-dir', m.cache, '--config', m.configFile]);
    ctx.diagnostic(`mount on a full disk: exit ${r.code} ${r.stdout.trim()} ${r.stderr.trim()}`);
    if (r.code === 0) {
      const s = await t.status();
      assert.ok(alive(s.pid));
      assert.equal(await codeOf(fsp.writeFile(m.m('x.bin'), 'x')), 'ok', 'connected, a write goes to the backend');
      expected.set('x.bin', Buffer.from('x'));
      r = await m.umount();
      assert.equal(r.code, 0, r.stderr);
    } else {
      assert.match(r.stderr, /the cache disk is full \(.*free\)/, `the error says why: ${r.stderr}`);
      assert.match(r.stderr, /hint: make room on that disk/);
    }
    await fsp.rm(filler);
    await m.mount();
    assert.equal((await t.status()).state, 'connected');
    assert.ok((await fsp.stat(path.join(m.cache, 'cachefs.log'))).size > 0, 'the log is not empty');
    assertTree(await tree(m.backend), expected);
    assert.ok((await fsp.readFile(m.m('before.bin'))).equals(expected.get('before.bin')!));
  });
});

describe('a full cache disk when the mount reconnects by itself (local backend, 24 MiB tmpfs cache)', { skip: SKIP }, () => {
  const c = suite();
  let filler: string | null = null;

  it('a failure of the index that no part of the mount expected is logged and shown by status; the mount process stays up', async (ctx) => {
    const { t, m } = c;
    const { pid } = await t.status();
    // The backend goes away: the next open (close-to-open) finds it unreachable.
    await fsp.writeFile(t.faults, JSON.stringify({ fail: { getattr: 'ECONNREFUSED', lookup: 'ECONNREFUSED' } }));
    await fsp.readFile(m.m('docs', 'keep.txt')).catch(() => undefined);
    await t.waitState('disconnected');
    t.truncateWal();
    filler = await fill(m.cache);
    // It comes back: the mount's probe (every 2 s) reintegrates by itself, onto a full disk.
    await fsp.rm(t.faults);
    let s = await t.status();
    for (const t0 = Date.now(); Date.now() - t0 < 15_000; s = await t.status()) {
      if (s.cache.storageError || (s.state === 'disconnected' && /reintegration could not finish/.test(s.reason))) break;
      await sleep(100);
    }
    ctx.diagnostic(`after reconnecting onto a full disk: ${s.state} (${s.reason}); storageError ${JSON.stringify(s.cache.storageError)}`);
    assert.ok(alive(pid), 'the mount process is alive');
    assert.ok(s.cache.storageError || /reintegration could not finish/.test(s.reason), `the failure is shown: ${JSON.stringify(s)}`);
    if (s.cache.storageError) assert.match(await ok(['status', m.mnt]), /storage +the cache's index could not be written at .*: .*full/);
  });

  it('once there is room, the mount reconnects by itself', async () => {
    const { t } = c;
    if (filler) await fsp.rm(filler, { force: true });
    await t.waitState('connected');
  });
});

describe('a full cache disk under FUSE passthrough for writes (local backend, 24 MiB tmpfs cache)', { skip: SKIP }, () => {
  const t = new TmpfsMount();
  before(async () => {
    await t.start({ fuse: { passthrough: true, passthroughWrites: true } });
    await t.m.mount();
  });
  after(async () => { await t.dispose(); });

  it('offline, what the kernel wrote cannot be journaled at close: close says ENOSPC, the mount stays up, the bytes are journaled once there is room and replayed', async () => {
    const { m } = t;
    const { pid } = await t.status();
    const old = randomBytes(2 * MiB);
    await fsp.writeFile(m.m('doc.bin'), old);
    assert.ok((await fsp.readFile(m.b('doc.bin'))).equals(old), 'connected, the backend has it at close');
    await ok(['offline', m.mnt]);
    const h = await fsp.open(m.m('doc.bin'), 'r+');
    const patch = randomBytes(MiB);
    await h.write(patch, 0, MiB, 512 * 1024); // into the cache file, by the kernel
    t.truncateWal();
    const filler = await fill(m.cache);
    const code = await codeOf(h.close());
    assert.equal(code, 'ENOSPC', 'close on a full disk: its journaling failed');
    assert.ok(alive(pid), 'the mount process is alive');
    const want = Buffer.from(old);
    patch.copy(want, 512 * 1024);
    assert.ok((await fsp.readFile(m.m('doc.bin'))).equals(want), 'the mount shows the bytes written');
    await fsp.rm(filler);
    // The last release's journaling is tried again (every 5 s) once there is room.
    await waitUntil('the bytes to be journaled', async () => (await t.status()).journal.pending > 0, 30_000, 200);
    await ok(['online', m.mnt]);
    await waitUntil('the replay', async () => { const s = await t.status(); return s.state === 'connected' && s.journal.pending === 0; }, 60_000, 200);
    assert.ok((await fsp.readFile(m.b('doc.bin'))).equals(want), 'the backend has every byte written');
  });
});

describe('a whole-file copy at open that does not fit the cache disk (local backend, 24 MiB tmpfs cache)', { skip: SKIP }, () => {
  const t = new TmpfsMount();
  before(async () => {
    await t.start();
    await t.m.mount();
  });
  after(async () => { await t.dispose(); });

  it('a 40 MiB file read through the mount: the copy stops where the disk is full, every byte still reads right, the mount stays up', async () => {
    const { m } = t;
    const { pid } = await t.status();
    const data = randomBytes(40 * MiB);
    await fsp.writeFile(m.b('big.bin'), data);
    const before = (await t.status()).counters.bytesFromBackend;
    assert.ok((await fsp.readFile(m.m('big.bin'))).equals(data), 'the bytes read are the file\'s');
    assert.ok((await t.status()).counters.bytesFromBackend - before >= data.length, 'the backend gave every byte');
    assert.ok(alive(pid), 'the mount process is alive');
    assert.ok((await fsp.readFile(m.m('big.bin'))).equals(data), 'and so are those read again');
    assert.equal((await t.status()).state, 'connected');
  });
});
