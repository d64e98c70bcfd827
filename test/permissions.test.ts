// Permission checks are the kernel's (default_permissions) against the attributes we report;
// a mount made by root passes allow_other, so other users get real answers (not a blanket
// EACCES), and objects they create belong to them.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { mountFresh, cli, sh, control, skipKind, type Mounted, BACKEND_KINDS } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';


const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

for (const kind of BACKEND_KINDS) describe(`permissions for other users (${kind} backend)`, { skip: !isRoot && 'needs root (mounts with allow_other)' }, () => {
  let m: Mounted;
  let srv: NfsServer | undefined;
  before(async () => {
    srv = kind === 'nfs' ? await startNfsServer('perm') : undefined;
    m = await mountFresh('perm', { nfs: srv });
    await fsp.chmod(m.root, 0o755); // mkdtemp makes it 0700; let nobody reach the mount
  });
  after(async () => { await m?.cleanup(); await srv?.dispose(); });

  const asNobody = (cmd: string, args: string[]) => sh(cmd, args, { uid: NOBODY, gid: NOBODY });

  it('a private file is EACCES for another user, a public one is readable', async () => {
    await fsp.writeFile(m.m('private.txt'), 'secret', { mode: 0o600 });
    await fsp.writeFile(m.m('public.txt'), 'hello', { mode: 0o644 });
    const denied = await asNobody('cat', [m.m('private.txt')]);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /Permission denied/);
    const allowed = await asNobody('cat', [m.m('public.txt')]);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(allowed.stdout, 'hello');
    const write = await asNobody('sh', ['-c', `echo x >> '${m.m('public.txt')}'`]);
    assert.notEqual(write.code, 0, 'writing a 0644 file of root is refused');
  });

  it('objects another user creates belong to that user, on the backend too', async () => {
    await fsp.mkdir(m.m('shared'), { mode: 0o777 });
    await fsp.chmod(m.m('shared'), 0o777);
    const r = await asNobody('sh', ['-c', `echo mine > '${m.m('shared/by-nobody.txt')}' && mkdir '${m.m('shared/dir-of-nobody')}' && ln -s x '${m.m('shared/link-of-nobody')}'`]);
    assert.equal(r.code, 0, r.stderr);
    for (const name of ['by-nobody.txt', 'dir-of-nobody', 'link-of-nobody']) {
      const st = await fsp.lstat(m.m('shared', name));
      assert.equal(st.uid, NOBODY, `${name} in the mount`);
      assert.equal(st.gid, NOBODY, `${name} in the mount`);
      const bs = await fsp.lstat(m.b('shared', name));
      assert.equal(bs.uid, NOBODY, `${name} on the backend`);
    }
  });

  it('a user writing through a supplementary group creates files there (the backend sees the group too)', async () => {
    const GROUP = 4242;
    await fsp.mkdir(m.m('team'), { mode: 0o770 });
    await fsp.chown(m.m('team'), 0, GROUP);
    await fsp.chmod(m.m('team'), 0o770);
    const inGroup = await sh('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--groups', String(GROUP), 'sh', '-c',
      `echo ours > '${m.m('team/by-member.txt')}' && mkdir '${m.m('team/sub')}'`]);
    assert.equal(inGroup.code, 0, inGroup.stderr);
    assert.equal((await fsp.stat(m.b('team/by-member.txt'))).uid, NOBODY);
    assert.equal(await fsp.readFile(m.b('team/by-member.txt'), 'utf8'), 'ours\n');
    const outsider = await asNobody('sh', ['-c', `echo no > '${m.m('team/by-outsider.txt')}'`]);
    assert.notEqual(outsider.code, 0, 'without the group it is refused');
  });

  it('chmod of someone else\'s file is EPERM; a directory without x cannot be entered', async () => {
    await fsp.writeFile(m.m('roots.txt'), 'x', { mode: 0o644 });
    const r = await asNobody('chmod', ['777', m.m('roots.txt')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Operation not permitted/);
    await fsp.mkdir(m.m('closed'), { mode: 0o700 });
    await fsp.writeFile(m.m('closed/inside.txt'), 'x');
    const r2 = await asNobody('ls', [m.m('closed')]);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /Permission denied/);
  });
});

