// The chunk fetcher's pooled buffers (layers/chunk-fetcher.ts): bytes lent to a reader stay
// its own until it lets go, and a backend read given up on at its deadline never writes into
// a buffer another fetch uses. A scripted backend stands in for the real one (it fills each
// chunk with a byte of its own, and can answer late); the index and cache store are the
// minimum the fetcher asks of them.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkFetcher, type FetcherDeps } from '../src/layers/chunk-fetcher.js';
import { FsError } from '../src/core/errors.js';
import type { CachedObject } from '../src/index/objects.js';
import { waitUntil } from './helpers/wait.js';
import v8 from 'node:v8';
import vm from 'node:vm';
import { shareMemory } from './helpers/buffers.js';

const CHUNK = 1 << 20;

/** Each chunk's bytes are its index + 1 (mod 256): a mixed-up buffer shows at once. */
const mark = (idx: number): number => (idx + 1) & 0xff;

function setup(opts: { lateReads?: Set<number> } = {}) {
  const chunks = new Set<number>();
  /** Reads the scripted backend has not finished, by chunk: finish() writes their bytes. */
  const late = new Map<number, () => void>();
  const obj = { id: 1, fh: Buffer.from('f'), attr: { version: 'v1', size: 64 * CHUNK }, dataVersion: 'v1', cachedBytes: 0 } as unknown as CachedObject;
  let lastIdx = -1;
  const deps: FetcherDeps = {
    backend: {
      read: (_fh, offset, length, into) => {
        const idx = offset / CHUNK;
        lastIdx = idx;
        const buf = into ?? Buffer.allocUnsafe(length);
        if (opts.lateReads?.has(idx)) {
          // Answers only when the test says so, and then writes into `into` all the same.
          return new Promise<Buffer>((resolve) => late.set(idx, () => { buf.fill(0xee); resolve(buf); }));
        }
        return Promise.resolve(buf.fill(mark(idx)));
      },
    },
    // The gate (gated-backend.ts): for a late read, the caller hears of its deadline at once
    // while the read itself goes on, as a thread-pool read does.
    call: <T>(_what: string, fn: () => Promise<T>) => {
      const p = fn();
      if (!opts.lateReads?.has(lastIdx)) return p;
      void p.catch(() => undefined);
      return Promise.reject(new FsError('ETIMEDOUT', 'the backend did not answer in time'));
    },
    index: {
      batch: <T>(fn: () => T) => fn(),
      chunksOf: () => chunks,
      addChunk: (_o: CachedObject, idx: number) => { chunks.add(idx); },
      clearChunks: () => { chunks.clear(); },
      setDataVersion: () => undefined,
      noteZerosFrom: () => undefined,
    } as unknown as FetcherDeps['index'],
    store: { write: () => Promise.resolve(), truncate: () => Promise.resolve(), fill: () => Promise.reject(new FsError('EOPNOTSUPP')) },
    chunkSize: CHUNK,
    readAheadChunks: 0,
    counters: { bytesFromBackend: 0 },
    storeData: () => true,
    connected: () => true,
  };
  return { fetcher: new ChunkFetcher(deps), obj, chunks, late, deps };
}

describe('chunk fetcher buffers', () => {
  it('bytes lent to a reader stay its own after they landed, while other fetches reuse the pool', async () => {
    const { fetcher, obj } = setup();
    const lent = await fetcher.lend(obj, 0);
    assert.ok(lent);
    await fetcher.landed(obj, 0);
    // Thirty more chunks fetched, landed and released: the pool hands its buffers round.
    for (let i = 1; i <= 30; i++) {
      const other = await fetcher.lend(obj, i);
      assert.ok(other);
      assert.equal(other.bytes[0], mark(i));
      other.release();
      await fetcher.landed(obj, i);
    }
    assert.ok(lent.bytes.every((b) => b === mark(0)), 'the first reader\'s bytes are still chunk 0\'s');
    lent.release();
    lent.release(); // a second release is ignored, not a second return to the pool
    const a = await fetcher.lend(obj, 40);
    const b = await fetcher.lend(obj, 41);
    assert.ok(a && b);
    assert.ok(!shareMemory(a.bytes, b.bytes), 'two readers never share one buffer');
    assert.ok(a.bytes.every((x) => x === mark(40)) && b.bytes.every((x) => x === mark(41)));
    a.release();
    b.release();
  });

  it('a backend read given up on at its deadline never writes into a buffer another fetch uses', async () => {
    const { fetcher, obj, late } = setup({ lateReads: new Set([5]) });
    await assert.rejects(fetcher.lend(obj, 5), (e: unknown) => e instanceof FsError && e.code === 'ETIMEDOUT');
    await waitUntil('the late read is pending', () => late.has(5), 5_000);
    // The next fetches take buffers from the pool; chunk 5's must not be among them.
    const held = [];
    for (let i = 6; i < 12; i++) {
      const l = await fetcher.lend(obj, i);
      assert.ok(l);
      held.push({ i, l });
    }
    late.get(5)!(); // the abandoned read finishes now, writing 0xee into its buffer
    await new Promise((r) => setImmediate(r));
    for (const { i, l } of held) {
      assert.ok(l.bytes.every((x) => x === mark(i)), `chunk ${i}'s bytes are its own`);
      l.release();
    }
  });
});

