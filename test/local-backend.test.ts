// The local backend adapter on its own (no FUSE): file handles from name_to_handle_at that
// survive renames, finding an object again after someone renamed it behind our back,
// ESTALE once it is gone, and the metadata operations with their errnos.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, rmSync } from 'node:fs';
import path from 'node:path';
import { LocalBackend } from '../src/backends/local/local-backend.js';
import { fsTypeOf } from '../src/backends/local/meta.js';
import { tempRoot } from './helpers/cachefs.js';

const creds = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

describe('local backend adapter', () => {
  const root = tempRoot('local');
  let b: LocalBackend;
  before(async () => {
    b = new LocalBackend(root);
    await b.open();
  });
  after(async () => { await b.close(); rmSync(root, { recursive: true, force: true }); });

  it('names the file system and the exported root in its fsid', async () => {
    assert.match(b.fsid, new RegExp(`^local:${root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}#[0-9a-f]+$`));
    const again = new LocalBackend(root);
    await again.open();
    assert.equal(again.fsid, b.fsid, 'stable across opens');
    await again.close();
  });

  it('a file handle still finds its file in a new process after the kernel forgot its name (a reboot, drop_caches)', { skip: process.getuid?.() !== 0 ? 'drop_caches needs root' : false }, async () => {
    const r = await b.root();
    await fsp.mkdir(path.join(root, 'cold'), { recursive: true });
    await fsp.writeFile(path.join(root, 'cold', 'file.txt'), 'found by inode');
    const dir = await b.lookup(r.fh, 'cold');
    const f = await b.lookup(dir.fh, 'file.txt');
    // Renamed behind the backend's back, then the dentries dropped: the handle opens, but
    // /proc/self/fd names it "/" (a disconnected dentry).
    await fsp.mkdir(path.join(root, 'cold', 'moved'));
    await fsp.rename(path.join(root, 'cold', 'file.txt'), path.join(root, 'cold', 'moved', 'file.txt'));
    const fresh = new LocalBackend(root);
    await fresh.open();
    try {
      await fsp.writeFile('/proc/sys/vm/drop_caches', '2');
      const a = await fresh.getattr(f.fh);
      assert.equal(a.size, 'found by inode'.length);
      assert.equal((await fresh.read(f.fh, 0, 100)).toString(), 'found by inode');
    } finally {
      await fresh.close();
    }
  });

  it('a handle is the kernel\'s, stays the same across a rename, and differs per object', async () => {
    const r = await b.root();
    const f = await b.create(r.fh, 'a', 0o644, creds, { exclusive: true });
    const g = await b.create(r.fh, 'b', 0o644, creds, { exclusive: true });
    assert.notDeepEqual(f.fh, g.fh);
    if (f.fh[0] === 0x48) assert.ok(f.fh.length > 5, 'kernel handle (H + type + bytes)');
    await b.rename(r.fh, 'a', r.fh, 'renamed');
    const again = await b.lookup(r.fh, 'renamed');
    assert.deepEqual(again.fh, f.fh);
    const viaLink = (await b.link(f.fh, r.fh, 'hard'), await b.lookup(r.fh, 'hard'));
    assert.deepEqual(viaLink.fh, f.fh, 'hard links share the handle');
    assert.equal(viaLink.attr.nlink, 2);
  });

  it('finds an object renamed behind its back, and answers ESTALE once it is gone', async () => {
    const r = await b.root();
    await fsp.mkdir(path.join(root, 'sub'));
    const n = await b.create(r.fh, 'moving', 0o644, creds, { exclusive: true });
    await b.write(n.fh, 0, Buffer.from('payload'));
    await fsp.rename(path.join(root, 'moving'), path.join(root, 'sub', 'moved'));
    if (process.getuid?.() === 0) {
      // open_by_handle_at needs CAP_DAC_READ_SEARCH.
      const attr = await b.getattr(n.fh);
      assert.equal(attr.size, 7);
      assert.equal((await b.read(n.fh, 0, 100)).toString(), 'payload');
    }
    await fsp.rm(path.join(root, 'sub', 'moved'));
    await assert.rejects(b.getattr(n.fh), { code: 'ESTALE' });
  });

  it('metadata operations and their errnos', async () => {
    const r = await b.root();
    const d = await b.mkdir(r.fh, 'dir', 0o750, creds);
    assert.equal(d.attr.type, 'dir');
    assert.equal(d.attr.mode & 0o7777, 0o750);
    await assert.rejects(b.mkdir(r.fh, 'dir', 0o755, creds), { code: 'EEXIST' });
    await assert.rejects(b.lookup(r.fh, 'nope'), { code: 'ENOENT' });
    await assert.rejects(b.lookup(r.fh, '../escape'), { code: 'EINVAL' });
    const s = await b.symlink(d.fh, 'ln', '../target', creds);
    assert.equal(s.attr.type, 'symlink');
    assert.equal(await b.readlink(s.fh), '../target');
    const f = await b.create(d.fh, 'f', 0o600, creds, { exclusive: true });
    await b.write(f.fh, 0, Buffer.from('hello world'));
    await b.commit(f.fh);
    let a = await b.setattr(f.fh, { size: 5, mode: 0o640, mtime: { kind: 'set', ns: 1_234_567_890_123_456_789n } });
    assert.equal(a.size, 5);
    assert.equal(a.mode & 0o7777, 0o640);
    assert.equal(a.mtimeNs, 1_234_567_890_123_456_789n);
    a = await b.setattr(f.fh, { atime: { kind: 'set', ns: 1_000_000_000_000_000_001n } });
    assert.equal(a.mtimeNs, 1_234_567_890_123_456_789n, 'mtime untouched when only atime is set');
    assert.equal(a.atimeNs, 1_000_000_000_000_000_001n);
    assert.equal((await b.read(f.fh, 0, 100)).toString(), 'hello');
    await assert.rejects(b.rmdir(r.fh, 'dir'), { code: 'ENOTEMPTY' });
    const names = (await b.readdir(d.fh)).map((e) => e.name).sort();
    assert.deepEqual(names, ['f', 'ln']);
    await b.unlink(d.fh, 'f');
    await b.unlink(d.fh, 'ln');
    await b.rmdir(r.fh, 'dir');
    await assert.rejects(b.unlink(r.fh, 'dir'), { code: 'ENOENT' });
    const st = await b.statfs();
    assert.ok(st.blocks > 0 && st.bsize > 0);
  });

  it('knows the file system type of its directory (for the metadata fast path)', () => {
    assert.ok(typeof fsTypeOf(root) === 'string');
  });
});
