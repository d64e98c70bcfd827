// ONC RPC version 2 (RFC 5531) over one TCP connection, with record marking.
//
// Many calls are in flight at once on one connection, matched by XID. Every call has a
// deadline. When the connection breaks, it is re-established and every call still waiting
// is sent again with its original XID, so the server's duplicate request cache can answer
// a retransmitted non-idempotent call (the caller learns that it was retransmitted and can
// interpret "already exists" / "no such entry" accordingly).
//
// What must stay true:
// - bytes from the server are untrusted: a record larger than `maxRecord` drops the
//   connection before anything is allocated for it, and every field is bounds-checked
//   (XdrReader); nothing a server sends can throw out of an event handler;
// - a reply whose XID is unknown (late, duplicated or forged) is ignored;
// - every call settles exactly once, at the latest at its deadline;
// - the socket never keeps the process alive on its own once nothing is pending.
import net from 'node:net';
import { BufferPool } from '../../core/buffer-pool.js';
import { FsError, type ErrnoName } from '../../core/errors.js';
import { log } from '../../core/log.js';
import { XdrError, XdrReader, XdrWriter } from './xdr.js';

export const AUTH_NONE = 0;
export const AUTH_SYS = 1;

export interface AuthSys {
  uid: number;
  gid: number;
  gids: number[];
  machine: string;
}

export interface RpcClientOptions {
  host: string;
  port: number;
  prog: number;
  vers: number;
  /** Default deadline of a call, in ms. */
  deadlineMs: number;
  /** Largest reply record accepted (bytes); larger drops the connection. */
  maxRecord: number;
  /** Credentials sent when a call names none; undefined means AUTH_NONE. */
  auth?: AuthSys;
  /** For messages: "NFS 127.0.0.1:2049". */
  name: string;
  /**
   * Large reply records (over half of maxRecord: READ replies) come from a pool of this
   * many buffers, each given back by the caller's RpcReply.release(). 0 or unset: none.
   */
  pooledRecords?: number;
}

export interface CallOptions {
  deadlineMs?: number;
  auth?: AuthSys;
  /** Bytes appended after the encoded arguments without copying (WRITE data, padded). */
  tail?: Buffer[];
}

export interface RpcReply {
  /** Positioned at the procedure's results. */
  body: XdrReader;
  /** True when the call was sent more than once (the connection broke in between). */
  retransmitted: boolean;
  /**
   * Gives the reply's record back to the client's pool, for a caller that no longer refers
   * to any part of it (a READ whose data it copied out). Optional: a record never released
   * is left to the collector. At most once; a no-op for a record not from the pool.
   */
  release(): void;
}

interface Pending {
  xid: number;
  parts: Buffer[];
  sent: boolean;
  sends: number;
  resolve(r: RpcReply): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
  proc: number;
}

/** Connection errors meaning no server is reachable at that address right now. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

const MSG_CALL = 0;
const MSG_REPLY = 1;
const LAST_FRAGMENT = 0x80000000;
const MAX_FRAGMENT = 0x7fffffff;

/** Bytes the socket reads into when they do not go straight into a record (see readTarget). */
const SCRATCH_SIZE = 64 * 1024;
/** A fragment with at least this much left is read from the socket in place, without a copy. */
const DIRECT_READ_MIN = 16 * 1024;

/**
 * Parses RPC record marking from a byte stream into whole records.
 *
 * What must stay true: memory held for a record never exceeds maxRecord, and is otherwise
 * bounded by what was received (twice the bytes received, or the declared length of the
 * fragment being received), however the server splits it into fragments or TCP segments.
 * A record is one buffer of its own: the parser never keeps a view of what push() was given
 * (the socket reuses its read buffer), so every record byte is copied once, except those the
 * socket read in place (readTarget/landed: the body of a large fragment, such as a READ
 * reply's data, goes from the kernel straight into the record). (Keeping a list of views
 * instead let a server send 1-byte fragments and make us hold a Buffer object of ~100 bytes
 * per byte received: 5 MB of input cost 170 MB.) A single-fragment record of over half of
 * maxRecord may take a pooled buffer of maxRecord bytes: still under twice its declared length.
 */
