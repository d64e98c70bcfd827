// Mounting while the server is away (the laptop booted on the train): a cache that has
// mounted the export before mounts it disconnected, serves what it holds, journals changes,
// and reconnects and replays them by itself when the server answers.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { cli, killMount, mountFresh, sleep, type Mounted, skipKind } from './helpers/cachefs.js';
import { waitUntil } from './helpers/wait.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';

describe('mounting while the NFS server is away', { skip: skipKind('nfs') }, () => {
  let m: Mounted;
  let srv: NfsServer;
  before(async () => {
    srv = await startNfsServer('offline-start');
    m = await mountFresh('offline-start', { nfs: srv, config: { backendTimeoutMs: 2000 } });
  });
  after(async () => {
    await m?.cleanup();
    await srv?.dispose();
  });

  const status = async () => JSON.parse((await cli(['status', m.mnt, '--json'])).stdout) as { state: string; journal: { pending: number } };

  it('mounts disconnected from the cache, works, and replays when the server is back', async () => {
    await fsp.mkdir(m.b('docs'));
    await fsp.writeFile(m.b('docs', 'a.txt'), 'cached before the trip');
    assert.equal(await fsp.readFile(m.m('docs', 'a.txt'), 'utf8'), 'cached before the trip');
    assert.deepEqual(await fsp.readdir(m.m('docs')), ['a.txt']);
    assert.equal((await m.umount()).code, 0);
    await srv.stop();

    const t0 = Date.now();
    await m.mount();
    assert.ok(Date.now() - t0 < 15_000, 'the mount does not wait long for a server that is away');
    assert.equal((await status()).state, 'disconnected');
    assert.equal(await fsp.readFile(m.m('docs', 'a.txt'), 'utf8'), 'cached before the trip', 'the cache is served');
    assert.deepEqual(await fsp.readdir(m.m('docs')), ['a.txt']);
    await fsp.writeFile(m.m('docs', 'b.txt'), 'written on the train');
    await fsp.appendFile(m.m('docs', 'a.txt'), ', and changed on it');
    assert.ok((await status()).journal.pending > 0);
    const r = await cli(['online', m.mnt]);
    assert.notEqual(r.code, 0, 'online while the server is still away fails clearly');
    assert.match(r.stderr, /does not answer|unreachable/);

    await srv.start();
    for (let i = 0; i < 100 && (await status()).state !== 'connected'; i++) await sleep(200);
    const st = await status();
    assert.equal(st.state, 'connected', 'the probe reconnects by itself');
    for (let i = 0; i < 50 && (await status()).journal.pending > 0; i++) await sleep(100);
    assert.equal(await fsp.readFile(m.b('docs', 'b.txt'), 'utf8'), 'written on the train');
    assert.equal(await fsp.readFile(m.b('docs', 'a.txt'), 'utf8'), 'cached before the trip, and changed on it');
  });

  // The laptop is shut down (or crashes) on the train, and started again on it: what was
  // written offline exists only in the cache files and the journal until the replay.
  for (const stop of ['umount', 'kill -9'] as const) {
    it(`offline writes survive a ${stop} and a mount while the server is still away, and replay when it is back`, async () => {
      await srv.start(); // (after a failure of the case before)
      if ((await status()).state !== 'connected') await cli(['online', m.mnt]);
      await fsp.mkdir(m.b(stop.replace(' ', '')));
      const dir = (...p: string[]) => m.m(stop.replace(' ', ''), ...p);
      await fsp.writeFile(m.b(stop.replace(' ', ''), 'cached.txt'), 'cached before the trip\n');
      assert.equal(await fsp.readFile(dir('cached.txt'), 'utf8'), 'cached before the trip\n');
      const big = Buffer.alloc(3 * 1024 * 1024 + 123, 'x');
      for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
      assert.equal((await cli(['offline', m.mnt])).code, 0);
      await srv.stop();
      await fsp.appendFile(dir('cached.txt'), 'changed on the train\n');
      await fsp.writeFile(dir('new.bin'), big);
      await fsp.writeFile(dir('small.txt'), 'written on the train\n');
      const expect = new Map<string, Buffer>([
        ['cached.txt', Buffer.from('cached before the trip\nchanged on the train\n')], ['new.bin', big], ['small.txt', Buffer.from('written on the train\n')],
      ]);
      if (stop === 'umount') {
        const r = await m.umount();
        assert.equal(r.code, 0, r.stderr);
      } else {
        await killMount(m);
      }
      await m.mount();
      assert.equal((await status()).state, 'disconnected');
      for (const [name, data] of expect) {
        assert.ok((await fsp.readFile(dir(name))).equals(data), `${name}: what was written offline is read back after the ${stop}`);
      }
      // Once more after the replay would have ended had it run: nothing is dropped meanwhile.
      await sleep(500);
      for (const [name, data] of expect) assert.ok((await fsp.readFile(dir(name))).equals(data), `${name}, still`);
      await srv.start();
      await waitUntil('the replay to end', async () => { const st = await status(); return st.state === 'connected' && st.journal.pending === 0; }, 60_000, 100);
      for (const [name, data] of expect) {
        assert.ok((await fsp.readFile(m.b(stop.replace(' ', ''), name))).equals(data), `${name} reached the server whole`);
        assert.ok((await fsp.readFile(dir(name))).equals(data), `${name} through the mount after the replay`);
      }
      const conflicts = JSON.parse((await cli(['conflicts', m.mnt, '--json'])).stdout) as unknown[];
      assert.deepEqual(conflicts, [], 'no conflict');
    });
  }

  it('a directory never listed while connected lists and takes new names offline after a remount as before it', async () => {
    await srv.start();
    if ((await status()).state !== 'connected') await cli(['online', m.mnt]);
    await fsp.mkdir(m.b('worked-in'));
    await fsp.writeFile(m.b('worked-in', 'notes.txt'), 'on the server\n');
    // Worked in, never listed: a name looked up, one made (the directory's version moves).
    assert.equal(await fsp.readFile(m.m('worked-in', 'notes.txt'), 'utf8'), 'on the server\n');
    await fsp.writeFile(m.m('worked-in', 'made.txt'), 'made connected\n');
    assert.equal((await cli(['offline', m.mnt])).code, 0);
    await srv.stop();
    await fsp.writeFile(m.m('worked-in', 'before.txt'), 'made offline before the remount\n');
    assert.deepEqual((await fsp.readdir(m.m('worked-in'))).sort(), ['before.txt', 'made.txt', 'notes.txt']);
    const r = await m.umount();
    assert.equal(r.code, 0, r.stderr);
    await m.mount();
    assert.equal((await status()).state, 'disconnected');
    assert.deepEqual((await fsp.readdir(m.m('worked-in'))).sort(), ['before.txt', 'made.txt', 'notes.txt'],
      'the same listing as before the remount');
    await fsp.writeFile(m.m('worked-in', 'after.txt'), 'made offline after the remount\n');
    await assert.rejects(fsp.stat(m.m('worked-in', 'never.txt')), { code: 'ENOENT' }, 'a name it does not have is absent, not unreachable');
    await srv.start();
    await waitUntil('the replay to end', async () => { const st = await status(); return st.state === 'connected' && st.journal.pending === 0; }, 60_000, 100);
    assert.deepEqual((await fsp.readdir(m.b('worked-in'))).sort(), ['after.txt', 'before.txt', 'made.txt', 'notes.txt']);
    assert.equal(await fsp.readFile(m.b('worked-in', 'after.txt'), 'utf8'), 'made offline after the remount\n');
  });

  it('a cache that never mounted the export still refuses clearly when the server is away', async () => {
    await srv.stop();
    try {
      const other = await mountFresh('offline-start-new', { nfs: srv }).catch((e: Error) => e);
      assert.ok(other instanceof Error, 'no mount without the server and without a cache of it');
      assert.match(other.message, /is the NFS server running/);
    } finally {
      await srv.start();
    }
  });
});
