// Whole-file caching at open (cache.wholeFileMaxBytes, ChunkFetcher.copyWhole): an open that
// may read a file of more than one chunk, none of it cached, has a local backend copy the
// whole file into the cache file by copy_file_range, 8 MiB at a time. What must stay true:
// - a read waits for the piece it reads, then gets the file's bytes;
// - a write into a piece not copied yet waits for it, and the copy never lands over it;
// - bytes count as cached only while the file is the version the copy began with: a change
//   on the backend meanwhile stops the copy, and nothing of the old version is read after;
// - a copy that fails leaves the file to be fetched chunk by chunk, as before; one given up
//   on at its deadline holds nothing up, and what it writes late lands in a detached file;
// - no copy for an open that truncates or only writes, a file of one chunk, or a limit of 0,
//   nor for a file that would only fit if other cached data were culled;
// - hoarding a file copies it whole too.
// The layer runs in this process over a real directory and index (races a FUSE mount cannot
// time); a gate on the backend's copyInto holds a chosen piece back.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { FsError } from '../src/core/errors.js';
import type { Backend } from '../src/backends/types.js';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { layerHere, type LayerHere, type LayerOptions } from './helpers/layer.js';
import { waitUntil } from './helpers/wait.js';
import { killMount, mountFresh, type Mounted } from './helpers/cachefs.js';

const MiB = 1 << 20;
const PIECE = 8 * MiB;
/** Three pieces, the last one short; every byte tells its offset apart from its neighbours'. */
const SIZE = 2 * PIECE + 4 * MiB + 5;
const content = (size = SIZE, salt = 0): Buffer => {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE(((i / 4) * 2654435761 + salt) >>> 0, Math.min(i, size - 4));
  return b;
};

type CopyInto = NonNullable<Backend['copyInto']>;

/** The backend with its copyInto replaced by `copy`, which is given the real one. */
function replacingCopy(copy: (real: CopyInto, ...a: Parameters<CopyInto>) => ReturnType<CopyInto>) {
  return (inner: Backend): Backend => new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      const fn = (v as (...x: unknown[]) => unknown).bind(target);
      return prop === 'copyInto' ? (...a: Parameters<CopyInto>) => copy(fn as CopyInto, ...a) : fn;
    },
  });
}

/** The backend, with copyInto calls at or past `holdFrom` held until release() (and counted). */
function gated(holdFrom = Infinity, fail?: (offset: number) => boolean) {
  let open!: () => void;
  const gate = new Promise<void>((r) => { open = r; });
  const calls: number[] = [];
  const wrap = replacingCopy(async (real, fh, fd, offset, length) => {
    calls.push(offset);
    if (fail?.(offset)) throw new FsError('EIO', 'injected: the copy failed');
    if (offset >= holdFrom) await gate;
    return real(fh, fd, offset, length);
  });
  return { wrap, release: () => open(), calls };
}

