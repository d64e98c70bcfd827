// What our own FUSE session gives the kernel (issue 13), through real mounts:
// - invalidation: with entry/attr/negative timeouts of a minute, a change made on the
//   backend from outside is still seen (stat, a negative lookup, an open directory
//   listing) within the watcher's interval, because the mount tells the kernel;
// - one kernel inode per object: every name of a hard link shows the same nlink and ctime
//   at once, with the default timeouts (libfuse2 gave each name its own inode);
// - 1 MiB requests: a 16 MiB read takes at most 32 READ requests (libfuse2: 128 KiB each);
// - an ordinary user mounts through fusermount3 (the descriptor passed back over a socket),
//   uses the mount and unmounts it.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CLI, Mounted, cli, control, mountFresh, sh, tempRoot, waitReplayed } from './helpers/cachefs.js';
import { waitUntil } from './helpers/wait.js';

const NOBODY = 65534;

// The default timeouts ("auto") over a local disk watched with inotify: long, and what the
// kernel keeps is dropped when the backend changes (src/fuse/kernel-caching.ts).
describe('FUSE session: invalidation with long timeouts (local backend, inotify, default timeouts)', () => {
  let m: Mounted;
  before(async () => {
    m = await mountFresh('inval', { config: { consistency: { watch: 'inotify' } } });
  });
  after(async () => { await m?.cleanup(); });

  it('the default timeouts are long here, and a stat repeated after them of a second makes no request', async () => {
    const status = async () => await control(m, 'status') as unknown as { ops: Record<string, { count: number }>; kernel: { attrTimeoutS: number; entryTimeoutS: number; listings: boolean; told: boolean } };
    const k = (await status()).kernel;
    assert.deepEqual([k.entryTimeoutS, k.attrTimeoutS, k.listings, k.told], [60, 60, true, true]);
    assert.match((await cli(['status', m.mnt])).stdout, /kernel +keeps names 60 s, attributes 60 s, listings; told of every backend change/);
    await fsp.writeFile(m.b('kept'), 'kept');
    const asked = async () => { const o = (await status()).ops; return (o.getattr?.count ?? 0) + (o.lookup?.count ?? 0); };
    // The backend's change of the root (its new name) reaches the kernel as an invalidation
    // a moment later (the watcher's and the recheck's batching, 50 ms each), which costs one
    // more GETATTR: wait until stats 300 ms apart ask nothing.
    await waitUntil('stats answered by the kernel alone', async () => {
      const was = await asked();
      await fsp.stat(m.m('kept'));
      await new Promise((r) => setTimeout(r, 300));
      await fsp.stat(m.m('kept'));
      return await asked() === was;
    }, 5000);
    const before = await asked();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await fsp.stat(m.m('kept'))).size, 4);
    assert.equal(await asked(), before, 'the kernel still held the name and its attributes');
  });

  it('stat sees a size changed on the backend', async () => {
    await fsp.writeFile(m.b('grows'), 'short');
    assert.equal((await fsp.stat(m.m('grows'))).size, 5);
    await fsp.writeFile(m.b('grows'), 'a good deal longer');
    await waitUntil('stat in the mount to show the new size', async () => (await fsp.stat(m.m('grows'))).size === 18, 5000);
    assert.equal(await fsp.readFile(m.m('grows'), 'utf8'), 'a good deal longer');
  });

  it('a name looked up as absent appears once made on the backend', async () => {
    await assert.rejects(fsp.stat(m.m('later')), { code: 'ENOENT' });
    await fsp.writeFile(m.b('later'), 'here now');
    await waitUntil('the new name to be found in the mount', async () => {
      try { await fsp.stat(m.m('later')); return true; } catch { return false; }
    }, 5000);
  });

  it('a name removed on the backend goes away, and an open directory listing shows the change', async () => {
    await fsp.mkdir(m.b('d'));
    await fsp.writeFile(m.b('d/one'), '1');
    // Python lists through one open descriptor, rewinding it each time (fdopendir + rewinddir).
    const script = 'import os,sys,time\n'
      + 'fd=os.open(sys.argv[1],os.O_RDONLY|os.O_DIRECTORY)\n'
      + 'print(",".join(sorted(os.listdir(fd))),flush=True)\n'
      + 'sys.stdin.readline()\n'
      + 'end=time.time()+5\n'
      + 'while time.time()<end:\n'
      + '  names=sorted(os.listdir(fd))\n'
      + '  if names==["two"]: break\n'
      + '  time.sleep(0.1)\n'
      + 'print(",".join(names),flush=True)\n';
    const { spawn } = await import('node:child_process');
    const py = spawn('python3', ['-c', script, m.m('d')], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    py.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    await waitUntil('the first listing', () => out.includes('\n'), 10_000);
    assert.equal(out.trim(), 'one');
    await fsp.rm(m.b('d/one'));
    await fsp.writeFile(m.b('d/two'), '2');
    py.stdin.write('\n');
    await new Promise((r) => py.on('close', r));
    assert.equal(out.trim().split('\n')[1], 'two', 'the open directory lists the backend\'s names');
    await waitUntil('the removed name to be gone', async () => {
      try { await fsp.stat(m.m('d/one')); return false; } catch (e) { return (e as NodeJS.ErrnoException).code === 'ENOENT'; }
    }, 5000);
  });
});