export class RecordParser {
  private fragLeft = -1; // -1: reading a fragment header
  private header = Buffer.alloc(4);
  private headerFill = 0;
  private recordLen = 0;
  private last = false;
  /** The record's bytes [0, recordLen), once its first byte is here. */
  private acc: Buffer | null = null;
  /** The part of `acc` that readTarget() last handed to the socket, if any. */
  private direct: Buffer | null = null;
  private scratch: Buffer | null = null;
  /** `acc` when it came from the pool (handed on with the record). */
  private pooled: Buffer | null = null;

  /**
   * `pool`: where a single-fragment record of over half of maxRecord takes its buffer
   * (onRecord then gets that buffer too, to give back once the record is done with).
   */
  constructor(private readonly maxRecord: number, private readonly onRecord: (rec: Buffer, pooled: Buffer | null) => void,
    private readonly pool: BufferPool | null = null) {}

  /** Feeds bytes (copied: `data` may be reused afterwards); throws XdrError on a record that breaks the limit. */
  push(data: Buffer): void {
    let off = 0;
    while (off < data.length) {
      if (this.fragLeft < 0) {
        const take = Math.min(4 - this.headerFill, data.length - off);
        data.copy(this.header, this.headerFill, off, off + take);
        this.headerFill += take;
        off += take;
        if (this.headerFill < 4) return;
        this.headerFill = 0;
        const h = this.header.readUInt32BE(0);
        const len = h & MAX_FRAGMENT;
        if (this.recordLen + len > this.maxRecord) {
          throw new XdrError(`reply record of at least ${this.recordLen + len} bytes exceeds the limit of ${this.maxRecord}`);
        }
        this.last = (h & LAST_FRAGMENT) !== 0;
        this.fragLeft = len;
        if (this.fragLeft === 0) this.endFragment();
        continue;
      }
      const take = Math.min(this.fragLeft, data.length - off);
      const acc = this.reserve();
      data.copy(acc, this.recordLen, off, off + take);
      this.recordLen += take;
      this.fragLeft -= take;
      off += take;
      if (this.fragLeft === 0) this.endFragment();
    }
  }

  /**
   * Where the socket should put the next bytes it reads (net's `onread.buffer`): the rest of
   * the current fragment, in place in the record, when that is large; else a scratch buffer
   * that landed() parses. Never empty, never throws (node calls it after every read).
   */
  readTarget(): Buffer {
    this.direct = null;
    if (this.fragLeft >= DIRECT_READ_MIN) {
      const acc = this.reserve();
      this.direct = acc.subarray(this.recordLen, this.recordLen + this.fragLeft);
      return this.direct;
    }
    return (this.scratch ??= Buffer.allocUnsafe(SCRATCH_SIZE));
  }

  /** The socket read `n` bytes into `buf`, the buffer readTarget() gave it. */
  landed(buf: Buffer, n: number): void {
    if (buf === this.direct) {
      // already in place: at most fragLeft bytes, since that is all the target had room for
      this.direct = null;
      this.recordLen += n;
      this.fragLeft -= n;
      if (this.fragLeft === 0) this.endFragment();
      return;
    }
    this.push(buf.subarray(0, n));
  }

  /** True between the first byte of a record and its end; `received` counts its bytes so far. */
  get midRecord(): boolean { return this.headerFill > 0 || this.fragLeft >= 0 || this.recordLen > 0; }
  get received(): number { return this.recordLen; }

  /**
   * The record buffer, with room for the rest of the current fragment (recordLen + fragLeft
   * <= maxRecord: checked at the fragment header). The last fragment gets exactly what the
   * record needs (the usual one-fragment record: one buffer of the record's size); an earlier
   * one room for itself or double the buffer (many small fragments); never past maxRecord.
   */
  private reserve(): Buffer {
    const need = this.recordLen + this.fragLeft;
    if (this.acc && this.acc.length >= need) return this.acc;
    if (this.pool && !this.acc && this.last && need > this.maxRecord / 2) {
      this.pooled = this.acc = this.pool.acquire(need);
      return this.acc;
    }
    const want = this.last ? need : Math.max(need, 2 * (this.acc?.length ?? 0), 4096);
    const next = Buffer.allocUnsafe(Math.min(this.maxRecord, want));
    if (this.acc) this.acc.copy(next, 0, 0, this.recordLen);
    this.acc = next;
    return next;
  }

