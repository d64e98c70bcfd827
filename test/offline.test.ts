// Disconnected operation through real mounts: the cache served while the backend is away,
// every mutation journaled and replayed on reconnection, the automatic switch when the backend
// stops answering (fault injection on the real local adapter; a real nfs-ganesha stopped and
// started again), and no process ever left waiting on the mount.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cli, mountFresh, sh, sleep, type Mounted, BACKEND_KINDS, skipKind } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';
import { waitUntil } from './helpers/wait.js';

const isRoot = process.getuid?.() === 0;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try { await p; } catch (e) { return (e as NodeJS.ErrnoException).code ?? String(e); }
  return 'no error';
}

/** Runs `p` and fails the test if it takes longer than `ms`: nothing may hang offline. */
async function quick<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => { t = setTimeout(() => rej(new Error(`${what} took more than ${ms} ms`)), ms); });
  try { return await Promise.race([p, timeout]); } finally { clearTimeout(t); }
}

/** name -> "type:size:mode:content-or-target" for a whole tree (mount or backend). */
async function snapshot(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(path.join(root, rel))).sort()) {
      const r = path.join(rel, name);
      const st = await fsp.lstat(path.join(root, r));
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) { out.set(r, `dir:${mode}`); await walk(r); } else if (st.isSymbolicLink()) {
        out.set(r, `link:${await fsp.readlink(path.join(root, r))}`);
      } else out.set(r, `file:${st.size}:${mode}:${(await fsp.readFile(path.join(root, r))).toString('base64')}`);
    }
  };
  await walk('');
  return out;
}

