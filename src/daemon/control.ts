// The control socket: a Unix socket (mode 0600, inside the 0700 cache directory) that the
// mount process serves and the CLI talks to. One request per connection, one JSON line each
// way. Requests are validated; anything malformed gets an error answer.
import net from 'node:net';
import { promises as fsp } from 'node:fs';
import { ControlRequestSchema, ControlResponseSchema, type ControlRequest, type ControlResponse } from './protocol.js';
import { UserError } from '../core/errors.js';
import { log } from '../core/log.js';

const MAX_REQUEST = 64 * 1024;

export type ControlHandler = (req: ControlRequest) => Promise<unknown>;

export async function serveControl(socketPath: string, handle: ControlHandler): Promise<net.Server> {
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
      handle(parsed.data).then(
        (result) => reply({ ok: true, result }),
        (e) => {
          log.warn(`control request ${parsed.data.op} failed`, e);
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
export function sendControl(socketPath: string, req: ControlRequest, timeoutMs = 10_000): Promise<unknown> {
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
      let parsed;
      try { parsed = ControlResponseSchema.safeParse(JSON.parse(buf.trim())); } catch { parsed = null; }
      if (!parsed?.success) { reject(new UserError('the mount process sent a malformed answer')); return; }
      const r = parsed.data;
      if (r.ok) resolve(r.result);
      else reject(new UserError(r.error, r.hint ? { hint: r.hint } : {}));
    });
  });
}
