// FUSE passthrough for writes (fuse.passthroughWrites, layers/direct-writes.ts): the kernel
// writes straight into the cache file, and what it wrote must still reach the journal and
// the backend, connected, offline, and after the mount process is killed with the file open.
// Passthrough needs root (CAP_SYS_ADMIN) and a 6.9+ kernel.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { Mounted, cli, control, killMount, mountFresh, waitReplayed } from './helpers/cachefs.js';
import { waitUntil } from './helpers/wait.js';
import { buildCfsx, compareWithModel, describeRun, runCfsx } from './helpers/cfsx.js';

const skip = process.getuid?.() !== 0 ? 'passthrough needs root' : false;

describe('FUSE passthrough for writes', { skip }, () => {
  let m: Mounted;
  let faults: string;
  before(async () => {
    faults = path.join(await fsp.mkdtemp(path.join(os.tmpdir(), 'cachefs-faults-')), 'faults.json');
    m = await mountFresh('direct', {
      env: { CACHEFS_FAULTS_FILE: faults },
      config: { fuse: { passthrough: true, passthroughWrites: true }, consistency: { watch: false }, backendTimeoutMs: 1000 },
    });
    m.env = { CACHEFS_FAULTS_FILE: faults };
  });
  after(async () => { await m?.cleanup(); await fsp.rm(path.dirname(faults), { recursive: true, force: true }); });
  const writes = async () => ((await m.statusDirect() as unknown as { ops: Record<string, { count: number }> }).ops.write?.count ?? 0);

  it('a new file, an append and an overwrite in place reach the backend with no WRITE request; stat follows the open file', async () => {
    const before = await writes();
    const data = randomBytes(3 * 1024 * 1024 + 123);
    await fsp.writeFile(m.m('new'), data);
    assert.ok((await fsp.readFile(m.b('new'))).equals(data), 'the backend has the new file at close');
    await fsp.appendFile(m.m('new'), 'tail');
    const h = await fsp.open(m.m('new'), 'r+');
    try {
      await h.write(Buffer.from('MIDDLE'), 0, 6, 2 * 1024 * 1024 + 5);
      await h.write(Buffer.from('past the end'), 0, 12, data.length + 4 + 100);
      const size = data.length + 4 + 100 + 12;
      assert.equal((await fsp.stat(m.m('new'))).size, size, 'stat by path while open');
      assert.equal((await h.stat()).size, size, 'fstat while open');
      await h.sync();
      assert.equal((await fsp.stat(m.b('new'))).size, size, 'fsync: the backend has it');
    } finally {
      await h.close();
    }
    assert.equal(await writes() - before, 0, 'no WRITE request reached the mount');
    const want = Buffer.concat([data, Buffer.from('tail'), Buffer.alloc(100), Buffer.from('past the end')]);
    Buffer.from('MIDDLE').copy(want, 2 * 1024 * 1024 + 5);
    assert.ok((await fsp.readFile(m.b('new'))).equals(want), 'the backend has every byte');
    assert.ok((await fsp.readFile(m.m('new'))).equals(want), 'and so does the mount');
  });

  it('a truncate while the file is open for writing keeps the bytes written before it', async () => {
    const h = await fsp.open(m.m('trunc'), 'w+');
    try {
      await h.write(Buffer.alloc(2 * 1024 * 1024, 7));
      await h.truncate(1000);
      await h.write(Buffer.from('after'), 0, 5, 1500);
    } finally {
      await h.close();
    }
    const want = Buffer.concat([Buffer.alloc(1000, 7), Buffer.alloc(500), Buffer.from('after')]);
    assert.ok((await fsp.readFile(m.b('trunc'))).equals(want));
  });

  it('offline: what the kernel wrote is journaled at close and replayed on reconnection', async () => {
    await fsp.writeFile(m.m('doc'), 'connected version');
    await fsp.readFile(m.m('doc'));
    await control(m, 'offline');
    try {
      await fsp.writeFile(m.m('doc'), 'written offline, longer');
      const s = await control(m, 'status');
      assert.ok(s.journal.pending > 0, 'journaled');
      assert.equal(await fsp.readFile(m.b('doc'), 'utf8'), 'connected version', 'nothing reached the backend offline');
    } finally {
      await control(m, 'online');
    }
    await waitReplayed(m);
    assert.equal(await fsp.readFile(m.b('doc'), 'utf8'), 'written offline, longer');
  });

  it('cfsx (reads, writes, mmap writes past the end, truncates, copy_file_range, O_DIRECT): connected, two processes, then offline and replayed; the backend holds the model', async () => {
    // A file grown through us (a truncate up) must grow in the cache file too, or the
    // kernel's mapping of it faults past the old end (cfsx's mapwrite found it: SIGBUS).
    await buildCfsx();
    const model = (n: string) => path.join(m.root, `${n}.model`);
    const run = async (args: string[]) => {
      const r = await runCfsx(args, { timeoutMs: 120_000 });
      assert.match(r.stdout, /cfsx: \d+ ops ok\n$/, describeRun(r));
    };
    const same = async (n: string) => { const d = await compareWithModel(m.b(n), model(n)); assert.equal(d, null, d ?? ''); };
    await run(['-S', '1', '-N', '800', '-w', model('fx'), m.m('fx')]);
    await same('fx');
    await run(['-S', '101', '-N', '600', '-P', '2', '-w', model('fx2'), m.m('fx2')]);
    await same('fx2');
    await control(m, 'offline');
    try {
      await run(['-S', '7', '-N', '600', '-i', model('fx'), '-w', model('fx-offline'), m.m('fx')]);
    } finally {
      await control(m, 'online');
    }
    await waitReplayed(m);
    const d = await compareWithModel(m.b('fx'), model('fx-offline'));
    assert.equal(d, null, d ?? '');
  });

  it('the backend goes away while the file is open: close journals what the kernel wrote and returns; it is replayed once the backend is back', async () => {
    await fsp.writeFile(m.m('away'), 'before');
    const h = await fsp.open(m.m('away'), 'r+');
    const data = randomBytes(2 * 1024 * 1024);
    try {
      await h.write(data, 0, data.length, 0);
      await fsp.writeFile(faults, JSON.stringify({ fail: { write: 'ECONNREFUSED', commit: 'ECONNREFUSED', getattr: 'ECONNREFUSED', setattr: 'ECONNREFUSED' } }));
    } finally {
      await h.close(); // the replay of its records finds the backend gone: journaled, close returns
    }
    const s = await control(m, 'status');
    assert.equal(s.state, 'disconnected', 'the mount noticed the backend was gone');
    assert.ok(s.journal.pending > 0, 'what the kernel wrote waits in the journal');
    assert.equal(await fsp.readFile(m.b('away'), 'utf8'), 'before');
    await fsp.rm(faults);
    await control(m, 'online');
    await waitReplayed(m);
    assert.ok((await fsp.readFile(m.b('away'))).equals(data), 'the backend has every byte');
  });

  it('a conflict parked while the file is still open for writing: the server variant is never overwritten; what the writer wrote is kept as a client variant', async () => {
    await fsp.writeFile(m.m('conf.bin'), randomBytes(300_000));
    await fsp.readFile(m.m('conf.bin')); // wholly cached: opens are passthrough
    await control(m, 'offline');
    const server = randomBytes(300_000);
    const mine = randomBytes(1000);
    const more = randomBytes(500);
    const h = await fsp.open(m.m('conf.bin'), 'r+');
    try {
      await h.write(mine, 0, mine.length, 100);
      await h.sync(); // journaled, offline
      await new Promise((r) => setTimeout(r, 30)); // the server's change must look newer
      await fsp.writeFile(m.b('conf.bin'), server);
      await control(m, 'online');
      await waitReplayed(m); // the record meets the server's change: a conflict is parked
      await h.write(more, 0, more.length, 200_000); // the writer goes on
    } finally {
      await h.close();
    }
    await waitReplayed(m);
    assert.ok((await fsp.readFile(m.b('conf.bin'))).equals(server), 'the server variant is untouched');
    const r = await cli(['conflicts', m.mnt, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const ids = (JSON.parse(r.stdout) as { id: number; path: string }[]).filter((c) => c.path === '/conf.bin').map((c) => c.id);
    assert.ok(ids.length > 0, `a conflict at /conf.bin: ${r.stdout}`);
    const clients = await Promise.all(ids.map((id) => fsp.readFile(m.m('.cachefs', 'conflicts', String(id), 'client'))));
    const has = (b: Buffer, at: number, part: Buffer) => b.subarray(at, at + part.length).equals(part);
    assert.ok(clients.some((b) => has(b, 100, mine)), 'the first write is kept in a client variant');
    assert.ok(clients.some((b) => has(b, 100, mine) && has(b, 200_000, more)), 'and so is what was written after the conflict');
    await waitUntil('the path to show the server variant', async () => (await fsp.readFile(m.m('conf.bin'))).equals(server), 10_000);
  });

  it('killed with the file open and written (offline): the next start journals the bytes, and they are replayed', async () => {
    await fsp.writeFile(m.m('open-at-kill'), 'old bytes');
    await fsp.readFile(m.m('open-at-kill'));
    await control(m, 'offline');
    const h = await fsp.open(m.m('open-at-kill'), 'r+');
    const data = randomBytes(1536 * 1024);
    await h.write(data, 0, data.length, 0); // acknowledged by the kernel; never seen by the mount
    await killMount(m);
    await h.close().catch(() => undefined); // the mount is gone
    assert.equal(await fsp.readFile(m.b('open-at-kill'), 'utf8'), 'old bytes');
    await m.mount();
    await waitUntil('the recovered bytes to reach the backend', async () => {
      const s = await control(m, 'status');
      if (s.state !== 'connected' || s.journal.pending > 0) return false;
      return (await fsp.readFile(m.b('open-at-kill'))).equals(data);
    }, 60_000);
    assert.ok((await fsp.readFile(m.m('open-at-kill'))).equals(data));
  });
});
