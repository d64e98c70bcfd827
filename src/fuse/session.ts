// One FUSE session: the conversation with the kernel on a /dev/fuse descriptor. It reads
// requests (several reads outstanding, each on a libuv pool thread, so the event loop never
// blocks), negotiates INIT, hands each request to its handler and writes the reply.
//
// What must stay true:
// - every request that expects a reply gets exactly one, also when its handler throws or the
//   request is malformed (EINVAL) or unknown (ENOSYS); FORGET, BATCH_FORGET and INTERRUPT get
//   none, as the protocol says;
// - replies are written synchronously (the kernel copies them at once and never waits on us);
//   notifications are written from a pool thread: the kernel may hold a lock of the inode
//   being invalidated while it waits for a reply of ours, and a blocked event loop would
//   never send that reply;
// - a read error of ENODEV means the file system was unmounted: the session ends, once.
import fs from 'node:fs';
import { log } from '../core/log.js';
import { BufferPool } from '../core/buffer-pool.js';
import { errnoNumber } from '../core/errors.js';
import {
  Body, Init, Op, OLDEST_MINOR, OUR_MINOR, FUSE_KERNEL_VERSION, IN_HEADER, ProtocolError, initOut, opName,
  outHeader, parseHeader, parseInit, type InHeader,
} from './protocol.js';
import { toFuseErrno } from './errno.js';

/** One request as a handler sees it. */
export interface Request {
  h: InHeader;
  body: Body;
  /**
   * Set by a handler: called once its reply has been written *and* the handler has settled
   * (an INTERRUPT may answer first while the handler still works): when the buffers the
   * reply came from may be used again.
   */
  done?: () => void;
  /**
   * Keeps the request's bytes (`body`'s buffer) past the reply, until the returned release
   * is called (once; later calls do nothing): a WRITE's data becomes a journal record's
   * bytes without a copy. The buffer goes back to the readers only then.
   */
  keep(): () => void;
}

/** A handler's answer: the reply's payload (nothing: an empty reply). */
export type Payload = Buffer | Buffer[] | void;
export type Handler = (req: Request) => Promise<Payload> | Payload;

/** What INIT settled: the kernel's minor and the features both sides have. */
export interface Negotiated { minor: number; flags: bigint; maxWrite: number; maxReadahead: number }

export interface SessionOptions {
  /** Features we would like (intersected with the kernel's offer). */
  want: bigint;
  maxWrite: number;
  /** Outstanding reads of /dev/fuse. */
  readers: number;
  /**
   * A non-blocking clone of the session's descriptor (sys.ts cloneNonBlocking), polled for a
   * while after each reply (see spin()); absent: requests come only through the readers.
   */
  poll?: { fd: number; read(fd: number, buf: Buffer): number };
  handlers: Partial<Record<number, Handler>>;
  /** Requests that change nothing: an INTERRUPT answers them EINTR at once. */
  interruptible: ReadonlySet<number>;
  /** FORGET and BATCH_FORGET: (nodeid, nlookup) pairs. */
  forget(pairs: [bigint, number][]): void;
  onInit?(n: Negotiated): void;
}

/** Per-operation counts and total handler time (ms), shown by `cachefs status --json`. */
export const opStats: Record<string, { count: number; ms: number; errors: number }> = {};
/** Requests read by polling the clone (spin()) rather than by a reader: `status --json`. */
export const sessionStats = { polled: 0 };

const SMALL_REQUEST = 64 * 1024;
/**
 * How long the event loop keeps polling for the next request after answering the last one
 * in flight (ms). A request read by a pool thread reaches the event loop through two thread
 * wake-ups (the reader's, then the loop's); an application that makes one call after the
 * other (tar, a stat loop, git) sends its next request within a few microseconds of our
 * reply, and polling finds it without either.
 */
const SPIN_MS = 0.05;
/**
 * The longest one spell of polling (ms): requests answered at once, one after the other,
 * could otherwise keep the event loop from timers and finished backend calls for good.
 */
const SPIN_MAX_MS = 2;
/**
 * Large request buffers kept for the readers once their requests are handled: as many as
 * WRITEs whose data may be kept past their reply (write-back's write-behind window and what
 * a backend keeps until its COMMIT, 80 MiB), so a kept one is not replaced by a fresh
 * buffer to fault in. Let go after a second without large requests.
 */
const REQUEST_BUFFERS = 96;

