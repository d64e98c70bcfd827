// Listings and stale attributes (CacheLayer.readdirOf). A READDIRPLUS wants the entries'
// attributes, and when many went stale (after a remount, or just older than the attribute
// timeout) one backend listing refreshes them all. A plain READDIR wants names only, and
// the kernel asks for the first part of every pass with attributes whatever the program
// wants: a plain `ls` of a 50,000-name directory, right after a file was made in it, listed
// the backend again (an lstat and a file handle per entry: 1.8 s) for attributes nobody read.
// A hoard walk, which needs every attribute, still gets a big directory listed again.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { layerHere, type LayerHere } from './helpers/layer.js';
import type { Backend } from '../src/backends/types.js';

describe('listings: attributes refreshed only when they are wanted', () => {
  let h: LayerHere;
  let listings = 0;
  before(async () => {
    h = await layerHere('listing', {
      fill: async (b) => {
        await fsp.mkdir(path.join(b, 'small'));
        await fsp.mkdir(path.join(b, 'big'));
        for (let i = 0; i < 100; i++) await fsp.writeFile(path.join(b, 'small', `f${i}`), 'x');
        for (let i = 0; i < 5000; i++) await fsp.writeFile(path.join(b, 'big', `f${i}`), '');
      },
      // Counts the backend's listings (the real backend does the work).
      wrap: (b) => new Proxy(b, {
        get: (t, k, r) => {
          const v = Reflect.get(t, k, r) as unknown;
          if (k === 'readdir') return (...a: Parameters<Backend['readdir']>) => { listings++; return t.readdir(...a); };
          return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
        },
      }),
    });
  });
  after(() => h?.dispose());

  /** Lists `p` once (the names cached), then makes every entry's attributes stale. */
  async function listedThenStale(p: string): Promise<void> {
    const { entries } = await h.layer.readdir(p);
    for (const e of entries) e.obj.attrAt = 0;
  }

  it('a plain listing (READDIR) does not list the backend again for stale attributes', async () => {
    await listedThenStale('/small');
    const dir = await h.layer.resolve('/small');
    listings = 0;
    const { entries } = await h.layer.readdirOf(dir, 'names');
    assert.equal(entries.length, 100);
    assert.equal(listings, 0, 'names only: the cached listing answers');
  });

  it('a listing with attributes of a directory of ordinary size refreshes them in one backend listing', async () => {
    await listedThenStale('/small');
    const dir = await h.layer.resolve('/small');
    listings = 0;
    const { entries } = await h.layer.readdirOf(dir, 'attrs-if-cheap');
    assert.equal(listings, 1);
    assert.equal(entries.filter((e) => e.stale).length, 0, 'every entry fresh');
  });

  it('a listing with attributes of a big directory marks the stale entries instead of listing it again', async () => {
    await listedThenStale('/big');
    const dir = await h.layer.resolve('/big');
    const fresh = await h.layer.resolve('/big/f7'); // revalidated by its lookup
    listings = 0;
    const { entries } = await h.layer.readdirOf(dir, 'attrs-if-cheap');
    assert.equal(entries.length, 5000);
    assert.equal(listings, 0);
    const stale = entries.filter((e) => e.stale);
    assert.equal(stale.length, 4999, 'each stale entry says so (READDIRPLUS gives it without attributes)');
    assert.ok(!stale.some((e) => e.obj === fresh), 'the entry just revalidated is not stale');
    // A stale entry is revalidated when it is looked up: a change made meanwhile shows.
    await fsp.writeFile(path.join(h.backend, 'big', 'f9'), 'grown');
    assert.equal((await h.layer.resolve('/big/f9')).attr.size, 5);
  });

  it('a caller that needs every attribute (a hoard walk) gets a big directory listed again when they are stale', async () => {
    // The hoard scan decides what to fetch, and how much, from these attributes, and
    // fetches without revalidating each file: a file grown on the server must not be cached
    // at its old size.
    await listedThenStale('/big');
    await fsp.writeFile(path.join(h.backend, 'big', 'f11'), 'grown too');
    const dir = await h.layer.resolve('/big');
    listings = 0;
    const { entries } = await h.layer.readdirOf(dir, 'attrs');
    assert.equal(listings, 1);
    assert.equal(entries.filter((e) => e.stale).length, 0, 'every entry fresh');
    assert.equal(entries.find((e) => e.name === 'f11')?.obj.attr.size, 9);
  });
});
