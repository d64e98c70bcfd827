// A small free list of equally sized scratch buffers, so hot paths (READ replies, dirty
// runs) do not allocate a fresh large buffer per request: one the kernel must fault in and
// zero again, and garbage that V8 collects late, inflating RSS.
// A buffer handed out must come back with release() and must not be used after that.
// New buffers are carved out of regions advised as huge pages (huge-pages.ts): a fresh
// buffer's first touch is what costs, one page fault per 4 KiB page otherwise. A region's
// memory goes with the last buffer carved from it.
import { HUGE_PAGE, hugeRegion } from './huge-pages.js';

/** A region holds at most this many buffers (and is at least one buffer, rounded to 2 MiB). */
const REGION_BUFFERS = 16;

export class BufferPool {
  private readonly free: Buffer[] = [];
  /** The region new buffers are carved from, and where its uncarved part begins. */
  private region: Buffer | null = null;
  private regionOff = 0;
  private lastAcquire = 0;
  private idleTimer: NodeJS.Timeout | null = null;

  /**
   * `keep`: free buffers kept at most. `idleMs`: if set, the free buffers are let go once
   * nothing was acquired for that long (a pool sized for a burst does not hold its memory
   * while the mount is idle).
   */
  constructor(private readonly size: number, private readonly keep: number, private readonly idleMs = 0) {}

  acquire(min: number): Buffer {
    if (min > this.size) return Buffer.allocUnsafe(min);
    if (this.idleMs > 0) this.lastAcquire = Date.now();
    return this.free.pop() ?? this.carve();
  }

  private carve(): Buffer {
    if (!this.region || this.regionOff + this.size > this.region.length) {
      const want = Math.max(1, Math.min(this.keep, REGION_BUFFERS)) * this.size;
      this.region = hugeRegion(Math.ceil(want / HUGE_PAGE) * HUGE_PAGE);
      this.regionOff = 0;
    }
    const b = this.region.subarray(this.regionOff, this.regionOff + this.size);
    this.regionOff += this.size;
    return b;
  }

  release(b: Buffer): void {
    if (b.length === this.size && this.free.length < this.keep) this.free.push(b);
    if (this.idleMs > 0 && this.free.length > 0) this.drainWhenIdle();
  }

  private drainWhenIdle(): void {
    if (this.idleTimer) return;
    const wait = Math.max(1, this.lastAcquire + this.idleMs - Date.now());
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (Date.now() - this.lastAcquire >= this.idleMs) this.drain();
      else if (this.free.length > 0) this.drainWhenIdle();
    }, wait);
    this.idleTimer.unref();
  }

  /** Lets go of the free buffers (an idle owner need not keep them). */
  private drain(): void {
    this.free.length = 0;
    this.region = null;
  }
}
