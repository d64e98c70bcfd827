// One conformance suite for every backend adapter: the local one over a temporary directory
// and the NFSv3 one over a real nfs-ganesha on 127.0.0.1 exporting a temporary directory.
// Both must behave the same to the cache above: handles that survive renames, ESTALE once
// an object is gone, POSIX errnos, exact nanosecond times, versions that move on every
// change, complete directory listings, and changes made directly in the directory seen.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, rmSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { LocalBackend } from '../src/backends/local/local-backend.js';
import { NfsBackend } from '../src/backends/nfs/nfs-backend.js';
import { parseNfsUrl } from '../src/core/nfs-url.js';
import type { Backend, Node } from '../src/backends/types.js';
import { tempRoot } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';

const creds = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
const isRoot = process.getuid?.() === 0;

interface Subject {
  /** The directory the backend exports (for changes "from outside"). */
  dir: string;
  open(): Promise<Backend>;
  stop(): Promise<void>;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try { await p; } catch (e) { return (e as { code?: string }).code ?? String(e); }
  return 'no error';
}

const subjects: Record<string, () => Promise<Subject>> = {
  local: async () => {
    const dir = tempRoot('conf-local');
    return {
      dir,
      open: async () => { const b = new LocalBackend(dir); await b.open(); return b; },
      stop: async () => { rmSync(dir, { recursive: true, force: true }); },
    };
  },
  nfs: async () => {
    const srv: NfsServer = await startNfsServer('conformance');
    return {
      dir: srv.exportDir,
      open: async () => { const b = new NfsBackend(parseNfsUrl(srv.url), { deadlineMs: 5000 }); await b.open(); return b; },
      stop: () => srv.dispose(),
    };
  },
};