// Issue 12 item 7: every journal record carries the credentials of the process that made the
// change and is replayed with them (AUTH_SYS per call over NFS; the kernel's checks, made by
// the adapter, over a local directory). What the server refuses becomes a conflict.
const OWNER = 4243;
for (const kind of BACKEND_KINDS) describe(`replay acts as the user who made the change (${kind} backend)`, { skip: !isRoot ? 'needs root (mounts with allow_other)' : skipKind(kind) }, () => {
  let srv: NfsServer | undefined;
  const mounts: Mounted[] = [];
  before(async () => { srv = kind === 'nfs' ? await startNfsServer('perm-replay') : undefined; });
  after(async () => { for (const m of mounts) await m.cleanup(); await srv?.dispose(); });
  const fresh = async (tag: string): Promise<Mounted> => {
    const m = await mountFresh(`perm-replay-${tag}`, { nfs: srv });
    mounts.push(m);
    await fsp.chmod(m.root, 0o755);
    return m;
  };
  const asNobody = (script: string) => sh('sh', ['-c', script], { uid: NOBODY, gid: NOBODY });
  const conflicts = async (m: Mounted) => {
    const r = await cli(['conflicts', m.mnt, '--json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { id: number; kind: string; path: string }[];
  };

  it('a write to a 0666 file that its owner makes 0644 on the server meanwhile is refused at replay: a conflict, the server keeps its bytes', async () => {
    const m = await fresh('write');
    await fsp.writeFile(m.b('shared.txt'), 'original\n');
    await fsp.chown(m.b('shared.txt'), OWNER, OWNER);
    await fsp.chmod(m.b('shared.txt'), 0o666);
    assert.equal(await fsp.readFile(m.m('shared.txt'), 'utf8'), 'original\n');
    assert.equal((await control(m, 'offline')).state, 'disconnected');
    const w = await asNobody(`echo from-nobody >> '${m.m('shared.txt')}'`);
    assert.equal(w.code, 0, `offline, the cached 0666 lets nobody write: ${w.stderr}`);
    await fsp.chmod(m.b('shared.txt'), 0o644); // the owner, on the server
    const s = await control(m, 'online');
    assert.equal(s.journal.pending, 0);
    assert.equal(await fsp.readFile(m.b('shared.txt'), 'utf8'), 'original\n', 'the server did not take a write its owner no longer allows');
    const hit = (await conflicts(m)).find((c) => c.path === '/shared.txt');
    assert.ok(hit, 'the refusal is a conflict the user sees');
    assert.equal(hit.kind, 'refused');
    assert.equal(await fsp.readFile(m.m('.cachefs', 'conflicts', String(hit.id), 'client'), 'utf8'), 'original\nfrom-nobody\n', 'the work is kept');
  });

  it('an unlink in a directory its owner closes on the server meanwhile is refused at replay: a conflict, the file stays', async () => {
    const m = await fresh('unlink');
    await fsp.mkdir(m.b('drop'));
    await fsp.writeFile(m.b('drop/victim.txt'), 'keep me\n');
    await fsp.chown(m.b('drop'), OWNER, OWNER);
    await fsp.chmod(m.b('drop'), 0o777);
    assert.deepEqual(await fsp.readdir(m.m('drop')), ['victim.txt']);
    assert.equal((await control(m, 'offline')).state, 'disconnected');
    const rm = await asNobody(`rm -f '${m.m('drop/victim.txt')}'`);
    assert.equal(rm.code, 0, rm.stderr);
    await fsp.chmod(m.b('drop'), 0o755);
    const s = await control(m, 'online');
    assert.equal(s.journal.pending, 0);
    assert.equal(await fsp.readFile(m.b('drop/victim.txt'), 'utf8'), 'keep me\n', 'the server kept the file');
    assert.ok((await conflicts(m)).some((c) => c.kind === 'refused'), 'the refusal is a conflict the user sees');
  });

  it('what the user may do replays as that user with no conflict: a write to a 0666 file, a file created read-only and written', async () => {
    const m = await fresh('allowed');
    await fsp.writeFile(m.b('open.txt'), 'a\n');
    await fsp.chown(m.b('open.txt'), OWNER, OWNER);
    await fsp.chmod(m.b('open.txt'), 0o666);
    await fsp.mkdir(m.b('pub'));
    await fsp.chmod(m.b('pub'), 0o777);
    assert.equal(await fsp.readFile(m.m('open.txt'), 'utf8'), 'a\n');
    assert.deepEqual(await fsp.readdir(m.m('pub')), []);
    assert.equal((await control(m, 'offline')).state, 'disconnected');
    // git writes its objects this way: created 0444, written through the creating descriptor.
    const w = await sh('python3', ['-c', `import os
fd = os.open(${JSON.stringify(m.m('pub/obj'))}, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o444)
os.write(fd, b'object bytes'); os.close(fd)
with open(${JSON.stringify(m.m('open.txt'))}, 'a') as f: f.write('b\\n')`], { uid: NOBODY, gid: NOBODY });
    assert.equal(w.code, 0, w.stderr);
    const s = await control(m, 'online');
    assert.equal(s.journal.pending, 0);
    assert.deepEqual(await conflicts(m), []);
    assert.equal(await fsp.readFile(m.b('open.txt'), 'utf8'), 'a\nb\n');
    const st = await fsp.stat(m.b('pub/obj'));
    assert.equal(await fsp.readFile(m.b('pub/obj'), 'utf8'), 'object bytes');
    assert.equal(st.uid, NOBODY);
    assert.equal(st.mode & 0o777, 0o444);
  });
});