describe('FUSE session: the kernel\'s view of objects', () => {
  let m: Mounted;
  before(async () => { m = await mountFresh('kview'); });
  after(async () => { await m?.cleanup(); });

  it('every name of a hard link agrees on nlink and ctime at once', async () => {
    await fsp.writeFile(m.m('a'), 'linked');
    const first = await fsp.stat(m.m('a'), { bigint: true });
    await fsp.link(m.m('a'), m.m('b'));
    await fsp.link(m.m('a'), m.m('c'));
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => fsp.stat(m.m(n), { bigint: true })));
    assert.equal(a!.ino, first.ino);
    for (const s of [a!, b!, c!]) {
      assert.equal(s.ino, first.ino);
      assert.equal(s.nlink, 3n);
    }
    await fsp.chmod(m.m('b'), 0o600);
    await fsp.unlink(m.m('c'));
    const [a2, b2] = await Promise.all(['a', 'b'].map((n) => fsp.stat(m.m(n), { bigint: true })));
    assert.equal(a2!.nlink, 2n, 'the unlink of one name shows on the others at once');
    assert.equal(a2!.mode & 0o777n, 0o600n, 'so does a chmod through another name');
    assert.equal(a2!.ctimeNs, b2!.ctimeNs);
  });

  it('extended attributes are refused with EOPNOTSUPP (the README says so): nothing is kept that would not replay', async () => {
    await fsp.writeFile(m.m('x'), 'x');
    const py = await sh('python3', ['-c', `
import errno, os, sys
p = sys.argv[1]
for call in (lambda: os.setxattr(p, 'user.k', b'v'), lambda: os.getxattr(p, 'user.k'), lambda: os.listxattr(p)):
    try:
        call(); print('allowed')
    except OSError as e:
        print('EOPNOTSUPP' if e.errno == errno.EOPNOTSUPP else errno.errorcode[e.errno])`, m.m('x')]);
    assert.equal(py.code, 0, py.stderr);
    assert.deepEqual(py.stdout.trim().split('\n'), ['EOPNOTSUPP', 'EOPNOTSUPP', 'EOPNOTSUPP']);
  });

  it('calls made one after the other are read by polling after each reply, and each is answered once, on its own descriptor', async () => {
    // Another process (the mount must not be driven from the test runner synchronously):
    // 400 chmods and 400 stats of a fresh name each, back to back; every one must succeed
    // and leave its mode. A reply written to the wrong descriptor would be refused by the
    // kernel (ENOENT), and the caller would hang until the test's timeout.
    await fsp.writeFile(m.m('polled'), 'p');
    const polled = async () => ((await control(m, 'status')) as unknown as { kernel: { polledRequests: number } }).kernel.polledRequests;
    const before = await polled();
    const script = `const fs = require('fs'); const f = ${JSON.stringify(m.m('polled'))};
      for (let i = 0; i < 400; i++) {
        const mode = 0o600 | (i & 1) << 2; fs.chmodSync(f, mode);
        if ((fs.statSync(f).mode & 0o777) !== mode) { console.error('mode not kept at ' + i); process.exit(1); }
        try { fs.statSync(f + '.none' + i); process.exit(2); } catch (e) { if (e.code !== 'ENOENT') throw e; }
      }`;
    const r = await sh(process.execPath, ['-e', script], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await fsp.stat(m.b('polled'))).mode & 0o777, 0o600 | (399 & 1) << 2);
    assert.ok(await polled() > before, 'some requests were found by polling');
  });

  it('fstat of an open file unlinked meanwhile says nlink 0, and it still reads and writes', async () => {
    await fsp.writeFile(m.m('doomed'), 'still here');
    const h = await fsp.open(m.m('doomed'), 'r+');
    try {
      await fsp.unlink(m.m('doomed'));
      assert.equal((await h.stat()).nlink, 0);
      await h.write('STILL', 0);
      const b = Buffer.alloc(10);
      await h.read(b, 0, 10, 0);
      assert.equal(b.toString(), 'STILL here');
    } finally {
      await h.close();
    }
    await waitUntil('the hidden name to leave the backend', async () => (await fsp.readdir(m.backend)).every((n) => !n.startsWith('.cachefs-hidden')), 5000);
  });

  it('offline: a file made, unlinked while open and written after, replays with no conflict and leaves nothing behind', async () => {
    await fsp.readdir(m.mnt); // a directory never listed while connected takes no new names offline
    assert.equal((await cli(['offline', m.mnt])).code, 0);
    const made = await fsp.open(m.m('made-offline'), 'w+');
    try {
      await made.write('abc');
      await fsp.unlink(m.m('made-offline'));
      await made.write('def');
      const b = Buffer.alloc(6);
      await made.read(b, 0, 6, 0);
      assert.equal(b.toString(), 'abcdef');
      assert.equal((await made.stat()).nlink, 0);
    } finally {
      await made.close();
      await cli(['sync', m.mnt]);
    }
    const s = await cli(['sync', m.mnt]);
    assert.equal(s.code, 0, s.stderr);
    const c = await cli(['conflicts', m.mnt, '--json']);
    assert.deepEqual(JSON.parse(c.stdout), [], 'no conflict');
    await waitUntil('nothing of them on the backend', async () => (await fsp.readdir(m.backend))
      .every((n) => n !== 'made-offline' && !n.startsWith('.cachefs-hidden')), 10_000);
  });

  it('a write, truncate or chown by another user drops set-user-ID and group-executable set-group-ID', async () => {
    await fsp.chmod(m.root, 0o755); // uid 65534 must reach the mount (mkdtemp made it 0700)
    for (const [mode, after] of [[0o4777, 0o777], [0o2777, 0o777], [0o6777, 0o777], [0o2767, 0o2767]] as const) {
      await fsp.writeFile(m.m('setid'), 'x');
      await fsp.chmod(m.m('setid'), mode);
      const w = await sh('sh', ['-c', `printf y >> ${m.m('setid')}`], { uid: 65534 });
      assert.equal(w.code, 0, w.stderr);
      assert.equal((await fsp.stat(m.m('setid'))).mode & 0o7777, after, `a write into a ${mode.toString(8)} file`);
      assert.equal((await fsp.stat(m.b('setid'))).mode & 0o7777, after, 'on the backend too');
      await fsp.rm(m.m('setid'));
    }
    await fsp.writeFile(m.m('setid'), 'x');
    await fsp.chmod(m.m('setid'), 0o4755);
    await fsp.chown(m.m('setid'), 65534, 65534);
    assert.equal((await fsp.stat(m.m('setid'))).mode & 0o7777, 0o755, 'chown drops set-user-ID');
  });

  it('reads go to the mount in requests of up to 1 MiB', async () => {
    const data = Buffer.alloc(16 << 20, 7);
    await fsp.writeFile(m.b('big'), data);
    // The root was listed (an earlier test): the new name shows once the watcher reports it.
    await waitUntil('the backend\'s new file to show in the mount', () => fsp.stat(m.m('big')).then((st) => st.size === data.length, () => false), 5000);
    const before = (await m.statusDirect() as unknown as { ops: Record<string, { count: number }> }).ops.read?.count ?? 0;
    const got = await fsp.readFile(m.m('big'));
    assert.ok(got.equals(data));
    const reads = ((await m.statusDirect() as unknown as { ops: Record<string, { count: number }> }).ops.read?.count ?? 0) - before;
    assert.ok(reads > 0 && reads <= 32, `${reads} READ requests for 16 MiB`);
  });
});

