// The local backend adapter on its own (no FUSE): file handles from name_to_handle_at that
// survive renames, finding an object again after someone renamed it behind our back,
// ESTALE once it is gone, the metadata operations with their errnos, and objects whose path
// below the backend root is longer than PATH_MAX (alone and through a real mount).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { LocalBackend } from '../src/backends/local/local-backend.js';
import { toAttr } from '../src/backends/local/attrs.js';
import { fsTypeOf } from '../src/backends/local/meta.js';
import { Places } from '../src/backends/local/places.js';
import type { Node } from '../src/backends/types.js';
import { mountFresh, sh, tempRoot, type Mounted } from './helpers/cachefs.js';

const creds = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

describe('local backend adapter', () => {
  const root = tempRoot('local');
  let b: LocalBackend;
  before(async () => {
    b = new LocalBackend(root);
    await b.open();
  });
  after(async () => { await b.close(); await rmDeep(root, '.'); rmSync(root, { recursive: true, force: true }); });

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

  it('concurrent reads of a file it has not opened yet share one descriptor (none is left to the garbage collector)', async () => {
    const r = await b.root();
    await fsp.writeFile(path.join(root, 'shared-fd'), Buffer.alloc(8 << 20, 1));
    const f = await b.lookup(r.fh, 'shared-fd');
    const opened = async () => {
      let n = 0;
      for (const fd of readdirSync('/proc/self/fd')) {
        const to = await fsp.readlink(`/proc/self/fd/${fd}`).catch(() => '');
        if (to === path.join(root, 'shared-fd')) n++;
      }
      return n;
    };
    await Promise.all(Array.from({ length: 8 }, (_, i) => b.read(f.fh, i << 20, 1 << 20)));
    assert.equal(await opened(), 1, 'one descriptor for the file'); // before: 8, seven of them unreferenced
    await fsp.rm(path.join(root, 'shared-fd'));
  });

  it('a file removed through it is not held open: its disk space is freed (renamed over too)', async () => {
    const r = await b.root();
    const held = async (name: string) => {
      let n = 0;
      for (const fd of readdirSync('/proc/self/fd')) {
        const to = await fsp.readlink(`/proc/self/fd/${fd}`).catch(() => '');
        if (to === `${path.join(root, name)} (deleted)`) n++;
      }
      return n;
    };
    for (const name of ['gone-big', 'replaced-big']) await fsp.writeFile(path.join(root, name), Buffer.alloc(1 << 20, 7));
    await fsp.writeFile(path.join(root, 'new-big'), 'the new one');
    const gone = await b.lookup(r.fh, 'gone-big');
    const replaced = await b.lookup(r.fh, 'replaced-big');
    await b.read(gone.fh, 0, 4096); // the backend keeps a descriptor for the next read
    await b.read(replaced.fh, 0, 4096);
    await b.unlink(r.fh, 'gone-big');
    await b.rename(r.fh, 'new-big', r.fh, 'replaced-big');
    assert.equal(await held('gone-big'), 0, 'no descriptor of the unlinked file is kept');
    assert.equal(await held('replaced-big'), 0, 'no descriptor of the file renamed over is kept');
    await assert.rejects(b.getattr(gone.fh), (e: NodeJS.ErrnoException) => e.code === 'ESTALE', 'and its handle is stale');
    await fsp.rm(path.join(root, 'replaced-big'));
  });

  it('the attributes a lookup and a listing read (statx) are those lstat(2) gives, for every type of object', async () => {
    const r = await b.root();
    const d = await b.mkdir(r.fh, 'types', 0o755, creds);
    const at = (n: string) => path.join(root, 'types', n);
    await fsp.writeFile(at('file'), 'twelve bytes', { mode: 0o4750 });
    await fsp.chmod(at('file'), 0o4750);
    await fsp.link(at('file'), at('hard'));
    await fsp.utimes(at('file'), new Date(1_000_000_123), new Date(2_000_000_456));
    await fsp.mkdir(at('dir'));
    await fsp.symlink('file', at('link'));
    const { execFileSync } = await import('node:child_process');
    execFileSync('mkfifo', [at('fifo')]);
    const names = ['file', 'hard', 'dir', 'link', 'fifo'];
    if (process.getuid?.() === 0) { execFileSync('mknod', [at('null'), 'c', '1', '3']); names.push('null'); }
    const listed = new Map((await b.readdir(d.fh)).map((e) => [e.name, e.attr]));
    for (const n of names) {
      const want = toAttr(await fsp.lstat(at(n), { bigint: true }));
      assert.deepEqual((await b.lookup(d.fh, n)).attr, want, `lookup of ${n}`);
      assert.deepEqual(listed.get(n), want, `listing of ${n}`);
    }
    await fsp.rm(path.join(root, 'types'), { recursive: true });
  });

  it('sets and reads attributes through the descriptor it keeps, never on a file replaced from outside', async () => {
    const r = await b.root();
    const p = path.join(root, 'kept');
    const opened = async () => {
      let n = 0;
      for (const fd of readdirSync('/proc/self/fd')) if ((await fsp.readlink(`/proc/self/fd/${fd}`).catch(() => '')) === p) n++;
      return n;
    };
    const f = await b.create(r.fh, 'kept', 0o644, creds, { exclusive: true });
    await b.write(f.fh, 0, Buffer.from('made here'));
    assert.equal(await opened(), 1, 'the create\'s descriptor is the one the write used');
    let a = await b.setattr(f.fh, { mode: 0o604, mtime: { kind: 'set', ns: 1_500_000_000_123_456_789n } });
    const st = await fsp.lstat(p, { bigint: true });
    assert.equal(Number(st.mode) & 0o7777, 0o604);
    assert.equal(st.mtimeNs, 1_500_000_000_123_456_789n);
    assert.equal(a.mtimeNs, st.mtimeNs);
    assert.equal(a.ctimeNs, st.ctimeNs);
    a = await b.getattr(f.fh);
    assert.equal(a.size, 9);
    // Someone saves another file over it (an editor's rename): the kept descriptor is of a
    // file with no name left. Nothing of ours may reach the new file, and our handle is stale.
    await fsp.writeFile(path.join(root, 'kept.new'), 'theirs', { mode: 0o640 });
    await fsp.rename(path.join(root, 'kept.new'), p);
    await assert.rejects(b.setattr(f.fh, { mode: 0o600 }), { code: 'ESTALE' });
    await assert.rejects(b.getattr(f.fh), { code: 'ESTALE' });
    assert.equal(Number((await fsp.lstat(p)).mode) & 0o7777, 0o640, 'their file keeps its mode');
    await fsp.rm(p);
  });

  it('a file with another name left keeps its descriptor when one name goes', async () => {
    const r = await b.root();
    await fsp.writeFile(path.join(root, 'two-names'), 'linked');
    await fsp.link(path.join(root, 'two-names'), path.join(root, 'other-name'));
    const f = await b.lookup(r.fh, 'two-names');
    await b.read(f.fh, 0, 10);
    await b.unlink(r.fh, 'two-names');
    assert.equal((await b.read(f.fh, 0, 10)).toString(), 'linked', 'still read through its other name');
    await fsp.rm(path.join(root, 'other-name'));
  });

  it('copies a byte range of a file into another file by a kernel copy, and answers with the file\'s attributes after it', async () => {
    const r = await b.root();
    const data = Buffer.alloc(3 << 20);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
    await fsp.writeFile(path.join(root, 'copied'), data);
    const f = await b.lookup(r.fh, 'copied');
    const dest = path.join(tempRoot('local-copy'), 'dest');
    const h = await fsp.open(dest, 'w+');
    try {
      const attr = await b.copyInto(f.fh, h.fd, 1 << 20, 1 << 20);
      assert.equal(attr.version, f.attr.version, 'the file did not change');
      const tail = await b.copyInto(f.fh, h.fd, 2 << 20, 5 << 20); // past the end: just the rest
      assert.equal(tail.size, data.length);
      const got = await fsp.readFile(dest);
      assert.equal(got.length, data.length);
      assert.ok(got.subarray(1 << 20).equals(data.subarray(1 << 20)), 'the ranges asked for, at their offsets');
      assert.ok(got.subarray(0, 1 << 20).every((x) => x === 0), 'and nothing before');
      // The name now a symlink to a file outside the root: refused, nothing of it copied.
      await fsp.writeFile(path.join(path.dirname(dest), 'outside'), 'secret');
      await fsp.rm(path.join(root, 'copied'));
      await fsp.symlink(path.join(path.dirname(dest), 'outside'), path.join(root, 'copied'));
      await h.truncate(0);
      await assert.rejects(b.copyInto(f.fh, h.fd, 0, 1 << 20), (e: NodeJS.ErrnoException) => ['ESTALE', 'ELOOP', 'EINVAL'].includes(e.code ?? ''));
      assert.equal((await fsp.stat(dest)).size, 0, 'nothing copied');
    } finally {
      await h.close();
      await fsp.rm(path.join(root, 'copied'), { force: true });
      await fsp.rm(path.dirname(dest), { recursive: true, force: true });
    }
  });

  it('knows the file system type of its directory (for the metadata fast path)', () => {
    assert.ok(typeof fsTypeOf(root) === 'string');
  });

  it('reaches objects whose path below the backend root is longer than PATH_MAX', async () => {
    const r = await b.root();
    const top = await b.mkdir(r.fh, 'deep', 0o755, creds);
    const chain: Node[] = [top];
    for (let i = 0; i < DEPTH; i++) chain.push(await b.mkdir(chain[i]!.fh, longName(i), 0o755, creds));
    const d = chain[DEPTH]!;
    assert.ok(path.join(root, 'deep', ...names()).length > 4096, 'the bottom is beyond PATH_MAX from the root');

    const f = await b.create(d.fh, 'file', 0o644, creds, { exclusive: true });
    await b.write(f.fh, 0, Buffer.from('at the bottom'));
    await b.commit(f.fh);
    assert.equal((await b.read(f.fh, 0, 100)).toString(), 'at the bottom');
    const a = await b.setattr(f.fh, { mode: 0o600, mtime: { kind: 'set', ns: 1_500_000_000_123_456_789n } });
    assert.equal(a.mode & 0o7777, 0o600);
    assert.equal(a.mtimeNs, 1_500_000_000_123_456_789n);
    assert.deepEqual((await b.lookup(d.fh, 'file')).fh, f.fh);
    const s = await b.symlink(d.fh, 'ln', 'file', creds);
    assert.equal(await b.readlink(s.fh), 'file');
    assert.equal((await b.link(f.fh, d.fh, 'hard')).nlink, 2);
    assert.deepEqual((await b.readdir(d.fh)).map((e) => e.name).sort(), ['file', 'hard', 'ln']);
    await b.rename(d.fh, 'file', d.fh, 'renamed');
    assert.equal((await b.getattr(f.fh)).size, 13);

    // What the backend holds, reached by relative names only (no path longer than one name).
    const onDisk = await sh('sh', ['-c', `${cdChain(['deep', ...names()])} && cat renamed && echo && ls`], { cwd: root });
    assert.equal(onDisk.code, 0, onDisk.stderr);
    assert.equal(onDisk.stdout, 'at the bottom\nhard\nln\nrenamed\n');

    // Move the bottom directory up and back: its objects stay reachable through their handles.
    await b.rename(chain[DEPTH - 1]!.fh, longName(DEPTH - 1), top.fh, 'up');
    assert.equal((await b.read(f.fh, 0, 100)).toString(), 'at the bottom');
    await b.rename(top.fh, 'up', chain[DEPTH - 1]!.fh, longName(DEPTH - 1));
    assert.equal((await b.getattr(f.fh)).mode & 0o7777, 0o600);

    for (const n of ['renamed', 'hard', 'ln']) await b.unlink(d.fh, n);
    for (let i = DEPTH - 1; i >= 0; i--) await b.rmdir(chain[i]!.fh, longName(i), creds);
    await assert.rejects(b.getattr(f.fh), { code: 'ESTALE' });
    assert.deepEqual(await fsp.readdir(path.join(root, 'deep')), []);
  });

  it('finds a deep directory renamed behind its back, deeper than /proc can name it, and keeps its descriptors bounded', { skip: process.getuid?.() !== 0 ? 'open_by_handle_at needs CAP_DAC_READ_SEARCH' : false }, async () => {
    const fdsBefore = readdirSync('/proc/self/fd').length;
    const r = await b.root();
    const chain: Node[] = [await b.mkdir(r.fh, 'deep2', 0o755, creds)];
    for (let i = 0; i < DEPTH; i++) chain.push(await b.mkdir(chain[i]!.fh, longName(i), 0o755, creds));
    const d = chain[DEPTH]!;
    const f = await b.create(d.fh, 'file', 0o644, creds, { exclusive: true });
    await b.write(f.fh, 0, Buffer.from('still here'));
    // Renamed from outside, by relative names only.
    const mv = await sh('sh', ['-c', `${cdChain(['deep2', ...names().slice(0, DEPTH - 1)])} && mv ${longName(DEPTH - 1)} elsewhere`], { cwd: root });
    assert.equal(mv.code, 0, mv.stderr);
    assert.equal((await b.getattr(d.fh)).type, 'dir');
    assert.deepEqual((await b.readdir(d.fh)).map((e) => e.name), ['file']);
    assert.equal((await b.read(f.fh, 0, 100)).toString(), 'still here');
    // Many directories, more than the adapter keeps open: descriptors stay bounded.
    const wide = await b.mkdir(r.fh, 'wide', 0o755, creds);
    for (let i = 0; i < 200; i++) {
      const sub = await b.mkdir(wide.fh, `w${i}`, 0o755, creds);
      await b.create(sub.fh, 'f', 0o644, creds, { exclusive: true });
    }
    // The files' descriptors (kept for their data since their create) are bounded apart.
    let files = 0;
    for (const fd of readdirSync('/proc/self/fd')) if ((await fsp.readlink(`/proc/self/fd/${fd}`).catch(() => '')).endsWith('/f')) files++;
    assert.ok(files <= 128, `at most 128 files' descriptors kept (${files})`);
    assert.ok(readdirSync('/proc/self/fd').length - files - fdsBefore < 100, 'no descriptor per directory');
    await rmDeep(root, 'deep2');
  });
});