describe('chunk fetcher and bytes the backend lends (readLent)', () => {
  it('gives each lent buffer back once, only after its bytes landed and every reader let go', async () => {
    const { fetcher, obj, deps } = setup();
    const given: { idx: number; buf: Buffer; releases: number }[] = [];
    deps.backend.readLent = (_fh, offset, length) => {
      const rec = { idx: offset / CHUNK, buf: Buffer.alloc(length, mark(offset / CHUNK)), releases: 0 };
      given.push(rec);
      return Promise.resolve({ data: rec.buf, release: () => { rec.releases++; } });
    };
    // The cache file write of each chunk is held until the test lets it land.
    const landings = new Map<number, () => void>();
    deps.store.write = (_id, offset) => new Promise<void>((r) => landings.set(offset / CHUNK, r));
    // 1. The reader lets go first: the buffer stays lent until the bytes have landed.
    const a = await fetcher.lend(obj, 0);
    assert.ok(a && a.bytes === given[0]!.buf, 'the reader gets the backend\'s buffer itself, not a copy');
    a.release();
    a.release();
    await new Promise((r) => setImmediate(r));
    assert.equal(given[0]!.releases, 0, 'not given back while its bytes are on their way to the cache file');
    landings.get(0)!();
    await fetcher.landed(obj, 0);
    assert.equal(given[0]!.releases, 1, 'given back once they landed');
    // 2. The bytes land first: the buffer stays lent until the reader lets go.
    const b = await fetcher.lend(obj, 1);
    const c = await fetcher.lend(obj, 1); // a second reader of the same fetch
    assert.ok(b && c && b.bytes === c.bytes);
    landings.get(1)!();
    await fetcher.landed(obj, 1);
    b.release();
    assert.equal(given[1]!.releases, 0, 'not given back while a reader still has the bytes');
    assert.ok(c.bytes.every((x) => x === mark(1)));
    c.release();
    assert.equal(given[1]!.releases, 1);
    // 3. A fetch that fails after the backend lent its bytes (the object changed while they
    // came) keeps none of them; the reader gets the next fetch's, given back once.
    let reads = 0;
    deps.backend.readLent = (_fh, offset, length) => {
      const rec = { idx: offset / CHUNK, buf: Buffer.alloc(length, reads === 0 ? 0xee : mark(2)), releases: 0 };
      given.push(rec);
      if (reads++ === 0) (obj.attr as { version: string }).version = 'v2';
      return Promise.resolve({ data: rec.buf, release: () => { rec.releases++; } });
    };
    const d = await fetcher.lend(obj, 2);
    assert.ok(d && d.bytes === given[3]!.buf && d.bytes.every((x) => x === mark(2)), 'the bytes of the fetch after the change');
    assert.equal(reads, 2);
    d.release();
    landings.get(2)!();
    await fetcher.landed(obj, 2);
    assert.deepEqual(given.map((g) => g.releases), [1, 1, 0, 1], 'each given back at most once; the stale one is left to the collector');
  });
});

describe('chunk fetcher memory', () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const liveHeap = async (): Promise<number> => {
    for (let i = 0; i < 3; i++) { await new Promise((r) => setImmediate(r)); gc(); }
    return v8.getHeapSpaceStatistics().filter((x) => !x.space_name.startsWith('code')).reduce((n, x) => n + x.space_used_size, 0);
  };

  it('keeps nothing for an object whose data was dropped once the object is let go', async () => {
    const { fetcher } = setup();
    // Files truncated (O_TRUNC) or changed from outside: their cached data is dropped.
    const dropMany = (from: number, n: number): void => {
      for (let i = from; i < from + n; i++) {
        fetcher.dropData({ id: i, fh: Buffer.from('x'), attr: { version: 'v' }, dataVersion: null, cachedBytes: 0 } as unknown as CachedObject);
      }
    };
    // Round after round, collected between rounds: a table keyed by the objects lets each
    // round's entries go, so the heap settles; one kept per object id grows by a round's
    // worth every round. The first round is left out (it grows the WeakMap's table, which
    // shrinks and grows again at the collector's choosing, by up to one table's size).
    const N = 30_000;
    const ROUNDS = 5;
    dropMany(1_000_000, N);
    const before = await liveHeap();
    let after = before;
    for (let r = 1; r < ROUNDS; r++) { dropMany(1_000_000 + r * N, N); after = await liveHeap(); }
    const grown = after - before;
    // A counter kept per object id was about 40 bytes an object: 4.8 MB over the 4 rounds.
    assert.ok(grown < 40 * N, `the heap grew by ${grown} bytes over ${ROUNDS - 1} rounds of ${N} objects (${(grown / N / (ROUNDS - 1)).toFixed(0)} bytes each)`);
  });
});
