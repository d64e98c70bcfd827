// The NFS client against servers that misbehave, over real sockets on 127.0.0.1:
// - a scripted fake ONC RPC server (truncated replies, wrong XIDs, absurd record marks,
//   connections closed mid-reply, silence, garbage, replies out of order), used with
//   RpcClient directly and with NfsBackend;
// - a fault-injecting TCP proxy in front of a real nfs-ganesha (connection drops with calls
//   in flight, NFS3ERR_JUKEBOX, a stall);
// - the real server restarted between an UNSTABLE WRITE and its COMMIT (write verifier), and
//   a handle whose file was removed behind the server's back (ESTALE).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { FsError } from '../src/core/errors.js';
import { setLogLevel } from '../src/core/log.js';
import { NfsBackend } from '../src/backends/nfs/nfs-backend.js';
import { RecordParser, RpcClient, AUTH_NONE, AUTH_SYS, type AuthSys } from '../src/backends/nfs/rpc.js';
import { portmapGetPort } from '../src/backends/nfs/mount-client.js';
import { parseNfsUrl } from '../src/core/nfs-url.js';
import { XdrReader, XdrWriter } from '../src/backends/nfs/xdr.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';
import { sameMemory, shareMemory } from './helpers/buffers.js';

const isRoot = process.getuid?.() === 0;
const NFS_PROG = 100003;
const MOUNT_PROG = 100005;
/** How late a deadline may fire on a loaded 2-core machine. */
const MARGIN_MS = 300;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

if (!process.env.CACHEFS_LOG) setLogLevel('error'); // the client warns about every dropped connection
const unhandled: unknown[] = [];
process.on('unhandledRejection', (e) => { unhandled.push(e); });

// ---------------------------------------------------------------- wire helpers

interface ParsedCall {
  xid: number; rpcvers: number; prog: number; vers: number; proc: number;
  credFlavor: number; cred: Buffer; verfFlavor: number; verf: Buffer; args: Buffer;
}

function parseCall(rec: Buffer): ParsedCall {
  const r = new XdrReader(rec);
  const xid = r.u32();
  const mtype = r.u32();
  if (mtype !== 0) throw new Error(`not a call: msg_type ${mtype}`);
  const rpcvers = r.u32(), prog = r.u32(), vers = r.u32(), proc = r.u32();
  const credFlavor = r.u32();
  const cred = Buffer.from(r.opaque(400));
  const verfFlavor = r.u32();
  const verf = Buffer.from(r.opaque(400));
  return { xid, rpcvers, prog, vers, proc, credFlavor, cred, verfFlavor, verf, args: Buffer.from(rec.subarray(r.offset)) };
}

interface AuthSysBody { stamp: number; machine: string; uid: number; gid: number; gids: number[] }

function parseAuthSys(body: Buffer): AuthSysBody {
  const r = new XdrReader(body);
  const out = { stamp: r.u32(), machine: r.string(255), uid: r.u32(), gid: r.u32(), gids: r.array(16, 'gids', (x) => x.u32()) };
  if (r.remaining !== 0) throw new Error(`${r.remaining} bytes after the AUTH_SYS body`);
  return out;
}

/** Record marking: one last fragment. */
function mark(rec: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE((0x80000000 | rec.length) >>> 0);
  return Buffer.concat([h, rec]);
}

/** An accepted, successful reply record (unmarked): header, then `body`. */
function replyRec(xid: number, body: Buffer): Buffer {
  return Buffer.concat([new XdrWriter(24).u32(xid).u32(1).u32(0).u32(AUTH_NONE).u32(0).u32(0).done(), body]);
}

function fattrDir(w: XdrWriter, fileid: number): XdrWriter {
  w.u32(2).u32(0o755).u32(2).u32(0).u32(0).u64(4096).u64(4096).u32(0).u32(0).u64(0x42).u64(fileid);
  for (let i = 0; i < 3; i++) w.u32(1_700_000_000).u32(0);
  return w;
}

const ROOT_FH = Buffer.from('fake-root-handle');

// ---------------------------------------------------------------- the fake server

interface Call extends ParsedCall {
  sock: net.Socket;
  /** Which accepted connection it came on (1, 2, ...). */
  conn: number;
  /** Sends a successful reply with this body (record-marked, one write). */
  reply(body: Buffer): void;
  /** Writes raw bytes. */
  raw(bytes: Buffer): void;
}

/** Returns true when it handled the call (else the default answers, if any). */
type Script = (c: Call) => boolean;

class FakeServer {
  private server = net.createServer((s) => this.accept(s));
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  connections = 0;
  /** Connections the client closed (we did not destroy them ourselves first). */
  closedByPeer = 0;
  readonly calls: Call[] = [];
  script: Script = () => false;

