// The hidden control directory `/.cachefs`, through a real FUSE mount over a local directory:
// hidden from the root's listing but reachable by name; one directory per open conflict with
// its client / server / base variants read-only (files, symlinks, directory trees), a
// writable `resolved`, an `info` JSON file; a read-only mirror of the cache's lost+found;
// EROFS for every other change; inode numbers apart from the layer's.
//
// Conflicts are made by writing rows into the cache's SQLite file between mounts (the
// conflict engine that makes them on replay is tested elsewhere). Everything here runs in
// the test process or its children, never in the mount process.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, constants as fsc } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { mountFresh, sh, type Mounted } from './helpers/cachefs.js';
import { openDb } from '../src/index/db.js';
import { ConflictStore } from '../src/conflict/store.js';

async function rejectsCode(p: Promise<unknown>, ...codes: string[]): Promise<void> {
  await assert.rejects(p, (e: NodeJS.ErrnoException) => {
    assert.ok(codes.includes(e.code ?? ''), `expected ${codes.join('/')}, got ${e.code} (${e.message})`);
    return true;
  });
}

describe('the control directory /.cachefs', () => {
  let m: Mounted;
  const ids = { text: 0, links: 0, tree: 0, closed: 0, bare: 0 };
  const big = randomBytes(3 * 1024 * 1024 + 777);
  let bigFile = '';
  const ctl = (...p: string[]) => m.m('.cachefs', ...p);
  const conflict = (id: number, ...p: string[]) => ctl('conflicts', String(id), ...p);

  before(async () => {
    m = await mountFresh('ctl');
    await fsp.writeFile(m.m('hello.txt'), 'hello\n');
    await fsp.mkdir(m.m('sub'));
    await fsp.writeFile(m.m('sub/x.txt'), 'x');
    const r = await m.umount();
    assert.equal(r.code, 0, r.stderr);
    // A backend entry named like the control directory: shadowed in the mount.
    await fsp.writeFile(m.b('.cachefs'), 'backend file\n');

    const vdir = (n: string) => path.join(m.cache, 'conflicts', n);
    // 1: three plain file variants, no resolution yet.
    await fsp.mkdir(vdir('text'), { recursive: true });
    await fsp.writeFile(path.join(vdir('text'), 'client'), 'client bytes\n');
    await fsp.writeFile(path.join(vdir('text'), 'server'), 'server bytes\n');
    await fsp.writeFile(path.join(vdir('text'), 'base'), 'base bytes\n');
    // 2: symlink variants, a resolved file and the engine's own info.json.
    await fsp.mkdir(vdir('links'), { recursive: true });
    await fsp.symlink('target-a', path.join(vdir('links'), 'client'));
    await fsp.symlink('target-b', path.join(vdir('links'), 'server'));
    await fsp.writeFile(path.join(vdir('links'), 'resolved'), 'an old resolution, longer than the new one\n');
    await fsp.writeFile(path.join(vdir('links'), 'info.json'), JSON.stringify({ fromEngine: true }));
    // 3: a directory tree on the client, a big file on the server.
    await fsp.mkdir(path.join(vdir('tree'), 'client', 'sub'), { recursive: true });
    await fsp.writeFile(path.join(vdir('tree'), 'client', 'a.txt'), 'tree a\n');
    await fsp.writeFile(path.join(vdir('tree'), 'client', 'sub', 'b.txt'), 'tree b\n');
    await fsp.symlink('a.txt', path.join(vdir('tree'), 'client', 'link'));
    await fsp.writeFile(path.join(vdir('tree'), 'server'), big);
    bigFile = path.join(m.root, 'big.bin');
    await fsp.writeFile(bigFile, big);
    // lost+found: what resolutions discarded.
    await fsp.mkdir(path.join(m.cache, 'lost+found', 'old-tree'), { recursive: true });
    await fsp.writeFile(path.join(m.cache, 'lost+found', 'old.txt'), 'discarded\n');
    await fsp.writeFile(path.join(m.cache, 'lost+found', 'old-tree', 'y.txt'), 'discarded y\n');

    const db = openDb(path.join(m.cache, 'index.sqlite'));
    try {
      const store = new ConflictStore(db);
      const add = (kind: 'update-update' | 'symlink-retarget' | 'file-dir', p: string, dir: string | null) =>
        store.add({ kind, path: p, object: null, record: { op: 'test' }, baseVersion: 'b1', clientVersion: 'c1', serverVersion: 's2', dir,
          detail: { note: `test conflict on ${p}` } });
      ids.text = add('update-update', '/doc.txt', vdir('text'));
      ids.links = add('symlink-retarget', '/ln', vdir('links'));
      ids.tree = add('file-dir', '/thing', vdir('tree'));
      ids.closed = add('update-update', '/gone.txt', vdir('text'));
      ids.bare = add('update-update', '/bare.txt', null);
      assert.ok(store.resolve(ids.closed, 'server', 'user'));
    } finally {
      db.close();
    }
    await m.mount();
  });
  after(async () => { await m?.cleanup(); });

  it('is hidden from the root listing but reachable by name, shadowing a backend .cachefs', async () => {
    const ls = await sh('ls', ['-a', m.mnt]);
    assert.equal(ls.code, 0, ls.stderr);
    const names = ls.stdout.split('\n').filter(Boolean).sort();
    assert.deepEqual(names, ['.', '..', 'hello.txt', 'sub']);
    const st = await fsp.stat(ctl());
    assert.ok(st.isDirectory());
    assert.equal(st.mode & 0o777, 0o500);
    assert.deepEqual((await fsp.readdir(ctl())).sort(), ['conflicts', 'lost+found']);
    // The backend's own `.cachefs` is still there, untouched.
    assert.equal(await fsp.readFile(m.b('.cachefs'), 'utf8'), 'backend file\n');
  });

  it('lists one directory per open conflict, by id', async () => {
    const ls = await sh('ls', [ctl('conflicts')]);
    assert.equal(ls.code, 0, ls.stderr);
    const listed = ls.stdout.split('\n').filter(Boolean).map(Number).sort((a, b) => a - b);
    assert.deepEqual(listed, [ids.text, ids.links, ids.tree, ids.bare]);
    await rejectsCode(fsp.stat(conflict(ids.closed)), 'ENOENT');
    await rejectsCode(fsp.stat(ctl('conflicts', '999999')), 'ENOENT');
    await rejectsCode(fsp.stat(ctl('conflicts', 'x')), 'ENOENT');
    await rejectsCode(fsp.stat(conflict(ids.text, 'nothing')), 'ENOENT');
    await rejectsCode(fsp.stat(ctl('nothing')), 'ENOENT');
    assert.deepEqual((await fsp.readdir(conflict(ids.text))).sort(), ['base', 'client', 'info', 'server']);
    assert.deepEqual((await fsp.readdir(conflict(ids.links))).sort(), ['client', 'info', 'resolved', 'server']);
    assert.deepEqual((await fsp.readdir(conflict(ids.bare))).sort(), ['info']);
  });

  it('serves the variants: file bytes, symlink targets, directory trees', async () => {
    for (const [name, want] of [['client', 'client bytes\n'], ['server', 'server bytes\n'], ['base', 'base bytes\n']] as const) {
      const cat = await sh('cat', [conflict(ids.text, name)]);
      assert.equal(cat.code, 0, cat.stderr);
      assert.equal(cat.stdout, want);
    }
    assert.equal(await fsp.readlink(conflict(ids.links, 'client')), 'target-a');
    assert.equal(await fsp.readlink(conflict(ids.links, 'server')), 'target-b');
    assert.ok((await fsp.lstat(conflict(ids.links, 'client'))).isSymbolicLink());
    const tree = conflict(ids.tree, 'client');
    assert.deepEqual((await fsp.readdir(tree)).sort(), ['a.txt', 'link', 'sub']);
    assert.equal(await fsp.readFile(path.join(tree, 'sub', 'b.txt'), 'utf8'), 'tree b\n');
    assert.equal(await fsp.readlink(path.join(tree, 'link')), 'a.txt');
    assert.equal(await fsp.readFile(path.join(tree, 'link'), 'utf8'), 'tree a\n'); // followed by the kernel
    const find = await sh('find', [tree]);
    assert.equal(find.code, 0, find.stderr);
    assert.equal(find.stdout.split('\n').filter(Boolean).length, 5);
  });

  it('reads a 3 MiB variant back byte for byte', async () => {
    const cmp = await sh('cmp', [conflict(ids.tree, 'server'), bigFile]);
    assert.equal(cmp.code, 0, cmp.stdout + cmp.stderr);
    assert.ok(big.equals(await fsp.readFile(conflict(ids.tree, 'server'))));
    // Several readers at once.
    const all = await Promise.all([1, 2, 3, 4].map(() => fsp.readFile(conflict(ids.tree, 'server'))));
    for (const b of all) assert.ok(big.equals(b));
  });

  it('info is JSON: made from the row, or the engine\'s info.json', async () => {
    const info = JSON.parse(await fsp.readFile(conflict(ids.text, 'info'), 'utf8')) as Record<string, unknown>;
    assert.equal(info.id, ids.text);
    assert.equal(info.kind, 'update-update');
    assert.equal(info.path, '/doc.txt');
    assert.ok(!Number.isNaN(Date.parse(String(info.detectedAt))));
    assert.deepEqual(info.versions, { base: 'b1', client: 'c1', server: 's2' });
    assert.equal((info.detail as { note: string }).note, 'test conflict on /doc.txt');
    assert.deepEqual(JSON.parse(await fsp.readFile(conflict(ids.links, 'info'), 'utf8')), { fromEngine: true });
    const bare = JSON.parse(await fsp.readFile(conflict(ids.bare, 'info'), 'utf8')) as Record<string, unknown>;
    assert.equal(bare.id, ids.bare);
  });

  it('resolved is writable: created when absent, overwritten with O_TRUNC, truncated, synced, touched', async () => {
    // Absent: created by the shell's O_CREAT.
    const made = conflict(ids.text, 'resolved');
    await rejectsCode(fsp.stat(made), 'ENOENT');
    let r = await sh('sh', ['-c', `echo x > '${made}'`]);
    assert.equal(r.code, 0, r.stderr);
    r = await sh('cat', [made]);
    assert.equal(r.stdout, 'x\n');
    assert.equal(await fsp.readFile(path.join(m.cache, 'conflicts', 'text', 'resolved'), 'utf8'), 'x\n');
    assert.ok((await fsp.readdir(conflict(ids.text))).includes('resolved'));
    // Present and longer: cp opens it O_WRONLY|O_TRUNC.
    const src = path.join(m.root, 'merged.txt');
    await fsp.writeFile(src, 'merged by hand\n');
    const existing = conflict(ids.links, 'resolved');
    r = await sh('cp', [src, existing]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await fsp.readFile(existing, 'utf8'), 'merged by hand\n');
    assert.equal(await fsp.readFile(path.join(m.cache, 'conflicts', 'links', 'resolved'), 'utf8'), 'merged by hand\n');
    // A big resolution, then truncate / ftruncate / fsync / utimes.
    r = await sh('cp', [bigFile, made]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await sh('cmp', [made, bigFile])).code, 0);
    await fsp.truncate(made, 10);
    assert.ok(big.subarray(0, 10).equals(await fsp.readFile(made)));
    const h = await fsp.open(made, 'r+');
    try {
      await h.write('HELLO', 0, 'utf8');
      await h.truncate(5);
      await h.sync();
      await h.datasync();
      const back = Buffer.alloc(16);
      const { bytesRead } = await h.read(back, 0, 16, 0);
      assert.equal(back.subarray(0, bytesRead).toString(), 'HELLO');
    } finally {
      await h.close();
    }
    const when = new Date('2021-03-04T05:06:07Z');
    await fsp.utimes(made, when, when);
    assert.equal((await fsp.stat(made)).mtimeMs, when.getTime());
    // O_APPEND writes land at the end.
    await fsp.appendFile(made, '!');
    assert.equal(await fsp.readFile(made, 'utf8'), 'HELLO!');
    // Renaming onto it is not a way in (cp is): EROFS, and the draft stays where it was.
    await fsp.writeFile(m.m('draft.txt'), 'from a draft\n');
    await rejectsCode(fsp.rename(m.m('draft.txt'), made), 'EROFS');
    assert.equal(await fsp.readFile(m.m('draft.txt'), 'utf8'), 'from a draft\n');
    assert.equal(await fsp.readFile(made, 'utf8'), 'HELLO!');
  });

  it('everything else is read-only: EROFS (or EACCES) for every change', async () => {
    const client = conflict(ids.text, 'client');
    const r = await sh('sh', ['-c', `echo y > '${client}'`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Read-only file system|Permission denied/);
    await rejectsCode(fsp.open(client, 'r+'), 'EROFS', 'EACCES');
    await rejectsCode(fsp.open(client, fsc.O_WRONLY | fsc.O_TRUNC), 'EROFS', 'EACCES');
    await rejectsCode(fsp.truncate(client, 0), 'EROFS', 'EACCES');
    await rejectsCode(fsp.open(conflict(ids.text, 'info'), 'w'), 'EROFS', 'EACCES');
    await rejectsCode(fsp.unlink(client), 'EROFS');
    await rejectsCode(fsp.unlink(conflict(ids.links, 'resolved')), 'EROFS');
    await rejectsCode(fsp.mkdir(conflict(ids.text, 'newdir')), 'EROFS');
    await rejectsCode(fsp.mkdir(ctl('conflicts', '12345')), 'EROFS');
    await rejectsCode(fsp.rename(client, conflict(ids.text, 'moved')), 'EROFS');
    await rejectsCode(fsp.rename(conflict(ids.text, 'server'), conflict(ids.text, 'client')), 'EROFS');
    await rejectsCode(fsp.rename(client, m.m('stolen')), 'EROFS');
    await rejectsCode(fsp.rmdir(conflict(ids.tree, 'client', 'sub')), 'EROFS');
    await rejectsCode(fsp.rm(conflict(ids.text), { recursive: true }), 'EROFS');
    await rejectsCode(fsp.chmod(client, 0o666), 'EROFS');
    await rejectsCode(fsp.chmod(conflict(ids.links, 'resolved'), 0o666), 'EROFS');
    await rejectsCode(fsp.chown(client, 1, 1), 'EROFS');
    await rejectsCode(fsp.utimes(client, new Date(), new Date()), 'EROFS');
    await rejectsCode(fsp.symlink('x', conflict(ids.text, 'sym')), 'EROFS');
    await rejectsCode(fsp.link(client, m.m('hard')), 'EROFS');
    await rejectsCode(fsp.link(m.m('hello.txt'), conflict(ids.text, 'hard')), 'EROFS');
    await rejectsCode(fsp.writeFile(conflict(ids.text, 'other'), 'x'), 'EROFS');
    await rejectsCode(fsp.writeFile(path.join(conflict(ids.tree, 'client'), 'a.txt'), 'x'), 'EROFS', 'EACCES');
    await rejectsCode(fsp.writeFile(path.join(conflict(ids.tree, 'client'), 'new.txt'), 'x'), 'EROFS');
    // A conflict without a variants directory has nowhere to put a resolution.
    await rejectsCode(fsp.writeFile(conflict(ids.bare, 'resolved'), 'x'), 'EROFS');
    const mv = await sh('mv', [conflict(ids.text, 'server'), conflict(ids.text, 'x')]);
    assert.notEqual(mv.code, 0);
    assert.match(mv.stderr, /Read-only file system/);
    // Nothing changed underneath.
    assert.equal(await fsp.readFile(path.join(m.cache, 'conflicts', 'text', 'client'), 'utf8'), 'client bytes\n');
    assert.deepEqual((await fsp.readdir(path.join(m.cache, 'conflicts', 'text'))).sort(), ['base', 'client', 'resolved', 'server']);
  });

  it('mirrors the cache\'s lost+found read-only', async () => {
    assert.deepEqual((await fsp.readdir(ctl('lost+found'))).sort(), ['old-tree', 'old.txt']);
    assert.equal(await fsp.readFile(ctl('lost+found', 'old.txt'), 'utf8'), 'discarded\n');
    assert.equal(await fsp.readFile(ctl('lost+found', 'old-tree', 'y.txt'), 'utf8'), 'discarded y\n');
    await rejectsCode(fsp.unlink(ctl('lost+found', 'old.txt')), 'EROFS');
    await rejectsCode(fsp.writeFile(ctl('lost+found', 'new.txt'), 'x'), 'EROFS');
    await rejectsCode(fsp.open(ctl('lost+found', 'old.txt'), 'r+'), 'EROFS', 'EACCES');
    const cp = await sh('cp', ['-r', ctl('lost+found', 'old-tree'), path.join(m.root, 'rescued')]);
    assert.equal(cp.code, 0, cp.stderr);
    assert.equal(await fsp.readFile(path.join(m.root, 'rescued', 'y.txt'), 'utf8'), 'discarded y\n');
  });

  it('modes and owners are right, and inode numbers are apart from the layer\'s', async () => {
    const paths = [ctl(), ctl('conflicts'), conflict(ids.text), conflict(ids.text, 'client'), conflict(ids.links, 'resolved'),
      conflict(ids.text, 'info'), conflict(ids.tree, 'client'), conflict(ids.links, 'client'), ctl('lost+found', 'old.txt'),
      m.m('hello.txt'), m.m('sub')];
    const r = await sh('stat', ['-c', '%a %i %u %F', ...paths]);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trim().split('\n').map((l) => l.split(' '));
    const [perm, ino] = [rows.map((x) => x[0]), rows.map((x) => Number(x[1]))];
    assert.deepEqual(perm, ['500', '500', '700', '444', '600', '400', '555', '777', '444', '644', '755']);
    const cacheOwner = (await fsp.stat(m.cache)).uid;
    for (const row of rows.slice(0, 9)) assert.equal(Number(row[2]), cacheOwner);
    for (const i of ino.slice(0, 9)) assert.ok(i >= 0xc0000000 && i <= 0xffffffff, `control inode ${i}`);
    for (const i of ino.slice(9)) assert.ok(i < 0xc0000000, `layer inode ${i}`);
    assert.equal(new Set(ino).size, ino.length, 'inode numbers are distinct');
    // Stable: the same path gives the same number again.
    assert.equal((await fsp.stat(ctl('conflicts'))).ino, ino[1]);
  });

  it('other users cannot enter it', async () => {
    await fsp.chmod(m.root, 0o755); // mkdtemp makes it 0700; let nobody reach the mount
    const root = await sh('ls', [m.mnt], { uid: 65534, gid: 65534 });
    assert.equal(root.code, 0, root.stderr);
    const r = await sh('ls', [ctl('conflicts')], { uid: 65534, gid: 65534 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Permission denied/);
    const cat = await sh('cat', [conflict(ids.text, 'client')], { uid: 65534, gid: 65534 });
    assert.notEqual(cat.code, 0);
  });

  it('the rest of the mount works as before', async () => {
    assert.equal(await fsp.readFile(m.m('hello.txt'), 'utf8'), 'hello\n');
    const data = randomBytes(200_000);
    await fsp.writeFile(m.m('sub', 'new.bin'), data);
    assert.ok(data.equals(await fsp.readFile(m.m('sub', 'new.bin'))));
    assert.ok(data.equals(await fsp.readFile(m.b('sub', 'new.bin'))));
    // Ordinary fds and control fds open side by side.
    const a = await fsp.open(m.m('hello.txt'), 'r');
    const b = await fsp.open(conflict(ids.text, 'server'), 'r');
    try {
      assert.equal((await a.readFile('utf8')), 'hello\n');
      assert.equal((await b.readFile('utf8')), 'server bytes\n');
    } finally {
      await a.close();
      await b.close();
    }
    const backend = (await fsp.readdir(m.backend)).filter((n) => n !== '.cachefs').sort();
    assert.deepEqual((await fsp.readdir(m.mnt)).sort(), backend);
    const st = await m.status();
    assert.equal(st.journal.pending, 0);
  });

  it('never follows a symlink swapped in under a path the kernel still has cached', async () => {
    const tree = conflict(ids.tree, 'client');
    const real = path.join(m.cache, 'conflicts', 'tree', 'client');
    await fsp.mkdir(path.join(m.cache, 'secret'));
    await fsp.writeFile(path.join(m.cache, 'secret', 'key'), 'not for the mount\n');
    assert.ok((await fsp.stat(tree)).isDirectory()); // the kernel now holds `client` as a directory
    await fsp.rename(real, `${real}.away`);
    try {
      // Relative, so that the kernel following it (once its entry expired) leads nowhere either.
      await fsp.symlink('../../secret', real);
      await rejectsCode(fsp.readFile(path.join(tree, 'key'), 'utf8'), 'ENOENT');
    } finally {
      await fsp.rm(real, { force: true });
      await fsp.rename(`${real}.away`, real);
    }
  });
});
