// The object index's contract for loading a directory's children in one query
// (ObjectIndex.loadChildren, used by listings after a remount): every child comes into
// memory, and an object already in memory keeps its in-memory state. And the names a
// directory's lookups learnt survive our own changes to it (the layer's learnName). And
// memory holds a bounded number of objects (index/mirror.ts), never two copies of one, and
// never lets go of state that is in memory only.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { openDb } from '../src/index/db.js';
import { ObjectIndex } from '../src/index/objects.js';
import type { Attr } from '../src/backends/types.js';
import { tempRoot } from './helpers/cachefs.js';
import { layerHere } from './helpers/layer.js';

const attr = (type: Attr['type'], v: string, size = 0): Attr => ({
  type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size, nlink: 1, rdev: 0, used: size,
  atimeNs: 1n, mtimeNs: 1n, ctimeNs: 1n, version: v,
});

describe('object index: a directory\'s children loaded at once', () => {
  const root = tempRoot('index-objects');
  after(() => fsp.rm(root, { recursive: true, force: true }));

  it('loads every child not in memory, and leaves the ones in memory as they are', async () => {
    await fsp.mkdir(root, { recursive: true });
    const file = path.join(root, 'index.sqlite');
    const before = new ObjectIndex(openDb(file), 'fs1');
    const dir = before.upsert({ fh: Buffer.from('dir'), attr: attr('dir', 'd1') }, 1);
    const kids = ['a', 'b', 'c'].map((n, i) => before.upsert({ fh: Buffer.from(`kid-${n}`), attr: attr('file', `v${i}`, 10 + i) }, 1));
    before.replaceListing(dir, kids.map((k, i) => ({ name: ['a', 'b', 'c'][i]!, id: k.id })), 'd1');
    // An object of another file system under the same id space must not be taken for a child.
    const other = new ObjectIndex(openDb(file), 'fs2');
    other.upsert({ fh: Buffer.from('elsewhere'), attr: attr('file', 'x') }, 1);

    // As after a remount: a new index over the same file, nothing in memory.
    const idx = new ObjectIndex(openDb(file), 'fs1');
    const d = idx.byHandle(Buffer.from('dir'))!;
    const b = idx.get(kids[1]!.id)!;
    idx.setLocalSize(b, 999); // in memory only: loadChildren must not overwrite it from its row
    const inMemory = () => new Set([...idx.loaded()].map((o) => o.id));
    assert.ok(!inMemory().has(kids[0]!.id) && !inMemory().has(kids[2]!.id), 'a and c are not loaded yet');

    idx.loadChildren(d);
    for (const k of kids) assert.ok(inMemory().has(k.id), `child ${k.id} is loaded`);
    assert.equal(idx.get(kids[1]!.id), b, 'the object in memory is the same one');
    assert.equal(b.attr.size, 999, 'and keeps its in-memory state');
    assert.equal(idx.get(kids[2]!.id)!.attr.size, 12, 'a child loaded from its row has its stored attributes');
    assert.equal([...idx.loaded()].length, 4, 'the directory and its three children: nothing of fs2');
  });

  it('a listing that only confirms the stored names writes no name rows; one that differs replaces them', async () => {
    await fsp.mkdir(root, { recursive: true });
    const db = openDb(path.join(root, 'relist.sqlite'));
    const idx = new ObjectIndex(db, 'fs1');
    const changes = (): number => (db.prepare('SELECT total_changes() AS n').get() as { n: number }).n;
    const dir = idx.upsert({ fh: Buffer.from('relisted'), attr: attr('dir', 'r1') }, 1);
    const kids = ['a', 'b', 'c'].map((n) => idx.upsert({ fh: Buffer.from(`relisted-${n}`), attr: attr('file', n) }, 1));
    const listing = kids.map((k, i) => ({ name: ['a', 'b', 'c'][i]!, id: k.id }));
    idx.replaceListing(dir, listing, 'r1');
    let before = changes();
    idx.replaceListing(dir, listing, 'r1');
    assert.equal(changes() - before, 0, 'the same names at the same version: nothing written');
    before = changes();
    idx.replaceListing(dir, listing, 'r2');
    assert.equal(changes() - before, 1, 'the same names at a new version: the directory row only');
    const fresh = new ObjectIndex(openDb(path.join(root, 'relist.sqlite')), 'fs1');
    const d = fresh.byHandle(Buffer.from('relisted'))!;
    assert.equal(d.namesVersion, 'r2', 'the new version is stored');
    assert.deepEqual([...fresh.namesOf(d)].sort(), listing.map((e) => [e.name, e.id]), 'and the names are as listed');
    idx.replaceListing(dir, [listing[0]!, { name: 'd', id: kids[2]!.id }], 'r3');
    const again = new ObjectIndex(openDb(path.join(root, 'relist.sqlite')), 'fs1');
    assert.deepEqual([...again.namesOf(again.byHandle(Buffer.from('relisted'))!)].sort(), [['a', kids[0]!.id], ['d', kids[2]!.id]], 'a listing that differs replaces the names');
  });

  it('keeps a removed name as negative only where absence would not say it already', async () => {
    await fsp.mkdir(root, { recursive: true });
    const db = openDb(path.join(root, 'negative.sqlite'));
    const idx = new ObjectIndex(db, 'fs1');
    const rows = (d: { id: number }) => (db.prepare('SELECT name, child FROM names WHERE parent = ? ORDER BY name').all(d.id) as { name: string; child: number | null }[])
      .map((r) => `${r.name}:${r.child ?? 'absent'}`);
    const listed = idx.upsert({ fh: Buffer.from('listed'), attr: attr('dir', 'l1') }, 1);
    const learnt = idx.upsert({ fh: Buffer.from('learnt'), attr: attr('dir', 'n1') }, 1);
    const f = idx.upsert({ fh: Buffer.from('f'), attr: attr('file', 'f1') }, 1);
    idx.replaceListing(listed, [{ name: 'keep', id: f.id }], 'l1');
    for (let i = 0; i < 100; i++) { idx.setName(listed, `tmp${i}`, f.id); idx.setName(listed, `tmp${i}`, null); }
    assert.deepEqual([...idx.namesOf(listed).keys()], ['keep'], 'a complete listing: a removed name is simply not in it');
    assert.deepEqual(rows(listed), [`keep:${f.id}`], 'nor in its rows');
    // The watcher reports our removals too: the index knows them for ours (once each), so
    // that the report does not drop the listing as someone else's change would.
    assert.equal(idx.takeRemovedHere(listed, 'tmp7'), true, 'removed by us');
    assert.equal(idx.takeRemovedHere(listed, 'tmp7'), false, 'used up');
    assert.equal(idx.takeRemovedHere(listed, 'keep'), false, 'never removed');
    idx.setName(learnt, 'gone', f.id);
    idx.setName(learnt, 'gone', null);
    assert.deepEqual(rows(learnt), ['gone:absent'], 'names learnt by lookups: the removal is what says it is gone');
    db.close();
  });
});