export class FuseSession {
  private closed = false;
  /** True once the session is over (closed here, or ended by the kernel). */
  get isClosed(): boolean { return this.closed; }
  private negotiated: Negotiated | null = null;
  /** unique -> answer-now for requests being handled that an INTERRUPT may cut short. */
  private readonly inflight = new Map<bigint, (errno: number) => void>();
  private readonly bufSize: number;
  private readonly requestBuffers: BufferPool;
  /** Requests handed to a handler and not yet answered. */
  private active = 0;
  private spinning = false;
  private pollBuf: Buffer | null = null;
  private endedResolve!: (why: string) => void;
  /** Resolves with the reason when the kernel closes the session (unmount, abort). */
  readonly ended: Promise<string> = new Promise((r) => { this.endedResolve = r; });

  constructor(readonly fd: number, private readonly o: SessionOptions) {
    // The kernel wants room for the largest write plus its headers (at least 8 KiB).
    this.bufSize = Math.max(o.maxWrite + 4096, 8192) + IN_HEADER;
    this.requestBuffers = new BufferPool(this.bufSize, REQUEST_BUFFERS, 1000);
  }

  get init(): Negotiated | null { return this.negotiated; }

  start(): void {
    for (let i = 0; i < Math.max(1, this.o.readers); i++) this.readLoop(this.requestBuffers.acquire(this.bufSize));
  }

  /** Stops reading; the descriptor is closed (the kernel then aborts what is left). */
  close(why = 'closed'): void {
    if (this.closed) return;
    this.closed = true;
    try { fs.closeSync(this.fd); } catch { /* already gone */ }
    if (this.o.poll) try { fs.closeSync(this.o.poll.fd); } catch { /* already gone */ }
    this.endedResolve(why);
  }

