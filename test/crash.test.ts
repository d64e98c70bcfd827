// A killed mount process: what is left behind, how `cachefs umount` cleans it, and that an
// acknowledged write survives kill -9 (it is in the cache file and a committed journal
// record, and the next mount replays it).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { cli, fuseMounted, mountFresh as mountFreshOn, sleep, type Mounted, type MountOpts, BACKEND_KINDS, skipKind } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';
import { waitUntil } from './helpers/wait.js';

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try { process.kill(pid, 0); } catch { return; }
    await sleep(25);
  }
  throw new Error(`process ${pid} did not die`);
}

for (const kind of BACKEND_KINDS) describe(`crash and recovery (${kind} backend)`, { skip: skipKind(kind) }, () => {
  const mounts: Mounted[] = [];
  let srv: NfsServer | undefined;
  before(async () => { srv = kind === 'nfs' ? await startNfsServer('crash') : undefined; });
  after(async () => { for (const m of mounts) await m.cleanup(); await srv?.dispose(); });
  const mountFresh = (tag: string, opts: MountOpts = {}) => mountFreshOn(tag, { ...opts, nfs: srv });

  it('kill -9 leaves a dead mount that status reports and umount cleans', async () => {
    const m = await mountFresh('crash');
    mounts.push(m);
    await fsp.writeFile(m.m('before.txt'), 'written before the crash');
    const { pid } = await m.status();
    process.kill(pid, 'SIGKILL');
    await waitGone(pid);
    assert.equal(await fuseMounted(m.mnt), true, 'the kernel still lists the mount');
    await assert.rejects(fsp.stat(m.m('before.txt')), { code: 'ENOTCONN' });
    const st = await cli(['status', m.mnt]);
    assert.equal(st.code, 1);
    assert.match(st.stderr, /dead mount/);
    assert.match(st.stderr, /cachefs umount/);
    const r = await m.umount();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await fuseMounted(m.mnt), false);
    await m.mount();
    assert.equal(await fsp.readFile(m.m('before.txt'), 'utf8'), 'written before the crash');
  });

  it('SIGTERM to the mount process writes pending changes and unmounts cleanly', async () => {
    const m = await mountFresh('sigterm');
    mounts.push(m);
    await fsp.writeFile(m.m('kept.txt'), 'kept');
    const { pid } = await m.status();
    process.kill(pid, 'SIGTERM');
    await waitGone(pid);
    assert.equal(await fuseMounted(m.mnt), false, 'unmounted');
    assert.equal(await fsp.readFile(m.b('kept.txt'), 'utf8'), 'kept');
    const st = await cli(['status', m.mnt]);
    assert.match(st.stderr, /not a cachefs mount/);
  });

  it('a mount on top of a dead mount recovers it by itself', async () => {
    const m = await mountFresh('crash2');
    mounts.push(m);
    const { pid } = await m.status();
    process.kill(pid, 'SIGKILL');
    await waitGone(pid);
    await m.mount(); // detects "Transport endpoint is not connected" and detaches it first
    assert.deepEqual(await fsp.readdir(m.mnt), []);
  });

  it('kill -9 during write-back leaves the backend and the cache with only bytes that were written', async () => {
    // The backend takes 2 s per write, so journaled 1 MiB runs wait in the journal; the
    // mount process is killed mid-stream. After remount and replay, the backend file must
    // be a prefix of what was written (whole journaled runs, in order), and the mount must
    // show exactly what the backend has: no stale or foreign bytes from the cache.
    const m = await mountFresh('crash3', { env: { CACHEFS_FAULTS: JSON.stringify({ delayMs: { write: 2000 } }) } });
    mounts.push(m);
    const data = randomBytes(3 * 1024 * 1024 + 4096);
    const h = await fsp.open(m.m('partial.bin'), 'w');
    await h.write(data, 0, data.length, 0); // runs of 1 MiB are journaled; no close, no fsync
    // A connected run's record gets its row once it has waited DURABLE_AFTER_MS for the backend.
    const s = await waitUntil('journaled runs waiting for the backend to have their rows', async () => {
      const st = await m.statusDirect();
      return st.journal.pending >= 2 && st;
    }, 10_000, 10);
    process.kill(s.pid, 'SIGKILL');
    await waitGone(s.pid);
    await h.close().catch(() => undefined);
    const r = await m.umount();
    assert.equal(r.code, 0, r.stderr);
    m.env = {};
    await m.mount();
    const deadline = Date.now() + 15_000;
    while ((await m.status()).journal.pending > 0 && Date.now() < deadline) await sleep(50);
    await sleep(200); // the suspect cache data is dropped once the replay has drained
    const onBackend = await fsp.readFile(m.b('partial.bin'));
    assert.ok(onBackend.length >= 2 * 1024 * 1024, `journaled runs were replayed (${onBackend.length} bytes)`);
    assert.ok(data.subarray(0, onBackend.length).equals(onBackend), 'the backend holds a prefix of the written bytes');
    assert.ok(onBackend.equals(await fsp.readFile(m.m('partial.bin'))), 'the mount shows what the backend has');
  });

  it('an fsync-acknowledged write survives kill -9 right after', async () => {
    const m = await mountFresh('crash5');
    mounts.push(m);
    const data = randomBytes(300_000);
    const h = await fsp.open(m.m('synced.bin'), 'w');
    await h.write(data, 0, data.length, 0);
    await h.sync();
    const s = await m.statusDirect();
    process.kill(s.pid, 'SIGKILL');
    await waitGone(s.pid);
    await h.close().catch(() => undefined);
    assert.ok(data.equals(await fsp.readFile(m.b('synced.bin'))));
    await m.umount();
    await m.mount();
    assert.ok(data.equals(await fsp.readFile(m.m('synced.bin'))));
  });

  it('a backend that refuses writes (ENOSPC): close reports it, and the cache keeps nothing it refused', async () => {
    const m = await mountFresh('enospc', { env: { CACHEFS_FAULTS: JSON.stringify({ fail: { write: 'ENOSPC' } }) } });
    mounts.push(m);
    await fsp.writeFile(m.b('full.txt'), 'what the backend has');
    const h = await fsp.open(m.m('full.txt'), 'r+');
    await h.write('NEW BYTES', 0); // acknowledged into the cache and a dirty run
    await assert.rejects(h.close(), { code: 'ENOSPC' });
    assert.equal(await fsp.readFile(m.b('full.txt'), 'utf8'), 'what the backend has');
    assert.equal(await fsp.readFile(m.m('full.txt'), 'utf8'), 'what the backend has', 'the refused bytes are not served');
    assert.equal((await m.status()).journal.pending, 0);
  });

  it('a backend that never answers gives an error within the deadline, not a hang', async () => {
    const m = await mountFresh('crash4', {
      config: { backendTimeoutMs: 1000 },
      env: { CACHEFS_FAULTS: JSON.stringify({ hang: ['lookup'] }) },
    });
    mounts.push(m);
    const t0 = Date.now();
    // The lookup misses its deadline, which makes the mount disconnected, and is then
    // answered as a disconnected lookup is: from the root's listing the cache keeps (the
    // name is not in it), else "unreachable"; never the wait of a hung server.
    await assert.rejects(fsp.stat(m.m('never-answered')), (e: NodeJS.ErrnoException) => {
      assert.ok(['ENOENT', 'EHOSTUNREACH', 'ETIMEDOUT', 'EIO'].includes(e.code ?? ''), `got ${e.code}`);
      return true;
    });
    assert.ok(Date.now() - t0 < 5000, `answered after ${Date.now() - t0} ms`);
    const s = await m.status();
    assert.equal(s.state, 'disconnected');
    assert.match(s.reason ?? '', /lookup.*(ETIMEDOUT|no answer)/);
  });
});