  private endFragment(): void {
    this.fragLeft = -1;
    this.direct = null;
    if (!this.last) return;
    const rec = this.acc ? this.acc.subarray(0, this.recordLen) : Buffer.alloc(0);
    const pooled = this.pooled;
    this.acc = null;
    this.pooled = null;
    this.recordLen = 0;
    this.onRecord(rec, pooled);
  }
}

export type RpcFailure =
  | { kind: 'prog_unavail' } | { kind: 'prog_mismatch'; low: number; high: number }
  | { kind: 'proc_unavail' } | { kind: 'garbage_args' } | { kind: 'system_err' }
  | { kind: 'rpc_mismatch'; low: number; high: number } | { kind: 'auth_error'; stat: number };

/** Decodes a reply header; returns the XID and either the results or why the call failed. */
export function decodeReply(rec: Buffer): { xid: number; body: XdrReader } | { xid: number; failure: RpcFailure } {
  const r = new XdrReader(rec);
  const xid = r.u32('xid');
  const mtype = r.u32('msg_type');
  if (mtype !== MSG_REPLY) throw new XdrError(`message ${xid} is not a reply (msg_type ${mtype})`);
  const stat = r.u32('reply_stat');
  if (stat === 0) {
    r.u32('verifier flavor');
    r.opaque(400, 'verifier body');
    const accept = r.u32('accept_stat');
    switch (accept) {
      case 0: return { xid, body: r };
      case 1: return { xid, failure: { kind: 'prog_unavail' } };
      case 2: return { xid, failure: { kind: 'prog_mismatch', low: r.u32(), high: r.u32() } };
      case 3: return { xid, failure: { kind: 'proc_unavail' } };
      case 4: return { xid, failure: { kind: 'garbage_args' } };
      case 5: return { xid, failure: { kind: 'system_err' } };
      default: throw new XdrError(`unknown accept_stat ${accept}`);
    }
  }
  if (stat === 1) {
    const reject = r.u32('reject_stat');
    if (reject === 0) return { xid, failure: { kind: 'rpc_mismatch', low: r.u32(), high: r.u32() } };
    if (reject === 1) return { xid, failure: { kind: 'auth_error', stat: r.u32('auth_stat') } };
    throw new XdrError(`unknown reject_stat ${reject}`);
  }
  throw new XdrError(`unknown reply_stat ${stat}`);
}

function failureError(f: RpcFailure, name: string, proc: number): FsError {
  const code: ErrnoName = f.kind === 'auth_error' ? 'EACCES' : f.kind === 'garbage_args' ? 'EINVAL' : 'EIO';
  const detail = f.kind === 'prog_mismatch' || f.kind === 'rpc_mismatch' ? ` (server supports ${f.low}..${f.high})`
    : f.kind === 'auth_error' ? ` (auth_stat ${f.stat}${f.stat === 5 ? ': AUTH_TOOWEAK, the export wants AUTH_SYS' : ''})` : '';
  return new FsError(code, `${name}: procedure ${proc} failed: ${f.kind}${detail}`);
}

function encodeAuth(w: XdrWriter, auth: AuthSys | undefined): void {
  if (!auth) {
    w.u32(AUTH_NONE).u32(0);
    return;
  }
  const body = new XdrWriter(64);
  body.u32(Math.floor(Date.now() / 1000)).string(auth.machine.slice(0, 255)).u32(auth.uid).u32(auth.gid);
  const gids = auth.gids.slice(0, 16);
  body.u32(gids.length);
  for (const g of gids) body.u32(g);
  w.u32(AUTH_SYS).opaque(body.done());
}

export class RpcClient {
  private sock: net.Socket | null = null;
  private connected = false;
  private connecting = false;
  private closed = false;
  private readonly pending = new Map<number, Pending>();
  private xid = (Math.random() * 0xffffffff) >>> 0;
  private reconnectDelay = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private lastError = '';
  /** The socket corked until the end of this tick (send), if any. */
  private corked: net.Socket | null = null;
  /** The record parser of the current connection. */
  private parser: RecordParser | null = null;
  /** Counters for status and tests. */
  readonly stats = { calls: 0, retransmits: 0, reconnects: 0, strayReplies: 0, badRecords: 0 };