  async start(): Promise<this> {
    await new Promise<void>((res, rej) => { this.server.once('error', rej); this.server.listen(0, '127.0.0.1', () => res()); });
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((res) => this.server.close(() => res()));
  }

  get url(): string { return `nfs://127.0.0.1:${this.port}/export?mountport=${this.port}`; }

  private accept(sock: net.Socket): void {
    const conn = ++this.connections;
    this.sockets.add(sock);
    let peerClosed = false;
    const byPeer = (): void => { if (!peerClosed) { peerClosed = true; this.closedByPeer++; } };
    sock.on('end', byPeer); // FIN
    sock.on('error', byPeer); // RST (ECONNRESET)
    sock.on('close', () => { this.sockets.delete(sock); });
    const parser = new RecordParser(1 << 24, (rec) => {
      const p = parseCall(rec);
      const c: Call = {
        ...p, sock, conn,
        reply: (body) => { if (!sock.destroyed) sock.write(mark(replyRec(p.xid, body))); },
        raw: (bytes) => { if (!sock.destroyed) sock.write(bytes); },
      };
      this.calls.push(c);
      if (!this.script(c)) defaults(c);
    });
    sock.on('data', (d) => parser.push(d));
  }
}

/** What a well-behaved server answers, for what NfsBackend.open()/close() need. */
function defaults(c: Call): void {
  if (c.prog === MOUNT_PROG) {
    if (c.proc === 1) c.reply(new XdrWriter(64).u32(0).opaque(ROOT_FH).u32(2).u32(AUTH_NONE).u32(AUTH_SYS).done()); // MNT
    else if (c.proc === 3 || c.proc === 0) c.reply(Buffer.alloc(0)); // UMNT, NULL
    else if (c.proc === 5) c.reply(new XdrWriter(64).u32(1).string('/export').u32(0).u32(0).done()); // EXPORT
    return;
  }
  if (c.prog !== NFS_PROG) return;
  const w = new XdrWriter(256);
  switch (c.proc) {
    case 1: // GETATTR: a directory; fileid = the handle's length (tells handles apart)
      c.reply(fattrDir(w.u32(0), c.args.readUInt32BE(0)).done());
      return;
    case 19: // FSINFO
      c.reply(w.u32(0).u32(0).u32(65536).u32(65536).u32(4096).u32(65536).u32(65536).u32(4096).u32(8192).u64(1n << 40n).u32(0).u32(1).u32(0x1b).done());
      return;
    case 20: // PATHCONF
      c.reply(w.u32(0).u32(0).u32(32000).u32(255).u32(1).u32(1).u32(0).u32(1).done());
      return;
    default:
      c.reply(w.u32(10004).u32(0).done()); // NOTSUPP, post_op_attr absent
  }
}

/** The echo answer the RpcClient tests use: the call's own arguments, after a 0. */
function echo(c: Call): void { c.reply(Buffer.concat([Buffer.alloc(4), c.args])); }

function client(port: number, deadlineMs: number, extra: Partial<ConstructorParameters<typeof RpcClient>[0]> = {}): RpcClient {
  return new RpcClient({ host: '127.0.0.1', port, prog: NFS_PROG, vers: 3, deadlineMs, maxRecord: 1 << 20, name: `fake ${port}`, ...extra });
}

const u32 = (n: number): Buffer => new XdrWriter(4).u32(n).done();

/** Awaits a rejection; returns it with how long it took. */
async function failsWith(p: Promise<unknown>, code: string): Promise<{ e: FsError; ms: number }> {
  const t0 = Date.now();
  try {
    await p;
  } catch (e) {
    const ms = Date.now() - t0;
    assert.ok(e instanceof FsError, `expected FsError ${code}, got ${(e as Error)?.stack ?? String(e)}`);
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    return { e, ms };
  }
  assert.fail(`expected ${code}, but it succeeded`);
}

function withinDeadline(ms: number, deadline: number, what: string): void {
  assert.ok(ms <= deadline + MARGIN_MS, `${what}: failed after ${ms} ms, deadline ${deadline} ms`);
}

// ---------------------------------------------------------------- RpcClient vs a fake server

