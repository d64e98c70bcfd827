// A small free list of equally sized scratch buffers, so hot paths (READ replies, dirty
// runs) do not allocate a fresh large buffer per request: one the kernel must fault in and
// zero again, and garbage that V8 collects late, inflating RSS.
// A buffer handed out must come back with release() and must not be used after that.
export class BufferPool {
  private readonly free: Buffer[] = [];
  constructor(private readonly size: number, private readonly keep: number) {}

  acquire(min: number): Buffer {
    if (min > this.size) return Buffer.allocUnsafe(min);
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }

  release(b: Buffer): void {
    if (b.length === this.size && this.free.length < this.keep) this.free.push(b);
  }

  /** Lets go of the free buffers (an idle owner need not keep them). */
  drain(): void {
    this.free.length = 0;
  }
}
