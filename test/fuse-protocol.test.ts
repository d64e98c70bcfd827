// The FUSE session's decoder and dispatch, fed requests the kernel would never send: seeded
// random opcodes, node ids and bodies (short, long, unterminated names, huge sizes). The
// handlers are the real ones over a real cache layer on a local backend in a temporary
// directory; replies go to a file, read back afterwards. What must hold: the process does
// not crash, every request that wants a reply gets exactly one (FORGET, BATCH_FORGET and
// INTERRUPT get none), every error is a negative errno, and a well-formed LOOKUP still works
// after the storm.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { CacheLayer } from '../src/layers/cache-layer.js';
import { layerHere, type LayerHere } from './helpers/layer.js';
import { FuseSession } from '../src/fuse/session.js';
import { NodeTable } from '../src/fuse/nodes.js';
import { INTERRUPTIBLE } from '../src/fuse/ops.js';
import { fuseHandlers } from '../src/fuse/route.js';
import { ControlDir } from '../src/layers/control-dir.js';
import { Op, IN_HEADER, OUR_MINOR, Init, Notify, notifyInvalInode } from '../src/fuse/protocol.js';
import { execFileSync } from 'node:child_process';
import { waitUntil } from './helpers/wait.js';
import { mulberry32 } from './helpers/rng.js';
import { setLogLevel } from '../src/core/log.js';

function request(opcode: number, unique: bigint, nodeid: bigint, body: Buffer): Buffer {
  const b = Buffer.alloc(IN_HEADER + body.length);
  b.writeUInt32LE(b.length, 0);
  b.writeUInt32LE(opcode, 4);
  b.writeBigUInt64LE(unique, 8);
  b.writeBigUInt64LE(nodeid, 16);
  b.writeUInt32LE(0, 24); // uid root
  b.writeUInt32LE(0, 28);
  b.writeUInt32LE(process.pid, 32);
  body.copy(b, IN_HEADER);
  return b;
}

/** The replies written to `file`: unique -> [error, payload length][]. */
function replies(file: string): Map<bigint, [number, number][]> {
  const buf = fs.readFileSync(file);
  const out = new Map<bigint, [number, number][]>();
  for (let at = 0; at + 16 <= buf.length;) {
    const len = buf.readUInt32LE(at);
    assert.ok(len >= 16 && at + len <= buf.length, `a reply of ${len} bytes at ${at} overruns the ${buf.length} written`);
    const unique = buf.readBigUInt64LE(at + 8);
    const list = out.get(unique) ?? [];
    list.push([buf.readInt32LE(at + 4), len - 16]);
    out.set(unique, list);
    at += len;
  }
  return out;
}