describe('RpcClient against a misbehaving server', () => {
  let srv: FakeServer;
  const clients: RpcClient[] = [];
  const mk = (deadline: number, extra: Partial<ConstructorParameters<typeof RpcClient>[0]> = {}): RpcClient => {
    const c = client(srv.port, deadline, extra);
    clients.push(c);
    return c;
  };
  before(async () => { srv = await new FakeServer().start(); });
  after(async () => {
    for (const c of clients) c.close();
    await srv?.stop();
  });

  it('answers a plain call (the fake server works)', async () => {
    srv.script = (c) => { echo(c); return true; };
    const c = mk(1000);
    const { body, retransmitted } = await c.call(7, u32(0xabcdef));
    assert.equal(body.u32(), 0);
    assert.equal(body.u32(), 0xabcdef);
    assert.equal(retransmitted, false);
  });

  it('a truncated reply (record shorter than its mark says, then silence) fails with ETIMEDOUT at the deadline', async () => {
    srv.script = (c) => {
      const full = mark(replyRec(c.xid, Buffer.alloc(100)));
      c.raw(full.subarray(0, 30)); // the header claims 124 bytes; 26 arrive
      return true;
    };
    const c = mk(500);
    const { e, ms } = await failsWith(c.call(1, u32(1)), 'ETIMEDOUT');
    withinDeadline(ms, 500, 'truncated reply');
    assert.ok(ms >= 490, `gave up after ${ms} ms, before the deadline`);
    assert.match(e.message, /procedure 1 within 500 ms \(the connection stalled inside a reply record, 26 bytes into it/);
    // the stream cannot line up with record boundaries again: the connection was dropped, so
    // the next call's reply is not swallowed as the rest of that record
    srv.script = (x) => { echo(x); return true; };
    const { body } = await c.call(1, u32(5));
    body.u32();
    assert.equal(body.u32(), 5);
  });

  it('a reply with the wrong XID is ignored: the call times out, or takes the right reply sent afterwards', async () => {
    let late = false;
    srv.script = (c) => {
      const wrong = mark(replyRec((c.xid + 1000) >>> 0, u32(0)));
      c.raw(wrong);
      if (late) setTimeout(() => echo(c), 50);
      return true;
    };
    const c = mk(500);
    const { ms } = await failsWith(c.call(1, u32(1)), 'ETIMEDOUT');
    withinDeadline(ms, 500, 'wrong xid');
    assert.ok(c.stats.strayReplies >= 1, `strayReplies ${c.stats.strayReplies}`);
    late = true;
    const { body } = await c.call(1, u32(77));
    assert.equal(body.u32(), 0);
    assert.equal(body.u32(), 77);
    assert.ok(c.stats.strayReplies >= 2);
  });

  it('a record mark claiming 2 GiB drops the connection before any allocation; the call fails within its deadline', async () => {
    let marks = 0;
    srv.script = (c) => {
      marks++;
      c.raw(Buffer.from([0xff, 0xff, 0xff, 0xff])); // last fragment, 2^31 - 1 bytes
      c.raw(Buffer.alloc(64 * 1024, 0x41)); // and the start of it
      return true;
    };
    const closedBefore = srv.closedByPeer;
    const c = mk(800);
    const m0 = process.memoryUsage();
    const { e, ms } = await failsWith(c.call(1, u32(1)), 'ETIMEDOUT');
    const m1 = process.memoryUsage();
    withinDeadline(ms, 800, '2 GiB record mark');
    assert.ok(c.stats.badRecords >= 1, `badRecords ${c.stats.badRecords}`);
    await sleep(50);
    assert.ok(srv.closedByPeer > closedBefore, 'the client did not drop the connection');
    // it reconnected and sent the call again (the server may have recovered): each answer dropped it
    assert.ok(marks >= 1);
    const grew = (m1.rss - m0.rss) / 1e6, ab = (m1.arrayBuffers - m0.arrayBuffers) / 1e6;
    assert.ok(grew < 50 && ab < 50, `memory jumped: rss +${grew.toFixed(0)} MB, arrayBuffers +${ab.toFixed(0)} MB`);
    assert.match(e.message, /procedure 1/);
  });

  it('a connection closed mid-reply is re-established and the call resent with the same XID', async () => {
    const seen = new Map<number, number[]>(); // xid -> connections it arrived on
    srv.script = (c) => {
      const conns = seen.get(c.xid) ?? [];
      conns.push(c.conn);
      seen.set(c.xid, conns);
      if (conns.length === 1) {
        const full = mark(replyRec(c.xid, Buffer.concat([Buffer.alloc(4), c.args])));
        c.raw(full.subarray(0, 17));
        setTimeout(() => c.sock.destroy(), 20);
      } else echo(c);
      return true;
    };
    const c = mk(3000);
    const { body, retransmitted } = await c.call(6, u32(4242));
    assert.equal(body.u32(), 0);
    assert.equal(body.u32(), 4242);
    assert.equal(retransmitted, true);
    assert.ok(c.stats.retransmits >= 1 && c.stats.reconnects >= 1, JSON.stringify(c.stats));
    const [xid, conns] = [...seen][0]!;
    assert.equal(seen.size, 1, 'the resent call had a new XID');
    assert.equal(conns.length, 2, `call ${xid} arrived ${conns.length} times`);
    assert.notEqual(conns[0], conns[1], 'the resend came on the same connection');
  });

  it('a server that accepts but never answers: ETIMEDOUT at the deadline, for every call, nothing unhandled', async () => {
    srv.script = () => true;
    const c = mk(400);
    const t0 = Date.now();
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => c.call(1, u32(i))));
    const ms = Date.now() - t0;
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok((r as PromiseRejectedResult).reason instanceof FsError);
      assert.equal(((r as PromiseRejectedResult).reason as FsError).code, 'ETIMEDOUT');
    }
    withinDeadline(ms, 400, 'silent server');
    assert.ok(ms >= 395, `gave up after ${ms} ms`);
    await sleep(50);
    assert.deepEqual(unhandled, []);
  });

  it('garbage bytes: the call fails (EIO for a malformed reply to it, else ETIMEDOUT), the client survives', async () => {
    // (1) a record with our XID and a broken header: EIO at once
    srv.script = (c) => { c.raw(mark(Buffer.concat([u32(c.xid), u32(1), u32(7), Buffer.from('garbage!')]))); return true; };
    const c = mk(600);
    const { e, ms } = await failsWith(c.call(1, u32(1)), 'EIO');
    assert.ok(ms < 300, `EIO took ${ms} ms`);
    assert.match(e.message, /malformed reply/);
    // (2) random bytes with no framing at all
    let n = 0;
    srv.script = (c) => {
      const g = Buffer.alloc(4096);
      for (let i = 0; i < g.length; i++) g[i] = (i * 131 + n * 7 + 13) & 0xff;
      n++;
      c.raw(g);
      return true;
    };
    const r2 = await failsWith(c.call(1, u32(2)), 'ETIMEDOUT');
    withinDeadline(r2.ms, 600, 'garbage stream');
    // (3) and the same client works once the server behaves
    srv.script = (x) => { echo(x); return true; };
    const { body } = await c.call(1, u32(3));
    body.u32();
    assert.equal(body.u32(), 3);
  });

  it('200 calls in flight, answered in a shuffled order in odd-sized writes: each gets its own reply', async () => {
    const held: Call[] = [];
    srv.script = (c) => {
      held.push(c);
      if (held.length === 200) {
        // Fisher-Yates with a fixed LCG: deterministic
        let s = 12345;
        for (let i = held.length - 1; i > 0; i--) {
          s = (s * 1103515245 + 12345) & 0x7fffffff;
          const j = s % (i + 1);
          [held[i], held[j]] = [held[j]!, held[i]!];
        }
        const stream = Buffer.concat(held.map((h) => mark(replyRec(h.xid, Buffer.concat([Buffer.alloc(4), h.args, h.args])))));
        for (let off = 0, k = 0; off < stream.length; k++) {
          const n = [1, 7, 100, 4096, 3][k % 5]!;
          c.raw(stream.subarray(off, off + n));
          off += n;
        }
        held.length = 0;
      }
      return true;
    };
    const c = mk(5000);
    const got = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
      const { body } = await c.call(3, new XdrWriter(8).u32(i).u32(i * 7919).done());
      return [body.u32(), body.u32(), body.u32(), body.u32(), body.u32()];
    }));
    got.forEach((v, i) => assert.deepEqual(v, [0, i, i * 7919, i, i * 7919], `call ${i} got another's reply`));
  });

  it('large replies take pooled records: one not released keeps its bytes, released ones serve the next replies', async () => {
    srv.script = (c) => { echo(c); return true; };
    const c = mk(5000, { pooledRecords: 2 });
    const N = 600 * 1024; // over half of maxRecord (1 MiB): pooled
    const bytesOf = async (fill: number): Promise<{ data: Buffer; release(): void }> => {
      const { body, release } = await c.call(3, Buffer.alloc(N, fill));
      assert.equal(body.u32(), 0);
      return { data: body.fixed(N), release };
    };
    const kept = await bytesOf(1);
    const seen: Buffer[] = [];
    for (let i = 2; i < 12; i++) {
      const r = await bytesOf(i);
      assert.ok(r.data.every((b) => b === i), `reply ${i} is its own`);
      assert.ok(!shareMemory(r.data, kept.data), 'the record not released is never handed out again');
      if (!seen.some((s) => sameMemory(s, r.data))) seen.push(r.data);
      r.release();
      r.release(); // at most once: a second release gives nothing back twice
    }
    assert.equal(seen.length, 1, 'each released record served the next reply');
    assert.ok(kept.data.every((b) => b === 1), 'the kept reply still holds its own bytes');
    kept.release();
  });

  it('AUTH_SYS credentials are encoded as RFC 5531 says', async () => {
    srv.script = (c) => { echo(c); return true; };
    const auth: AuthSys = { uid: 1234, gid: 5678, gids: Array.from({ length: 20 }, (_, i) => 100 + i), machine: 'fuzz-host.example' };
    const c = mk(1000, { auth });
    await c.call(1, u32(1));
    await c.call(1, u32(2), { auth: { uid: 0xfffffffe, gid: 0, gids: [], machine: 'x' } });
    const anon = mk(1000);
    await anon.call(1, u32(3));
    const [a, b, none] = srv.calls.slice(-3);
    for (const x of [a!, b!, none!]) {
      assert.equal(x.rpcvers, 2);
      assert.equal(x.prog, NFS_PROG);
      assert.equal(x.vers, 3);
      assert.equal(x.proc, 1);
      assert.equal(x.verfFlavor, AUTH_NONE);
      assert.equal(x.verf.length, 0);
    }
    assert.equal(a!.credFlavor, AUTH_SYS);
    const pa = parseAuthSys(a!.cred);
    assert.equal(pa.machine, 'fuzz-host.example');
    assert.equal(pa.uid, 1234);
    assert.equal(pa.gid, 5678);
    assert.deepEqual(pa.gids, auth.gids.slice(0, 16), 'at most 16 supplementary groups');
    assert.ok(Math.abs(pa.stamp - Date.now() / 1000) < 600, `stamp ${pa.stamp}`);
    const pb = parseAuthSys(b!.cred);
    assert.deepEqual([pb.uid, pb.gid, pb.gids, pb.machine], [0xfffffffe, 0, [], 'x']);
    assert.equal(none!.credFlavor, AUTH_NONE);
    assert.equal(none!.cred.length, 0);
  });
});

