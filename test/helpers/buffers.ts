// Whether two Buffers are views of the same memory. Pooled buffers are carved out of shared
// regions (core/buffer-pool.ts), so `.buffer` alone no longer tells two buffers apart.

/** The same bytes of the same memory: the same start (the same pooled buffer). */
export function sameMemory(a: Buffer, b: Buffer): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset;
}

/** Some byte of `a` is also a byte of `b`. */
export function shareMemory(a: Buffer, b: Buffer): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.length && b.byteOffset < a.byteOffset + a.length;
}