describe('names a directory\'s lookups learnt (never listed)', () => {
  const ME = { uid: process.getuid!(), gid: process.getgid!() };

  it('survive our own creates in it: they are not all dropped and looked up again at each one', async () => {
    const h = await layerHere('learnt-names', {
      fill: async (b) => { await fsp.mkdir(path.join(b, 'd')); await fsp.writeFile(path.join(b, 'd', 'old.txt'), 'x'); },
    });
    try {
      const index = (h.layer as unknown as { index: ObjectIndex }).index;
      await h.layer.resolve('/d/old.txt');
      const d = await h.layer.resolve('/d');
      assert.equal(d.complete, false, 'known by a lookup only');
      for (let i = 0; i < 5; i++) await h.layer.release(await h.layer.create(`/d/new${i}`, 0o644, 0o1, ME));
      await h.layer.resolve('/d'); // revalidated after the last create
      assert.deepEqual([...index.namesOf(d).keys()].sort(), ['new0', 'new1', 'new2', 'new3', 'new4', 'old.txt']);
      assert.equal(d.complete, false, 'still not a listing: a name made elsewhere is looked up');
      await fsp.writeFile(path.join(h.backend, 'd', 'outside.txt'), 'y');
      assert.equal((await h.layer.resolve('/d/outside.txt')).attr.size, 1);
    } finally {
      await h.dispose();
    }
  });
});

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Collects everything unreachable (twice: WeakRefs are cleared after the job they were read in). */
async function collect(): Promise<void> {
  for (let i = 0; i < 3; i++) { await new Promise((r) => setImmediate(r)); gc(); }
}