async function status(m: Mounted): Promise<{ state: string; reason: string; journal: { pending: number } }> {
  const r = await cli(['status', m.mnt, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function waitState(m: Mounted, state: string, ms: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if ((await status(m)).state === state) return Date.now() - t0;
    await sleep(100);
  }
  assert.fail(`not ${state} after ${ms} ms: ${JSON.stringify(await status(m))}`);
}

for (const kind of BACKEND_KINDS) describe(`disconnected operation (${kind} backend)`, { skip: skipKind(kind) }, () => {
  let m: Mounted;
  let srv: NfsServer | undefined;
  before(async () => {
    srv = kind === 'nfs' ? await startNfsServer('offline') : undefined;
    // Strict kernel caching (0 s) as these tests were written for; the other suites use the defaults.
    const config = { backendTimeoutMs: 2000, fuse: { attrTimeout: 0, entryTimeout: 0, negativeTimeout: 0 } };
    m = await mountFresh('offline', { nfs: srv, config });
    await fsp.writeFile(m.b('cached.txt'), 'read while connected');
    await fsp.writeFile(m.b('uncached.txt'), 'never read');
    await fsp.mkdir(m.b('listed'));
    await fsp.writeFile(m.b('listed/inside.txt'), 'in a listed directory');
    await fsp.mkdir(m.b('unlisted'));
    await fsp.writeFile(m.b('unlisted/hidden.txt'), 'x');
    await fsp.writeFile(m.b('victim.txt'), 'to be removed offline');
    await fsp.mkdir(m.b('emptydir'));
    await fsp.mkdir(m.b('worked-in'));
    await fsp.writeFile(m.b('worked-in/main.c'), 'int main(void) { return 0; }\n');
    // What the cache gets to know while connected:
    assert.equal(await fsp.readFile(m.m('cached.txt'), 'utf8'), 'read while connected');
    assert.deepEqual(await fsp.readdir(m.m('listed')), ['inside.txt']);
    assert.equal(await fsp.readFile(m.m('listed/inside.txt'), 'utf8'), 'in a listed directory');
    await fsp.readdir(m.m(''));
    await fsp.stat(m.m('unlisted'));
    // A directory worked in by name (a file opened in it), never listed:
    assert.match(await fsp.readFile(m.m('worked-in/main.c'), 'utf8'), /main/);
  });
  after(async () => { await m?.cleanup(); await srv?.dispose(); });

  it('cachefs offline: the cache is served; what it lacks fails at once with the documented errnos', async () => {
    const r = await cli(['offline', m.mnt]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /disconnected \(cachefs offline\)/);
    const s = await status(m);
    assert.equal(s.state, 'disconnected');
    assert.equal(s.reason, 'cachefs offline');
    assert.equal(await quick(fsp.readFile(m.m('cached.txt'), 'utf8'), 1000, 'cached read'), 'read while connected');
    assert.deepEqual(await quick(fsp.readdir(m.m('listed')), 1000, 'listed readdir'), ['inside.txt']);
    assert.ok((await quick(fsp.stat(m.m('uncached.txt')), 1000, 'stat')).isFile(), 'attributes are cached');
    assert.equal(await quick(codeOf(fsp.readFile(m.m('uncached.txt'))), 1000, 'uncached read'), 'ENODATA');
    assert.equal(await quick(codeOf(fsp.readdir(m.m('unlisted'))), 1000, 'unlisted readdir'), 'EHOSTUNREACH');
    assert.equal(await quick(codeOf(fsp.stat(m.m('nothing-here'))), 1000, 'missing name'), 'ENOENT', 'the root was listed: its names are known');
    assert.equal(await quick(codeOf(fsp.stat(m.m('worked-in/absent.c'))), 1000, 'missing name'), 'ENOENT',
      'a directory a name was looked up in while connected was listed then, for the disconnected answer');
    assert.deepEqual(await quick(fsp.readdir(m.m('worked-in')), 1000, 'worked-in readdir'), ['main.c']);
    const df = await quick(sh('df', [m.mnt]), 2000, 'df');
    assert.equal(df.code, 0, df.stderr);
  });

  it('every mutation works offline, is journaled with its path, and nothing reaches the backend', async () => {
    await fsp.writeFile(m.m('new.txt'), 'made offline');
    await fsp.writeFile(m.m('worked-in/new.c'), 'made offline beside a file opened while connected');
    await fsp.appendFile(m.m('cached.txt'), ', then appended offline');
    await fsp.mkdir(m.m('newdir'));
    await fsp.writeFile(m.m('newdir/deep.txt'), 'deep');
    await fsp.symlink('new.txt', m.m('newlink'));
    await fsp.link(m.m('new.txt'), m.m('hardlink.txt'));
    await fsp.rename(m.m('listed/inside.txt'), m.m('newdir/moved.txt'));
    await fsp.unlink(m.m('victim.txt'));
    await fsp.rmdir(m.m('emptydir'));
    await fsp.chmod(m.m('new.txt'), 0o640);
    await fsp.utimes(m.m('newdir/deep.txt'), 1_500_000_000, 1_500_000_000);
    await fsp.writeFile(m.m('trunc.txt'), '0123456789');
    await fsp.truncate(m.m('trunc.txt'), 4);
    if (isRoot) await fsp.chown(m.m('newdir/deep.txt'), 1234, 1234);
    const h = await fsp.open(m.m('synced.txt'), 'w');
    await h.write('fsync returns offline');
    await quick(h.sync(), 1000, 'fsync offline');
    await quick(h.close(), 1000, 'close offline');
    assert.equal(await fsp.readFile(m.m('cached.txt'), 'utf8'), 'read while connected, then appended offline');
    assert.equal(await fsp.readFile(m.m('newdir/moved.txt'), 'utf8'), 'in a listed directory');
    assert.equal((await fsp.stat(m.m('hardlink.txt'))).nlink, 2);
    assert.equal((await fsp.stat(m.m('newdir/deep.txt'))).mtimeMs, 1_500_000_000_000);
    assert.equal(await fsp.readFile(m.m('trunc.txt'), 'utf8'), '0123');
    // the backend has none of it yet
    await assert.rejects(fsp.stat(m.b('new.txt')), { code: 'ENOENT' });
    assert.equal(await fsp.readFile(m.b('cached.txt'), 'utf8'), 'read while connected');
    assert.ok((await fsp.stat(m.b('victim.txt'))).isFile());
    // cachefs journal: people and scripts see what waits
    const j = await cli(['journal', m.mnt, '--json']);
    assert.equal(j.code, 0, j.stderr);
    const items = JSON.parse(j.stdout) as { op: string; path: string | null; to: string | null; bytes: number }[];
    const ops = new Set(items.map((i) => i.op));
    for (const op of ['create', 'write', 'mkdir', 'symlink', 'link', 'rename', 'unlink', 'rmdir', 'setattr']) assert.ok(ops.has(op), `${op} journaled`);
    assert.ok(items.some((i) => i.op === 'rename' && i.path === '/listed/inside.txt' && i.to === '/newdir/moved.txt'));
    assert.ok(items.some((i) => i.op === 'unlink' && i.path === '/victim.txt'));
    assert.ok(items.some((i) => i.op === 'write' && i.bytes > 0));
    const human = await cli(['journal', m.mnt]);
    assert.match(human.stdout, /change\(s\) waiting for the backend/);
    assert.match(human.stdout, /rename +\/listed\/inside\.txt -> \/newdir\/moved\.txt/);
    assert.equal((await status(m)).journal.pending, items.length);
  });

  it('cachefs sync replays the journal: the backend ends up like the mount, inode numbers stay', async () => {
    const inoBefore = new Map<string, number>();
    for (const p of ['new.txt', 'newdir', 'newdir/deep.txt', 'newlink', 'synced.txt']) inoBefore.set(p, (await fsp.lstat(m.m(p))).ino);
    const r = await cli(['sync', m.mnt]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /connected \(journal replayed\); no pending changes/);
    const s = await status(m);
    assert.equal(s.state, 'connected');
    assert.equal(s.journal.pending, 0);
    const mount = await snapshot(m.mnt);
    assert.deepEqual(await snapshot(m.backend), mount, 'the backend holds what the mount shows');
    assert.ok(mount.has('newdir/moved.txt') && !mount.has('victim.txt') && !mount.has('emptydir'));
    assert.equal((await fsp.stat(m.b('newdir/deep.txt'))).mtimeMs, 1_500_000_000_000);
    if (isRoot) assert.equal((await fsp.stat(m.b('newdir/deep.txt'))).uid, 1234);
    assert.equal((await fsp.stat(m.b('hardlink.txt'))).ino, (await fsp.stat(m.b('new.txt'))).ino, 'a hard link on the backend too');
    for (const [p, ino] of inoBefore) assert.equal((await fsp.lstat(m.m(p))).ino, ino, `${p} keeps its inode number`);
    // and the mount works connected again, through the objects made offline
    await fsp.writeFile(m.m('newdir/after.txt'), 'connected again');
    assert.equal(await fsp.readFile(m.b('newdir/after.txt'), 'utf8'), 'connected again');
  });

  it('reintegration lists cached directories again: what the server deleted and added meanwhile shows at once', async () => {
    const r = await cli(['offline', m.mnt]);
    assert.equal(r.code, 0, r.stderr);
    await fsp.writeFile(m.m('newdir/offline-note.txt'), 'mine');
    // meanwhile, on the server:
    await fsp.rm(m.b('newdir/after.txt'));
    await fsp.writeFile(m.b('newdir/theirs.txt'), 'theirs');
    assert.deepEqual((await fsp.readdir(m.m('newdir'))).sort(), ['after.txt', 'deep.txt', 'moved.txt', 'offline-note.txt']);
    const s = await cli(['sync', m.mnt]);
    assert.equal(s.code, 0, s.stderr);
    assert.deepEqual((await fsp.readdir(m.m('newdir'))).sort(), ['deep.txt', 'moved.txt', 'offline-note.txt', 'theirs.txt']);
    assert.equal(await fsp.readFile(m.b('newdir/offline-note.txt'), 'utf8'), 'mine');
    // still fully cached: the next disconnection can create names in it
    const o = await cli(['offline', m.mnt]);
    assert.equal(o.code, 0, o.stderr);
    await quick(fsp.writeFile(m.m('newdir/second-offline.txt'), 'again'), 2000, 'create after a reintegration');
    assert.equal((await cli(['sync', m.mnt])).code, 0);
    assert.equal(await fsp.readFile(m.b('newdir/second-offline.txt'), 'utf8'), 'again');
  });

  it('a file changed on the server too is parked as a conflict: neither side is overwritten or dropped', async () => {
    await fsp.writeFile(m.m('both.txt'), 'base version');
    await fsp.writeFile(m.m('gone.txt'), 'base of a file the server removes');
    await fsp.writeFile(m.m('calm.txt'), 'only we change this');
    assert.equal(await fsp.readFile(m.m('both.txt'), 'utf8'), 'base version');
    assert.equal(await fsp.readFile(m.m('gone.txt'), 'utf8'), 'base of a file the server removes');
    assert.equal((await cli(['offline', m.mnt])).code, 0);
    await fsp.writeFile(m.m('both.txt'), 'client variant, written offline');
    await fsp.writeFile(m.m('gone.txt'), 'client variant of a removed file');
    await fsp.writeFile(m.m('calm.txt'), 'our change goes through');
    await sleep(20); // a new ctime on the server
    await fsp.writeFile(m.b('both.txt'), 'server variant, written meanwhile');
    await fsp.rm(m.b('gone.txt'));
    const r = await cli(['sync', m.mnt]);
    assert.equal(r.code, 0, r.stderr);
    const st = JSON.parse((await cli(['status', m.mnt, '--json'])).stdout) as { conflicts: number; state: string };
    assert.equal(st.state, 'connected');
    assert.equal(st.conflicts, 1, 'one conflict waits for the user');
    assert.equal(await fsp.readFile(m.b('both.txt'), 'utf8'), 'server variant, written meanwhile', 'the server variant is not overwritten');
    assert.equal(await fsp.readFile(m.b('gone.txt'), 'utf8'), 'client variant of a removed file',
      'removed on the server, changed here: the update is kept (made again)');
    assert.equal(await fsp.readFile(m.b('calm.txt'), 'utf8'), 'our change goes through', 'no conflict, no parking');
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(path.join(m.cache, 'index.sqlite'), { readonly: true });
    try {
      const rows = db.prepare('SELECT kind, path, dir, resolution FROM conflicts ORDER BY id').all() as { kind: string; path: string; dir: string; resolution: string | null }[];
      assert.deepEqual(rows.map((x) => [x.kind, x.path, x.resolution]), [['update-update', '/both.txt', null], ['update-remove', '/gone.txt', 'auto-kept-update']]);
      assert.equal(await fsp.readFile(path.join(rows[0]!.dir, 'client'), 'utf8'), 'client variant, written offline', 'the client variant is kept');
      assert.equal(await fsp.readFile(path.join(rows[0]!.dir, 'server'), 'utf8'), 'server variant, written meanwhile', 'and the server variant too');
    } finally { db.close(); }
    assert.equal(await fsp.readFile(m.m('both.txt'), 'utf8'), 'server variant, written meanwhile', 'the mount shows the server variant now');
  });

  const faults = path.join(os.tmpdir(), `cachefs-faults-${process.pid}.json`);
  const goAway = async (how: 'refuse' | 'hang' = 'refuse'): Promise<void> => {
    if (srv) { await srv.stop(); return; }
    const ops = ['getattr', 'lookup', 'readdir', 'read', 'write', 'create', 'setattr', 'statfs', 'commit'];
    writeFileSync(faults, JSON.stringify(how === 'hang' ? { hang: ops } : { fail: Object.fromEntries(ops.map((op) => [op, 'ECONNREFUSED'])) }));
  };
  const comeBack = async (): Promise<void> => {
    if (srv) await srv.start();
    else rmSync(faults, { force: true });
  };

  it('the backend going away switches the mount to disconnected by itself, and coming back reintegrates', async () => {
    if (!srv) {
      // the local backend is made unreachable by fault injection on top of the real adapter
      await m.cleanup().catch(() => undefined);
      m = await mountFresh('offline-auto', { env: { CACHEFS_FAULTS_FILE: faults }, config: { backendTimeoutMs: 2000, fuse: { attrTimeout: 0, entryTimeout: 0, negativeTimeout: 0 } } });
      m.env = { CACHEFS_FAULTS_FILE: faults };
    }
    await fsp.writeFile(m.m('auto.txt'), 'connected');
    assert.equal(await fsp.readFile(m.b('auto.txt'), 'utf8'), 'connected');
    await fsp.readdir(m.m('')); // a directory listed while connected takes new names offline
    await goAway();
    const t0 = Date.now();
    // open() revalidates with the backend: the call fails, the mount goes disconnected, and
    // the open is answered from the cache, all well within the deadline.
    assert.equal(await quick(fsp.readFile(m.m('auto.txt'), 'utf8'), 5000, 'read as the backend goes'), 'connected');
    const s = await status(m);
    assert.equal(s.state, 'disconnected', JSON.stringify(s));
    assert.match(s.reason, /ECONNREFUSED|refused|ETIMEDOUT/);
    assert.ok(Date.now() - t0 < 5000);
    await quick(fsp.writeFile(m.m('auto.txt'), 'changed while the backend was away'), 2000, 'offline write');
    await quick(fsp.writeFile(m.m('auto-new.txt'), 'new while away'), 2000, 'offline create');
    await comeBack();
    const took = await waitState(m, 'connected', 15_000);
    assert.ok(took < 15_000);
    assert.equal(await fsp.readFile(m.b('auto.txt'), 'utf8'), 'changed while the backend was away');
    assert.equal(await fsp.readFile(m.b('auto-new.txt'), 'utf8'), 'new while away');
  });

  it('the first lookup that finds the backend gone is answered as disconnected, not with the network\'s error', async () => {
    // A directory the mount works in but never listed (names learnt one lookup at a time):
    // the lookup of a new name must go to the backend, and that call is the one that finds
    // it gone. Before, that one create failed with ECONNREFUSED ("Connection refused") and
    // only the next worked offline.
    await fsp.mkdir(m.b('first-after'));
    // the mount learns the name (NFS: by polling the root), not the directory's listing
    await waitUntil('the mount sees the new directory', () => fsp.stat(m.m('first-after')).then(() => true, () => false), 15_000, 100);
    await fsp.writeFile(m.m('first-after/made.txt'), 'connected');
    await fsp.mkdir(m.m('first-after/sub'));
    await goAway();
    await quick(fsp.writeFile(m.m('first-after/saved.txt'), 'the first save after the backend went'), 5000, 'the first create');
    assert.equal((await status(m)).state, 'disconnected');
    assert.deepEqual((await fsp.readdir(m.m('first-after'))).sort(), ['made.txt', 'saved.txt', 'sub']);
    await comeBack();
    await waitState(m, 'connected', 15_000);
    assert.equal(await fsp.readFile(m.b('first-after/saved.txt'), 'utf8'), 'the first save after the backend went');
  });

  it('a statfs that finds the backend gone is answered as disconnected (df works through an outage)', async () => {
    await sleep(1100); // past the one second a statfs answer is kept
    await goAway();
    const st = await quick(fsp.statfs(m.m('')), 5000, 'statfs as the backend goes');
    assert.ok(st.blocks > 0 && st.bsize > 0);
    assert.equal((await status(m)).state, 'disconnected');
    await comeBack();
    await waitState(m, 'connected', 15_000);
  });

  it('a backend vanishing in the middle of a read or a write: the operation fails or completes cleanly, the cache stays right', async () => {
    const big = Buffer.alloc(48 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
    await fsp.writeFile(m.b('vanish-read.bin'), big);
    // the mount learns the name (NFS: by polling the directory), not the data
    for (let i = 0; i < 100; i++) { if (await fsp.stat(m.m('vanish-read.bin')).then(() => true, () => false)) break; await sleep(100); }
    const reader = sh('sh', ['-c', `cat '${m.m('vanish-read.bin')}' > /dev/null`], { timeoutMs: 20_000 });
    const writer = sh('dd', ['if=/dev/zero', `of=${m.m('vanish-write.bin')}`, 'bs=1M', 'count=48'], { timeoutMs: 20_000 });
    await sleep(60);
    const t0 = Date.now();
    await goAway('hang'); // NFS: the server stops; local: every call hangs until its deadline
    const stopped = Date.now() - t0;
    const [rd, wr] = await Promise.all([reader, writer]);
    assert.ok(Date.now() - t0 < stopped + 8000, `finished ${Date.now() - t0 - stopped} ms after the backend was gone (stopping took ${stopped} ms): nothing hung`);
    assert.notEqual(rd.code, 127);
    assert.ok(rd.code === 0 || /No data available|Input\/output error/.test(rd.stderr), `read: ${rd.code} ${rd.stderr}`);
    assert.ok(wr.code === 0 || /No data available|No space/.test(wr.stderr), `write: ${wr.code} ${wr.stderr}`);
    await comeBack();
    await waitState(m, 'connected', 15_000);
    // nothing half-fetched or half-written is served as if it were whole
    assert.ok((await fsp.readFile(m.m('vanish-read.bin'))).equals(big), 'the read file is whole and right after reconnecting');
    if (wr.code === 0) {
      assert.equal((await fsp.stat(m.b('vanish-write.bin'))).size, 48 * 1024 * 1024);
      assert.ok((await fsp.readFile(m.b('vanish-write.bin'))).equals(Buffer.alloc(48 * 1024 * 1024)), 'an acknowledged write reached the backend whole');
    }
    assert.deepEqual(await fsp.readFile(m.m('vanish-write.bin')).then((b) => b.length), (await fsp.stat(m.b('vanish-write.bin'))).size, 'mount and backend agree on the written file');
  });

  it('an fsync\'d offline write survives kill -9; the next mount replays it', async () => {
    await fsp.readdir(m.m(''));
    const r = await cli(['offline', m.mnt]);
    assert.equal(r.code, 0, r.stderr);
    const h = await fsp.open(m.m('durable.txt'), 'w');
    await h.write('acknowledged by fsync while offline');
    await h.sync();
    const { pid } = JSON.parse((await cli(['status', m.mnt, '--json'])).stdout) as { pid: number };
    process.kill(pid, 'SIGKILL');
    await h.close().catch(() => undefined); // the mount is dead: ENOTCONN
    for (let i = 0; i < 100; i++) { try { process.kill(pid, 0); await sleep(20); } catch { break; } }
    await m.umount();
    await m.mount();
    await waitState(m, 'connected', 10_000);
    for (let i = 0; i < 50 && (await status(m)).journal.pending > 0; i++) await sleep(100);
    assert.equal(await fsp.readFile(m.b('durable.txt'), 'utf8'), 'acknowledged by fsync while offline');
    assert.equal(await fsp.readFile(m.m('durable.txt'), 'utf8'), 'acknowledged by fsync while offline');
  });
});
