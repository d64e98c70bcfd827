// Real tools offline and across the replay (issue 12): editors' save by rename, sed -i,
// ln -sfn and git commits made while disconnected replay to the server with no conflict when
// nobody else changed anything, over both backends. And tar x of an archive whose names are
// not UTF-8 (Latin-1), connected and offline: every name reaches the server as its bytes.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { mountFresh, cli, sh, type Mounted, BACKEND_KINDS, skipKind, control as ctl, tempRoot } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';


const GIT_ENV = ['-c', 'user.name=Laptop User', '-c', 'user.email=user@example.invalid', '-c', 'commit.gpgsign=false', '-c', 'core.fsync=none'];

async function git(cwd: string, ...args: string[]): Promise<string> {
  const r = await sh('git', [...GIT_ENV, ...args], { cwd, timeoutMs: 60_000 });
  assert.equal(r.code, 0, `git ${args.join(' ')} in ${cwd}: ${r.stderr}`);
  return r.stdout;
}

/** `dir`/`name` as a path of bytes (`name` may be anything but '/' and NUL). */
const bpath = (dir: string, ...names: Buffer[]): Buffer => Buffer.concat([Buffer.from(dir), ...names.flatMap((n) => [Buffer.from('/'), n])]);
const L1 = (s: string): Buffer => Buffer.from(s, 'latin1');

/** What a tree holds, as lines "path -> content" ("-> @target" for a symlink), bytes read as Latin-1. */
async function latin1Tree(dir: Buffer, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true, encoding: 'buffer' })) {
    const name = e.name;
    const full = Buffer.concat([dir, Buffer.from('/'), name]);
    const label = prefix + name.toString('latin1');
    if (e.isDirectory()) out.push(`${label}/`, ...await latin1Tree(full, `${label}/`));
    else if (e.isSymbolicLink()) out.push(`${label} -> @${(await fsp.readlink(full, { encoding: 'buffer' })).toString('latin1')}`);
    else out.push(`${label} -> ${(await fsp.readFile(full)).toString('latin1')}`);
  }
  return out.sort();
}

/** Lists every path below `root` (cached directories listed, files read), as a laptop user's warm cache. */
async function warm(root: string | Buffer): Promise<void> {
  // Names as bytes: some trees here have names that are not UTF-8.
  for (const e of await fsp.readdir(root, { withFileTypes: true, encoding: 'buffer' })) {
    const p = Buffer.concat([Buffer.from(root), Buffer.from('/'), e.name]);
    if (e.isDirectory()) await warm(p);
    else if (e.isFile()) await fsp.readFile(p);
  }
}

async function noConflicts(m: Mounted): Promise<void> {
  const r = await cli(['conflicts', m.mnt, '--json', '--all']);
  assert.equal(r.code, 0, r.stderr);
  const log = (await fsp.readFile(path.join(m.cache, 'cachefs.log'), 'utf8').catch(() => '')).split('\n').filter((l) => /replay of rename|conflict/.test(l)).slice(-10).join('\n');
  assert.deepEqual(JSON.parse(r.stdout), [], `no conflict at all\n${log}`);
}