// ---------------------------------------------------------------- NfsBackend vs a fake server

describe('NfsBackend against a misbehaving server', () => {
  let srv: FakeServer;
  let b: NfsBackend;
  const DEADLINE = 800; // the backend's; its RPC deadline is 250 ms shorter
  const badFh = Buffer.from('the-bad-one');
  before(async () => {
    srv = await new FakeServer().start();
    b = new NfsBackend(parseNfsUrl(`${srv.url}&uid=4321&gid=8765`), { deadlineMs: DEADLINE });
    await b.open();
  });
  after(async () => {
    srv.script = () => false;
    await b?.close();
    await srv?.stop();
  });

  /** Scripts calls whose first argument is badFh; everything else gets the defaults. */
  const onBad = (fn: (c: Call) => void): void => {
    srv.script = (c) => {
      if (c.prog !== NFS_PROG || c.args.length < 4 + badFh.length || !c.args.subarray(4, 4 + badFh.length).equals(badFh)) return false;
      fn(c);
      return true;
    };
  };

  it('opens: MNT, FSINFO, PATHCONF, GETATTR, with the URL\'s uid/gid as AUTH_SYS', async () => {
    const root = await b.root();
    assert.equal(root.attr.type, 'dir');
    const nfsCalls = srv.calls.filter((c) => c.prog === NFS_PROG);
    assert.ok(nfsCalls.length >= 3);
    for (const c of srv.calls) {
      assert.equal(c.credFlavor, AUTH_SYS);
      const a = parseAuthSys(c.cred);
      assert.deepEqual([a.uid, a.gid, a.gids], [4321, 8765, []]);
    }
  });

  it('a truncated GETATTR reply: ETIMEDOUT within the deadline', async () => {
    onBad((c) => c.raw(mark(replyRec(c.xid, fattrDir(new XdrWriter(128).u32(0), 1).done())).subarray(0, 40)));
    const { ms } = await failsWith(b.getattr(badFh), 'ETIMEDOUT');
    withinDeadline(ms, DEADLINE, 'truncated GETATTR');
  });

  it('a GETATTR reply whose fattr3 is cut short inside a whole record: EIO at once', async () => {
    onBad((c) => c.reply(new XdrWriter(32).u32(0).u32(2).u32(0o755).done()));
    const { e, ms } = await failsWith(b.getattr(badFh), 'EIO');
    assert.ok(ms < 300, `${ms} ms`);
    assert.match(e.message, /malformed GETATTR reply/);
  });

  it('a READ reply with more data than was asked for: EIO', async () => {
    onBad((c) => c.reply(new XdrWriter(256).u32(0).u32(0).u32(8).u32(1).opaque(Buffer.alloc(8)).done()));
    await failsWith(b.read(badFh, 0, 4), 'EIO');
  });

  it('a 2 GiB record mark in answer to READ: the connection is dropped, the error comes within the deadline', async () => {
    onBad((c) => c.raw(Buffer.from([0xff, 0xff, 0xff, 0xfc])));
    const m0 = process.memoryUsage();
    const { ms } = await failsWith(b.read(badFh, 0, 65536), 'ETIMEDOUT');
    const m1 = process.memoryUsage();
    withinDeadline(ms, DEADLINE, '2 GiB READ reply');
    assert.ok((m1.rss - m0.rss) / 1e6 < 50 && (m1.arrayBuffers - m0.arrayBuffers) / 1e6 < 50, 'memory jumped');
    assert.ok((b.rpcStats?.badRecords ?? 0) >= 1);
    // and the backend still works once the server behaves
    srv.script = () => false;
    assert.equal((await b.getattr(Buffer.from('x'))).type, 'dir');
  });

  it('a connection closed mid-reply: the GETATTR is resent and succeeds', async () => {
    let first = true;
    onBad((c) => {
      if (first) {
        first = false;
        c.raw(mark(replyRec(c.xid, fattrDir(new XdrWriter(128).u32(0), 5).done())).subarray(0, 50));
        setTimeout(() => c.sock.destroy(), 10);
      } else defaults(c);
    });
    const r0 = { ...b.rpcStats! };
    const attr = await b.getattr(badFh);
    assert.equal(attr.type, 'dir');
    assert.ok(b.rpcStats!.retransmits > r0.retransmits && b.rpcStats!.reconnects > r0.reconnects);
  });

  it('a server that stops answering: ETIMEDOUT within the deadline', async () => {
    onBad(() => {});
    const { ms } = await failsWith(b.getattr(badFh), 'ETIMEDOUT');
    withinDeadline(ms, DEADLINE, 'silent server');
  });

  it('garbage bytes instead of a reply: an error within the deadline, then recovery', async () => {
    onBad((c) => c.raw(Buffer.from('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n')));
    const t0 = Date.now();
    await assert.rejects(b.getattr(badFh), (e: FsError) => e instanceof FsError && ['ETIMEDOUT', 'EIO'].includes(e.code));
    withinDeadline(Date.now() - t0, DEADLINE, 'garbage');
    srv.script = () => false;
    assert.equal((await b.getattr(badFh)).type, 'dir');
  });

  it('the caller\'s credentials go out as AUTH_SYS for ACCESS', async () => {
    srv.script = (c) => {
      if (c.prog === NFS_PROG && c.proc === 4) { c.reply(new XdrWriter(16).u32(0).u32(0).u32(0x1f).done()); return true; }
      return false;
    };
    assert.equal(await b.access(ROOT_FH, 0x3f, { uid: 1001, gid: 1002 }), 0x1f);
    const last = srv.calls.filter((c) => c.prog === NFS_PROG && c.proc === 4).pop()!;
    const a = parseAuthSys(last.cred);
    assert.deepEqual([a.uid, a.gid], [1001, 1002]);
  });
});