for (const passthrough of [true, false]) {
  describe(`FUSE session: passthrough ${passthrough ? 'on' : 'off'}`, () => {
    let m: Mounted;
    before(async () => { m = await mountFresh(`pt${passthrough ? 'on' : 'off'}`, { config: { fuse: { passthrough, autoCache: false } } }); });
    after(async () => { await m?.cleanup(); });
    const reads = async () => ((await m.statusDirect() as unknown as { ops: Record<string, { count: number }> }).ops.read?.count ?? 0);

    it(passthrough ? 'a wholly cached file is read by the kernel from the cache file' : 'every read comes through the session', async () => {
      const data = randomBytes(8 << 20);
      await fsp.writeFile(m.b('cached'), data);
      assert.ok((await fsp.readFile(m.m('cached'))).equals(data), 'the first read fetches it');
      const before = await reads();
      assert.ok((await fsp.readFile(m.m('cached'))).equals(data), 'the second read has the same bytes');
      const n = (await reads()) - before;
      if (passthrough) assert.equal(n, 0, 'no READ request reached the mount');
      else assert.ok(n >= 8, `${n} READ requests`);
    });

    it(`a file nothing of which is cached is copied whole at open (a kernel copy) and read from the cache file${passthrough ? ' by the kernel' : ''}`, async () => {
      const data = randomBytes(24 << 20);
      await fsp.writeFile(m.b('cold'), data);
      const fetched = async () => ((await m.status()) as unknown as { counters: { bytesFromBackend: number } }).counters.bytesFromBackend;
      const [r0, f0] = [await reads(), await fetched()];
      assert.ok((await fsp.readFile(m.m('cold'))).equals(data));
      const n = (await reads()) - r0;
      if (passthrough) assert.equal(n, 0, 'no READ request reached the mount');
      else assert.ok(n >= 24, `${n} READ requests`);
      assert.equal((await fetched()) - f0, data.length, 'the copy brought every byte once, and nothing was fetched besides');
    });

    it(passthrough ? 'while a passthrough reader is open, a writer gets ETXTBSY; after, it writes' : 'a writer opens beside a reader', async () => {
      await fsp.writeFile(m.b('shared'), 'original');
      await fsp.readFile(m.m('shared')); // cached whole
      // That open was an ordinary one (nothing was cached yet), and the kernel sends its
      // RELEASE after close() returns: until it is handled, a new open of the file is an
      // ordinary one too (the kernel fails a passthrough open beside an ordinary one).
      await waitUntil('the first open to be released', async () => (await m.statusDirect()).openFiles === 0);
      const reader = await fsp.open(m.m('shared'), 'r');
      try {
        if (passthrough) await assert.rejects(fsp.writeFile(m.m('shared'), 'changed'), { code: 'ETXTBSY' });
        else await fsp.writeFile(m.m('shared'), 'changed');
      } finally {
        await reader.close();
      }
      await fsp.writeFile(m.m('shared'), 'changed later');
      assert.equal(await fsp.readFile(m.b('shared'), 'utf8'), 'changed later');
      assert.equal(await fsp.readFile(m.m('shared'), 'utf8'), 'changed later', 'a new open sees the new bytes');
    });

    it('a file already open the ordinary way (a reader before it was cached, a writer) opens again for reading', async () => {
      // The kernel refuses (EIO) a passthrough open of an inode it already has open the
      // ordinary way: such an open must come through the session too.
      // One chunk: not copied whole at open, so the first open is not cached yet.
      const data = randomBytes(512 << 10);
      await fsp.writeFile(m.b('early'), data);
      const first = await fsp.open(m.m('early'), 'r'); // not cached yet: an ordinary open
      try {
        const part = Buffer.alloc(data.length);
        await first.read(part, 0, data.length, 0); // now wholly cached
        assert.ok((await fsp.readFile(m.m('early'))).equals(data), 'a second open while the first is held');
      } finally {
        await first.close();
      }
      await fsp.writeFile(m.b('opened-rw'), 'bytes');
      await fsp.readFile(m.m('opened-rw')); // cached whole
      const writer = await fsp.open(m.m('opened-rw'), 'r+');
      try {
        assert.equal(await fsp.readFile(m.m('opened-rw'), 'utf8'), 'bytes', 'a reader beside a writer that wrote nothing yet');
      } finally {
        await writer.close();
      }
    });
  });
}

