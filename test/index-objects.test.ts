// The object index's contract for loading a directory's children in one query
// (ObjectIndex.loadChildren, used by listings after a remount): every child comes into
// memory, and an object already in memory keeps its in-memory state. And the names a
// directory's lookups learnt survive our own changes to it (the layer's learnName).
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
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
