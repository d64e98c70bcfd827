// Permission checks are the kernel's (default_permissions) against the attributes we report;
// a mount made by root passes allow_other, so other users get real answers (not a blanket
// EACCES), and objects they create belong to them.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { mountFresh, sh, type Mounted, BACKEND_KINDS } from './helpers/cachefs.js';
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