// ---------------------------------------------------------------- a fault-injecting proxy before ganesha

/** A TCP proxy that understands record marking both ways, so it can drop, rewrite or swallow replies. */
class FaultProxy {
  private server = net.createServer((s) => this.accept(s));
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  /**
   * When > 0: replies are held back from now on, and once this many more calls have come in,
   * the connection carrying the last of them is cut (with all of them in flight).
   */
  dropAfterCalls = 0;
  private callsSinceArmed = 0;
  drops = 0;
  /** Replies to these procedures get their nfsstat3 rewritten to NFS3ERR_JUKEBOX, `left` times. */
  jukebox = { procs: new Set<number>(), left: 0, done: 0 };
  /** Replies are swallowed (the server still does the work). */
  stalled = false;
  calls = 0;

  constructor(private readonly upstreamPort: number) {}

  async start(): Promise<this> {
    await new Promise<void>((res, rej) => { this.server.once('error', rej); this.server.listen(0, '127.0.0.1', () => res()); });
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((res) => this.server.close(() => res()));
  }

  private accept(down: net.Socket): void {
    const up = net.connect({ host: '127.0.0.1', port: this.upstreamPort });
    for (const s of [down, up]) {
      this.sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => { this.sockets.delete(s); down.destroy(); up.destroy(); });
    }
    const procOf = new Map<number, number>();
    const fromClient = new RecordParser(1 << 24, (rec) => {
      if (down.destroyed) return;
      const xid = rec.readUInt32BE(0);
      procOf.set(xid, rec.readUInt32BE(20));
      this.calls++;
      if (this.dropAfterCalls > 0 && ++this.callsSinceArmed >= this.dropAfterCalls) {
        this.dropAfterCalls = 0;
        this.callsSinceArmed = 0;
        this.drops++;
        down.destroy();
        up.destroy();
        return;
      }
      up.write(mark(rec));
    });
    const fromServer = new RecordParser(1 << 24, (rec) => {
      if (this.dropAfterCalls > 0 || this.stalled) return; // held back (the connection will be cut) or swallowed
      const xid = rec.readUInt32BE(0);
      const proc = procOf.get(xid);
      procOf.delete(xid);
      if (proc !== undefined && this.jukebox.left > 0 && this.jukebox.procs.has(proc) && rec.readUInt32BE(8) === 0) {
        const vlen = rec.readUInt32BE(16);
        const at = 20 + vlen + ((4 - (vlen & 3)) & 3);
        if (rec.readUInt32BE(at) === 0) {
          const copy = Buffer.from(rec);
          copy.writeUInt32BE(10008, at + 4); // nfsstat3 := NFS3ERR_JUKEBOX
          this.jukebox.left--;
          this.jukebox.done++;
          rec = copy;
        }
      }
      down.write(mark(rec));
    });
    down.on('data', (d) => fromClient.push(d));
    up.on('data', (d) => fromServer.push(d));
  }
}

