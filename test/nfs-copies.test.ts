// The NFS client's buffers, where it copies less than it used to:
// - RecordParser never keeps a view of bytes it was given (the socket reuses its read
//   buffer), and records read in place (readTarget/landed) come out whole and exact however
//   the stream is cut, next to records that went through the scratch buffer;
// - RpcClient over a real socket: large replies written in odd pieces, with small ones and
//   multi-fragment ones between them, arrive byte for byte;
// - NfsBackend keeps its own copy of UNSTABLE data (from a pool): a caller reusing its buffer
//   after write(), and pooled copies reused after a COMMIT, never change what a server
//   restart makes it write again;
// - NfsBackend.readLent lends a READ reply's record itself, and takes it back once.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { setLogLevel } from '../src/core/log.js';
import { NfsBackend } from '../src/backends/nfs/nfs-backend.js';
import { RecordParser, RpcClient } from '../src/backends/nfs/rpc.js';
import { parseNfsUrl } from '../src/core/nfs-url.js';
import { XdrWriter } from '../src/backends/nfs/xdr.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';
import { mulberry32 } from './helpers/rng.js';
import { waitUntil } from './helpers/wait.js';
import { sameMemory, shareMemory } from './helpers/buffers.js';

const isRoot = process.getuid?.() === 0;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
if (!process.env.CACHEFS_LOG) setLogLevel('error');

/** `payload` as record-marked fragments of at most `frag` bytes. */
function marked(payload: Buffer, frag: number): Buffer {
  const out: Buffer[] = [];
  let off = 0;
  do {
    const n = Math.min(frag, payload.length - off);
    const h = Buffer.alloc(4);
    h.writeUInt32BE(((off + n === payload.length ? 0x80000000 : 0) | n) >>> 0, 0);
    out.push(h, payload.subarray(off, off + n));
    off += n;
  } while (off < payload.length);
  return Buffer.concat(out);
}

function patterned(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed * 17 + (i >>> 8)) & 0xff;
  return b;
}

describe('RecordParser keeps no view of what it was given', () => {
  it('push(): overwriting the pushed buffer afterwards changes no record', () => {
    const recs: Buffer[] = [];
    const p = new RecordParser(1 << 20, (r) => recs.push(r));
    const payloads = [patterned(100, 1), patterned(70_000, 2), patterned(8, 3)];
    const stream = Buffer.concat(payloads.map((x) => marked(x, 1 << 20)));
    // one buffer, reused for every piece, as the socket's scratch buffer is
    const reused = Buffer.alloc(stream.length);
    stream.copy(reused);
    p.push(reused);
    reused.fill(0xee);
    assert.equal(recs.length, 3);
    for (let i = 0; i < 3; i++) assert.ok(recs[i]!.equals(payloads[i]!), `record ${i} changed with the buffer it came from`);
  });

  it('readTarget()/landed(): records read in place or through the scratch buffer come out exact, however the reads are cut', () => {
    let direct = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const rnd = mulberry32(seed);
      const payloads: Buffer[] = [];
      const parts: Buffer[] = [];
      for (let i = 0; i < 12; i++) {
        const big = rnd() < 0.5;
        const n = big ? 16 * 1024 + Math.floor(rnd() * 300_000) : Math.floor(rnd() * 600);
        const x = patterned(n, seed * 100 + i);
        payloads.push(x);
        parts.push(marked(x, rnd() < 0.25 ? 1 + Math.floor(rnd() * 100_000) : 1 << 20));
      }
      const stream = Buffer.concat(parts);
      const recs: Buffer[] = [];
      const p = new RecordParser(1 << 20, (r) => recs.push(r));
      let off = 0;
      const scratch = p.readTarget(); // nothing pending yet: the scratch buffer
      while (off < stream.length) {
        const target = p.readTarget();
        assert.ok(target.length > 0, `seed ${seed}: an empty read target (the socket fails with ENOBUFS)`);
        // what a read returns: anything from one byte to the target's size
        const n = Math.min(target.length, stream.length - off, rnd() < 0.3 ? 1 + Math.floor(rnd() * 50) : 1 + Math.floor(rnd() * 200_000));
        stream.copy(target, 0, off, off + n);
        if (target !== scratch) direct++; // a view into the record being received
        p.landed(target, n);
        off += n;
      }
      assert.equal(recs.length, payloads.length, `seed ${seed}: records out`);
      // compared only now: a record that were a view of the scratch buffer would have changed
      for (let i = 0; i < payloads.length; i++) assert.ok(recs[i]!.equals(payloads[i]!), `seed ${seed}: record ${i} differs`);
      assert.equal(p.midRecord, false);
    }
    assert.ok(direct > 100, `only ${direct} reads landed in place`);
  });
});

