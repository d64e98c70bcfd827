// A small free list of equally sized scratch buffers, so hot paths (READ replies, dirty
// runs) do not allocate a fresh large buffer per request: one the kernel must fault in and
// zero again, and garbage that V8 collects late, inflating RSS.
// A buffer handed out must come back with release() and must not be used after that.
export class BufferPool {
  private readonly free: Buffer[] = [];
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
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
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
  }
}
