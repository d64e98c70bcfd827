// XDR (RFC 4506): the encoding of every ONC RPC message. The reader is the trust boundary
// for bytes that come from a server: it checks every length against what is left and
// against a caller-given maximum before it reads or allocates anything, and reports any
// violation as XdrError. A malformed reply therefore costs an error, never a crash, a
// hang or an allocation the size of an absurd length field.

import { nameFromBytes, nameToBytes } from '../../core/names.js';

export class XdrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XdrError';
  }
}

const pad4 = (n: number): number => (4 - (n & 3)) & 3;

export class XdrReader {
  private pos = 0;
  constructor(private readonly buf: Buffer, start = 0) {
    this.pos = start;
  }

  get offset(): number { return this.pos; }
  get remaining(): number { return this.buf.length - this.pos; }

  private need(n: number, what: string): void {
    if (n > this.buf.length - this.pos) {
      throw new XdrError(`truncated ${what}: need ${n} bytes at offset ${this.pos}, have ${this.buf.length - this.pos}`);
    }
  }

  u32(what = 'uint32'): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  i32(what = 'int32'): number {
    this.need(4, what);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(what = 'uint64'): bigint {
    this.need(8, what);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** A uint64 that must fit a JS number exactly (sizes, offsets): larger is an error. */
  size64(what = 'size'): number {
    const v = this.u64(what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new XdrError(`${what} ${v} is out of range`);
    return Number(v);
  }

  bool(what = 'bool'): boolean {
    const v = this.u32(what);
    if (v > 1) throw new XdrError(`${what}: ${v} is not a boolean`);
    return v === 1;
  }

  /** An enum value, checked against the values the caller allows. */
  enumOf<T extends number>(allowed: ReadonlySet<number>, what: string): T {
    const v = this.u32(what);
    if (!allowed.has(v)) throw new XdrError(`${what}: unknown value ${v}`);
    return v as T;
  }

  /** Fixed-length opaque; returns a view into the message (no copy). */
  fixed(n: number, what = 'opaque'): Buffer {
    this.need(n + pad4(n), what);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n + pad4(n);
    return out;
  }

  /** Variable-length opaque of at most `max` bytes; returns a view into the message. */
  opaque(max: number, what = 'opaque'): Buffer {
    const n = this.u32(`${what} length`);
    if (n > max) throw new XdrError(`${what}: length ${n} exceeds the limit ${max}`);
    return this.fixed(n, what);
  }

  string(max: number, what = 'string'): string {
    const b = this.opaque(max, what);
    return nameFromBytes(b); // names and paths: their bytes, whatever they are (core/names.ts)
  }

  /** An array with a length prefix, at most `max` elements. */
  array<T>(max: number, what: string, item: (r: XdrReader) => T): T[] {
    const n = this.u32(`${what} count`);
    if (n > max) throw new XdrError(`${what}: ${n} elements exceed the limit ${max}`);
    // every element takes at least 4 bytes, so a count beyond that is a lie
    if (n * 4 > this.remaining) throw new XdrError(`${what}: ${n} elements cannot fit in ${this.remaining} bytes`);
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(item(this));
    return out;
  }

  /** XDR optional-data (`*T`): a boolean, then the value when it is true. */
  optional<T>(what: string, item: (r: XdrReader) => T): T | undefined {
    return this.bool(`${what} present`) ? item(this) : undefined;
  }
}

/** A growable encoder. Large payloads (WRITE data) are not copied in: see RpcClient.call. */
export class XdrWriter {
  private buf: Buffer;
  private pos = 0;
  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u32(v: number): this {
    this.room(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  i32(v: number): this {
    this.room(4);
    this.buf.writeInt32BE(v | 0, this.pos);
    this.pos += 4;
    return this;
  }

  u64(v: bigint | number): this {
    this.room(8);
    this.buf.writeBigUInt64BE(BigInt(v), this.pos);
    this.pos += 8;
    return this;
  }

  bool(v: boolean): this {
    return this.u32(v ? 1 : 0);
  }

  fixed(data: Buffer): this {
    const p = pad4(data.length);
    this.room(data.length + p);
    data.copy(this.buf, this.pos);
    this.pos += data.length;
    this.buf.fill(0, this.pos, this.pos + p);
    this.pos += p;
    return this;
  }

  /** Bytes that are XDR already (encoded arguments): appended as they are, no padding. */
  encoded(data: Buffer): this {
    this.room(data.length);
    data.copy(this.buf, this.pos);
    this.pos += data.length;
    return this;
  }

  opaque(data: Buffer): this {
    this.u32(data.length);
    return this.fixed(data);
  }

  string(s: string): this {
    return this.opaque(nameToBytes(s));
  }

  get length(): number { return this.pos; }

  /** The encoded bytes (a view; the writer must not be used afterwards). */
  done(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/** Zero bytes to pad a payload of length n to a multiple of four. */
export function xdrPadding(n: number): Buffer {
  return PADS[pad4(n)]!;
}
const PADS = [Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(2), Buffer.alloc(3)];