describe('FUSE session: invalidation after a replay\'s conflict and its resolution (long timeouts)', () => {
  // Changes the mount makes by itself, not at the kernel's request: a replay parks a
  // conflict (the path shows the server's variant), a resolution writes the chosen one. The
  // kernel holds the path's attributes (its size) and pages for a minute; it must be told.
  let m: Mounted;
  before(async () => {
    m = await mountFresh('inval-conflict', {
      config: { fuse: { entryTimeout: 60, attrTimeout: 60, negativeTimeout: 60 }, consistency: { watch: false } },
    });
  });
  after(async () => { await m?.cleanup(); });

  it('a name looked up in vain while disconnected, made on the server meanwhile, shows once the mount reconnects', async () => {
    await fsp.mkdir(m.m('later'));
    await fsp.writeFile(m.m('later', 'old.txt'), 'here before');
    assert.deepEqual(await fsp.readdir(m.m('later')), ['old.txt']);
    await control(m, 'offline');
    // The kernel keeps these answers for a minute (negativeTimeout 60).
    await assert.rejects(fsp.stat(m.m('later', 'new.txt')), { code: 'ENOENT' });
    await fsp.unlink(m.m('later', 'old.txt'));
    await assert.rejects(fsp.stat(m.m('later', 'old.txt')), { code: 'ENOENT' });
    await fsp.writeFile(m.b('later', 'new.txt'), 'made on the server');
    await control(m, 'online');
    await waitReplayed(m);
    assert.equal(await fsp.readFile(m.m('later', 'new.txt'), 'utf8'), 'made on the server');
    assert.deepEqual(await fsp.readdir(m.m('later')), ['new.txt']);
  });

  it('the parked server variant, then the client variant chosen (connected, and offline), are what the path shows at once', async () => {
    for (const f of ['doc.txt', 'other.txt']) {
      await fsp.writeFile(m.m(f), 'base');
      assert.equal(await fsp.readFile(m.m(f), 'utf8'), 'base');
    }
    await control(m, 'offline');
    for (const f of ['doc.txt', 'other.txt']) {
      await fsp.writeFile(m.m(f), 'the client');
      assert.equal((await fsp.stat(m.m(f))).size, 10);
    }
    await new Promise((r) => setTimeout(r, 30)); // the server's change must look newer than the base
    for (const f of ['doc.txt', 'other.txt']) await fsp.writeFile(m.b(f), 'the server, longer');
    await control(m, 'online');
    await waitReplayed(m);
    // Parked: the paths are the server's variant, size and bytes.
    // (A read leaves the kernel's atime stale, so the stat after it asks the mount; the
    // stats after that answer from the kernel's cache, for a minute, unless it is told.)
    for (const f of ['doc.txt', 'other.txt']) {
      assert.equal((await fsp.stat(m.m(f))).size, 18, `the size the kernel reports for ${f}`);
      assert.equal(await fsp.readFile(m.m(f), 'utf8'), 'the server, longer');
      assert.equal((await fsp.stat(m.m(f))).size, 18);
    }
    const r = await cli(['resolve', m.m('doc.txt'), '--keep', 'client']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await fsp.stat(m.m('doc.txt'))).size, 10, 'the size after the resolution');
    assert.equal(await fsp.readFile(m.m('doc.txt'), 'utf8'), 'the client');
    // Resolved while disconnected: no replay follows to revalidate anything.
    await control(m, 'offline');
    const r2 = await cli(['resolve', m.m('other.txt'), '--keep', 'client']);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal((await fsp.stat(m.m('other.txt'))).size, 10, 'the size after the resolution made offline');
    assert.equal(await fsp.readFile(m.m('other.txt'), 'utf8'), 'the client');
    await control(m, 'online');
    await waitReplayed(m);
    assert.equal(await fsp.readFile(m.b('other.txt'), 'utf8'), 'the client');
  });
});

