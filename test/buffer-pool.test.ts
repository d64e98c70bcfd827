// The pools of large scratch buffers (core/buffer-pool.ts) and the huge-page regions they
// are carved from (core/huge-pages.ts): buffers never overlap, a released one is handed out
// again, and where the kernel offers transparent huge pages a region's memory comes in them.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { BufferPool } from '../src/core/buffer-pool.js';
import { hugeRegion } from '../src/core/huge-pages.js';

const MiB = 1 << 20;

/** AnonHugePages of this process, in bytes. */
function anonHuge(): number {
  const m = /^AnonHugePages:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

const thp = ((): string => {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1] ?? 'never';
  } catch {
    return 'never';
  }
})();

describe('buffer pool', () => {
  it('hands out buffers of its size that never share a byte, and hands a released one out again', () => {
    const size = MiB + 64 * 1024; // the RPC client's record size: not a divisor of 2 MiB
    const pool = new BufferPool(size, 40);
    const held: Buffer[] = [];
    for (let i = 0; i < 40; i++) { // more than one region's worth
      const b = pool.acquire(size);
      assert.equal(b.length, size);
      b.fill(i);
      held.push(b);
    }
    held.forEach((b, i) => assert.ok(b.every((x) => x === i), `buffer ${i} was overwritten by another`));
    const back = held[7]!;
    pool.release(back);
    assert.equal(pool.acquire(size), back, 'a released buffer is handed out again');
    const big = pool.acquire(3 * size);
    assert.equal(big.length, 3 * size, 'a request past the pool\'s size gets a buffer of its own');
  });

  it('a region starts on a 2 MiB boundary and has exactly the bytes asked for', () => {
    for (const bytes of [4096, 2 * MiB, 17 * MiB + 12]) {
      const r = hugeRegion(bytes);
      assert.equal(r.length, bytes);
      r.fill(0xab);
      assert.ok(r[0] === 0xab && r[bytes - 1] === 0xab);
    }
  });

  it('a region\'s memory comes in huge pages where the kernel offers them', { skip: thp === 'never' && 'transparent huge pages are off' }, () => {
    // The regions of the tests above are garbage: collected between the two readings, their
    // huge pages would leave the count (it once fell by 32 MiB). Collect them first.
    v8.setFlagsFromString('--expose-gc');
    (vm.runInNewContext('gc') as () => void)();
    const before = anonHuge();
    const r = hugeRegion(32 * MiB);
    r.fill(1);
    const gained = anonHuge() - before;
    // Not all of it need be huge (the kernel may find no free 2 MiB page for some), but
    // with plain pages there would be none at all.
    assert.ok(gained >= 8 * MiB, `AnonHugePages grew by ${gained} bytes for a 32 MiB region (THP mode ${thp})`);
    assert.equal(r[r.length - 1], 1);
  });
});