describe('whole-file copy at open (local backend)', () => {
  const heres: LayerHere[] = [];
  after(async () => { for (const h of heres) await h.dispose(); });
  const here = async (tag: string, opts: LayerOptions = {}, data = content()): Promise<LayerHere> => {
    const h = await layerHere(`copy-${tag}`, { fill: (dir) => fsp.writeFile(path.join(dir, 'f'), data), ...opts });
    heres.push(h);
    return h;
  };

  it('an open for reading copies the file whole by a kernel copy; every read then comes from the cache', async () => {
    const h = await here('whole');
    const { layer } = h;
    const fd = await layer.open('/f', fs.constants.O_RDONLY);
    const o = layer.fileOf(fd).obj;
    const file = await layer.wholeCacheFile(o);
    assert.ok(file, 'the file is wholly in the cache once the copy has ended');
    assert.ok((await fsp.readFile(file)).equals(content()), 'the cache file holds the backend\'s bytes');
    assert.equal(layer.counters.bytesFromBackend, SIZE);
    const got = Buffer.concat([await layer.read(fd, 0, PIECE), await layer.read(fd, PIECE, SIZE)]);
    assert.ok(got.equals(content()));
    assert.equal(layer.counters.misses, 0, 'no chunk fetched from the backend');
    assert.equal((await fsp.stat(file)).mode & 0o777, 0o600, 'the cache file keeps its mode');
    await layer.release(fd);
  });

  it('after an open that read one page, the whole file reads offline', async () => {
    const { layer } = await here('offline');
    const fd = await layer.open('/f', fs.constants.O_RDONLY);
    assert.ok((await layer.read(fd, 0, 4096)).equals(content().subarray(0, 4096)));
    await layer.wholeCacheFile(layer.fileOf(fd).obj); // the copy has ended
    await layer.release(fd);
    layer.goOffline();
    const rd = await layer.open('/f', fs.constants.O_RDONLY);
    const all = Buffer.concat([await layer.read(rd, 0, PIECE), await layer.read(rd, PIECE, SIZE)]);
    assert.ok(all.equals(content()), 'every byte, with the backend out of reach');
    await layer.release(rd);
  });

  it('a read waits for the piece it reads, and no longer', async () => {
    const g = gated(PIECE);
    const { layer } = await here('wait', { wrap: g.wrap });
    const fd = await layer.open('/f', fs.constants.O_RDONLY);
    assert.ok((await layer.read(fd, 100, 1000)).equals(content().subarray(100, 1100)), 'the first piece is there');
    await waitUntil('the copy of the second piece started', () => g.calls.includes(PIECE));
    let settled = false;
    const later = layer.read(fd, PIECE + 3 * MiB, 4096).finally(() => { settled = true; });
    await new Promise((r) => setImmediate(r));
    assert.equal(settled, false, 'a read of the held piece waits for it');
    g.release();
    assert.ok((await later).equals(content().subarray(PIECE + 3 * MiB, PIECE + 3 * MiB + 4096)));
    assert.ok(await layer.wholeCacheFile(layer.fileOf(fd).obj));
    assert.equal(layer.counters.bytesFromBackend, SIZE, 'it was read from the copy, not fetched besides');
    await layer.release(fd);
  });

  it('a write into a piece not copied yet waits for it; the copy never lands over it', async () => {
    const g = gated(PIECE);
    const h = await here('write', { wrap: g.wrap });
    const { layer } = h;
    const fd = await layer.open('/f', fs.constants.O_RDWR);
    await waitUntil('the copy of the second piece started', () => g.calls.includes(PIECE));
    const writing = layer.write(fd, PIECE + MiB + 7, Buffer.from('hello'));
    g.release();
    assert.equal(await writing, 5);
    const want = content();
    want.write('hello', PIECE + MiB + 7);
    assert.equal((await layer.read(fd, PIECE + MiB + 5, 9)).toString('latin1'), want.subarray(PIECE + MiB + 5, PIECE + MiB + 14).toString('latin1'));
    await layer.release(fd);
    assert.ok((await fsp.readFile(path.join(h.backend, 'f'))).equals(want), 'the backend has the write and every other byte');
    const rd = await layer.open('/f', fs.constants.O_RDONLY);
    const all = Buffer.concat([await layer.read(rd, 0, PIECE), await layer.read(rd, PIECE, SIZE)]);
    assert.ok(all.equals(want), 'and so does the mount');
    await layer.release(rd);
  });

  it('a backend change during the copy stops it: no byte of the old version is read after', async () => {
    const g = gated(PIECE);
    const h = await here('change', { wrap: g.wrap });
    const { layer } = h;
    const fd = await layer.open('/f', fs.constants.O_RDONLY);
    await waitUntil('the copy of the second piece started', () => g.calls.includes(PIECE));
    const changed = content(SIZE, 99);
    await fsp.writeFile(path.join(h.backend, 'f'), changed);
    await layer.getattrOf(layer.fileOf(fd).obj, true); // the layer learns of it (as a watcher or a revalidation would)
    g.release();
    await layer.release(fd);
    const rd = await layer.open('/f', fs.constants.O_RDONLY);
    const o = layer.fileOf(rd).obj;
    await layer.wholeCacheFile(o); // waits for any copy
    const all = Buffer.concat([await layer.read(rd, 0, PIECE), await layer.read(rd, PIECE, SIZE)]);
    assert.ok(all.equals(changed), 'the file reads as the backend has it now');
    await layer.release(rd);
  });

  it('a copy given up on at its deadline holds nothing up, and what it writes late lands nowhere', async () => {
    let late!: () => void;
    const asked: number[] = [];
    const lateGate = new Promise<void>((r) => { late = r; });
    /** Piece 2 never answers in time; when let go, it writes 0xee over its range, as a late kernel copy would. */
    const stuck = replacingCopy(async (real, fh, fd, offset, length) => {
      asked.push(offset);
      if (offset < PIECE) return real(fh, fd, offset, length);
      // As the kernel holds the file a copy_file_range writes to, whatever becomes of the
      // descriptor number meanwhile.
      const held = fs.openSync(`/proc/self/fd/${fd}`, 'r+');
      await lateGate;
      fs.writeSync(held, Buffer.alloc(length, 0xee), 0, length, offset);
      fs.closeSync(held);
      return real(fh, fd, offset, 0);
    });
    const h = await here('stuck', { wrap: stuck, config: (c) => ({ ...c, backendTimeoutMs: 300 }) });
    const { layer } = h;
    const alive = setInterval(() => undefined, 100); // the deadline's timer does not hold the process
    after(() => clearInterval(alive));
    const fd = await layer.open('/f', fs.constants.O_RDWR);
    const o = layer.fileOf(fd).obj;
    assert.equal(await layer.wholeCacheFile(o), null, 'the copy ended (given up on) without the file whole'); // before: never ended
    assert.deepEqual(asked, [0, PIECE], 'the second piece was the one given up on');
    assert.ok((await layer.read(fd, 100, 1000)).equals(content().subarray(100, 1100)), 'the first piece reads right');
    // A whole chunk written into the range the copy was given up on (offline now: the
    // deadline made the mount disconnected), then the late copy writes over that range.
    const mine = Buffer.alloc(MiB, 0x42);
    assert.equal(await layer.write(fd, PIECE + MiB, mine), MiB);
    late();
    await new Promise((r) => setTimeout(r, 50));
    assert.ok((await layer.read(fd, PIECE + MiB, MiB)).equals(mine), 'the write stands: the late bytes went to the detached file');
    assert.ok((await layer.read(fd, 0, PIECE)).equals(content().subarray(0, PIECE)), 'and so does the first piece');
    await layer.release(fd);
  });

  it('a copy that fails leaves the rest to be fetched chunk by chunk', async () => {
    const g = gated(Infinity, (offset) => offset >= PIECE);
    const { layer } = await here('fail', { wrap: g.wrap });
    const fd = await layer.open('/f', fs.constants.O_RDONLY);
    const all = Buffer.concat([await layer.read(fd, 0, PIECE), await layer.read(fd, PIECE, SIZE)]);
    assert.ok(all.equals(content()));
    assert.ok(g.calls.includes(PIECE), 'the second piece was tried');
    assert.ok(layer.counters.misses > 0, 'what the copy did not bring was fetched');
    await layer.release(fd);
  });

  it('a backend that makes no kernel copies (EOPNOTSUPP: not a local disk) is asked once per mount', async () => {
    let asked = 0;
    const none = replacingCopy(async () => { asked++; throw new FsError('EOPNOTSUPP', 'no kernel copies here'); });
    const h = await here('nocopy', { wrap: none });
    await fsp.writeFile(path.join(h.backend, 'g'), content(3 * MiB));
    for (const name of ['/f', '/g']) {
      const fd = await h.layer.open(name, fs.constants.O_RDONLY);
      const size = name === '/f' ? SIZE : 3 * MiB;
      assert.ok(Buffer.concat([await h.layer.read(fd, 0, PIECE), await h.layer.read(fd, PIECE, SIZE)]).equals(content(size)), 'read by chunks instead');
      await h.layer.release(fd);
    }
    assert.equal(asked, 1);
  });

  it('hoarding (pinning) a file of which nothing is cached copies it whole, whatever its size', async () => {
    const g = gated();
    const { layer } = await here('hoard', { wrap: g.wrap, config: (c) => ({ ...c, cache: { ...c.cache, wholeFileMaxBytes: 0 } }) });
    const o = await layer.resolve('/f');
    let reported = 0;
    assert.equal(await layer.hoardFile(o, (n) => { reported += n; }), SIZE);
    assert.equal(reported, SIZE, 'the progress bar hears of every byte');
    assert.deepEqual(g.calls, [0, PIECE, 2 * PIECE]);
    assert.ok(await layer.wholeCacheFile(o));
    assert.equal(layer.counters.misses, 0);
  });

  it('no copy for a file of one chunk, an open that truncates or only writes, or a limit of 0', async () => {
    const g = gated();
    const h = await here('none', { wrap: g.wrap });
    const { layer } = h;
    await fsp.writeFile(path.join(h.backend, 'small'), content(MiB));
    await fsp.writeFile(path.join(h.backend, 'g'), content());
    await layer.release(await layer.open('/small', fs.constants.O_RDONLY));
    await layer.release(await layer.open('/f', fs.constants.O_WRONLY));
    await layer.release(await layer.open('/g', fs.constants.O_RDWR | fs.constants.O_TRUNC));
    assert.deepEqual(g.calls, [], 'no copy');
    const fd = await layer.open('/f', fs.constants.O_RDWR);
    assert.ok(await layer.wholeCacheFile(layer.fileOf(fd).obj), 'an open for reading and writing copies');
    await layer.release(fd);
    assert.deepEqual(g.calls, [0, PIECE, 2 * PIECE], 'in three pieces');
    const off = await here('off', { config: (c) => ({ ...c, cache: { ...c.cache, wholeFileMaxBytes: 0 } }) });
    const rd = await off.layer.open('/f', fs.constants.O_RDONLY);
    assert.equal(await off.layer.wholeCacheFile(off.layer.fileOf(rd).obj), null, 'limit 0: nothing copied at open');
    await off.layer.release(rd);
  });
});

