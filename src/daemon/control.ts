// The control socket: a Unix socket (mode 0600, inside the 0700 cache directory) that the
// mount process serves and the CLI talks to. One request per connection, one JSON line each
// way. Requests are validated; anything malformed gets an error answer.
//
// The one exception is `watch`: its connection stays open and carries event lines from the
// mount (WatchStream) until the watcher hangs up or the mount ends the stream.
import net from 'node:net';
import { promises as fsp } from 'node:fs';
import {
  ControlRequestSchema, ControlResponseSchema, MountEventSchema,
  type ControlResponse, type OneShotRequest, type WatchEvent,
} from './protocol.js';
import { UserError } from '../core/errors.js';
import { log } from '../core/log.js';

const MAX_REQUEST = 64 * 1024;
/**
 * Bytes that may wait in memory for one watcher (beyond what the kernel's socket buffer
 * holds). Past it, events for that watcher are dropped and counted, and a `missed` line
 * says how many once it has read its backlog: a watcher that stops reading costs at most
 * this much memory, and the mount never waits for it. (Events are dropped rather than the
 * watcher: a notifier that was only paused, e.g. a suspended terminal, carries on and is
 * told that it missed something; `cachefs status` has the current state.)
 */
const MAX_WATCH_BACKLOG = 256 * 1024;
/** How long the final line of a stream may take to reach a watcher before it is cut off. */
const WATCH_END_GRACE_MS = 2000;
/** The longest line a watcher accepts from the mount (the real ones are a few hundred bytes). */
const MAX_EVENT_LINE = 1024 * 1024;

export type ControlHandler = (req: OneShotRequest) => Promise<unknown>;

/** One watcher's connection, on the mount side. Sending never throws and never waits. */
export class WatchStream {
  private missed = 0;
  private closed = false;
  private readonly closeFns: (() => void)[] = [];

  constructor(private readonly sock: net.Socket) {
    sock.on('drain', () => this.flushMissed());
    sock.once('close', () => {
      this.closed = true;
      for (const fn of this.closeFns.splice(0)) { try { fn(); } catch (e) { log.warn('a watch close handler failed', e); } }
    });
  }

  /** Called once when the connection closes, from either side (unsubscribe here). */
  onClose(fn: () => void): void {
    if (this.closed) fn(); else this.closeFns.push(fn);
  }

  send(e: WatchEvent): void {
    if (this.closed || this.sock.writableEnded) return;
    if (this.sock.writableLength > MAX_WATCH_BACKLOG) { this.missed++; return; }
    this.flushMissed();
    this.write(e);
  }

  /** Sends a last line, closes the connection, and resolves once it is closed (or cut off). */
  end(last: WatchEvent): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.onClose(resolve);
      if (!this.sock.writableEnded) {
        this.flushMissed();
        this.write(last);
        this.sock.end();
      }
      setTimeout(() => this.sock.destroy(), WATCH_END_GRACE_MS).unref();
    });
  }

  private flushMissed(): void {
    if (this.missed === 0 || this.closed || this.sock.writableEnded) return;
    const count = this.missed;
    this.missed = 0;
    this.write({ type: 'missed', count, at: new Date().toISOString() });
  }

  private write(e: WatchEvent): void {
    // The mount's own events are checked too: a watcher must never get a line it cannot read.
    const ok = MountEventSchema.safeParse(e);
    if (!ok.success) { log.warn(`not sending a malformed ${e.type} event to a watcher`, ok.error.issues); return; }
    this.sock.write(JSON.stringify(e) + '\n');
  }
}

export interface ControlServices {
  /** Takes over a `watch` connection (without it, `watch` gets an error answer). */
  watch?: (stream: WatchStream) => void;
}

export async function serveControl(socketPath: string, handle: ControlHandler, services: ControlServices = {}): Promise<net.Server> {
  await fsp.rm(socketPath, { force: true });
  const server = net.createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    const reply = (r: ControlResponse) => { sock.end(JSON.stringify(r) + '\n'); };
    sock.on('error', () => undefined);
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST) { reply({ ok: false, error: 'request too large' }); sock.destroy(); return; }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      let parsed;
      try { parsed = ControlRequestSchema.safeParse(JSON.parse(line)); } catch { parsed = null; }
      if (!parsed || !parsed.success) { reply({ ok: false, error: 'malformed control request' }); return; }
      const req = parsed.data;
      if (req.op === 'watch') {
        if (!services.watch) { reply({ ok: false, error: 'this mount does not serve watch' }); return; }
        // From here on the connection only carries events out; anything the watcher sends
        // is ignored (not buffered).
        sock.removeAllListeners('data');
        sock.on('data', () => undefined);
        services.watch(new WatchStream(sock));
        return;
      }
      handle(req).then(
        (result) => reply({ ok: true, result }),
        (e) => {
          log.warn(`control request ${req.op} failed`, e);
          reply({ ok: false, error: (e as Error).message ?? String(e), ...(e instanceof UserError && e.hint ? { hint: e.hint } : {}) });
        },
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // Create the socket with mode 0600: the umask applies to bind(), so narrow it around it.
    const old = process.umask(0o177);
    server.listen(socketPath, () => { process.umask(old); server.off('error', reject); resolve(); });
  });
  await fsp.chmod(socketPath, 0o600);
  return server;
}