describe('NfsBackend through a fault-injecting proxy before a real server, and the real server itself', { skip: !isRoot && 'needs root (nfs-ganesha)' }, () => {
  let srv: NfsServer;
  let proxy: FaultProxy;
  let b: NfsBackend; // through the proxy
  let direct: NfsBackend; // straight to ganesha
  const DEADLINE = 2500;
  const creds = { uid: 0, gid: 0 };
  const content = Buffer.alloc(256 * 1024);
  for (let i = 0; i < content.length; i++) content[i] = (i * 2654435761) >>> 24;

  before(async () => {
    srv = await startNfsServer('rpc-robust');
    proxy = await new FaultProxy(srv.nfsPort).start();
    await fsp.writeFile(path.join(srv.exportDir, 'data.bin'), content);
    b = new NfsBackend(parseNfsUrl(`nfs://127.0.0.1:${proxy.port}/export?mountport=${srv.mntPort}`), { deadlineMs: DEADLINE });
    await b.open();
    direct = new NfsBackend(parseNfsUrl(srv.url), { deadlineMs: DEADLINE });
    await direct.open();
  });
  after(async () => {
    if (proxy) proxy.stalled = false;
    await b?.close().catch(() => {});
    await direct?.close().catch(() => {});
    await proxy?.stop();
    await srv?.dispose();
    if (srv) await fsp.rm(srv.dir, { recursive: true, force: true });
  });

  it('a connection cut with 50 GETATTR/READ/WRITE calls in flight: all complete correctly after reconnect and resend', async () => {
    const root = await b.root();
    const data = await b.lookup(root.fh, 'data.bin');
    const out = await b.create(root.fh, 'batch.bin', 0o644, creds, { exclusive: false });
    const r0 = { ...b.rpcStats! };
    proxy.dropAfterCalls = 20;
    const pieces = new Map<number, Buffer>();
    const ops = Array.from({ length: 50 }, async (_, i) => {
      switch (i % 3) {
        case 0: {
          const a = await b.getattr(data.fh);
          assert.equal(a.size, content.length);
          return;
        }
        case 1: {
          const off = i * 4096;
          const got = await b.read(data.fh, off, 4096);
          assert.ok(got.equals(content.subarray(off, off + 4096)), `READ at ${off} returned other bytes`);
          return;
        }
        default: {
          const piece = Buffer.alloc(4096, i);
          pieces.set(i, piece);
          await b.write(out.fh, i * 4096, piece);
        }
      }
    });
    await Promise.all(ops);
    assert.equal(proxy.drops, 1, 'the proxy never cut the connection');
    const s = b.rpcStats!;
    assert.ok(s.reconnects > r0.reconnects && s.retransmits > r0.retransmits, `rpc stats ${JSON.stringify(s)}`);
    await b.commit(out.fh);
    const onDisk = await fsp.readFile(path.join(srv.exportDir, 'batch.bin'));
    for (const [i, piece] of pieces) assert.ok(onDisk.subarray(i * 4096, i * 4096 + 4096).equals(piece), `WRITE ${i} is not on the server`);
  });

  it('NFS3ERR_JUKEBOX a few times: the operation is retried and succeeds', async () => {
    const root = await b.root();
    const data = await b.lookup(root.fh, 'data.bin');
    const j0 = b.stats.jukeboxRetries;
    proxy.jukebox = { procs: new Set([1, 6]), left: 3, done: 0 }; // GETATTR, READ
    const a = await b.getattr(data.fh);
    assert.equal(a.size, content.length);
    const got = await b.read(data.fh, 8192, 1000);
    assert.ok(got.equals(content.subarray(8192, 9192)));
    assert.equal(proxy.jukebox.done, 3);
    assert.ok(b.stats.jukeboxRetries - j0 >= 3, `jukeboxRetries ${b.stats.jukeboxRetries - j0}`);
  });

  it('a stalled server: ETIMEDOUT within the deadline, and the next call works once it answers again', async () => {
    const root = await b.root();
    proxy.stalled = true;
    const { ms } = await failsWith(b.getattr(root.fh), 'ETIMEDOUT');
    withinDeadline(ms, DEADLINE, 'stalled proxy');
    assert.ok(ms >= DEADLINE - 300, `gave up after ${ms} ms`);
    proxy.stalled = false;
    assert.equal((await b.getattr(root.fh)).type, 'dir');
  });

  it('ESTALE for the handle of a file removed on the server', async () => {
    await fsp.writeFile(path.join(srv.exportDir, 'doomed.txt'), 'soon gone');
    const root = await direct.root();
    const n = await direct.lookup(root.fh, 'doomed.txt');
    assert.equal((await direct.getattr(n.fh)).size, 9);
    await fsp.unlink(path.join(srv.exportDir, 'doomed.txt'));
    await failsWith(direct.getattr(n.fh), 'ESTALE');
    await failsWith(direct.read(n.fh, 0, 100), 'ESTALE');
  });

  it('a server restart between UNSTABLE WRITEs and COMMIT: the verifier change is seen and the data written again', async () => {
    const root = await direct.root();
    const f = await direct.create(root.fh, 'verf.bin', 0o644, creds, { exclusive: false });
    const data = Buffer.alloc(300 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
    await direct.write(f.fh, 0, data);
    const v0 = { ...direct.stats };
    // a write verifier may be derived from the boot time in seconds: restart in another second
    await sleep(1100 - (Date.now() % 1000));
    await srv.restart();
    await direct.commit(f.fh);
    assert.ok(direct.stats.verifierChanges > v0.verifierChanges, `verifierChanges ${JSON.stringify(direct.stats)}`);
    assert.ok(direct.stats.rewrites > v0.rewrites, `rewrites ${JSON.stringify(direct.stats)}`);
    const onDisk = await fsp.readFile(path.join(srv.exportDir, 'verf.bin'));
    assert.equal(onDisk.length, data.length);
    assert.ok(onDisk.equals(data), 'the server does not hold the written data');
  });

  it('nothing was left unhandled', () => {
    assert.deepEqual(unhandled, []);
  });
});

// ---------------------------------------------------------------- portmapper

describe('portmapper GETPORT', () => {
  let srv: FakeServer;
  before(async () => { srv = await new FakeServer().start(); });
  after(async () => { await srv?.stop(); });

  it('asks for the program, version and TCP, and takes the port from the answer', async () => {
    const asked: number[][] = [];
    srv.script = (c) => {
      assert.equal(c.prog, 100000);
      assert.equal(c.vers, 2);
      assert.equal(c.proc, 3);
      const r = new XdrReader(c.args);
      const q = [r.u32(), r.u32(), r.u32(), r.u32()];
      asked.push(q);
      c.reply(u32(q[0] === NFS_PROG ? 2049 : 0)); // only NFS is registered
      return true;
    };
    assert.equal(await portmapGetPort('127.0.0.1', NFS_PROG, 3, 2000, srv.port), 2049);
    assert.equal(await portmapGetPort('127.0.0.1', MOUNT_PROG, 3, 2000, srv.port), undefined, 'port 0: not registered');
    assert.deepEqual(asked, [[NFS_PROG, 3, 6, 0], [MOUNT_PROG, 3, 6, 0]]);
  });

  it('no portmapper (refused) or a silent one: undefined, within the deadline, so defaults apply', async () => {
    const closed = await new FakeServer().start();
    const port = closed.port;
    await closed.stop();
    let t0 = Date.now();
    assert.equal(await portmapGetPort('127.0.0.1', NFS_PROG, 3, 2000, port), undefined);
    assert.ok(Date.now() - t0 < 1000, 'a refused connection answers at once');
    srv.script = () => true; // never answers
    t0 = Date.now();
    assert.equal(await portmapGetPort('127.0.0.1', NFS_PROG, 3, 500, srv.port), undefined);
    withinDeadline(Date.now() - t0, 500, 'silent portmapper');
  });
});
