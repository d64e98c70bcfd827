// The CLI around mounting and unmounting says what happened and why (issue 12 items 11-13):
// a cache directory in use, a non-empty mountpoint, a failed mount that leaves nothing
// behind, umount of a busy mount, online that ends disconnected, sync whose mount died.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { cli, mountFresh, tempRoot, fuseMounted, type Mounted } from './helpers/cachefs.js';
import { waitUntil } from './helpers/wait.js';

describe('cli: mounting and unmounting', () => {
  const mounts: Mounted[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const m of mounts) await m.cleanup();
    for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
  });

  it('a second mount of a cache directory in use fails with the reason and mounts nothing', async () => {
    const m = await mountFresh('in-use');
    mounts.push(m);
    const other = path.join(m.root, 'mnt2');
    await fsp.mkdir(other);
    const r = await cli(['mount', m.backend, other, '--cache-dir', m.cache]);
    assert.notEqual(r.code, 0, `it must fail: ${r.stdout}`);
    assert.match(r.stderr, /in use by mount process \d+/);
    assert.ok(!(await fuseMounted(other)), 'nothing mounted there');
    const same = await cli(['mount', m.backend, m.mnt, '--cache-dir', m.cache]);
    assert.notEqual(same.code, 0, `the same mountpoint too: ${same.stdout}`);
    assert.doesNotMatch(same.stdout, /mounted on/);
  });

  it('a non-empty mountpoint is refused with the reason, and a failed mount leaves no cache directory behind', async () => {
    const root = tempRoot('nonempty');
    dirs.push(root);
    await fsp.mkdir(path.join(root, 'backend'));
    await fsp.mkdir(path.join(root, 'mnt'));
    writeFileSync(path.join(root, 'mnt', 'precious.txt'), 'do not hide me');
    const cache = path.join(root, 'cache');
    const r = await cli(['mount', path.join(root, 'backend'), path.join(root, 'mnt'), '--cache-dir', cache]);
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, /not empty/);
    assert.doesNotMatch(r.stderr, /unexpected error|this is a bug/);
    assert.ok(!existsSync(cache), 'the cache directory made for it is gone');
    assert.ok(!(await fuseMounted(path.join(root, 'mnt'))));
  });

  it('umount of a mount with a file open says busy; --force unmounts', async () => {
    const m = await mountFresh('busy');
    mounts.push(m);
    // another process holds a file open in the mount
    const holder = spawn(process.execPath, ['-e', `const fs = require('fs'); const fd = fs.openSync(process.argv[1], 'w'); fs.writeSync(fd, 'x'); process.stdout.write('open\\n'); setInterval(() => {}, 1000);`, m.m('held.txt')], { stdio: ['ignore', 'pipe', 'ignore'] });
    let ready = false;
    holder.stdout.on('data', () => { ready = true; });
    try {
      await waitUntil('the holder to open its file', () => ready, 20_000);
      const r = await cli(['umount', m.mnt]);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, /busy/);
      assert.ok(await fuseMounted(m.mnt), 'still mounted');
      const f = await cli(['umount', m.mnt, '--force']);
      assert.equal(f.code, 0, f.stderr);
      assert.ok(!(await fuseMounted(m.mnt)), 'unmounted');
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('umount --lazy detaches at once and the mount process ends when the last file is closed', async () => {
    const m = await mountFresh('lazy');
    mounts.push(m);
    const pid = (await m.status()).pid;
    const holder = spawn(process.execPath, ['-e', `const fs = require('fs'); const fd = fs.openSync(process.argv[1], 'w'); process.stdout.write('open\\n'); process.stdin.on('data', () => { fs.writeSync(fd, 'written after the detach'); fs.closeSync(fd); process.exit(0); });`, m.m('lazy.txt')], { stdio: ['pipe', 'pipe', 'ignore'] });
    let ready = false;
    holder.stdout.on('data', () => { ready = true; });
    await waitUntil('the holder to open its file', () => ready, 20_000);
    const r = await cli(['umount', m.mnt, '--lazy']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!(await fuseMounted(m.mnt)), 'detached at once');
    holder.stdin.write('go\n');
    await new Promise((res) => holder.on('close', res));
    await waitUntil('the mount process to end', () => { try { process.kill(pid, 0); return false; } catch { return true; } }, 30_000, 100);
    assert.equal(await fsp.readFile(m.b('lazy.txt'), 'utf8'), 'written after the detach');
  });

  it('online that ends disconnected exits non-zero and says so', async () => {
    const root = tempRoot('online-fail');
    const faults = path.join(root, 'faults.json');
    const m = await mountFresh('online-fail', { root, env: { CACHEFS_FAULTS_FILE: faults }, config: { backendTimeoutMs: 1000 } });
    mounts.push(m);
    await fsp.readdir(m.mnt);
    assert.equal((await cli(['offline', m.mnt])).code, 0);
    await fsp.writeFile(m.m('pending.txt'), 'waits');
    writeFileSync(faults, JSON.stringify({ fail: { getattr: 'ECONNREFUSED', root: 'ECONNREFUSED' } }));
    const r = await cli(['online', m.mnt]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /journal/);
  });
});