/** Sends one request; rejects with a UserError if nothing answers within `timeoutMs`. */
export function sendControl(socketPath: string, req: OneShotRequest, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let buf = '';
    const fail = (msg: string, hint?: string) => { sock.destroy(); reject(new UserError(msg, hint ? { hint } : {})); };
    const timer = setTimeout(() => fail(`the mount process did not answer within ${timeoutMs / 1000} s`,
      'it may be hung or dead; `cachefs umount` cleans up a dead mount'), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (d: string) => { buf += d; });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      fail(`cannot reach the mount process (${e.code ?? e.message})`, 'is it mounted? see `cachefs status`');
    });
    sock.on('end', () => {
      clearTimeout(timer);
      if (buf.trim() === '') {
        // The connection closed with nothing said: the process died (or was killed) while
        // it worked on the request.
        reject(new UserError('the mount process went away before it answered (it crashed, was killed, or is unmounting)', {
          hint: 'changes not yet on the backend stay safe in the journal; `cachefs status` tells what is left, `cachefs umount` cleans up a dead mount',
        }));
        return;
      }
      let parsed;
      try { parsed = ControlResponseSchema.safeParse(JSON.parse(buf.trim())); } catch { parsed = null; }
      if (!parsed?.success) { reject(new UserError('the mount process sent a malformed answer')); return; }
      const r = parsed.data;
      if (r.ok) resolve(r.result);
      else reject(new UserError(r.error, r.hint ? { hint: r.hint } : {}));
    });
  });
}

export interface WatchHandle {
  /** Resolves when the stream is over: 'unmounted' (the mount ended it), 'closed' by us. */
  done: Promise<'unmounted' | 'closed'>;
  /** Hangs up (Ctrl-C). */
  close(): void;
}

/**
 * Follows a mount's event stream. `onEvent` gets each validated line with its raw text;
 * `onBadLine` a line this version cannot read (a newer mount's event: the stream goes on).
 * `done` rejects with a UserError when the mount cannot be reached, refuses the request,
 * does not start the stream within `timeoutMs`, or goes away without ending it.
 */
export function watchControl(socketPath: string, handlers: {
  onEvent: (e: WatchEvent, raw: string) => void;
  onBadLine?: (raw: string) => void;
}, timeoutMs = 10_000): WatchHandle {
  const sock = net.connect(socketPath);
  let closing = false;
  let started = false;
  let result: 'unmounted' | null = null;
  const done = new Promise<'unmounted' | 'closed'>((resolve, reject) => {
    let buf = '';
    let failed = false;
    const fail = (msg: string, hint?: string, exitCode?: number) => {
      if (failed) return;
      failed = true;
      clearTimeout(timer);
      sock.destroy();
      reject(new UserError(msg, { ...(hint ? { hint } : {}), ...(exitCode ? { exitCode } : {}) }));
    };
    const timer = setTimeout(() => fail(`the mount process did not answer within ${timeoutMs / 1000} s`,
      'it may be hung or dead; `cachefs umount` cleans up a dead mount'), timeoutMs);
    const line = (raw: string) => {
      if (!raw.trim() || failed) return;
      let json: unknown;
      try { json = JSON.parse(raw); } catch { handlers.onBadLine?.(raw); return; }
      const ev = MountEventSchema.safeParse(json);
      if (ev.success) {
        if (!started) { started = true; clearTimeout(timer); }
        if (ev.data.type === 'unmounted') result = 'unmounted';
        handlers.onEvent(ev.data, raw);
        return;
      }
      // The answer to a request it refused (an older mount that has no `watch`, say).
      const r = ControlResponseSchema.safeParse(json);
      if (r.success && !r.data.ok) { fail(r.data.error, r.data.hint); return; }
      handlers.onBadLine?.(raw);
    };
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify({ op: 'watch' }) + '\n'));
    sock.on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) { line(buf.slice(0, nl)); buf = buf.slice(nl + 1); }
      if (buf.length > MAX_EVENT_LINE) fail('the mount process sent a line too long to be an event');
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (closing) return;
      fail(`cannot reach the mount process (${e.code ?? e.message})`, 'is it mounted? see `cachefs status`');
    });
    sock.on('close', () => {
      clearTimeout(timer);
      if (failed) return;
      if (buf) line(buf);
      if (closing) resolve('closed');
      else if (result) resolve(result);
      else fail('the mount process went away without unmounting', 'see `cachefs status`; `cachefs umount` cleans up a dead mount', 1);
    });
  });
  return { done, close: () => { closing = true; sock.destroy(); } };
}
