// How long the kernel may keep names and attributes (src/fuse/kernel-caching.ts): long only
// while the backend reports every change, and the inotify watcher says whether it does.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { TOLD_TIMEOUT_S, UNTOLD_TIMEOUT_S, kernelCaching, untoldCaching } from '../src/fuse/kernel-caching.js';
import { InotifyDirWatcher } from '../src/backends/local/watcher.js';
import { DEFAULTS } from '../src/config/schema.js';
import { tempRoot } from './helpers/cachefs.js';

describe('kernel caching: the timeouts replies carry', () => {
  it('"auto" is long while changes are reported, short as soon as they are not, and read at each reply', () => {
    let told = true;
    const k = kernelCaching(DEFAULTS.fuse, () => told);
    assert.deepEqual([k.entry, k.attr, k.negative, k.listings, k.untoldAttrS, k.told], [TOLD_TIMEOUT_S, TOLD_TIMEOUT_S, TOLD_TIMEOUT_S, true, 0, true]);
    told = false;
    assert.deepEqual([k.entry, k.attr, k.negative, k.listings, k.untoldAttrS, k.told], [UNTOLD_TIMEOUT_S, UNTOLD_TIMEOUT_S, UNTOLD_TIMEOUT_S, false, UNTOLD_TIMEOUT_S, false]);
  });

  it('numbers set by the user are kept; listings are kept only with long timeouts and reported changes', () => {
    const short = kernelCaching({ ...DEFAULTS.fuse, entryTimeout: 2, attrTimeout: 3, negativeTimeout: 0 }, () => true);
    assert.deepEqual([short.entry, short.attr, short.negative, short.listings, short.untoldAttrS], [2, 3, 0, false, 0]);
    const long = kernelCaching({ ...DEFAULTS.fuse, entryTimeout: 600, attrTimeout: 600, negativeTimeout: 600 }, () => false);
    assert.deepEqual([long.attr, long.listings, long.untoldAttrS], [600, false, 600], 'untold, a long attribute time is what the cache\'s trust must leave room for');
    const noAuto = kernelCaching({ ...DEFAULTS.fuse, autoCache: false }, () => true);
    assert.equal(noAuto.listings, false, 'autoCache false: the kernel keeps no listing either');
  });

  it('the control directory\'s are always the short ones (nobody tells the kernel of its changes)', () => {
    const c = untoldCaching(DEFAULTS.fuse);
    assert.deepEqual([c.entry, c.attr, c.negative, c.listings], [UNTOLD_TIMEOUT_S, UNTOLD_TIMEOUT_S, UNTOLD_TIMEOUT_S, false]);
  });
});

describe('kernel caching: whether the inotify watcher reports every change', () => {
  let root: string;
  before(() => { root = tempRoot('kcache'); });
  after(async () => { await fsp.rm(root, { recursive: true, force: true }); });

  it('complete while every directory asked for is watched; a directory gone before it is watched does not count', async () => {
    const w = new InotifyDirWatcher(() => undefined);
    try {
      await fsp.mkdir(path.join(root, 'a'));
      w.add(path.join(root, 'a'));
      w.add(path.join(root, 'never-made'));
      assert.equal(w.complete, true);
      await fsp.rm(path.join(root, 'a'), { recursive: true });
      assert.equal(w.complete, true, 'a watched directory removed is no missed change');
    } finally { w.close(); }
  });

  it('not complete once a directory could not be watched (its changes would go unreported)', async () => {
    const w = new InotifyDirWatcher(() => undefined);
    try {
      // Any failure but "gone" counts: here a name too long for the kernel.
      w.add(path.join(root, 'x'.repeat(300)));
      assert.equal(w.complete, false);
    } finally { w.close(); }
  });
});