for (const [kind, make] of Object.entries(subjects)) {
  describe(`backend conformance: ${kind}`, { skip: kind === 'nfs' && !isRoot ? 'the NFS server needs root' : false }, () => {
    let s: Subject;
    let b: Backend;
    let root: Node;
    let n = 0;
    /** A fresh directory for one test, so tests never see each other's names. */
    const fresh = async (): Promise<{ d: Node; rel: string }> => {
      const name = `t${++n}`;
      return { d: await b.mkdir(root.fh, name, 0o755, creds), rel: name };
    };

    before(async () => {
      s = await make();
      b = await s.open();
      root = await b.root();
    });
    after(async () => {
      await b?.close();
      await s?.stop();
    });

    it('has a root directory and an fsid that is stable across opens', async () => {
      assert.equal(root.attr.type, 'dir');
      assert.ok(b.fsid.length > 0);
      const again = await s.open();
      try {
        assert.equal(again.fsid, b.fsid);
        assert.deepEqual((await again.root()).fh, root.fh, 'the root handle is the same');
      } finally { await again.close(); }
    });

    it('creates, writes, commits and reads back; holes read as zeros; short reads at the end', async () => {
      const { d, rel } = await fresh();
      const f = await b.create(d.fh, 'data.bin', 0o640, creds, { exclusive: true });
      assert.equal(f.attr.type, 'file');
      assert.equal(f.attr.mode & 0o7777, 0o640);
      assert.equal(f.attr.size, 0);
      const big = randomBytes(3 * 1024 * 1024 + 17);
      await b.write(f.fh, 0, big.subarray(0, 1024 * 1024));
      await b.write(f.fh, 1024 * 1024, big.subarray(1024 * 1024));
      await b.write(f.fh, big.length + 4096, Buffer.from('tail'));
      await b.commit(f.fh);
      const all = await b.read(f.fh, 0, big.length + 8192);
      assert.equal(all.length, big.length + 4096 + 4, 'short read at end of file');
      assert.ok(all.subarray(0, big.length).equals(big));
      assert.ok(all.subarray(big.length, big.length + 4096).equals(Buffer.alloc(4096)), 'hole is zeros');
      assert.equal(all.subarray(big.length + 4096).toString(), 'tail');
      assert.equal((await b.read(f.fh, big.length + 10_000, 100)).length, 0, 'read past the end is empty');
      assert.ok((await fsp.readFile(path.join(s.dir, rel, 'data.bin'))).subarray(0, big.length).equals(big), 'on the backend');
      assert.equal((await b.getattr(f.fh)).size, big.length + 4096 + 4);
    });

    it('exclusive create of an existing name is EEXIST; lookup errors are ENOENT and ENOTDIR', async () => {
      const { d } = await fresh();
      const f = await b.create(d.fh, 'x', 0o644, creds, { exclusive: true });
      assert.equal(await codeOf(b.create(d.fh, 'x', 0o644, creds, { exclusive: true })), 'EEXIST');
      const again = await b.create(d.fh, 'x', 0o644, creds, { exclusive: false });
      assert.deepEqual(again.fh, f.fh, 'a non-exclusive create opens the same file');
      assert.equal(await codeOf(b.lookup(d.fh, 'missing')), 'ENOENT');
      assert.equal(await codeOf(b.lookup(f.fh, 'below-a-file')), 'ENOTDIR');
      assert.equal(await codeOf(b.mkdir(d.fh, 'x', 0o755, creds)), 'EEXIST');
    });

    it('directories: mkdir, rmdir, ENOTEMPTY, ENOTDIR, EISDIR-like refusals', async () => {
      const { d } = await fresh();
      const sub = await b.mkdir(d.fh, 'sub', 0o750, creds);
      assert.equal(sub.attr.type, 'dir');
      assert.equal(sub.attr.mode & 0o7777, 0o750);
      await b.create(sub.fh, 'inside', 0o644, creds, { exclusive: true });
      assert.equal(await codeOf(b.rmdir(d.fh, 'sub')), 'ENOTEMPTY');
      const file = await b.create(d.fh, 'file', 0o644, creds, { exclusive: true });
      assert.equal(await codeOf(b.rmdir(d.fh, 'file')), 'ENOTDIR');
      assert.ok(['EISDIR', 'EPERM'].includes(await codeOf(b.unlink(d.fh, 'sub'))), 'unlink of a directory is refused');
      await b.unlink(sub.fh, 'inside');
      await b.rmdir(d.fh, 'sub');
      assert.equal(await codeOf(b.lookup(d.fh, 'sub')), 'ENOENT');
      assert.equal(await codeOf(b.getattr(sub.fh)), 'ESTALE', 'a removed directory is stale');
      assert.equal((await b.getattr(file.fh)).type, 'file');
    });

    it('symlinks and readlink; readlink of a file is EINVAL', async () => {
      const { d } = await fresh();
      const l = await b.symlink(d.fh, 'ln', '../some/where with spaces', creds);
      assert.equal(l.attr.type, 'symlink');
      assert.equal(await b.readlink(l.fh), '../some/where with spaces');
      const f = await b.create(d.fh, 'f', 0o644, creds, { exclusive: true });
      assert.equal(await codeOf(b.readlink(f.fh)), 'EINVAL');
    });

    it('hard links share the handle and count links', async () => {
      const { d } = await fresh();
      const f = await b.create(d.fh, 'one', 0o644, creds, { exclusive: true });
      const attr = await b.link(f.fh, d.fh, 'two');
      assert.equal(attr.nlink, 2);
      assert.deepEqual((await b.lookup(d.fh, 'two')).fh, f.fh);
      assert.equal(await codeOf(b.link(f.fh, d.fh, 'two')), 'EEXIST');
      await b.unlink(d.fh, 'one');
      assert.equal((await b.getattr(f.fh)).nlink, 1);
    });

    it('handles survive renames within and across directories; rename replaces files; ESTALE after removal', async () => {
      const { d } = await fresh();
      const a = await b.mkdir(d.fh, 'a', 0o755, creds);
      const c = await b.mkdir(d.fh, 'c', 0o755, creds);
      const f = await b.create(a.fh, 'f', 0o644, creds, { exclusive: true });
      await b.write(f.fh, 0, Buffer.from('payload'));
      await b.commit(f.fh);
      await b.rename(a.fh, 'f', c.fh, 'g');
      assert.deepEqual((await b.lookup(c.fh, 'g')).fh, f.fh);
      assert.equal((await b.read(f.fh, 0, 100)).toString(), 'payload', 'the old handle still reads');
      const victim = await b.create(c.fh, 'victim', 0o644, creds, { exclusive: true });
      await b.rename(c.fh, 'g', c.fh, 'victim');
      assert.deepEqual((await b.lookup(c.fh, 'victim')).fh, f.fh);
      assert.equal(await codeOf(b.getattr(victim.fh)), 'ESTALE', 'the replaced file is gone');
      const full = await b.mkdir(d.fh, 'full', 0o755, creds);
      await b.create(full.fh, 'x', 0o644, creds, { exclusive: true });
      assert.ok(['ENOTEMPTY', 'EEXIST'].includes(await codeOf(b.rename(d.fh, 'a', d.fh, 'full'))));
      assert.equal(await codeOf(b.rename(d.fh, 'nothing', d.fh, 'x')), 'ENOENT');
      await b.unlink(c.fh, 'victim');
      assert.equal(await codeOf(b.getattr(f.fh)), 'ESTALE');
      assert.equal(await codeOf(b.read(f.fh, 0, 10)), 'ESTALE');
    });

    it('setattr: mode, owner, size, exact nanosecond times, server time; guarded by ctime', async () => {
      const { d } = await fresh();
      const f = await b.create(d.fh, 'f', 0o644, creds, { exclusive: true });
      await b.write(f.fh, 0, Buffer.alloc(10_000, 1));
      let a = await b.setattr(f.fh, { mode: 0o600 });
      assert.equal(a.mode & 0o7777, 0o600);
      a = await b.setattr(f.fh, { size: 100 });
      assert.equal(a.size, 100);
      assert.equal((await b.read(f.fh, 0, 20_000)).length, 100);
      a = await b.setattr(f.fh, { size: 5000 });
      assert.ok((await b.read(f.fh, 100, 4900)).equals(Buffer.alloc(4900)), 'extending fills with zeros');
      const t = 1_700_000_000_123_456_789n;
      a = await b.setattr(f.fh, { mtime: { kind: 'set', ns: t }, atime: { kind: 'set', ns: t - 5n } });
      assert.equal(a.mtimeNs, t);
      assert.equal(a.atimeNs, t - 5n);
      const st = await fsp.stat(path.join(s.dir, `t${n}`, 'f'), { bigint: true });
      assert.equal(st.mtimeNs, t, 'the backend directory has the exact time');
      const before = BigInt(Date.now() - 5000) * 1_000_000n;
      a = await b.setattr(f.fh, { mtime: { kind: 'now' } });
      assert.ok(a.mtimeNs > before, 'server time is now');
      if (isRoot) {
        a = await b.setattr(f.fh, { uid: 4321, gid: 4322 });
        assert.equal(a.uid, 4321);
        assert.equal(a.gid, 4322);
      }
      // guarded: succeeds with the current ctime, refused with an old one
      const cur = await b.getattr(f.fh);
      a = await b.setattr(f.fh, { mode: 0o640, guardCtimeNs: cur.ctimeNs });
      assert.equal(a.mode & 0o7777, 0o640);
      assert.equal(await codeOf(b.setattr(f.fh, { mode: 0o600, guardCtimeNs: cur.ctimeNs })), 'EAGAIN');
      assert.equal((await b.getattr(f.fh)).mode & 0o7777, 0o640, 'the refused change did not happen');
    });

    it('versions move on every change and stay put otherwise', async () => {
      const { d } = await fresh();
      const f = await b.create(d.fh, 'f', 0o644, creds, { exclusive: true });
      const v0 = (await b.getattr(f.fh)).version;
      assert.equal((await b.getattr(f.fh)).version, v0, 'stable');
      await new Promise((r) => setTimeout(r, 5));
      await b.write(f.fh, 0, Buffer.from('x'));
      await b.commit(f.fh);
      const v1 = (await b.getattr(f.fh)).version;
      assert.notEqual(v1, v0, 'a write moves it');
      await new Promise((r) => setTimeout(r, 5));
      await b.setattr(f.fh, { mode: 0o600 });
      const v2 = (await b.getattr(f.fh)).version;
      assert.notEqual(v2, v1, 'a chmod moves it');
      const dv = (await b.getattr(d.fh)).version;
      await new Promise((r) => setTimeout(r, 5));
      await b.create(d.fh, 'g', 0o644, creds, { exclusive: true });
      assert.notEqual((await b.getattr(d.fh)).version, dv, 'a new entry moves the directory');
    });

    it('readdir lists every entry once, with the handles and attributes lookup gives', async () => {
      const { d } = await fresh();
      const names = new Set<string>();
      // long names fill READDIRPLUS pages quickly: many pages
      for (let i = 0; i < 1200; i++) names.add(`entry-${String(i).padStart(5, '0')}-${'x'.repeat(100)}`);
      await Promise.all([...names].map((nm, i) => (i % 3 === 0 ? b.mkdir(d.fh, nm, 0o755, creds) : b.create(d.fh, nm, 0o644, creds, { exclusive: true }))));
      const list = await b.readdir(d.fh);
      assert.equal(list.length, names.size, 'no entry missing or duplicated');
      assert.deepEqual(new Set(list.map((e) => e.name)), names);
      assert.ok(!list.some((e) => e.name === '.' || e.name === '..'));
      for (const e of list.slice(0, 50)) {
        const l = await b.lookup(d.fh, e.name);
        assert.deepEqual(e.fh, l.fh);
        assert.equal(e.attr.type, l.attr.type);
      }
    });

    it('odd names: unicode, spaces, 255 bytes; 256 bytes is ENAMETOOLONG', async () => {
      const { d } = await fresh();
      for (const nm of ['héllo wörld', 'tab\tand newline\n', '日本語のファイル', 'x'.repeat(255)]) {
        const f = await b.create(d.fh, nm, 0o644, creds, { exclusive: true });
        assert.deepEqual((await b.lookup(d.fh, nm)).fh, f.fh, nm);
      }
      assert.equal(await codeOf(b.create(d.fh, 'y'.repeat(256), 0o644, creds, { exclusive: true })), 'ENAMETOOLONG');
    });

    it('special files: a fifo through mknod', async () => {
      const { d } = await fresh();
      const p = await b.mknod(d.fh, 'pipe', 0o010640, 0, creds);
      assert.equal(p.attr.type, 'fifo');
      assert.equal(p.attr.mode & 0o7777, 0o640);
      assert.ok((await fsp.stat(path.join(s.dir, `t${n}`, 'pipe'))).isFIFO());
    });

    it('sees changes made directly in the exported directory', async () => {
      const { d, rel } = await fresh();
      const f = await b.create(d.fh, 'f', 0o644, creds, { exclusive: true });
      await fsp.writeFile(path.join(s.dir, rel, 'f'), 'changed outside');
      assert.equal((await b.getattr(f.fh)).size, 15);
      assert.equal((await b.read(f.fh, 0, 100)).toString(), 'changed outside');
      await fsp.writeFile(path.join(s.dir, rel, 'new'), 'n');
      assert.equal((await b.lookup(d.fh, 'new')).attr.size, 1);
      assert.ok((await b.readdir(d.fh)).some((e) => e.name === 'new'));
      await fsp.rm(path.join(s.dir, rel, 'f'));
      assert.equal(await codeOf(b.getattr(f.fh)), 'ESTALE');
    });

    it('a change made for another user is checked as that user (EACCES / EPERM), root may do all', { skip: !isRoot && 'needs root to own files as others' }, async () => {
      const { d, rel } = await fresh();
      const user = { uid: 4301, gid: 4301 };
      const other = { uid: 4302, gid: 4302, groups: [4303] };
      const f = await b.create(d.fh, 'f', 0o644, creds, { exclusive: true });
      await b.setattr(f.fh, { uid: user.uid, gid: user.gid });
      await b.setattr(d.fh, { mode: 0o755 });
      // the owner, and root, may; the other user may not
      await b.write(f.fh, 0, Buffer.from('by owner'), user);
      assert.equal(await codeOf(b.write(f.fh, 0, Buffer.from('by other'), other)), 'EACCES', 'write to a 0644 file of another');
      assert.equal(await codeOf(b.setattr(f.fh, { size: 0 }, other)), 'EACCES', 'truncate');
      assert.equal(await codeOf(b.setattr(f.fh, { mode: 0o666 }, other)), 'EPERM', 'chmod of another user\'s file');
      assert.equal(await codeOf(b.setattr(f.fh, { mtime: { kind: 'set', ns: 1_000_000_000n } }, other)), 'EPERM', 'an explicit time');
      assert.equal(await codeOf(b.setattr(f.fh, { uid: other.uid }, user)), 'EPERM', 'giving a file away');
      assert.equal(await codeOf(b.unlink(d.fh, 'f', other)), 'EACCES', 'unlink in a 0755 directory of root');
      assert.equal(await codeOf(b.rename(d.fh, 'f', d.fh, 'g', other)), 'EACCES', 'rename there');
      assert.equal(await codeOf(b.link(f.fh, d.fh, 'h', other)), 'EACCES', 'link there');
      assert.equal(await codeOf(b.create(d.fh, 'mine', 0o644, other, { exclusive: true })), 'EACCES', 'create there');
      // a group the user is in through its supplementary groups gives access
      await b.setattr(f.fh, { gid: 4303, mode: 0o664 });
      await b.write(f.fh, 0, Buffer.from('by group'), other);
      await b.setattr(d.fh, { mode: 0o1777 }); // sticky, like /tmp
      assert.equal(await codeOf(b.unlink(d.fh, 'f', other)), 'EPERM', 'the sticky bit keeps another user\'s file');
      await b.setattr(f.fh, { mode: 0o666, mtime: { kind: 'set', ns: 2_000_000_000n } }, user);
      await b.rename(d.fh, 'f', d.fh, 'g', user);
      await b.unlink(d.fh, 'g', { uid: 0, gid: 0 });
      assert.deepEqual(await fsp.readdir(path.join(s.dir, rel)), []);
    });

    it('statfs reports a plausible file system', async () => {
      const st = await b.statfs();
      assert.ok(st.blocks > 0 && st.bfree <= st.blocks && st.bavail <= st.bfree);
      assert.ok(st.bsize >= 512);
      assert.ok(st.namemax >= 255);
    });
  });
}

