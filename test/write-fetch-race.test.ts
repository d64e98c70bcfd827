// A write into part of a chunk the cache does not hold first fetches the chunk, so the cache
// file has it whole. If the object keeps changing while that fetch runs (our own writes
// reaching the backend: the kernel's writeback cache sends a file's writes in parallel and
// not chunk-aligned; or another client), the fetch gives up (EAGAIN) after a few tries.
// Connected, the write must not fail then: its bytes go to the backend around the cache.
// Before, write() failed with EAGAIN (with the writeback cache, fsync() then reported it
// and the file on the backend missed those bytes).
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Backend } from '../src/backends/types.js';
import { layerHere, type LayerHere } from './helpers/layer.js';
import { waitUntil } from './helpers/wait.js';

const MiB = 1 << 20;

describe('a write whose chunk changes while it is fetched', () => {
  const heres: LayerHere[] = [];
  after(async () => { for (const h of heres) await h.dispose(); });

  it('connected: the write goes around the cache and its bytes reach the backend', async () => {
    let churn = false;
    let tick = 0;
    let here!: LayerHere;
    let be = '';
    /** Every read of the backend sees the file changed under it (fault injection). */
    const changing = (inner: Backend): Backend => new Proxy(inner, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') return v;
        const fn = (v as (...x: unknown[]) => Promise<unknown>).bind(target);
        if (prop !== 'read') return fn;
        return async (...a: unknown[]) => {
          const out = await fn(...a);
          if (churn) {
            const t = new Date(Date.UTC(2020, 0, 1) + ++tick * 1000);
            await fsp.utimes(path.join(be, 'f'), t, t);
            await here.layer.getattrOf(await here.layer.resolve('/f'), true); // the layer sees it
          }
          return out;
        };
      },
    });
    here = await layerHere('write-race', { fill: (dir) => fsp.writeFile(path.join(dir, 'f'), Buffer.alloc(3 * MiB, 0x61)), wrap: changing });
    heres.push(here);
    be = here.backend;
    const { layer } = here;
    const fd = await layer.open('/f', fs.constants.O_RDWR);
    churn = true;
    assert.equal(await layer.write(fd, MiB + MiB / 2, Buffer.from('hello')), 5);
    churn = false;
    await layer.release(fd);
    const want = Buffer.alloc(3 * MiB, 0x61);
    want.write('hello', MiB + MiB / 2);
    assert.ok((await fsp.readFile(path.join(be, 'f'))).equals(want), 'the backend has the bytes');
    const rd = await layer.open('/f', fs.constants.O_RDONLY);
    assert.equal((await layer.read(rd, MiB + MiB / 2 - 2, 9)).toString(), 'aahelloaa', 'and the mount reads them');
    await layer.release(rd);
  });
});

// A write's bytes go into the cache file, and only then is the chunk marked cached. If the
// object's cached data is dropped in between (another descriptor's write past the
// write-around size drops it, and truncates the cache file after this write's bytes), the
// mark must not be made: the chunk would read as the truncated file's zeros. Before, it was
// made; the store's write is held here (fault injection) to open that window every time.
describe('a write whose cache copy lands after the cached data was dropped', () => {
  const heres: LayerHere[] = [];
  after(async () => { for (const h of heres) await h.dispose(); });

  it('the chunk is not marked cached: reads get the newest bytes, from the backend', async () => {
    let hold: Promise<void> | null = null;
    let heldWrites = 0;
    const here = await layerHere('late-landing', {
      fill: (dir) => fsp.writeFile(path.join(dir, 'f'), ''),
      store: (s) => {
        const write = s.write.bind(s);
        s.write = async (...a: Parameters<typeof write>) => {
          const gate = hold;
          if (gate) heldWrites++;
          const n = await write(...a);
          if (gate) await gate; // landed in the file; the caller hears of it later
          return n;
        };
      },
    });
    heres.push(here);
    const { layer } = here;
    const fd1 = await layer.open('/f', fs.constants.O_RDWR);
    const fd2 = await layer.open('/f', fs.constants.O_RDWR);
    // 64 MiB through fd2 after the first chunk, all cached: its next write goes around the
    // cache and drops it. The first chunk is left uncached, known to hold zeros.
    for (let i = 1; i <= 64; i++) await layer.write(fd2, i * MiB, Buffer.alloc(MiB, 0x62));
    let open!: () => void;
    hold = new Promise((r) => { open = r; });
    const first = layer.write(fd1, 0, Buffer.alloc(4096, 0x61));
    await waitUntil('the first write to reach the cache file', () => heldWrites > 0);
    hold = null;
    await layer.write(fd2, 0, Buffer.alloc(4096, 0x63)); // around the cache; drops its data
    open();
    await first;
    await layer.release(fd1);
    await layer.release(fd2);
    const want = Buffer.alloc(4096, 0x63);
    assert.ok((await fsp.readFile(path.join(here.backend, 'f'))).subarray(0, 4096).equals(want), 'the backend has the last write');
    const rd = await layer.open('/f', fs.constants.O_RDONLY);
    const got = await layer.read(rd, 0, 4096);
    await layer.release(rd);
    assert.ok(got.equals(want), `the mount reads the last write, not ${JSON.stringify(got.subarray(0, 8))}`);
  });
});