describe('FUSE protocol: malformed and unexpected requests', () => {
  let dir: string;
  let layer: CacheLayer;
  let here: LayerHere;

  before(async () => {
    setLogLevel('error'); // every malformed request is a warning: thousands of them here
    here = await layerHere('fuzz', {
      fill: async (be) => {
        await fsp.mkdir(path.join(be, 'sub'), { recursive: true });
        await fsp.writeFile(path.join(be, 'file'), 'contents');
      },
    });
    layer = here.layer;
    dir = path.dirname(here.backend);
  });

  after(async () => {
    await here?.dispose();
  });

  for (const seed of [20261204, 7, 4242]) {
    it(`seed ${seed}: 3,000 random requests, each answered once, the session still works`, async () => {
      const out = path.join(dir, `replies-${seed}`);
      const fd = fs.openSync(out, 'w');
      const nodes = new NodeTable(layer.rootObjectId);
      const session: FuseSession = new FuseSession(fd, {
        want: Init.ASYNC_READ | Init.ATOMIC_O_TRUNC | Init.DO_READDIRPLUS,
        maxWrite: 1 << 20, readers: 1, interruptible: INTERRUPTIBLE,
        forget: (pairs) => { for (const [n, c] of pairs) nodes.forget(n, c); },
        handlers: fuseHandlers({
          layer, nodes, control: new ControlDir({ conflicts: here.conflicts, cacheDir: path.join(here.dir, 'cache') }), caching: { entry: 1, attr: 1, negative: 1, listings: false, untoldAttrS: 1, told: false }, controlTimeouts: { entry: 1, attr: 1, negative: 1 }, creds: (h) => ({ uid: h.uid, gid: h.gid }),
          autoCache: true, negotiated: () => session.init,
        }),
      });
      const init = Buffer.alloc(64);
      init.writeUInt32LE(7, 0); init.writeUInt32LE(OUR_MINOR, 4); init.writeUInt32LE(1 << 20, 8);
      init.writeUInt32LE(Number(Init.ASYNC_READ | Init.ATOMIC_O_TRUNC | Init.DO_READDIRPLUS), 12);
      const r = mulberry32(seed);
      const ops = Object.values(Op);
      const noReply = new Set<number>([Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT, Op.NOTIFY_REPLY]);
      const expected = new Set<bigint>();
      let unique = 1n;
      session.dispatch(request(Op.INIT, unique, 0n, init), IN_HEADER + 64);
      expected.add(unique);
      const names = ['file', 'sub', '.cachefs', '', 'x'.repeat(300), 'new', '..', 'é'];
      for (let i = 0; i < 3000; i++) {
        unique++;
        const pick = r();
        const opcode = pick < 0.05 ? Math.floor(r() * 5000) : ops[Math.floor(r() * ops.length)]!;
        const nodeid = [0n, 1n, 2n, 3n, 1n << 48n, 0xffffffffffffffffn][Math.floor(r() * 6)]!;
        let body: Buffer;
        const shape = r();
        if (shape < 0.3) body = Buffer.alloc(Math.floor(r() * 48)); // short, zeros
        else if (shape < 0.6) body = Buffer.from(Array.from({ length: Math.floor(r() * 200) }, () => Math.floor(r() * 256)));
        else {
          // A plausible fixed part (random), then a NUL-terminated name or two.
          const fixed = Buffer.from(Array.from({ length: [0, 8, 16, 40, 88][Math.floor(r() * 5)]! }, () => (r() < 0.7 ? 0 : Math.floor(r() * 256))));
          const n1 = names[Math.floor(r() * names.length)]!;
          const n2 = names[Math.floor(r() * names.length)]!;
          body = Buffer.concat([fixed, Buffer.from(`${n1}\0${r() < 0.5 ? `${n2}\0` : ''}`)]);
        }
        const req = request(opcode, unique, nodeid, body);
        // Now and then a header that lies about the length, or is cut short.
        const lie = r();
        if (lie < 0.03) { session.dispatch(req, Math.min(req.length, 20)); continue; }
        if (lie < 0.06) { req.writeUInt32LE(req.length + 100, 0); session.dispatch(req, req.length); continue; }
        if (lie < 0.08) { req.writeUInt16LE(0xffff, 36); session.dispatch(req, req.length); continue; }
        session.dispatch(req, req.length);
        if (!noReply.has(opcode)) expected.add(unique);
      }
      // A well-formed LOOKUP of a name that exists, last.
      unique++;
      const lookup = unique;
      session.dispatch(request(Op.LOOKUP, lookup, 1n, Buffer.from('file\0')), IN_HEADER + 5);
      expected.add(lookup);
      await waitUntil('every request to be answered', () => replies(out).size >= expected.size, 60_000);
      // Give late second answers (there must be none) a moment to show up.
      await new Promise((res) => setTimeout(res, 200));
      const got = replies(out);
      for (const u of expected) {
        const list = got.get(u);
        assert.ok(list, `request ${u} got no reply`);
        assert.equal(list.length, 1, `request ${u} got ${list.length} replies`);
        const [error, len] = list[0]!;
        assert.ok(error <= 0 && error > -4096, `request ${u}: error ${error} is not a negative errno`);
        if (error < 0) assert.equal(len, 0, `request ${u}: an error reply carries no payload`);
      }
      for (const u of got.keys()) assert.ok(expected.has(u), `request ${u} should have had no reply`);
      const [lookupError, lookupLen] = got.get(lookup)![0]!;
      assert.equal(lookupError, 0, 'the LOOKUP after the storm succeeds');
      assert.equal(lookupLen, 128, 'with a full entry');
      const errors = [...got.values()].filter((l) => l[0]![0] < 0).length;
      assert.ok(errors > 100 && errors < got.size, `a mix of errors and successes (${errors} of ${got.size})`);
      fs.closeSync(fd);
    });
  }
});