// What only the NFS adapter has: the protocol's own features and limits.
describe('NFS adapter specifics', { skip: !isRoot ? 'the NFS server needs root' : false }, () => {
  let srv: NfsServer;
  let b: NfsBackend;
  let root: Node;
  before(async () => {
    srv = await startNfsServer('nfs-specifics');
    b = new NfsBackend(parseNfsUrl(srv.url), { deadlineMs: 5000 });
    await b.open();
    root = await b.root();
  });
  after(async () => { await b?.close(); await srv?.dispose(); });

  it('learns the transfer sizes (FSINFO) and limits (PATHCONF), capped at 1 MiB per call', () => {
    const l = b.limits;
    assert.ok(l.info && l.info.rtmax >= l.rsize);
    assert.equal(l.rsize, 1024 * 1024, 'ganesha offers 64 MiB; we send at most 1 MiB');
    assert.equal(l.wsize, 1024 * 1024);
    assert.ok(l.pathconf && l.pathconf.nameMax >= 255);
    const info = b.info();
    assert.equal(info.protocol, 'NFSv3/TCP');
    assert.ok((info.rpc as { calls: number }).calls > 0);
  });

  it('CREATE EXCLUSIVE with a verifier: the mode is set after it, another verifier is EEXIST', async () => {
    const first = await b.createExclusive(root.fh, 'excl', Buffer.from('0123abcd'), 0o640, creds);
    assert.equal(first.attr.type, 'file');
    assert.equal(first.attr.mode & 0o7777, 0o640, 'the mode is set after the create');
    assert.ok(first.attr.mtimeNs > BigInt(Date.now() - 60_000) * 1_000_000n, 'the verifier left the times');
    const second = await b.createExclusive(root.fh, 'excl2', Buffer.from('zzzzzzzz'), 0o600, creds);
    assert.notDeepEqual(second.fh, first.fh);
    assert.equal(await codeOf(b.createExclusive(root.fh, 'excl', Buffer.from('otherone'), 0o644, creds)), 'EEXIST');
    assert.equal(await codeOf(b.createExclusive(root.fh, 'excl', Buffer.from('short'), 0o644, creds)), 'EINVAL');
  });

  it('ACCESS tells what the caller may do', async () => {
    const f = await b.create(root.fh, 'acc', 0o600, { uid: 0, gid: 0 }, { exclusive: true });
    const READ = 0x1;
    const MODIFY = 0x4;
    assert.equal((await b.access(f.fh, READ | MODIFY)) & (READ | MODIFY), READ | MODIFY, 'root may');
    const nobody = await b.access(f.fh, READ | MODIFY, { uid: 65534, gid: 65534 });
    assert.equal(nobody & (READ | MODIFY), 0, 'nobody may not read a 0600 file of root');
  });

  it('mounts a directory inside an export (MNT the export, LOOKUP the rest)', async () => {
    await fsp.mkdir(path.join(srv.exportDir, 'deep', 'er'), { recursive: true });
    await fsp.writeFile(path.join(srv.exportDir, 'deep', 'er', 'f'), 'inside');
    const u = new URL(srv.url);
    u.pathname = '/export/deep/er';
    const sub = new NfsBackend(parseNfsUrl(u.toString()), { deadlineMs: 5000 });
    try {
      await sub.open();
      const r = await sub.root();
      const f = await sub.lookup(r.fh, 'f');
      assert.equal((await sub.read(f.fh, 0, 100)).toString(), 'inside');
      assert.equal(sub.fsid, b.fsid, 'same export, same fsid: handles are of one namespace');
    } finally { await sub.close(); }
  });

  it('a subdirectory that is not there, or an export that is not exported, is a clear error', async () => {
    const u = new URL(srv.url);
    u.pathname = '/export/not/here';
    const sub = new NfsBackend(parseNfsUrl(u.toString()), { deadlineMs: 5000 });
    await assert.rejects(sub.open(), /no directory "not" inside the export \/export/);
    await sub.close();
    u.pathname = '/elsewhere';
    const other = new NfsBackend(parseNfsUrl(u.toString()), { deadlineMs: 5000 });
    await assert.rejects(other.open(), /MNT3ERR_ACCES.*the server exports: \/export/);
    await other.close();
  });

  it('a write answered while a COMMIT is on its way stays uncommitted, and survives a server restart', async () => {
    const f = await b.create(root.fh, 'race.bin', 0o644, creds, { exclusive: true });
    await b.write(f.fh, 0, Buffer.alloc(4096, 1));
    const committing = b.commit(f.fh);
    await b.write(f.fh, 4096, Buffer.alloc(4096, 2)); // sent after the COMMIT
    await committing;
    assert.equal(b.info().uncommittedBytes, 4096, 'the later write is still uncommitted');
    const before = b.stats.rewrites;
    // ganesha's write verifier is its start time in seconds: restart in a later second.
    await new Promise((r) => setTimeout(r, 1100 - (Date.now() % 1000)));
    await srv.restart(); // a new write verifier: whatever was not committed may be lost
    await b.commit(f.fh);
    assert.ok(b.stats.rewrites > before || b.stats.verifierChanges > 0, 'the later write was sent again');
    assert.equal(b.info().uncommittedBytes, 0);
    const disk = await fsp.readFile(path.join(srv.exportDir, 'race.bin'));
    assert.ok(disk.equals(Buffer.concat([Buffer.alloc(4096, 1), Buffer.alloc(4096, 2)])));
  });

  it('times NFSv3 cannot carry (32-bit unsigned seconds) are clamped to its range, never wrapped', async () => {
    const f = await b.create(root.fh, 'times', 0o644, creds, { exclusive: true });
    const last = (2n ** 32n - 1n) * 1_000_000_000n + 999_999_999n;
    assert.equal((await b.setattr(f.fh, { mtime: { kind: 'set', ns: last } })).mtimeNs, last, 'the last representable time');
    const a = await b.setattr(f.fh, { mtime: { kind: 'set', ns: 2n ** 32n * 1_000_000_000n }, atime: { kind: 'set', ns: -5_000_000_000n } });
    assert.equal(a.mtimeNs, (2n ** 32n - 1n) * 1_000_000_000n, '2106 and later: the last second NFSv3 has');
    assert.equal(a.atimeNs, 0n, 'before 1970: the epoch');
  });

  it('big reads and writes are split into rsize/wsize calls and reassembled in order', async () => {
    const f = await b.create(root.fh, 'big', 0o644, creds, { exclusive: true });
    const data = randomBytes(5 * 1024 * 1024 + 333);
    await b.write(f.fh, 0, data);
    await b.commit(f.fh);
    const back = await b.read(f.fh, 0, data.length + 1000);
    assert.equal(back.length, data.length);
    assert.ok(back.equals(data));
    assert.ok((await fsp.readFile(path.join(srv.exportDir, 'big'))).equals(data));
  });
});