for (const kind of BACKEND_KINDS) {
  describe(`real tools offline, replayed (${kind} backend)`, { skip: skipKind(kind) }, () => {
    let nfs: NfsServer | undefined;
    const mounts: Mounted[] = [];
    before(async () => { if (kind === 'nfs') nfs = await startNfsServer('tools'); });
    after(async () => {
      for (const m of mounts) await m.cleanup();
      await nfs?.dispose();
    });
    const fresh = async (tag: string): Promise<Mounted> => {
      const m = await mountFresh(`tools-${tag}`, nfs ? { nfs } : {});
      mounts.push(m);
      return m;
    };

    it('save by rename (editor, sed -i, ln -sfn) onto unchanged names replays cleanly', async () => {
      const m = await fresh('rename');
      await fsp.writeFile(m.b('notes.txt'), 'first draft\n');
      await fsp.writeFile(m.b('conf.ini'), 'a=1\nb=2\n');
      await fsp.writeFile(m.b('v1'), 'one');
      await fsp.writeFile(m.b('v2'), 'two');
      await fsp.symlink('v1', m.b('current'));
      await warm(m.mnt);
      await fsp.readlink(m.m('current'));
      assert.equal((await ctl(m, 'offline')).state, 'disconnected');
      // an editor: write a temporary file, then rename it over the original
      await fsp.writeFile(m.m('.notes.txt.swp'), 'second draft\n');
      await fsp.rename(m.m('.notes.txt.swp'), m.m('notes.txt'));
      const sed = await sh('sed', ['-i', 's/b=2/b=3/', m.m('conf.ini')]);
      assert.equal(sed.code, 0, sed.stderr);
      const ln = await sh('ln', ['-sfn', 'v2', m.m('current')]);
      assert.equal(ln.code, 0, ln.stderr);
      const s = await ctl(m, 'online');
      assert.equal(s.state, 'connected');
      assert.equal(s.journal.pending, 0);
      await noConflicts(m);
      assert.equal(await fsp.readFile(m.b('notes.txt'), 'utf8'), 'second draft\n');
      assert.equal(await fsp.readFile(m.b('conf.ini'), 'utf8'), 'a=1\nb=3\n');
      assert.equal(await fsp.readlink(m.b('current')), 'v2');
      const left = (await fsp.readdir(m.b(''))).sort();
      assert.deepEqual(left, ['conf.ini', 'current', 'notes.txt', 'v1', 'v2'], 'no temporary name reached the server');
    });

    it('offline after a lookup of a name another client added: the directory still answers from the cache', async () => {
      const m = await fresh('stale');
      await fsp.mkdir(m.b('proj/sub'), { recursive: true });
      await fsp.writeFile(m.b('proj/a.txt'), 'a');
      await fsp.writeFile(m.b('proj/sub/deep.txt'), 'deep');
      await warm(m.mnt);
      // another client adds a name; this mount looks it up (its directory's version moves)
      await fsp.writeFile(m.b('proj/added.txt'), 'from elsewhere');
      let seen = false;
      for (let i = 0; i < 100 && !seen; i++) {
        seen = await fsp.readFile(m.m('proj/added.txt'), 'utf8').then((t) => t === 'from elsewhere', () => false);
        if (!seen) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(seen, 'the added file shows through the mount');
      assert.equal((await ctl(m, 'offline')).state, 'disconnected');
      const names = (await fsp.readdir(m.m('proj'))).sort();
      assert.ok(names.includes('a.txt') && names.includes('sub'), `the directory lists offline: ${names.join(' ')}`);
      assert.equal(await fsp.readFile(m.m('proj/sub/deep.txt'), 'utf8'), 'deep', 'below it too');
      await fsp.writeFile(m.m('proj/offline.txt'), 'made offline');
      const r = await fsp.stat(m.m('proj/nothing-here')).then(() => 'exists', (e: NodeJS.ErrnoException) => e.code);
      assert.equal(r, 'ENOENT', 'a name the directory did not have is ENOENT, not a network errno');
      await fsp.appendFile(m.m('proj/a.txt'), ' and more');
      await fsp.appendFile(m.m('proj/sub/deep.txt'), ' and deeper');
      const j = await cli(['journal', m.mnt, '--json']);
      const paths = (JSON.parse(j.stdout) as { path: string | null }[]).map((i) => i.path);
      for (const p of ['/proj/offline.txt', '/proj/a.txt', '/proj/sub/deep.txt']) assert.ok(paths.includes(p), `the journal names ${p}: ${paths.join(' ')}`);
      const s = await ctl(m, 'online');
      assert.equal(s.journal.pending, 0);
      assert.equal(await fsp.readFile(m.b('proj/offline.txt'), 'utf8'), 'made offline');
      assert.equal(await fsp.readFile(m.b('proj/a.txt'), 'utf8'), 'a and more');
    });

    it('tar x of an archive with Latin-1 names, connected and offline: each name reaches the server as its bytes', async () => {
      const m = await fresh('latin1');
      // The archive, made natively: two names that differ only in a byte that is not UTF-8.
      const src = tempRoot('latin1-src');
      try {
        await fsp.mkdir(bpath(src, L1('tree')));
        await fsp.writeFile(bpath(src, L1('tree'), L1('café')), 'e acute');
        await fsp.writeFile(bpath(src, L1('tree'), L1('cafè')), 'e grave');
        await fsp.mkdir(bpath(src, L1('tree'), L1('dossier é')));
        await fsp.writeFile(bpath(src, L1('tree'), L1('dossier é'), L1('résumé')), 'inside');
        await fsp.symlink(L1('café'), bpath(src, L1('tree'), L1('lien')));
        const tar = await sh('tar', ['cf', path.join(src, 'a.tar'), '-C', src, 'tree']);
        assert.equal(tar.code, 0, tar.stderr);
        const want = await latin1Tree(bpath(src, L1('tree')));
        assert.equal(want.length, 5);

        await fsp.mkdir(m.m('conn'));
        const x1 = await sh('tar', ['xf', path.join(src, 'a.tar'), '-C', m.m('conn')]);
        assert.equal(x1.code, 0, x1.stderr);
        assert.deepEqual(await latin1Tree(bpath(m.mnt, L1('conn'), L1('tree'))), want, 'the mount shows every name and its content');
        assert.deepEqual(await latin1Tree(bpath(m.b('conn'), L1('tree'))), want, 'connected: the server has them as they are');

        await fsp.mkdir(m.m('off'));
        await warm(m.mnt);
        assert.equal((await ctl(m, 'offline')).state, 'disconnected');
        const x2 = await sh('tar', ['xf', path.join(src, 'a.tar'), '-C', m.m('off')]);
        assert.equal(x2.code, 0, x2.stderr);
        await fsp.rename(bpath(m.mnt, L1('conn'), L1('tree'), L1('cafè')), bpath(m.mnt, L1('conn'), L1('tree'), L1('déplacé')));
        assert.deepEqual(await latin1Tree(bpath(m.mnt, L1('off'), L1('tree'))), want, 'offline, the mount shows them too');
        const s = await ctl(m, 'online');
        assert.equal(s.state, 'connected');
        assert.equal(s.journal.pending, 0);
        await noConflicts(m);
        assert.deepEqual(await latin1Tree(bpath(m.b('off'), L1('tree'))), want, 'replayed: the server has the names made offline as they are');
        const moved = await latin1Tree(bpath(m.b('conn'), L1('tree')));
        assert.ok(moved.includes('déplacé -> e grave') && !moved.some((l) => l.startsWith('cafè')), moved.join('\n'));
      } finally {
        await fsp.rm(src, { recursive: true, force: true });
      }
    });

    it('three git commits offline replay to a repository git is happy with on the server', async () => {
      const m = await fresh('git');
      const repo = m.b('repo');
      await fsp.mkdir(repo);
      await git(repo, 'init', '-q', '-b', 'main');
      await fsp.writeFile(path.join(repo, 'README'), 'hello\n');
      await git(repo, 'add', 'README');
      await git(repo, 'commit', '-q', '-m', 'before the trip');
      await warm(m.mnt);
      const r = m.m('repo');
      await git(r, 'status', '--porcelain');
      assert.equal((await ctl(m, 'offline')).state, 'disconnected');
      for (let i = 1; i <= 3; i++) {
        await fsp.writeFile(path.join(r, `file${i}.txt`), `change ${i}\n`);
        await fsp.appendFile(path.join(r, 'README'), `line ${i}\n`);
        await git(r, 'add', '-A');
        await git(r, 'commit', '-q', '-m', `offline commit ${i}`);
      }
      const offlineLog = await git(r, 'log', '--format=%s');
      assert.match(offlineLog, /offline commit 3/);
      const s = await ctl(m, 'online');
      assert.equal(s.state, 'connected');
      assert.equal(s.journal.pending, 0);
      await noConflicts(m);
      const names = await fsp.readdir(path.join(repo, '.git'));
      assert.ok(!names.includes('index.lock'), `no index.lock on the server: ${names.join(' ')}`);
      assert.ok(!(await fsp.readdir(path.join(repo, '.git', 'refs', 'heads'))).some((n) => n.endsWith('.lock')), 'no ref lock on the server');
      assert.equal(await git(repo, 'log', '--format=%s'), offlineLog, 'the server has the offline commits');
      assert.equal(await git(repo, 'status', '--porcelain'), '', 'a clean work tree on the server');
      await git(repo, 'fsck', '--no-progress');
    });
  });
}