describe('FUSE session: request buffers', () => {
  // A WRITE's bytes may be kept past its reply (write-back journals them without a copy):
  // the request's buffer must not go back to the readers, to be filled with another request,
  // until whoever kept it lets go.
  it('a request\'s buffer goes back once its handler settled and its reply is out, or later when kept', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cachefs-keep-'));
    const fd = fs.openSync(path.join(dir, 'replies'), 'w');
    let release: (() => void) | undefined;
    /** Each handler waits here until the test lets it finish. */
    const running: (() => void)[] = [];
    const session = new FuseSession(fd, {
      want: 0n, maxWrite: 1 << 20, readers: 1, interruptible: new Set(), forget: () => undefined,
      handlers: {
        [Op.WRITE]: async (req) => {
          if (req.body.u32() === 1) release = req.keep();
          await new Promise<void>((r) => { running.push(r); });
        },
      },
    });
    try {
      const init = Buffer.alloc(64);
      init.writeUInt32LE(7, 0); init.writeUInt32LE(OUR_MINOR, 4);
      session.dispatch(request(Op.INIT, 1n, 0n, init), IN_HEADER + 64);
      await waitUntil('INIT to be answered', () => session.init !== null);
      const given: string[] = [];
      const body = (keep: number) => { const b = Buffer.alloc(64); b.writeUInt32LE(keep, 0); return b; };
      // Not kept: back once the handler has settled (its reply is written then).
      session.dispatch(request(Op.WRITE, 2n, 1n, body(0)), IN_HEADER + 64, () => given.push('plain'));
      await waitUntil('the handler to start', () => running.length === 1);
      assert.equal(given.length, 0, 'not while its handler runs');
      running.shift()!();
      await waitUntil('the plain buffer to go back', () => given.includes('plain'));
      // Kept: not back when answered, only when released, and only once.
      const written = fs.fstatSync(fd).size;
      session.dispatch(request(Op.WRITE, 3n, 1n, body(1)), IN_HEADER + 64, () => given.push('kept'));
      await waitUntil('the handler to start', () => running.length === 1);
      running.shift()!();
      await waitUntil('the reply to be written', () => fs.fstatSync(fd).size >= written + 16);
      await new Promise((r) => setImmediate(r));
      assert.ok(release, 'the handler kept the buffer');
      assert.deepEqual(given, ['plain'], 'a kept buffer stays out after the reply');
      release();
      release();
      assert.deepEqual(given, ['plain', 'kept'], 'back once released, once');
    } finally {
      session.close('test over');
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('FUSE notifications', () => {
  // A notification that drops pages waits in the kernel for their page locks and writeback,
  // holding the pool thread that writes it. Here the kernel is a FIFO nobody reads yet: every
  // write to it blocks, as such a notification does. Before notifications went one at a time,
  // a burst of them took every pool thread and the mount could serve nothing (a real mount
  // with the writeback cache hung so: its INVAL_INODEs waited for WRITEs nobody could read).
  it('notifications the kernel holds up take one pool thread, not all; they go out in order', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cachefs-notify-'));
    const fifo = path.join(dir, 'kernel');
    execFileSync('mkfifo', [fifo]);
    const rd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const wr = fs.openSync(fifo, fs.constants.O_WRONLY); // blocking, as /dev/fuse is
    const filler = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    const got: Buffer[] = [];
    const drain = (): void => {
      const b = Buffer.alloc(1 << 16);
      for (;;) {
        let n = 0;
        try { n = fs.readSync(rd, b, 0, b.length, null); } catch (e) { if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return; throw e; }
        if (n === 0) return;
        got.push(Buffer.from(b.subarray(0, n)));
      }
    };
    const session = new FuseSession(wr, {
      want: 0n, maxWrite: 1 << 20, readers: 1, interruptible: INTERRUPTIBLE, forget: () => undefined, handlers: {},
    });
    try {
      const init = Buffer.alloc(64);
      init.writeUInt32LE(7, 0); init.writeUInt32LE(OUR_MINOR, 4);
      session.dispatch(request(Op.INIT, 1n, 0n, init), IN_HEADER + 64);
      await waitUntil('INIT to be answered', () => session.init !== null);
      drain();
      got.length = 0;
      // The kernel stops taking anything: the pipe is full.
      const page = Buffer.alloc(4096); // zeros: no reply or notification starts so
      let filled = 0;
      for (;;) { try { filled += fs.writeSync(filler, page); } catch (e) { if ((e as NodeJS.ErrnoException).code === 'EAGAIN') break; throw e; } }
      const sent = Array.from({ length: 12 }, (_, i) => session.notify(Notify.INVAL_INODE, notifyInvalInode(BigInt(100 + i), 0, 0)));
      const dup = session.notify(Notify.INVAL_INODE, notifyInvalInode(111n, 0, 0)); // still waiting: not queued twice
      // The pool (4 threads in this process) must still have a thread for other work.
      const pool = await Promise.race([fsp.stat(dir).then(() => 'served'), new Promise((r) => setTimeout(r, 3000, 'starved'))]);
      drain();
      const NOTICE = 16 + 24; // out header, fuse_notify_inval_inode_out
      await waitUntil('every notification to be written', () => { drain(); return Buffer.concat(got).length >= filled + 12 * NOTICE; });
      await Promise.all([...sent, dup]);
      assert.equal(pool, 'served', 'a pool thread was free while the notifications waited');
      const all = Buffer.concat(got);
      assert.ok(all.subarray(0, filled).every((b) => b === 0), 'the filler comes out first');
      const notices: bigint[] = [];
      for (let at = filled; at < all.length; at += NOTICE) {
        assert.equal(all.readUInt32LE(at), NOTICE);
        assert.equal(all.readInt32LE(at + 4), Notify.INVAL_INODE);
        notices.push(all.readBigUInt64LE(at + 16));
      }
      assert.deepEqual(notices, Array.from({ length: 12 }, (_, i) => BigInt(100 + i)), 'each once, in order');
    } finally {
      drain();
      session.close('test over');
      for (const fd of [filler, rd]) fs.closeSync(fd); // the session closed its own (wr)
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('node table: what it keeps per node', () => {
  it('forgets what a node was at its last open once the kernel forgets the node', () => {
    const nodes = new NodeTable(7);
    const node = nodes.nodeOf(42);
    nodes.looked(node);
    nodes.looked(node);
    assert.equal(nodes.sameAsLastOpen(node, 'v1'), false, 'first open');
    assert.equal(nodes.sameAsLastOpen(node, 'v1'), true, 'unchanged: the kernel may keep its pages');
    assert.equal(nodes.sameAsLastOpen(node, 'v2'), false, 'changed');
    nodes.forget(node, 1);
    assert.equal(nodes.sameAsLastOpen(node, 'v2'), true, 'still held once');
    nodes.forget(node, 1);
    assert.equal(nodes.known(node), false);
    // The memo went with the node (one per file ever opened, for the mount's life, before):
    // the next open is a first one again.
    assert.equal(nodes.sameAsLastOpen(node, 'v2'), false, 'forgotten with the node');
  });

  it('keeps a node the kernel holds in two map entries, no more (a find over 100,000 files leaves 100,000)', async () => {
    const v8 = await import('node:v8');
    const vm = await import('node:vm');
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const heap = (): number => { gc(); gc(); return v8.getHeapSpaceStatistics().filter((x) => !x.space_name.startsWith('code')).reduce((n, x) => n + x.space_used_size, 0); };
    const nodes = new NodeTable(7);
    const N = 100_000;
    // The versions given are strings of their own, as the objects' are: made before measuring.
    const versions = Array.from({ length: N }, (_, i) => `v${i}`);
    const hold = (from: number): void => {
      for (let i = 0; i < N; i++) { const n = nodes.nodeOf(from + i); nodes.looked(n); nodes.gave(n, versions[i]!); }
    };
    hold(1_000_000); // the maps grown to this size once
    for (let i = 0; i < N; i++) nodes.forget(nodes.nodeOf(1_000_000 + i), 1);
    const before = heap();
    hold(2_000_000);
    const per = (heap() - before) / N;
    assert.equal(nodes.size, N);
    // Two map entries a node (the count and the version given) are about 73 bytes; bigint
    // keys, a heap object each in each map, made it about 97.
    assert.ok(per < 85, `${per.toFixed(1)} bytes a node`);
  });
});
