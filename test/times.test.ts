// Times to the nanosecond: cp -a, tar x and touch -m -d through the mount keep what the
// backend (ext4/tmpfs: nanoseconds) can hold. These were defects of fuse-native and libfuse2
// (atime passed as mtime, millisecond rounding, a setattr of only one of atime/mtime
// dropped); the session now hands SETATTR's times on as the kernel sends them.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { mountFresh, sh, type Mounted, BACKEND_KINDS, skipKind } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';


async function times(p: string) {
  const st = await fsp.lstat(p, { bigint: true });
  return { atime: st.atimeNs, mtime: st.mtimeNs };
}

for (const kind of BACKEND_KINDS) describe(`times (${kind} backend)`, { skip: skipKind(kind) }, () => {
  let srv: NfsServer | undefined;
  let m: Mounted;
  let src: string;
  before(async () => {
    srv = kind === 'nfs' ? await startNfsServer('times') : undefined;
    m = await mountFresh('times', { nfs: srv });
    src = path.join(m.root, 'src');
    await fsp.mkdir(path.join(src, 'sub'), { recursive: true });
    await fsp.writeFile(path.join(src, 'a.txt'), 'a');
    await fsp.writeFile(path.join(src, 'sub', 'b.txt'), 'b');
    await fsp.symlink('a.txt', path.join(src, 'link'));
    // Distinct, odd nanoseconds for atime and mtime of every entry.
    let i = 0;
    for (const rel of ['a.txt', 'sub/b.txt', 'sub', '.']) {
      i++;
      const t = `2019-0${i}-1${i} 10:1${i}:2${i}.${String(123456789 + i * 1111).padStart(9, '0')}`;
      const ta = `2020-0${i}-0${i} 01:0${i}:0${i}.${String(987654321 - i * 1111).padStart(9, '0')}`;
      const f = path.join(src, rel);
      assert.equal((await sh('touch', ['-m', '-d', t, f])).code, 0);
      assert.equal((await sh('touch', ['-a', '-d', ta, f])).code, 0);
    }
    assert.equal((await sh('touch', ['-h', '-m', '-d', '2018-05-05 05:05:05.555555555', path.join(src, 'link')])).code, 0);
  });
  after(async () => { await m?.cleanup(); await srv?.dispose(); });

  it('touch -m -d sets only mtime, to the nanosecond', async () => {
    const f = m.m('touched.txt');
    await fsp.writeFile(f, 'x');
    const before = await times(f);
    const r = await sh('touch', ['-m', '-d', '2001-02-03 04:05:06.123456789 UTC', f]);
    assert.equal(r.code, 0, r.stderr);
    const t = await times(f);
    assert.equal(t.mtime, 981173106123456789n);
    assert.equal(t.atime, before.atime, 'atime left alone');
    assert.equal((await times(m.b('touched.txt'))).mtime, 981173106123456789n);
    const r2 = await sh('touch', ['-a', '-d', '2002-02-03 04:05:06.987654321 UTC', f]);
    assert.equal(r2.code, 0, r2.stderr);
    const t2 = await times(f);
    assert.equal(t2.atime, 1012709106987654321n);
    assert.equal(t2.mtime, 981173106123456789n, 'mtime left alone');
  });

  it('cp -a preserves mtimes and atimes to the nanosecond', async () => {
    // Snapshot first: reading the sources moves their atimes (relatime), cp keeps the old ones.
    const wanted = new Map<string, { atime: bigint; mtime: bigint }>();
    for (const rel of ['a.txt', 'sub/b.txt', 'sub']) wanted.set(rel, await times(path.join(src, rel)));
    const r = await sh('cp', ['-a', src, m.m('copied')]);
    assert.equal(r.code, 0, r.stderr);
    for (const rel of ['a.txt', 'sub/b.txt', 'sub']) {
      const want = wanted.get(rel)!;
      const got = await times(m.m('copied', rel));
      assert.equal(got.mtime, want.mtime, `mtime of ${rel}`);
      // A directory's atime moves whenever anyone lists it (the backend watcher does), so
      // atimes are compared for files only.
      if (rel !== 'sub') assert.equal(got.atime, want.atime, `atime of ${rel}`);
      assert.equal((await times(m.b('copied', rel))).mtime, want.mtime, `backend mtime of ${rel}`);
    }
    // nfs-ganesha's FSAL_VFS answers NFS3_OK to a SETATTR of a symlink's times but leaves
    // them unchanged (checked with the adapter alone), so only the local backend keeps them.
    if (kind === 'local') assert.equal((await times(m.m('copied', 'link'))).mtime, (await times(path.join(src, 'link'))).mtime, 'symlink mtime');
  });

  it('tar x preserves mtimes to the nanosecond (posix format)', async () => {
    const tarball = path.join(m.root, 't.tar');
    let r = await sh('tar', ['--format=posix', '-C', src, '-cf', tarball, '.']);
    assert.equal(r.code, 0, r.stderr);
    await fsp.mkdir(m.m('untarred'));
    r = await sh('tar', ['-C', m.m('untarred'), '-xf', tarball]);
    assert.equal(r.code, 0, r.stderr);
    for (const rel of ['a.txt', 'sub/b.txt', 'sub']) {
      const want = await times(path.join(src, rel));
      assert.equal((await times(m.m('untarred', rel))).mtime, want.mtime, `mtime of ${rel}`);
      assert.equal((await times(m.b('untarred', rel))).mtime, want.mtime, `backend mtime of ${rel}`);
    }
  });

  it('utimensat with UTIME_NOW sets the current time', async () => {
    const f = m.m('now.txt');
    await fsp.writeFile(f, 'x');
    await sh('touch', ['-d', '2000-01-01', f]);
    const before = Date.now();
    const r = await sh('touch', ['-m', f]);
    assert.equal(r.code, 0);
    const t = await times(f);
    assert.ok(Number(t.mtime / 1_000_000n) >= before - 2000, 'mtime is now');
    assert.ok(t.atime < 1_000_000_000_000_000_000n, 'atime untouched (2000-01-01)');
  });
});