describe('whole-file copy at open, through a mount (local backend)', () => {
  let m: Mounted | undefined;
  let small: Mounted | undefined;
  after(async () => { await m?.cleanup(); await small?.cleanup(); });

  it('no copy of a file that would only fit if other cached data were culled (culling.maxBytes)', async () => {
    small = await mountFresh('copy-room', { config: { culling: { maxBytes: 24 * MiB } } });
    const kept = randomBytes(12 * MiB);
    await fsp.writeFile(small.b('kept'), kept);
    await fsp.writeFile(small.b('big'), randomBytes(3 * PIECE));
    assert.ok((await fsp.readFile(small.m('kept'))).equals(kept)); // 12 MiB cached (copied whole)
    const h = await fsp.open(small.m('big'), 'r');
    const page = Buffer.alloc(4096);
    await h.read(page, 0, 4096, 0);
    await h.close();
    const s = await small.statusDirect();
    assert.ok(s.cache.bytes < 16 * MiB, `${s.cache.bytes} bytes cached: 24 MiB would not have fit under 24 MiB beside 12 MiB`);
    assert.ok((await fsp.readFile(small.m('kept'))).equals(kept));
    assert.equal((await small.statusDirect()).counters.bytesFromBackend, s.counters.bytesFromBackend, 'what was cached stays cached'); // before: culled for the copy, and fetched again
  });

  it('kill -9 of the mount during the copy: the next mount reads the file right', async () => {
    // Every backend read (each piece of the copy too) waits 150 ms: the kill lands mid-copy.
    m = await mountFresh('copy-kill', { env: { CACHEFS_FAULTS: JSON.stringify({ delayMs: { read: 150 } }) } });
    const data = randomBytes(5 * PIECE);
    await fsp.writeFile(m.b('f'), data);
    const reader = spawn('cat', [m.m('f')], { stdio: 'ignore' });
    reader.on('error', () => undefined);
    const mm = m;
    await waitUntil('the first piece copied', async () => (await mm.statusDirect()).counters.bytesFromBackend >= PIECE, 30_000, 20);
    assert.ok((await mm.statusDirect()).counters.bytesFromBackend < data.length, 'killed before the copy ended');
    await killMount(m);
    reader.kill();
    m.env = {};
    await m.mount();
    assert.ok((await fsp.readFile(m.m('f'))).equals(data), 'every byte reads as the backend has it');
  });
});