describe('RpcClient reads large replies in place over a real socket', () => {
  let server: net.Server;
  let port = 0;
  /** Replies the server sends, by the call's first argument word. */
  const bodies = new Map<number, Buffer>();
  before(async () => {
    server = net.createServer((sock) => {
      const rnd = mulberry32(7);
      const p = new RecordParser(1 << 20, (rec) => {
        const xid = rec.readUInt32BE(0);
        // call header: xid, type, rpcvers, prog, vers, proc, cred (flavor, len, body), verf
        let o = 24;
        o += 8 + rec.readUInt32BE(o + 4);
        o += 8 + rec.readUInt32BE(o + 4);
        const which = rec.readUInt32BE(o);
        const body = bodies.get(which)!;
        const reply = new XdrWriter(64).u32(xid).u32(1).u32(0).u32(0).u32(0).u32(0).done();
        const wire = marked(Buffer.concat([reply, body]), which % 3 === 0 ? 40_000 : 1 << 20);
        // written in odd pieces, some after a pause, so reads end anywhere (one reply after
        // the other: pieces of two replies must not interleave)
        sending = sending.then(async () => {
          for (let off = 0; off < wire.length;) {
            const n = Math.min(wire.length - off, 1 + Math.floor(rnd() * 90_000));
            sock.write(wire.subarray(off, off + n));
            off += n;
            if (rnd() < 0.2) await sleep(1);
          }
        });
      });
      let sending = Promise.resolve();
      sock.on('data', (d) => p.push(d));
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as net.AddressInfo).port;
  });
  after(async () => { await new Promise<void>((r) => server.close(() => r())); });

  it('replies of 0 bytes to 1 MiB, some in several fragments, in flight together, arrive exact', async () => {
    const c = new RpcClient({ host: '127.0.0.1', port, prog: 100003, vers: 3, deadlineMs: 10_000, maxRecord: (1 << 20) + 4096, name: 'copies' });
    try {
      const sizes = [0, 4, 100, 16 * 1024, 16 * 1024 + 4, 65_536, 65_540, 300_000, 1 << 20];
      for (let i = 0; i < 60; i++) bodies.set(i, patterned(sizes[i % sizes.length]!, i));
      const got = await Promise.all([...bodies.keys()].map(async (i) => {
        const { body } = await c.call(0, new XdrWriter(4).u32(i).done());
        return { i, data: body.fixed(body.remaining) };
      }));
      for (const { i, data } of got) assert.ok(data.equals(bodies.get(i)!), `reply ${i} (${bodies.get(i)!.length} bytes) differs`);
      assert.equal(c.stats.badRecords, 0);
    } finally {
      c.close();
    }
  });
});

describe('NfsBackend: UNSTABLE data kept for a server restart is its own copy', { skip: !isRoot && 'needs root (nfs-ganesha)' }, () => {
  let srv: NfsServer;
  let b: NfsBackend;
  const creds = { uid: 0, gid: 0 };
  before(async () => {
    srv = await startNfsServer('nfs-copies');
    b = new NfsBackend(parseNfsUrl(srv.url), { deadlineMs: 10_000 });
    await b.open();
  });
  after(async () => {
    await b?.close();
    await srv?.dispose();
  });

  it('a caller reusing its buffer, and pooled copies reused after a COMMIT, do not change what is written again', async () => {
    const { wsize } = b.limits;
    const root = await b.root();
    const f = await b.create(root.fh, 'copies.bin', 0o644, creds, { exclusive: false });
    // one buffer for every write, as write-back's pooled dirty runs are reused
    const buf = Buffer.alloc(wsize);
    const want = Buffer.alloc(4 * wsize + 1000);
    const put = async (at: number, len: number, seed: number): Promise<void> => {
      patterned(len, seed).copy(buf);
      await b.write(f.fh, at, buf.subarray(0, len));
      buf.copy(want, at, 0, len);
      buf.fill(0xee); // reused at once
    };
    // first round: committed, so its pooled copies go back to the pool
    await put(0, wsize, 1);
    await put(wsize, wsize, 2);
    await b.commit(f.fh);
    // second round, uncommitted when the server restarts: pooled copies again (reused ones),
    // a small write (a copy of its own), and a whole one
    await put(0, wsize, 3);
    await put(2 * wsize, wsize, 4);
    await put(3 * wsize, wsize / 2, 5);
    await put(4 * wsize, 1000, 6);
    const v0 = { ...b.stats };
    await sleep(1100 - (Date.now() % 1000)); // a new boot-time verifier
    await srv.restart();
    await b.commit(f.fh);
    assert.ok(b.stats.rewrites >= v0.rewrites + 4, `rewrites ${JSON.stringify(b.stats)}`);
    // writes in the restarted server's page cache that it never committed may or may not
    // have survived: what matters is that every byte we wrote again is the one written
    const onDisk = await fsp.readFile(path.join(srv.exportDir, 'copies.bin'));
    for (const [at, len] of [[0, wsize], [wsize, wsize], [2 * wsize, wsize], [3 * wsize, wsize / 2], [4 * wsize, 1000]] as const) {
      assert.ok(onDisk.subarray(at, at + len).equals(want.subarray(at, at + len)), `bytes at ${at} (+${len}) are not the ones written`);
    }
  });

  it('write() with a KeepBytes keeps the caller\'s bytes instead of copying them, lets go of them once committed, and sends them again after a restart', async () => {
    const { wsize } = b.limits;
    const root = await b.root();
    const f = await b.create(root.fh, 'kept.bin', 0o644, creds, { exclusive: false });
    const buf = patterned(2 * wsize + 100, 20);
    let pins = 0;
    let releases = 0;
    const keep = (): (() => void) => {
      pins++;
      let kept = true;
      return () => { if (kept) { kept = false; releases++; } };
    };
    await b.write(f.fh, 0, buf, creds, keep);
    assert.equal(pins, 3, 'each UNSTABLE piece pins the bytes');
    assert.equal(releases, 0, 'and keeps them until a COMMIT covers it');
    const v0 = { ...b.stats };
    await sleep(1100 - (Date.now() % 1000)); // a new boot-time verifier
    await srv.restart();
    await b.commit(f.fh);
    assert.equal(b.stats.rewrites, v0.rewrites + 3, 'the kept bytes were written again');
    assert.equal(releases, 3, 'and let go of once durable');
    assert.ok((await fsp.readFile(path.join(srv.exportDir, 'kept.bin'))).equals(buf));
  });

  it('a COMMIT starts in the background past 16 MiB: writes go on while it is answered, and it leaves a restart\'s rewrites to the next COMMIT', { timeout: 120_000 }, async () => {
    const { wsize } = b.limits;
    const root = await b.root();
    const f = await b.create(root.fh, 'ahead.bin', 0o644, creds, { exclusive: false });
    const pieces = Math.ceil((16 << 20) / wsize);
    const want = patterned((pieces + 4) * wsize, 30);
    const piece = (i: number): Buffer => want.subarray(i * wsize, (i + 1) * wsize);
    // COMMIT answers are held until the test opens the gate (fault injection on the real client).
    let open!: () => void;
    let gate = new Promise<void>((r) => { open = r; });
    let commitsAnswered = 0;
    const inner = b as unknown as { call(proc: number, args: Buffer | null, what: string, opts?: unknown): Promise<unknown> };
    const call = inner.call.bind(b);
    inner.call = async (proc, args, what, opts) => {
      const out = await call(proc, args, what, opts);
      if (what === 'COMMIT') { commitsAnswered++; await gate; }
      return out;
    };
    try {
      // 1. Writes past 16 MiB: a COMMIT goes out, and writes still complete while it is held.
      for (let i = 0; i < pieces; i++) await b.write(f.fh, i * wsize, piece(i), creds);
      await waitUntil('a background COMMIT to be answered', () => commitsAnswered === 1);
      for (let i = pieces; i < pieces + 2; i++) await b.write(f.fh, i * wsize, piece(i), creds);
      open();
      await b.commit(f.fh);
      // 2. The server restarts between two writes: the background COMMIT finds pieces under
      // the old verifier and writes none of them again; the COMMIT made at close does.
      gate = Promise.resolve();
      const v0 = { ...b.stats };
      const before = commitsAnswered;
      for (let i = 0; i < pieces / 2; i++) await b.write(f.fh, i * wsize, piece(i), creds);
      await sleep(1100 - (Date.now() % 1000)); // a new boot-time verifier
      await srv.restart();
      for (let i = pieces / 2; i < pieces + 4; i++) await b.write(f.fh, i * wsize, piece(i), creds);
      await waitUntil('the background COMMIT to be answered', () => commitsAnswered > before);
      await new Promise((r) => setImmediate(r));
      assert.equal(b.stats.rewrites, v0.rewrites, 'a background COMMIT writes nothing again');
      await b.commit(f.fh);
      assert.ok(b.stats.rewrites >= v0.rewrites + pieces / 2, `the next COMMIT wrote the lost pieces again: ${JSON.stringify(b.stats)}`);
    } finally {
      inner.call = call;
      open();
    }
    assert.ok((await fsp.readFile(path.join(srv.exportDir, 'ahead.bin'))).equals(want));
  });

  it('readLent: the data is the READ reply itself; a released record serves a later READ, one still lent stays exact', async () => {
    const { rsize } = b.limits;
    const content = patterned(4 * rsize, 77);
    await fsp.writeFile(path.join(srv.exportDir, 'lent.bin'), content);
    const root = await b.root();
    const f = await b.lookup(root.fh, 'lent.bin');
    const at = (i: number): Buffer => content.subarray(i * rsize, (i + 1) * rsize);
    const r0 = await b.readLent(f.fh, 0, rsize);
    const r1 = await b.readLent(f.fh, rsize, rsize);
    assert.ok(r0.data.equals(at(0)) && r1.data.equals(at(1)));
    r0.release();
    r0.release(); // ignored: a record given back twice would serve two READs at once
    const r2 = await b.readLent(f.fh, 2 * rsize, rsize);
    const r3 = await b.readLent(f.fh, 3 * rsize, rsize);
    assert.ok(sameMemory(r2.data, r0.data), 'the released record serves the next READ');
    assert.ok(!shareMemory(r3.data, r2.data), 'and only one READ');
    assert.ok(r1.data.equals(at(1)), 'bytes still lent are not overwritten by later READs');
    assert.ok(r2.data.equals(at(2)) && r3.data.equals(at(3)));
    for (const r of [r1, r2, r3]) r.release();
    // Past the end of the file: short, and nothing is held.
    const tail = await b.readLent(f.fh, 4 * rsize - 10, rsize);
    assert.ok(tail.data.equals(content.subarray(4 * rsize - 10)));
    tail.release();
  });

  // A truncate while the COMMIT covering some writes is in flight must cut those writes too:
  // if that COMMIT then finds the server restarted, writing them again would bring back bytes
  // past the file's new end (before: the file grew back to its old size).
  it('a truncate during a COMMIT that finds the server restarted: nothing past the new end is written again', async () => {
    const { wsize } = b.limits;
    const root = await b.root();
    const f = await b.create(root.fh, 'cut.bin', 0o644, creds, { exclusive: false });
    for (let i = 0; i < 3; i++) await b.write(f.fh, i * wsize, patterned(wsize, 10 + i));
    await sleep(1100 - (Date.now() % 1000)); // a new boot-time verifier
    await srv.restart();
    // The COMMIT's answer is held until the truncate is done (fault injection on the real client).
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    let held = false;
    const inner = b as unknown as { call(proc: number, args: Buffer | null, what: string, opts?: unknown): Promise<unknown> };
    const call = inner.call.bind(b);
    inner.call = async (proc, args, what, opts) => {
      const out = await call(proc, args, what, opts);
      if (what === 'COMMIT' && !held) { held = true; await gate; }
      return out;
    };
    try {
      const committing = b.commit(f.fh);
      await waitUntil('the COMMIT to be answered and held', () => held);
      await b.setattr(f.fh, { size: 1000 }, creds);
      open();
      await committing;
    } finally {
      inner.call = call;
    }
    const onDisk = await fsp.readFile(path.join(srv.exportDir, 'cut.bin'));
    assert.equal(onDisk.length, 1000, 'the file keeps the size it was truncated to');
    assert.ok(onDisk.equals(patterned(wsize, 10).subarray(0, 1000)), 'and the bytes below it are the ones written');
  });
});