/** 24 levels of 200-byte names: about 4,800 bytes below the backend root. */
const DEPTH = 24;
const longName = (i: number) => `${String(i).padStart(2, '0')}${'n'.repeat(198)}`;
const names = () => Array.from({ length: DEPTH }, (_, i) => longName(i));
/** rm -rf by a tool that walks with relative names (Node's fs.rm joins whole paths). */
async function rmDeep(dir: string, name: string): Promise<void> {
  const r = await sh('rm', ['-rf', '--one-file-system', '--', name === '.' ? dir : path.join(dir, name)]);
  assert.equal(r.code, 0, r.stderr);
}
/** A shell command entering `dirs` one name at a time (cd -P: dash would otherwise chdir to $PWD/name). */
const cdChain = (dirs: string[]) => dirs.map((d) => `cd -P ${d}`).join(' && ');

describe('where the local backend remembers its objects (places.ts)', () => {
  const at = (p: Places, key: string) => p.get(key)?.rel;
  it('a removed name leaves no entry; a rename moves a file alone and a directory with all below it', () => {
    const p = new Places();
    p.set('d', 'a', 1n, true);
    p.set('f', 'a/f', 2n, false);
    p.set('g', 'a/sub/g', 3n, false);
    p.set('x', 'ab', 4n, false); // shares a prefix with "a", not below it
    assert.deepEqual(p.moved('a/f', 'a/f'), { notDir: true, replaced: undefined }, 'a rename onto itself changes nothing');
    assert.equal(at(p, 'f'), 'a/f');
    assert.deepEqual(p.moved('a/f', 'a/f2'), { notDir: true, replaced: undefined });
    assert.equal(at(p, 'f'), 'a/f2');
    assert.deepEqual(p.moved('a', 'b'), { notDir: false, replaced: undefined });
    assert.deepEqual(['d', 'f', 'g', 'x'].map((k) => at(p, k)), ['b', 'b/f2', 'b/sub/g', 'ab']);
    assert.deepEqual(p.moved('ab', 'b/f2'), { notDir: true, replaced: 'f' }, 'renamed over: the old entry goes');
    assert.equal(at(p, 'f'), undefined);
    assert.equal(p.forget('b/sub/g'), 'g');
    assert.equal(p.forget('b/sub/g'), undefined);
    p.set('y', 'b/f2', 5n, false);
    assert.equal(at(p, 'x'), undefined, 'one path has one entry: the object seen there now');
    p.set('y', 'c', 5n, false);
    assert.equal(p.forget('b/f2'), undefined, 'the path an object left is not its any more');
    assert.equal(p.size, 2);
  });

  it('a directory renamed over an empty one takes its place; stale entries below the replaced one go', () => {
    const p = new Places();
    p.set('old', 'to', 1n, true);
    p.set('stale', 'to/s', 2n, false);
    p.set('src', 'from', 3n, true);
    p.set('c', 'from/c', 4n, false);
    assert.deepEqual(p.moved('from', 'to'), { notDir: false, replaced: 'old' });
    assert.deepEqual([at(p, 'src'), at(p, 'c'), at(p, 'stale'), at(p, 'old')], ['to', 'to/c', undefined, undefined]);
  });
});