describe('object index: a bounded number of objects in memory', () => {
  const root = tempRoot('index-mirror');
  after(() => fsp.rm(root, { recursive: true, force: true }));

  /** `n` files in one listed directory, made through a fresh index that keeps `keep` objects. */
  async function indexWith(name: string, keep: number, n: number) {
    await fsp.mkdir(root, { recursive: true });
    const db = openDb(path.join(root, `${name}.sqlite`));
    const idx = new ObjectIndex(db, 'fs1', { keepObjects: keep });
    const dir = idx.upsert({ fh: Buffer.from('dir'), attr: attr('dir', 'd1') }, 1);
    const ids: number[] = [];
    idx.batch(() => { for (let i = 0; i < n; i++) ids.push(idx.upsert({ fh: Buffer.from(`f${i}`), attr: attr('file', `v${i}`, i) }, 1).id); });
    idx.replaceListing(dir, ids.map((id, i) => ({ name: `f${i}`, id })), 'd1');
    return { db, idx, dirId: dir.id, ids };
  }

  it('lets go of objects nobody holds beyond the ones it keeps, and loads them again from their rows', async () => {
    const { db, idx, ids } = await indexWith('bounded', 50, 2000);
    await collect();
    const n = [...idx.loaded()].length;
    // Before the mirror held every object ever loaded: all 2,001 stayed.
    assert.ok(n <= 2 * 50 + 1, `${n} objects in memory, keeping 50 (at most 100 of them recently used, and the directory)`);
    const o = idx.get(ids[7]!)!;
    assert.equal(o.attr.size, 7, 'an object let go comes back from its row');
    assert.equal(idx.byHandle(Buffer.from('f7')), o, 'and by its handle, as the same object');
    db.close();
  });

  it('never makes a second copy of an object someone holds', async () => {
    const { db, idx, ids } = await indexWith('identity', 4, 500);
    const held = idx.get(ids[3]!)!;
    idx.setAttr(held, attr('file', 'changed', 42), 2);
    for (const id of ids) idx.get(id); // everything else used since: `held` is not among the recent
    await collect();
    assert.equal(idx.get(ids[3]!), held, 'get returns the object held');
    assert.equal(idx.byHandle(Buffer.from('f3')), held, 'byHandle too');
    assert.equal(held.attrAt, 2, 'with its memory-only state');
    db.close();
  });

  it('keeps what is in memory only: a stale listing, a size grown by a write, an access time', async () => {
    const { db, idx, dirId, ids } = await indexWith('pins', 4, 300);
    const grown = idx.get(ids[5]!)!;
    idx.setLocalSize(grown, 12_345);
    const touched = idx.get(ids[6]!)!;
    idx.touch(touched, 777_777);
    idx.invalidateNames(idx.get(dirId)!); // its names are now the disconnected answer only
    for (const id of ids) idx.get(id);
    await collect();
    assert.equal(idx.get(ids[5]!)!.attr.size, 12_345, 'the size a write grew (not stored yet)');
    const dir = idx.get(dirId)!;
    assert.equal(dir.stale?.names.get('f9'), ids[9], 'the stale listing');
    assert.equal(dir.stale?.complete, true);
    assert.equal(idx.pathOf(ids[9]!, dirId), '/f9', 'which still names the objects in it');
    idx.flushAccessTimes();
    assert.equal((db.prepare('SELECT last_access FROM objects WHERE id = ?').get(ids[6]!) as { last_access: number }).last_access, 777_777, 'the access time, written at the flush');
    // Once stored, the size needs memory no more: the backend's attributes are written.
    idx.setAttr(idx.get(ids[5]!)!, attr('file', 'v5b', 12_345), 3);
    assert.equal((db.prepare('SELECT size FROM objects WHERE id = ?').get(ids[5]!) as { size: number }).size, 12_345);
    db.close();
  });

  it('stores a size grown in memory when the backend reports the same attributes', async () => {
    const { db, idx, ids } = await indexWith('same-attr', 4, 10);
    const o = idx.get(ids[2]!)!;
    idx.setLocalSize(o, 99);
    // What the backend says after the write is what memory holds already: still stored.
    idx.setAttr(o, { ...o.attr }, 5);
    assert.equal((db.prepare('SELECT size FROM objects WHERE id = ?').get(ids[2]!) as { size: number }).size, 99);
    db.close();
  });
});