  private readLoop(buf: Buffer): void {
    if (this.closed) return;
    fs.read(this.fd, buf, 0, buf.length, null, (err, n) => {
      if (this.closed) return;
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // ENOENT: the request was interrupted before we read it; EINTR/EAGAIN: try again.
        if (code === 'ENOENT' || code === 'EINTR' || code === 'EAGAIN') { this.readLoop(buf); return; }
        if (code !== 'ENODEV') log.error('reading /dev/fuse failed; the session ends', err);
        this.close(code === 'ENODEV' ? 'unmounted' : `read error ${code}`);
        return;
      }
      const { req, next, recycle } = this.take(buf, n);
      this.readLoop(next);
      this.dispatch(req, n, recycle);
      this.spin();
    });
  }

  /**
   * The request read into `buf` (`n` bytes) as a handler gets it, and the buffer to read the
   * next one into. A large request (a write) keeps its buffer until answered, and the reader
   * takes a spare one; it comes back once handled (a fresh one per write was a fresh mapping
   * to fault in). A small one is copied out.
   */
  private take(buf: Buffer, n: number): { req: Buffer; next: Buffer; recycle?: () => void } {
    if (n <= SMALL_REQUEST) return { req: Buffer.from(buf.subarray(0, n)), next: buf };
    return { req: buf, next: this.requestBuffers.acquire(this.bufSize), recycle: () => this.requestBuffers.release(buf) };
  }

  /**
   * While no request is being handled, reads the clone for SPIN_MS after the last request
   * found, SPIN_MAX_MS at most (a handler in flight waits on the event loop: polling would
   * only delay it). The readers stay waiting meanwhile; each request goes to whichever reads
   * it first, and its reply goes back on the descriptor it came from.
   */
  private spin(): void {
    const poll = this.o.poll;
    if (!poll || this.spinning || this.active > 0 || this.closed) return;
    this.spinning = true;
    try {
      const start = performance.now();
      let until = start + SPIN_MS;
      const stop = start + SPIN_MAX_MS;
      while (this.active === 0 && !this.closed) {
        const buf = (this.pollBuf ??= Buffer.allocUnsafeSlow(this.bufSize));
        const n = poll.read(poll.fd, buf);
        if (n === -1) {
          if (performance.now() > until) return;
          continue;
        }
        if (n < 0) return; // ENODEV and the like: the readers see it too and end the session
        const { req, next, recycle } = this.take(buf, n);
        this.pollBuf = next;
        sessionStats.polled++;
        this.dispatch(req, n, recycle, poll.fd);
        const now = performance.now();
        if (now > stop) return;
        until = now + SPIN_MS;
      }
    } finally {
      this.spinning = false;
    }
  }

  /** Handles one request read from the kernel (also the entry point of the decoder's fuzz test). */
  dispatch(buf: Buffer, n: number, recycle?: () => void, from = this.fd): void {
    let h: InHeader;
    try {
      h = parseHeader(buf, n);
    } catch (e) {
      log.warn('dropped a malformed request from the kernel', e);
      return;
    }
    const body = new Body(buf, IN_HEADER, h.len);
    switch (h.opcode) {
      case Op.INIT: this.answerInit(h, body, from); return;
      case Op.FORGET:
        try { this.o.forget([[h.nodeid, count(body.u64())]]); } catch (e) { log.warn('malformed FORGET', e); }
        return;
      case Op.BATCH_FORGET: {
        try {
          const n = body.u32();
          body.skip(4);
          const pairs: [bigint, number][] = [];
          for (let i = 0; i < n; i++) pairs.push([body.u64(), count(body.u64())]);
          this.o.forget(pairs);
        } catch (e) { log.warn('malformed BATCH_FORGET', e); }
        return;
      }
      case Op.INTERRUPT: {
        try {
          const cut = this.inflight.get(body.u64());
          if (cut) cut(-errnoNumber('EINTR'));
        } catch (e) { log.warn('malformed INTERRUPT', e); }
        return;
      }
      case Op.NOTIFY_REPLY: return; // we never ask the kernel for data (NOTIFY_RETRIEVE)
      case Op.DESTROY: this.reply(h.unique, 0, undefined, from); return;
    }
    this.handle(h, body, recycle, from);
  }

  /** `recycle`: gives the request's buffer back, once nothing reads it any more. */
  private handle(h: InHeader, body: Body, recycle: (() => void) | undefined, from: number): void {
    const name = opName[h.opcode] ?? `op${h.opcode}`;
    if (!this.negotiated) { this.reply(h.unique, -errnoNumber('EIO'), undefined, from); return; }
    const fn = this.o.handlers[h.opcode];
    if (!fn) { this.reply(h.unique, -errnoNumber('ENOSYS'), undefined, from); return; }
    let done = false;
    let settled = false;
    // The request's buffer goes back once the handler has settled, its reply is written and
    // nobody keeps its bytes (Request.keep).
    let kept = 0;
    let finished = false;
    const keep = () => {
      kept++;
      let once = true;
      return () => {
        if (!once) return;
        once = false;
        if (--kept === 0 && finished) recycle?.();
      };
    };
    const req: Request = { h, body, keep };
    const finish = () => {
      const f = req.done;
      req.done = undefined;
      f?.();
      finished = true;
      if (kept === 0) recycle?.();
    };
    const t0 = performance.now();
    const answer = (error: number, payload?: Payload) => {
      if (done) return;
      done = true;
      this.active--;
      this.inflight.delete(h.unique);
      const s = (opStats[name] ??= { count: 0, ms: 0, errors: 0 });
      s.count++;
      s.ms += performance.now() - t0;
      if (error < 0) s.errors++;
      this.reply(h.unique, error, payload, from);
      if (settled) finish();
      this.spin();
    };
    // The handler's own answer: after it, nothing of the handler's uses its buffers.
    const own = (error: number, payload?: Payload) => {
      settled = true;
      if (done) finish();
      else answer(error, payload);
    };
    if (this.o.interruptible.has(h.opcode)) this.inflight.set(h.unique, (e) => answer(e));
    let p: Promise<Payload> | Payload;
    this.active++;
    try {
      p = fn(req);
    } catch (e) {
      own(errnoOf(e, name));
      return;
    }
    if (p instanceof Promise) p.then((r) => own(0, r), (e) => own(errnoOf(e, name)));
    else own(0, p);
  }

  private answerInit(h: InHeader, body: Body, from: number): void {
    let error = 0;
    if (this.negotiated) { this.reply(h.unique, -errnoNumber('EINVAL'), undefined, from); return; } // the kernel sends one
    try {
      const i = parseInit(body);
      if (i.major !== FUSE_KERNEL_VERSION || i.minor < OLDEST_MINOR) {
        // An older kernel: say which version we speak, and it gives up (or sends INIT again).
        log.error(`the kernel speaks FUSE ${i.major}.${i.minor}; cachefs needs 7.${OLDEST_MINOR} or newer (Linux 5.4)`);
        this.reply(h.unique, 0, initOut({ minor: OUR_MINOR, maxReadahead: 0, flags: 0n, maxBackground: 0, congestionThreshold: 0, maxWrite: 4096, maxPages: 1, maxStackDepth: 0 }), from);
        return;
      }
      const minor = Math.min(i.minor, OUR_MINOR);
      let flags = i.flags & this.o.want;
      if (minor < 40) flags &= ~Init.PASSTHROUGH;
      if (flags >> 32n) flags |= Init.INIT_EXT;
      const maxPages = Math.ceil(this.o.maxWrite / 4096);
      const n: Negotiated = { minor, flags, maxWrite: this.o.maxWrite, maxReadahead: this.o.maxWrite };
      this.negotiated = n;
      this.o.onInit?.(n);
      this.reply(h.unique, 0, initOut({
        minor, maxReadahead: n.maxReadahead, flags,
        maxBackground: 64, congestionThreshold: 48,
        maxWrite: this.o.maxWrite, maxPages,
        // Passthrough stacks the mount on the cache disk's file system: one level.
        maxStackDepth: flags & Init.PASSTHROUGH ? 1 : 0,
      }), from);
      log.info(`FUSE ${i.major}.${i.minor} (speaking 7.${minor}); features 0x${flags.toString(16)}, max_write ${this.o.maxWrite}`);
      return;
    } catch (e) {
      log.error('malformed INIT from the kernel', e);
      error = -errnoNumber('EINVAL');
    }
    this.reply(h.unique, error, undefined, from);
  }

  /** Writes one reply; an error reply has no payload. */
  reply(unique: bigint, error: number, payload?: Payload, fd = this.fd): void {
    const parts = error === 0 && payload ? (Array.isArray(payload) ? payload : [payload]) : [];
    let len = 16;
    for (const p of parts) len += p.length;
    try {
      fs.writevSync(fd, [outHeader(len, error, unique), ...parts]);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // ENOENT: the request was interrupted meanwhile; EBADF/ENODEV: the session is over.
      if (code === 'ENOENT' || this.closed) return;
      if (code === 'ENODEV') { this.close('unmounted'); return; }
      log.error(`the kernel refused a reply (unique ${unique}, error ${error}, ${len} bytes)`, e);
    }
  }

  /**
   * Notifications waiting to be written, in order; at most one is being written at a time.
   * A notification that drops a file's pages waits in the kernel for their page locks (a
   * READ of ours in flight) and, under the writeback cache, for their writeback (WRITEs we
   * must answer). The wait holds a libuv pool thread: many at once (a burst of changes from
   * the backend's watcher) took every pool thread, the reads of /dev/fuse and of cache files
   * that would end those waits found none, and the mount hung. One at a time, a waiting
   * notification holds one thread and delays only the notifications behind it.
   */
  private readonly notices: { hdr: Buffer; payload: Buffer; key: string; sent: () => void }[] = [];
  /** Keys of the notifications waiting (a second identical one is not queued). */
  private readonly waitingNotices = new Map<string, Promise<void>>();
  private noticing = false;

  /** Sends a notification (unique 0, `code` in the error field); resolves once written. */
  notify(code: number, payload: Buffer): Promise<void> {
    if (this.closed || !this.negotiated) return Promise.resolve();
    const key = `${code}:${payload.toString('latin1')}`;
    const same = this.waitingNotices.get(key);
    if (same) return same;
    const hdr = outHeader(16 + payload.length, code, 0n);
    const p = new Promise<void>((sent) => { this.notices.push({ hdr, payload, key, sent }); });
    this.waitingNotices.set(key, p);
    if (!this.noticing) this.nextNotice();
    return p;
  }

  private nextNotice(): void {
    const n = this.notices.shift();
    if (!n) { this.noticing = false; return; }
    this.noticing = true;
    this.waitingNotices.delete(n.key); // being written: a new one of the same kind queues anew
    const done = (err: NodeJS.ErrnoException | null) => {
      const c = err?.code;
      // ENOENT: the kernel does not know that inode or name (any more): nothing to drop.
      if (err && c !== 'ENOENT' && !this.closed) log.debug(`notification failed: ${c}`);
      n.sent();
      this.nextNotice();
    };
    if (this.closed) { done(null); return; }
    fs.writev(this.fd, [n.hdr, n.payload], done);
  }
}

/** A lookup count (u64): beyond 2^53 it means "all of them". */
function count(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

function errnoOf(e: unknown, op: string): number {
  if (e instanceof ProtocolError) {
    log.warn(`malformed ${op} request`, e);
    return -errnoNumber('EINVAL');
  }
  return toFuseErrno(e, op);
}
