// The CLI around mounting and unmounting says what happened and why (issue 12 items 11-13):
// a cache directory in use, a non-empty mountpoint, a failed mount that leaves nothing
// behind, umount of a busy mount, online that ends disconnected, sync whose mount died.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { CLI, cli, control, mountFresh, tempRoot, fuseMounted, type Mounted } from './helpers/cachefs.js';
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
  it('from a shell inside a mount that died: umount and mount with absolute paths recover it, a relative path says why, and the mount process does not stay in the shell\'s directory', async () => {
    const m = await mountFresh('dead-cwd');
    mounts.push(m);
    await fsp.writeFile(m.m('kept.txt'), 'written before the crash');
    const pid = (await control(m, 'status')).pid;
    // A shell whose current directory is in the mount, as the user's is; each cachefs run
    // inherits it, as from a terminal.
    const script = 'cd "$1" || exit 9; echo in; read go; ' +
      'node "$2" umount "$1" 2>&1; echo "rc=$?"; ' +
      'node "$2" mount "$3" "$1" --cache-dir "$4" 2>&1; echo "rc=$?"; ' +
      'node "$2" status kept.txt 2>&1; echo "rc=$?"';
    const shell = spawn('sh', ['-c', script, 'sh', m.mnt, CLI, m.backend, m.cache], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    shell.stdout.on('data', (d) => { out += d; });
    const ended = new Promise<number>((r) => shell.on('close', (code) => r(code ?? 1)));
    await waitUntil('the shell to be in the mount', () => out.includes('in\n'), 10_000);
    process.kill(pid, 'SIGKILL');
    await waitUntil('the mount process to die', () => { try { process.kill(pid, 0); return false; } catch { return true; } }, 10_000, 5);
    shell.stdin.end('go\n');
    assert.equal(await ended, 0, out);
    const [umount, mount, status] = out.split(/^in\n/m)[1]!.split(/^rc=\d+\n/m);
    const codes = [...out.matchAll(/^rc=(\d+)$/gm)].map((x) => Number(x[1]));
    assert.equal(codes[0], 0, `umount of the dead mount from inside it: ${umount}`);
    assert.equal(codes[1], 0, `mount with absolute paths from inside the dead mount: ${mount}`);
    assert.notEqual(codes[2], 0, status);
    assert.doesNotMatch(out, /unexpected error|this is a bug/);
    assert.match(status!, /current directory cannot be read/, 'a relative path: the error says why');
    assert.match(status!, /cd to another directory/, 'and what to do');
    assert.equal(await fsp.readFile(m.m('kept.txt'), 'utf8'), 'written before the crash');
    const again = (await control(m, 'status')).pid;
    assert.notEqual(again, pid);
    // In its backend directory (a local backend's mount process works there), not in the shell's.
    assert.equal(readlinkSync(`/proc/${again}/cwd`), m.backend, 'the mount process does not keep the shell\'s directory');
  });

  it('a mount started in a directory with cache.config.json uses that file, though its process does not stay in that directory', async () => {
    const root = tempRoot('cwd-config');
    dirs.push(root);
    await fsp.mkdir(path.join(root, 'backend'));
    await fsp.writeFile(path.join(root, 'backend', 'from-config.txt'), 'found by the configuration file');
    await fsp.mkdir(path.join(root, 'mnt'));
    // Relative paths, resolved against the file's directory; a setting to see it was read.
    writeFileSync(path.join(root, 'cache.config.json'), JSON.stringify({ backend: './backend', mountpoint: './mnt', cacheDir: './cache', log: 'warn' }));
    const r = await cli(['mount'], { cwd: root });
    assert.equal(r.code, 0, r.stderr);
    try {
      assert.equal(await fsp.readFile(path.join(root, 'mnt', 'from-config.txt'), 'utf8'), 'found by the configuration file');
      const log = await fsp.readFile(path.join(root, 'cache', 'cachefs.log'), 'utf8');
      assert.doesNotMatch(log, / info /, `the file's log level (warn) applies in the mount process: ${log}`);
      const pid = (JSON.parse((await cli(['status', path.join(root, 'mnt'), '--json'])).stdout) as { pid: number }).pid;
      assert.equal(readlinkSync(`/proc/${pid}/cwd`), path.join(root, 'backend'), 'not the directory it was started in');
    } finally {
      const u = await cli(['umount', path.join(root, 'mnt')]);
      assert.equal(u.code, 0, u.stderr);
    }
  });
});
