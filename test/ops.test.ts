// Every operation a user expects, through a real FUSE mount over a real directory, with the
// errnos POSIX prescribes; after each mutation the backend holds the same thing. Run over
// both backends: a local directory, and the same through a real NFS server (nfs-ganesha).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, constants as fsc } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mountFresh, type Mounted, BACKEND_KINDS, skipKind, control, sh } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';

async function rejectsCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: NodeJS.ErrnoException) => {
    assert.equal(e.code, code, `expected ${code}, got ${e.code} (${e.message})`);
    return true;
  });
}

for (const kind of BACKEND_KINDS) describe(`operations through the mount (${kind} backend)`, { skip: skipKind(kind) }, () => {
  let m: Mounted;
  let srv: NfsServer | undefined;
  before(async () => {
    srv = kind === 'nfs' ? await startNfsServer('ops') : undefined;
    m = await mountFresh('ops', { nfs: srv });
  });
  after(async () => { await m?.cleanup(); await srv?.dispose(); });

  it('getattr, lookup and readdir see what the backend holds', async () => {
    await fsp.mkdir(m.b('pre/sub'), { recursive: true });
    await fsp.writeFile(m.b('pre/a.txt'), 'alpha');
    const st = await fsp.stat(m.m('pre/a.txt'));
    assert.equal(st.size, 5);
    assert.ok(st.isFile());
    assert.deepEqual((await fsp.readdir(m.m('pre'))).sort(), ['a.txt', 'sub']);
    await rejectsCode(fsp.stat(m.m('pre/missing')), 'ENOENT');
    await rejectsCode(fsp.stat(m.m('pre/a.txt/x')), 'ENOTDIR');
    const ents = await fsp.readdir(m.m('pre'), { withFileTypes: true });
    assert.ok(ents.find((e) => e.name === 'sub')?.isDirectory());
  });

  it('create, write, read back, and the backend has the same bytes', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 123);
    await fsp.writeFile(m.m('blob.bin'), data);
    assert.ok(data.equals(await fsp.readFile(m.m('blob.bin'))));
    assert.ok(data.equals(await fsp.readFile(m.b('blob.bin'))));
  });

  it('O_EXCL on an existing name is EEXIST; O_CREAT without it opens the file', async () => {
    await fsp.writeFile(m.m('excl.txt'), 'x');
    await rejectsCode(fsp.open(m.m('excl.txt'), fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY), 'EEXIST');
    const h = await fsp.open(m.m('excl.txt'), fsc.O_CREAT | fsc.O_RDWR);
    assert.equal((await h.read(Buffer.alloc(4), 0, 4, 0)).bytesRead, 1);
    await h.close();
  });

  it('partial overwrites, appends and sparse writes keep every byte right', async () => {
    const f = m.m('patch.bin');
    const ref = Buffer.alloc(2_500_000, 7);
    await fsp.writeFile(f, ref);
    const h = await fsp.open(f, 'r+');
    const patch = randomBytes(70_000);
    await h.write(patch, 0, patch.length, 1_000_000);
    patch.copy(ref, 1_000_000);
    const tail = randomBytes(5000);
    await h.write(tail, 0, tail.length, 4_000_000); // leaves a hole
    await h.close();
    const expect = Buffer.concat([ref, Buffer.alloc(4_000_000 - ref.length), tail]);
    assert.ok(expect.equals(await fsp.readFile(f)));
    assert.ok(expect.equals(await fsp.readFile(m.b('patch.bin'))));
    await fsp.appendFile(f, 'END');
    assert.equal((await fsp.readFile(m.b('patch.bin'))).subarray(-3).toString(), 'END');
  });

  it('a write past the write-around threshold (64 MiB) reads back right, during and after', async () => {
    const f = m.m('around.bin');
    const h = await fsp.open(f, 'w+');
    const block = Buffer.alloc(1024 * 1024);
    const blocks = 72;
    for (let i = 0; i < blocks; i++) {
      block.fill(i % 251);
      block.writeUInt32LE(i, 0);
      await h.write(block, 0, block.length, i * block.length);
    }
    // Read back while still open and writing: the newest bytes are not in the cache.
    const probe = Buffer.alloc(8);
    for (const i of [0, 40, 70, 71]) {
      await h.read(probe, 0, 8, i * block.length);
      assert.equal(probe.readUInt32LE(0), i, `block ${i} while open`);
      assert.equal(probe[4], i % 251);
    }
    block.fill(0xee);
    await h.write(block, 0, 100, 70 * block.length + 10); // overwrite inside, after a read
    await h.close();
    // As the README says: such a file is not kept in the cache (no second copy on the cache
    // disk); offline it cannot be read until it was read once while connected.
    assert.equal((await control(m, 'offline')).state, 'disconnected');
    await assert.rejects(fsp.readFile(f), { code: 'ENODATA' }, 'not in the cache after it was written around it');
    assert.equal((await control(m, 'online')).state, 'connected');
    const all = await fsp.readFile(f);
    assert.equal(all.length, blocks * block.length);
    assert.ok(all.equals(await fsp.readFile(m.b('around.bin'))), 'mount and backend agree');
    assert.equal(all[70 * block.length + 10], 0xee);
    assert.equal(all.readUInt32LE(71 * block.length), 71);
    assert.equal((await control(m, 'offline')).state, 'disconnected');
    assert.ok(all.equals(await fsp.readFile(f)), 'read once while connected: readable offline');
    assert.equal((await control(m, 'online')).state, 'connected');
  });

  it('read and write through one O_RDWR descriptor interleave correctly', async () => {
    const h = await fsp.open(m.m('rw.txt'), 'w+');
    await h.write('hello world', 0);
    const b = Buffer.alloc(5);
    await h.read(b, 0, 5, 6);
    assert.equal(b.toString(), 'world');
    await h.write('W', 6);
    await h.read(b, 0, 5, 6);
    assert.equal(b.toString(), 'World');
    await h.close();
    assert.equal(await fsp.readFile(m.b('rw.txt'), 'utf8'), 'hello World');
  });

  it('mkdir, rmdir and their errors', async () => {
    await fsp.mkdir(m.m('d1'));
    assert.ok((await fsp.stat(m.b('d1'))).isDirectory());
    await rejectsCode(fsp.mkdir(m.m('d1')), 'EEXIST');
    await fsp.writeFile(m.m('d1/f'), 'x');
    await rejectsCode(fsp.rmdir(m.m('d1')), 'ENOTEMPTY');
    await rejectsCode(fsp.rmdir(m.m('d1/f')), 'ENOTDIR');
    await rejectsCode(fsp.mkdir(m.m('nope/deeper')), 'ENOENT');
    await fsp.unlink(m.m('d1/f'));
    await fsp.rmdir(m.m('d1'));
    await rejectsCode(fsp.stat(m.b('d1')), 'ENOENT');
    await rejectsCode(fsp.stat(m.m('d1')), 'ENOENT');
  });

  it('unlink and its errors', async () => {
    await fsp.writeFile(m.m('gone.txt'), 'x');
    await fsp.unlink(m.m('gone.txt'));
    await rejectsCode(fsp.stat(m.m('gone.txt')), 'ENOENT');
    await rejectsCode(fsp.stat(m.b('gone.txt')), 'ENOENT');
    await rejectsCode(fsp.unlink(m.m('gone.txt')), 'ENOENT');
    await fsp.mkdir(m.m('adir'));
    await rejectsCode(fsp.unlink(m.m('adir')), 'EISDIR');
  });

  it('an unlinked file stays readable and writable through an open descriptor', async () => {
    await fsp.writeFile(m.m('open-unlinked.txt'), 'still here');
    const h = await fsp.open(m.m('open-unlinked.txt'), 'r+');
    await fsp.unlink(m.m('open-unlinked.txt'));
    await rejectsCode(fsp.stat(m.m('open-unlinked.txt')), 'ENOENT');
    const b = Buffer.alloc(10);
    await h.read(b, 0, 10, 0);
    assert.equal(b.toString(), 'still here');
    await h.write('STILL', 0);
    await h.read(b, 0, 10, 0);
    assert.equal(b.toString(), 'STILL here');
    await h.close();
  });

  it('rename: plain, over an existing file, of directories, and its errors', async () => {
    await fsp.writeFile(m.m('r1'), 'one');
    await fsp.rename(m.m('r1'), m.m('r2'));
    assert.equal(await fsp.readFile(m.m('r2'), 'utf8'), 'one');
    await rejectsCode(fsp.stat(m.m('r1')), 'ENOENT');
    await fsp.writeFile(m.m('r3'), 'three');
    await fsp.rename(m.m('r2'), m.m('r3'));
    assert.equal(await fsp.readFile(m.m('r3'), 'utf8'), 'one');
    assert.equal(await fsp.readFile(m.b('r3'), 'utf8'), 'one');
    await fsp.mkdir(m.m('rd1/inner'), { recursive: true });
    await fsp.writeFile(m.m('rd1/inner/f'), 'deep');
    await fsp.rename(m.m('rd1'), m.m('rd2'));
    assert.equal(await fsp.readFile(m.m('rd2/inner/f'), 'utf8'), 'deep');
    assert.equal(await fsp.readFile(m.b('rd2/inner/f'), 'utf8'), 'deep');
    await fsp.mkdir(m.m('rd3'));
    await fsp.rename(m.m('rd2'), m.m('rd3')); // onto an empty directory
    assert.equal(await fsp.readFile(m.m('rd3/inner/f'), 'utf8'), 'deep');
    await fsp.mkdir(m.m('rd4'));
    await rejectsCode(fsp.rename(m.m('rd4'), m.m('rd3')), 'ENOTEMPTY');
    await rejectsCode(fsp.rename(m.m('rd3'), m.m('rd3/inner/x')), 'EINVAL');
    await rejectsCode(fsp.rename(m.m('r3'), m.m('rd4')), 'EISDIR');
    await rejectsCode(fsp.rename(m.m('rd4'), m.m('r3')), 'ENOTDIR');
    await rejectsCode(fsp.rename(m.m('no-such'), m.m('x')), 'ENOENT');
  });

  it('symlink and readlink, dangling links included', async () => {
    await fsp.writeFile(m.m('target.txt'), 'pointed at');
    await fsp.symlink('target.txt', m.m('ln'));
    assert.equal(await fsp.readlink(m.m('ln')), 'target.txt');
    assert.equal(await fsp.readlink(m.b('ln')), 'target.txt');
    assert.equal(await fsp.readFile(m.m('ln'), 'utf8'), 'pointed at');
    assert.ok((await fsp.lstat(m.m('ln'))).isSymbolicLink());
    await fsp.symlink('/nowhere/at/all', m.m('dangling'));
    assert.equal(await fsp.readlink(m.m('dangling')), '/nowhere/at/all');
    await rejectsCode(fsp.stat(m.m('dangling')), 'ENOENT');
    await rejectsCode(fsp.symlink('x', m.m('ln')), 'EEXIST');
    await rejectsCode(fsp.readlink(m.m('target.txt')), 'EINVAL');
  });

  it('link: hard links share data and one inode number', async () => {
    await fsp.writeFile(m.m('h1'), 'shared');
    await fsp.link(m.m('h1'), m.m('h2'));
    const [a, b] = [await fsp.stat(m.m('h1')), await fsp.stat(m.m('h2'))];
    assert.equal(a.ino, b.ino);
    assert.equal(b.nlink, 2);
    await fsp.appendFile(m.m('h2'), '!');
    assert.equal(await fsp.readFile(m.m('h2'), 'utf8'), 'shared!');
    // One kernel inode per object: h1 shows the change made through h2 at once.
    assert.equal(await fsp.readFile(m.m('h1'), 'utf8'), 'shared!');
    assert.equal((await fsp.stat(m.b('h1'))).nlink, 2);
    await rejectsCode(fsp.link(m.m('h1'), m.m('h2')), 'EEXIST');
    await fsp.mkdir(m.m('ldir'));
    await rejectsCode(fsp.link(m.m('ldir'), m.m('ldir2')), 'EPERM');
  });

  it('chmod and chown reach the backend', async () => {
    await fsp.writeFile(m.m('perm.txt'), 'x');
    await fsp.chmod(m.m('perm.txt'), 0o640);
    assert.equal((await fsp.stat(m.m('perm.txt'))).mode & 0o7777, 0o640);
    assert.equal((await fsp.stat(m.b('perm.txt'))).mode & 0o7777, 0o640);
    await fsp.chmod(m.m('perm.txt'), 0o4755);
    assert.equal((await fsp.stat(m.b('perm.txt'))).mode & 0o7777, 0o4755);
    if (process.getuid?.() === 0) {
      await fsp.chown(m.m('perm.txt'), 1234, 5678);
      const st = await fsp.stat(m.m('perm.txt'));
      assert.deepEqual([st.uid, st.gid], [1234, 5678]);
      const bs = await fsp.stat(m.b('perm.txt'));
      assert.deepEqual([bs.uid, bs.gid], [1234, 5678]);
      await fsp.chown(m.m('perm.txt'), -1, 42); // -1: leave the owner alone
      const st2 = await fsp.stat(m.b('perm.txt'));
      assert.deepEqual([st2.uid, st2.gid], [1234, 42]);
    }
  });

  it('truncate and ftruncate, shrinking and growing', async () => {
    const f = m.m('trunc.bin');
    await fsp.writeFile(f, Buffer.alloc(3_000_000, 9));
    await fsp.truncate(f, 1000);
    assert.equal((await fsp.stat(f)).size, 1000);
    await fsp.truncate(f, 5000);
    const back = await fsp.readFile(f);
    assert.equal(back.length, 5000);
    assert.ok(back.subarray(0, 1000).every((x) => x === 9));
    assert.ok(back.subarray(1000).every((x) => x === 0), 'grown part reads as zeros');
    const h = await fsp.open(f, 'r+');
    await h.truncate(10);
    await h.close();
    assert.equal((await fsp.stat(m.b('trunc.bin'))).size, 10);
    const h2 = await fsp.open(f, 'w'); // O_TRUNC
    await h2.close();
    assert.equal((await fsp.stat(m.b('trunc.bin'))).size, 0);
  });

  it('utimens: both times, nanoseconds, and one time with the other omitted', async () => {
    const f = m.m('times.txt');
    await fsp.writeFile(f, 'x');
    // 2001-02-03T04:05:06.123456789Z as seconds; Node's utimes is double-precision, so the
    // exact nanoseconds are checked with touch(1) in times.test.ts.
    await fsp.utimes(f, 1_000_000_000, 1_100_000_000);
    let st = await fsp.stat(f, { bigint: true });
    assert.equal(st.atimeNs, 1_000_000_000_000_000_000n);
    assert.equal(st.mtimeNs, 1_100_000_000_000_000_000n);
    const bs = await fsp.stat(m.b('times.txt'), { bigint: true });
    assert.equal(bs.mtimeNs, 1_100_000_000_000_000_000n);
    assert.equal(bs.atimeNs, 1_000_000_000_000_000_000n);
    st = await fsp.stat(f, { bigint: true });
    assert.notEqual(st.atimeNs, st.mtimeNs, 'mtime is not a copy of atime');
  });

  it('statfs answers with the backend file system figures', async () => {
    const s = await fsp.statfs(m.mnt);
    const b = await fsp.statfs(m.backend);
    assert.equal(s.bsize, b.bsize);
    assert.ok(s.blocks > 0);
    assert.ok(Math.abs(s.blocks - b.blocks) <= b.blocks * 0.01);
  });

  it('fsync returns once the data is on the backend', async () => {
    const h = await fsp.open(m.m('synced.txt'), 'w');
    await h.write('durable');
    await h.sync();
    assert.equal(await fsp.readFile(m.b('synced.txt'), 'utf8'), 'durable');
    await h.datasync();
    await h.close();
  });

  it('close returns once the data is on the backend', async () => {
    const data = randomBytes(1_500_000);
    const h = await fsp.open(m.m('closed.bin'), 'w');
    await h.write(data);
    await h.close();
    assert.ok(data.equals(await fsp.readFile(m.b('closed.bin'))));
  });

  it('access reports existence and permissions', async () => {
    await fsp.writeFile(m.m('acc.txt'), 'x', { mode: 0o600 });
    await fsp.access(m.m('acc.txt'), fsc.R_OK | fsc.W_OK);
    await rejectsCode(fsp.access(m.m('no-such-file')), 'ENOENT');
  });

  it('names longer than 255 bytes are ENAMETOOLONG', async () => {
    await rejectsCode(fsp.writeFile(m.m('x'.repeat(256)), 'x'), 'ENAMETOOLONG');
  });

  // NAME_MAX is bytes: 'é' is one character and two bytes of UTF-8.
  const fits = 'é'.repeat(127); // 254 bytes
  const over = 'é'.repeat(128); // 256 bytes: 128 characters, well under 255 of them

  it('NAME_MAX counts UTF-8 bytes: 127 × é (254 bytes) works for every operation, 128 × é (256) is ENAMETOOLONG', async () => {
    await fsp.mkdir(m.m('nm'));
    await fsp.writeFile(m.m('nm', fits), 'fits');
    assert.equal(await fsp.readFile(m.m('nm', fits), 'utf8'), 'fits');
    assert.equal(await fsp.readFile(m.b('nm', fits), 'utf8'), 'fits', 'the backend has it under the same name');
    await fsp.mkdir(m.m('nm', `d${fits}`)); // 255 bytes: the most there can be
    await fsp.symlink('target', m.m('nm', `s${fits}`));
    await fsp.link(m.m('nm', fits), m.m('nm', `l${fits}`));
    await fsp.rename(m.m('nm', `l${fits}`), m.m('nm', `r${fits}`));
    assert.deepEqual((await fsp.readdir(m.m('nm'))).sort(), [fits, `d${fits}`, `r${fits}`, `s${fits}`].sort());
    await rejectsCode(fsp.writeFile(m.m('nm', over), 'x'), 'ENAMETOOLONG');
    await rejectsCode(fsp.mkdir(m.m('nm', over)), 'ENAMETOOLONG');
    await rejectsCode(fsp.symlink('target', m.m('nm', over)), 'ENAMETOOLONG');
    await rejectsCode(fsp.link(m.m('nm', fits), m.m('nm', over)), 'ENAMETOOLONG');
    await rejectsCode(fsp.rename(m.m('nm', fits), m.m('nm', over)), 'ENAMETOOLONG');
    assert.deepEqual((await fsp.readdir(m.b('nm'))).sort(), [fits, `d${fits}`, `r${fits}`, `s${fits}`].sort(), 'nothing else reached the backend');
  });

  it('a lookup of a name over NAME_MAX bytes is ENAMETOOLONG (not ENOENT) in a directory the cache holds whole', async () => {
    await fsp.readdir(m.m('nm')); // the cache now knows every name in it
    await rejectsCode(fsp.stat(m.m('nm', over)), 'ENAMETOOLONG');
    await rejectsCode(fsp.access(m.m('nm', `x${over}`)), 'ENAMETOOLONG');
  });

  it('a path that fits PATH_MAX inside the mount works, though root + path would not on the backend', async () => {
    // 16 components of 250 characters: 4015 bytes below the mount root.
    const comps = Array.from({ length: 16 }, (_, i) => String(i).padStart(3, '0') + 'd'.repeat(247));
    const rel = comps.join('/');
    const { execFileSync } = await import('node:child_process');
    execFileSync('sh', ['-c', `cd '${m.mnt}' && mkdir -p '${rel}' && echo deep > '${rel}/f' && cat '${rel}/f' && mv '${rel}/f' '${rel}/g'`]);
    const out = execFileSync('sh', ['-c', `cd '${m.mnt}' && cat '${rel}/g' && stat -c %s '${rel}/g'`], { encoding: 'utf8' });
    assert.equal(out, 'deep\n5\n');
    execFileSync('sh', ['-c', `cd '${m.backend}' && test -f '${rel}/g'`]);
  });

  it('mkfifo creates a FIFO on the backend', async () => {
    const { execFileSync } = await import('node:child_process');
    execFileSync('mkfifo', [m.m('fifo')]);
    assert.ok((await fsp.lstat(m.m('fifo'))).isFIFO());
    assert.ok((await fsp.lstat(m.b('fifo'))).isFIFO());
  });

  it('fallocate is EOPNOTSUPP (README); posix_fallocate then writes the range itself', async () => {
    const refused = await sh('fallocate', ['-l', '1M', m.m('prealloc')]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /not supported/i);
    const posix = await sh('fallocate', ['--posix', '-l', '1M', m.m('posix-prealloc')]);
    assert.equal(posix.code, 0, posix.stderr);
    assert.equal((await fsp.stat(m.m('posix-prealloc'))).size, 1 << 20);
    assert.ok((await fsp.readFile(m.b('posix-prealloc'))).equals(Buffer.alloc(1 << 20)), 'the backend has the zeros');
  });
});