describe('a mount whose backend paths are longer than PATH_MAX', { skip: process.getuid?.() !== 0 ? 'mounting needs root here' : false }, () => {
  let m: Mounted;
  before(async () => { m = await mountFresh('deep'); });
  after(async () => { await m?.cleanup(); });

  it('makes, writes, reads, renames and removes a file 24 levels of 200-byte names down', async () => {
    const mk = names().map((d) => `mkdir ${d} && cd -P ${d}`).join(' && ');
    const made = await sh('sh', ['-c', `${mk} && printf 'deep data' > f && mv f g && cat g && stat -c %s g`], { cwd: m.mnt });
    assert.equal(made.code, 0, made.stderr);
    assert.equal(made.stdout, 'deep data9\n');
    const onDisk = await sh('sh', ['-c', `${cdChain(names())} && cat g && ls`], { cwd: m.backend });
    assert.equal(onDisk.code, 0, onDisk.stderr);
    assert.equal(onDisk.stdout, 'deep datag\n');

    const up = names().reverse().map((d) => `cd -P .. && rmdir ${d}`).join(' && ');
    const removed = await sh('sh', ['-c', `${cdChain(names())} && rm g && ${up}`], { cwd: m.mnt });
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(await fsp.readdir(m.mnt), []);
    assert.deepEqual(await fsp.readdir(m.backend), []);
  });
});