  /** Buffers for large reply records (RpcClientOptions.pooledRecords), let go after a second idle. */
  private readonly records: BufferPool | null;

  constructor(private readonly o: RpcClientOptions) {
    this.records = o.pooledRecords ? new BufferPool(o.maxRecord, o.pooledRecords, 1000) : null;
  }

  get name(): string { return this.o.name; }

  /** Sends a call; resolves with the reader positioned at the results. */
  call(proc: number, args: Buffer | null, opts: CallOptions = {}): Promise<RpcReply> {
    if (this.closed) return Promise.reject(new FsError('ENOTCONN', `${this.o.name}: client is closed`));
    this.xid = (this.xid + 1) >>> 0;
    const xid = this.xid;
    // The header and the (small, encoded) arguments are one buffer, so a call without a tail
    // is one write on the socket.
    const w = new XdrWriter(128 + (args?.length ?? 0));
    w.u32(0); // record mark, filled in below
    w.u32(xid).u32(MSG_CALL).u32(2).u32(this.o.prog).u32(this.o.vers).u32(proc);
    encodeAuth(w, opts.auth ?? this.o.auth);
    w.u32(AUTH_NONE).u32(0); // verifier
    if (args) w.encoded(args);
    const head = w.done();
    let len = head.length - 4;
    for (const t of opts.tail ?? []) len += t.length;
    head.writeUInt32BE((LAST_FRAGMENT | len) >>> 0, 0);
    const parts = [head];
    for (const t of opts.tail ?? []) if (t.length) parts.push(t);
    const deadline = opts.deadlineMs ?? this.o.deadlineMs;
    this.stats.calls++;
    return new Promise<RpcReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.pending.delete(xid)) return;
        // A call timed out while the connection sits inside a record: the server stopped in
        // the middle of a reply, or sent a record shorter than its mark said. Either way the
        // stream cannot be trusted to line up with record boundaries again (every later reply
        // would be swallowed as the rest of that record), so it is dropped; calls still
        // waiting are resent on a new connection.
        const stuck = this.sock && this.parser?.midRecord
          ? ` (the connection stalled inside a reply record, ${this.parser.received} bytes into it: reconnecting)` : '';
        const why = stuck || (this.lastError && !this.connected ? ` (${this.lastError})` : '');
        reject(new FsError('ETIMEDOUT', `${this.o.name}: no answer to procedure ${proc} within ${deadline} ms${why}`));
        if (stuck) {
          this.lastError = `stalled inside a reply record`;
          this.sock!.destroy();
        }
        this.idle();
      }, deadline);
      const p: Pending = { xid, parts, sent: false, sends: 0, resolve, reject, timer, proc };
      this.pending.set(xid, p);
      if (this.connected) this.send(p);
      else this.connect();
    });
  }

  /** Closes the connection and fails every waiting call. */
  close(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new FsError('ENOTCONN', `${this.o.name}: client closed`));
    }
    this.pending.clear();
    this.sock?.destroy();
    this.sock = null;
  }

  private send(p: Pending): void {
    const s = this.sock;
    if (!s) return;
    p.sent = true;
    p.sends++;
    if (p.sends > 1) this.stats.retransmits++;
    // Every call made in this tick goes out in one writev: each send on loopback wakes the
    // server, and a read-ahead makes eight calls at once.
    if (this.corked !== s) {
      this.corked = s;
      s.cork();
      process.nextTick(() => {
        if (this.corked === s) this.corked = null;
        s.uncork();
      });
    }
    for (const b of p.parts) s.write(b);
  }

  private connect(): void {
    if (this.connecting || this.connected || this.closed || this.reconnectTimer) return;
    this.connecting = true;
    const parser = new RecordParser(this.o.maxRecord, (rec, pooled) => this.onRecord(rec, pooled), this.records);
    this.parser = parser;
    // Reads land where the parser says (a large reply's body straight in its record), not in
    // a fresh buffer per read that would then be copied again.
    const sock = net.connect({
      host: this.o.host, port: this.o.port, noDelay: true,
      onread: { buffer: () => parser.readTarget(), callback: (n: number, buf: Uint8Array) => received(n, buf as Buffer) },
    });
    this.sock = sock;
    sock.on('connect', () => {
      if (this.sock !== sock) return;
      this.connecting = false;
      this.connected = true;
      this.reconnectDelay = 0;
      this.lastError = '';
      // resend in XID order whatever was waiting (never sent, or sent on a dead connection)
      for (const p of [...this.pending.values()].sort((a, b) => a.xid - b.xid)) this.send(p);
    });
    /** Always true: the socket keeps reading (false would pause it). */
    const received = (n: number, buf: Buffer): true => {
      if (this.sock !== sock) return true;
      try {
        parser.landed(buf, n);
      } catch (e) {
        this.stats.badRecords++;
        this.lastError = (e as Error).message;
        log.warn(`${this.o.name}: dropping the connection: ${this.lastError}`);
        sock.destroy();
      }
      return true;
    };
    let refused: NodeJS.ErrnoException | null = null;
    sock.on('error', (e: NodeJS.ErrnoException) => {
      this.lastError = e.code ? `${e.code}: ${e.message}` : e.message;
      if (!this.connected && e.code && UNREACHABLE.has(e.code)) refused = e;
    });
    sock.on('close', () => {
      if (this.sock !== sock) return;
      this.sock = null;
      this.connected = false;
      this.connecting = false;
      for (const p of this.pending.values()) p.sent = false;
      if (refused) {
        // Nobody listens there: the server process is gone, and with it any duplicate
        // request cache that could answer a resent call. Every waiting call fails now (the
        // cache above switches to disconnected at once) instead of at its deadline; whoever
        // made a call whose outcome is unknown replays it later (see NfsBackend, EEXIST).
        const code = refused.code as ErrnoName;
        for (const p of [...this.pending.values()]) this.settle(p, new FsError(code, `${this.o.name}: ${this.lastError}`));
      }
      if (!this.lastError) this.lastError = 'the server closed the connection';
      if (this.pending.size > 0 && !this.closed) {
        this.stats.reconnects++;
        this.reconnectDelay = Math.min(1000, this.reconnectDelay ? this.reconnectDelay * 2 : 50);
        this.reconnectTimer = setTimeout(() => { this.reconnectTimer = null; if (this.pending.size) this.connect(); }, this.reconnectDelay);
        this.reconnectTimer.unref();
      }
    });
    this.idle();
  }

  /** Lets node exit when nothing is waiting (the connection stays open for later calls). */
  private idle(): void {
    if (!this.sock) return;
    if (this.pending.size === 0) this.sock.unref();
    else this.sock.ref();
  }

  private onRecord(rec: Buffer, pooled: Buffer | null): void {
    // Gives the record's buffer back to the pool, once: at once when nobody gets the record,
    // else by the caller that does (RpcReply.release).
    let released = !pooled;
    const release = (): void => {
      if (released) return;
      released = true;
      this.records?.release(pooled!);
    };
    let decoded: ReturnType<typeof decodeReply>;
    try {
      decoded = decodeReply(rec);
    } catch (e) {
      // A reply we cannot even read a header of: if its XID is one of ours, fail that call.
      this.stats.badRecords++;
      const xid = rec.length >= 4 ? rec.readUInt32BE(0) : -1;
      release();
      const p = this.pending.get(xid);
      if (p) this.settle(p, new FsError('EIO', `${this.o.name}: malformed reply to procedure ${p.proc}: ${(e as Error).message}`));
      else log.debug(`${this.o.name}: ignoring a malformed record: ${(e as Error).message}`);
      return;
    }
    const p = this.pending.get(decoded.xid);
    if (!p) {
      release();
      this.stats.strayReplies++;
      return;
    }
    if ('failure' in decoded) {
      release();
      this.settle(p, failureError(decoded.failure, this.o.name, p.proc));
      return;
    }
    this.settle(p, { body: decoded.body, retransmitted: p.sends > 1, release });
  }

  private settle(p: Pending, out: RpcReply | Error): void {
    this.pending.delete(p.xid);
    clearTimeout(p.timer);
    if (out instanceof Error) p.reject(out);
    else p.resolve(out);
    this.idle();
  }
}

/** Wraps a result decoder so that a malformed body becomes an EIO naming the procedure. */
export function decodeWith<T>(name: string, what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof XdrError || e instanceof RangeError) throw new FsError('EIO', `${name}: malformed ${what} reply: ${e.message}`);
    throw e;
  }
}
