// A mount stays up for days while connected: what it keeps in memory must not grow with the
// number of operations it has answered. Each connected change waits for its record to be
// applied *or* for the mount to go offline; a wait of the second kind that outlives the first
// (a reaction left on a promise that settles only at the next disconnection) is a leak of a
// few hundred bytes per operation, gigabytes after a long session.
// The same for the objects a walk of a big tree has seen.
// The layer runs in this process (its heap is this test's), over a real directory and index.
import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { layerHere, type LayerHere } from './helpers/layer.js';
import { BACKEND_KINDS } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/**
 * The heap in use by data once everything unreachable is collected: compiled code (its own
 * spaces) grows for a while as functions are optimized, which is no leak.
 */
async function liveHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setImmediate(r));
    gc();
  }
  return v8.getHeapSpaceStatistics().filter((s) => !s.space_name.startsWith('code')).reduce((n, s) => n + s.space_used_size, 0);
}

for (const kind of BACKEND_KINDS) describe(`long-running connected mount (${kind} backend)`, () => {
  let h: LayerHere;
  let srv: NfsServer | undefined;
  before(async () => {
    srv = kind === 'nfs' ? await startNfsServer('long') : undefined;
    h = await layerHere('long', { nfs: srv, fill: async (d) => { await fsp.writeFile(path.join(d, 'f.txt'), 'x'); } });
  });
  after(async () => { await h?.dispose(); await srv?.dispose(); });

  it('keeps no memory per connected change (chmod, utimens, writes and closes)', async () => {
    const obj = await h.layer.resolve('/f.txt');
    const round = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        await h.layer.setattr(obj, { mode: i % 2 ? 0o644 : 0o600 });
        await h.layer.setattr(obj, { mtime: { kind: 'set', ns: String(BigInt(i) * 1_000_000_000n) } });
        const fd = await h.layer.open('/f.txt', 2 /* O_RDWR */);
        await h.layer.write(fd, 0, Buffer.from(`v${i}`));
        await h.layer.flush(fd);
        await h.layer.release(fd);
      }
    };
    await round(1000); // statements prepared, code compiled and optimized
    const before = await liveHeap();
    const N = 2000;
    await round(N);
    const grown = (await liveHeap()) - before;
    // A wait kept per change was 3.8 KB a round (7.6 MB); the replayer's queue of applied
    // records and the collector's leftovers account for up to ~300 KiB.
    assert.ok(grown < 1024 * 1024, `the heap grew by ${grown} bytes over ${N} rounds (${(grown / N).toFixed(0)} bytes a round)`);
    assert.equal(await fsp.readFile(path.join(h.backend, 'f.txt'), 'utf8'), `v${N - 1}`, 'every change reached the backend');
  });

  // Per object made and removed: the layer's and the backends' tables. Over the local
  // backend only (its table of paths is the one that grew; NFS names objects by handle),
  // which keeps the suite's time down.
  it('keeps no memory per file made and removed (create, write, save by rename, unlink, mkdir, rmdir)', { skip: kind !== 'local' }, async () => {
    const me = { uid: process.getuid!(), gid: process.getgid!() };
    let k = 0;
    const round = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++, k++) {
        await h.layer.mkdir(`/d${k}`, 0o755, me);
        const fd = await h.layer.create(`/d${k}/.f.swp`, 0o644, 0o101 /* O_WRONLY|O_CREAT */, me);
        await h.layer.write(fd, 0, Buffer.from(`file ${k}`));
        await h.layer.release(fd);
        await h.layer.rename(`/d${k}/.f.swp`, `/d${k}/f`);
        await h.layer.unlink(`/d${k}/f`);
        await h.layer.rmdir(`/d${k}`);
      }
    };
    // Statements prepared, code compiled and optimized, and the index's memo of our own
    // recent removals (1,024 names, three a round) full.
    await round(400);
    const before = await liveHeap();
    const N = 1600;
    await round(N);
    const grown = (await liveHeap()) - before;
    // The local backend's entry for each object ever seen and the negative name cached for
    // each name removed were ~450 bytes a round (0.7 MB); the collector's leftovers are
    // under 100 KiB here.
    assert.ok(grown < 400 * 1024, `the heap grew by ${grown} bytes over ${N} rounds (${(grown / N).toFixed(0)} bytes a round)`);
    assert.deepEqual((await fsp.readdir(h.backend)).sort(), ['f.txt'], 'every name made was removed on the backend');
  });

  // A walk of a big tree (find, a backup, a hoard walk) sees every object once: memory must
  // not keep them all for the rest of the mount's life (about 1 KB each, a gigabyte for a
  // million files). The index keeps 500 here (32,768 by default) so that the walk is short.
  it('keeps a bounded number of objects in memory however many a walk has seen', { skip: kind !== 'local' }, async () => {
    const D = 50, PER = 200;
    const w = await layerHere('walk', {
      keepObjects: 500,
      fill: async (b) => {
        for (let i = 0; i < D + 2; i++) {
          await fsp.mkdir(path.join(b, `d${i}`));
          for (let j = 0; j < PER; j++) await fsp.writeFile(path.join(b, `d${i}`, `f${j}`), '');
        }
      },
    });
    try {
      const walk = async (from: number, to: number): Promise<number> => {
        let n = 0;
        for (let i = from; i < to; i++) {
          const { entries } = await w.layer.readdir(`/d${i}`);
          for (const e of entries) { await w.layer.getattr(`/d${i}/${e.name}`); n++; }
        }
        return n;
      };
      await walk(D, D + 2); // statements prepared, code compiled
      const before = await liveHeap();
      const n = await walk(0, D);
      const grown = (await liveHeap()) - before;
      assert.equal(n, D * PER);
      // Every object seen stayed before: 12 MB for these 10,000 files (1.2 KB each). What is
      // left is the local backend's path for each object (places.ts, ~250 bytes: it is how a
      // handle finds its file without a search) and the recently used objects.
      assert.ok(grown < 5 * 1024 * 1024, `the heap grew by ${grown} bytes over a walk of ${n} files (${(grown / n).toFixed(0)} bytes a file)`);
    } finally {
      await w.dispose();
    }
  });
});