describe('FUSE session: file handles (EXPORT_SUPPORT: name_to_handle_at, open_by_handle_at)', () => {
  // What an NFS server re-exporting the mount (or fanotify) does: keep a file's handle, and
  // open by it later, after the kernel has forgotten the inode (the mount is asked for the
  // node by its id: LOOKUP of "."). A handle of a removed file, or of another cache's
  // object, is stale: never another file.
  let m: Mounted;
  let other: Mounted | undefined;
  before(async () => { m = await mountFresh('handles'); });
  after(async () => { await other?.cleanup(); await m?.cleanup(); });

  const dropInodes = () => fsp.writeFile('/proc/sys/vm/drop_caches', '2');
  const readAll = (fd: number) => { const b = Buffer.alloc(100); const n = fs.readSync(fd, b, 0, 100, 0); return b.subarray(0, n).toString(); };

  it('a handle opens its file after the kernel forgot the inode; a removed file\'s handle is stale', async () => {
    const { handleOf, openByHandle } = await import('./helpers/handles.js');
    await fsp.mkdir(m.m('d'));
    await fsp.writeFile(m.m('d', 'kept.txt'), 'by handle\n');
    await fsp.writeFile(m.m('d', 'gone.txt'), 'soon removed\n');
    const kept = handleOf(m.m('d', 'kept.txt'));
    const gone = handleOf(m.m('d', 'gone.txt'));
    await fsp.unlink(m.m('d', 'gone.txt'));
    await dropInodes();
    const root = fs.openSync(m.mnt, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      const fd = openByHandle(root, kept);
      try { assert.equal(readAll(fd), 'by handle\n'); } finally { fs.closeSync(fd); }
      assert.throws(() => openByHandle(root, gone), { code: 'ESTALE' });
    } finally { fs.closeSync(root); }
  });

  it('a directory\'s handle, its inodes forgotten, opens it reconnected to the tree (LOOKUP of "..")', async () => {
    const { handleOf, openByHandle } = await import('./helpers/handles.js');
    await fsp.mkdir(m.m('d', 'sub', 'deeper'), { recursive: true });
    await fsp.writeFile(m.m('d', 'sub', 'deeper', 'f'), 'x');
    const h = handleOf(m.m('d', 'sub', 'deeper'));
    await dropInodes();
    const root = fs.openSync(m.mnt, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      const fd = openByHandle(root, h, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      try {
        assert.equal(fs.readlinkSync(`/proc/self/fd/${fd}`), m.m('d', 'sub', 'deeper'), 'the path the kernel reconnected');
        assert.deepEqual(fs.readdirSync(`/proc/self/fd/${fd}`), ['f']);
      } finally { fs.closeSync(fd); }
    } finally { fs.closeSync(root); }
  });

  it('a handle from another cache of the same backend is stale there, not another file', async () => {
    const { handleOf, openByHandle } = await import('./helpers/handles.js');
    const h = handleOf(m.m('d', 'kept.txt'));
    // Same backend, a new cache: its object ids start again, its generation is its own.
    other = new Mounted(tempRoot('handles-other'), m.backend);
    await fsp.mkdir(other.mnt, { recursive: true });
    const r = await cli(['mount', m.backend, other.mnt, '--cache-dir', other.cache]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await fsp.readFile(path.join(other.mnt, 'd', 'kept.txt'), 'utf8'), 'by handle\n');
    const root = fs.openSync(other.mnt, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      assert.throws(() => openByHandle(root, h), { code: 'ESTALE' });
    } finally { fs.closeSync(root); }
  });
});

describe('FUSE session: a hung mount process', () => {
  let m: Mounted;
  let pid = 0;
  before(async () => { m = await mountFresh('hung'); pid = (await m.status()).pid; });
  after(async () => {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    await m?.cleanup();
  });

  it('umount --force aborts its connection: a process waiting on the mount gets ENOTCONN, not a hang', async () => {
    await fsp.writeFile(m.m('f'), 'x');
    process.kill(pid, 'SIGSTOP');
    const { spawn } = await import('node:child_process');
    // A new name: the kernel must ask the (stopped) mount process, so this waits.
    const waiter = spawn('stat', [m.m('never-seen')], { stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => waiter.on('close', (code) => r(code)));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(waiter.exitCode, null, 'stat waits on the stopped mount process');
    const t0 = Date.now();
    const u = await cli(['umount', m.mnt, '--force']);
    assert.equal(u.code, 0, u.stderr);
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still waiting'), 10_000))]);
    assert.notEqual(code, 'still waiting', 'the waiting process was let go');
    assert.notEqual(code, 0, 'with an error');
    assert.ok(Date.now() - t0 < 20_000, `umount --force took ${Date.now() - t0} ms`);
    const still = (await fsp.readFile('/proc/mounts', 'utf8')).split('\n').some((l) => l.split(' ')[1] === m.mnt);
    assert.ok(!still, 'unmounted');
  });
});

describe('FUSE session: unmounted from outside, then mounted again at once', () => {
  // The old mount process learns late that the kernel ended its session (here: it was
  // stopped meanwhile). By then the mountpoint, and the kernel's connection number, belong
  // to the new mount: the old process must not unmount it or abort its connection (before
  // the fix it did both: the new mount died, its process exiting with code 0).
  let a: Mounted;
  let b: Mounted | undefined;
  let pidA = 0;
  before(async () => { a = await mountFresh('outside-a'); pidA = (await a.status()).pid; });
  after(async () => {
    try { process.kill(pidA, 'SIGCONT'); } catch { /* gone */ }
    if (b) await cli(['umount', a.mnt, '--force']);
    await b?.cleanup();
    await a?.cleanup();
  });

  it('the old mount process leaves the new mount alone', async () => {
    const { connectionOf } = await import('../src/core/mount-table.js');
    const was = connectionOf(a.mnt);
    assert.notEqual(was, null);
    process.kill(pidA, 'SIGSTOP');
    // umount(2) itself: umount(8) would stat the mountpoint first, and wait on the stopped process.
    const { unmountFuse } = await import('../src/fuse/mount.js');
    await unmountFuse(a.mnt);
    // The new mount: its own backend and cache, the same mountpoint.
    b = new Mounted(tempRoot('outside-b'));
    await fsp.mkdir(b.backend, { recursive: true });
    await fsp.writeFile(path.join(b.backend, 'mine'), 'the new mount\n');
    const r = await cli(['mount', b.backend, a.mnt, '--cache-dir', b.cache]);
    assert.equal(r.code, 0, r.stderr);
    const pidB = (await cli(['status', a.mnt, '--json'])).stdout;
    assert.notEqual(JSON.parse(pidB).pid, pidA);
    assert.equal(connectionOf(a.mnt), was, 'the kernel gave the new mount the old connection number (the case under test)');
    process.kill(pidA, 'SIGCONT');
    await waitUntil('the old mount process to exit', () => { try { process.kill(pidA, 0); return false; } catch { return true; } }, 30_000);
    assert.equal(await fsp.readFile(path.join(a.mnt, 'mine'), 'utf8'), 'the new mount\n', 'the new mount still answers');
    const st = await cli(['status', a.mnt, '--json']);
    assert.equal(st.code, 0, st.stderr);
    assert.equal(JSON.parse(st.stdout).pid, JSON.parse(pidB).pid);
  });
});

describe('FUSE session: an ordinary user mounts through fusermount3', () => {
  let root: string;
  let devMode: number | null = null;
  before(async () => {
    // fusermount3 opens /dev/fuse as the user: Debian makes it 0666 (udev), some VMs 0600.
    const mode = (await fsp.stat('/dev/fuse')).mode & 0o777;
    if ((mode & 0o006) !== 0o006) { devMode = mode; await fsp.chmod('/dev/fuse', 0o666); }
    root = tempRoot('usermount');
    await fsp.chmod(root, 0o755);
    for (const d of ['backend', 'mnt', 'cache']) {
      await fsp.mkdir(path.join(root, d));
      await fsp.chown(path.join(root, d), NOBODY, NOBODY);
    }
    await fsp.writeFile(path.join(root, 'backend', 'hello'), 'from the backend\n');
    await fsp.chown(path.join(root, 'backend', 'hello'), NOBODY, NOBODY);
  });
  after(async () => {
    await sh('node', [CLI, 'umount', path.join(root, 'mnt'), '--force'], { uid: NOBODY }).catch(() => undefined);
    await sh('fusermount3', ['-u', '-z', path.join(root, 'mnt')]).catch(() => undefined);
    await fsp.rm(root, { recursive: true, force: true });
    if (devMode !== null) await fsp.chmod('/dev/fuse', devMode);
  });

  it('mounts, serves reads and writes, and unmounts, all as uid 65534', async () => {
    const mnt = path.join(root, 'mnt');
    const r = await sh('node', [CLI, 'mount', path.join(root, 'backend'), mnt, '--cache-dir', path.join(root, 'cache')], { uid: NOBODY, cwd: root });
    assert.equal(r.code, 0, r.stderr);
    const line = (await fsp.readFile('/proc/mounts', 'utf8')).split('\n').find((l) => l.split(' ')[1] === mnt);
    assert.ok(line, 'in /proc/mounts');
    assert.match(line, /fuse\.cachefs/);
    assert.match(line, /user_id=65534/);
    const use = await sh('sh', ['-c', `cat ${mnt}/hello && echo written > ${mnt}/new && cat ${mnt}/new && stat -c %U ${mnt}/new`], { uid: NOBODY });
    assert.equal(use.code, 0, use.stderr);
    assert.equal(use.stdout, 'from the backend\nwritten\nnobody\n');
    assert.equal(await fsp.readFile(path.join(root, 'backend', 'new'), 'utf8'), 'written\n');
    const u = await sh('node', [CLI, 'umount', mnt], { uid: NOBODY, cwd: root });
    assert.equal(u.code, 0, u.stderr);
    const still = (await fsp.readFile('/proc/mounts', 'utf8')).split('\n').some((l) => l.split(' ')[1] === mnt);
    assert.ok(!still, 'unmounted');
  });
});
