// A laptop's trip, with real tools (issue 12): git, sqlite3 (WAL and rollback journals),
// editors' saves and make, used while connected, then while the server is away (NFS: the
// nfs-ganesha server really stopped; local: `cachefs offline`), then replayed when it is back.
// What must hold after the replay, for each tool: no conflict, no temporary or lock file left
// on the server, the server's copy is byte for byte (and, for make, mtime for mtime) what the
// mount showed offline, and the tool itself, run on the server's copy, is happy with it
// (git fsck --strict, PRAGMA integrity_check, make -n rebuilding only what changed). And the
// names the mount learnt while connected (in a directory it never listed) still answer offline.
//
// One trip per backend (stopping and starting the server is the slow part): each scenario
// works in its own directory, in three steps (connected, offline, replayed) that run in that
// order; a step whose scenario failed earlier fails too (never skipped), saying so.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { mountFresh, cli, sh, tempRoot, killMount, type Mounted, BACKEND_KINDS, skipKind, control as ctl, waitReplayed } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';
import { waitUntil } from './helpers/wait.js';
import { snapshot, diff, type Entry } from './helpers/tree.js';

const GIT_ENV = ['-c', 'user.name=Laptop User', '-c', 'user.email=user@example.invalid', '-c', 'commit.gpgsign=false',
  '-c', 'init.defaultBranch=main', '-c', 'advice.detachedHead=false', '-c', 'gc.auto=0'];

async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  const r = await sh(cmd, args, { cwd, timeoutMs: 30_000 });
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')} in ${cwd} (exit ${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}
const git = (cwd: string, ...args: string[]) => run('git', [...GIT_ENV, ...args], cwd);
const sqlite = (db: string, sql: string) => run('sqlite3', ['-batch', '-bail', db, sql], path.dirname(db));

/**
 * The mount's tree once the last closes have been dealt with: a file unlinked while open
 * keeps a `.cachefs-hidden-…` name until the kernel's RELEASE, which FUSE sends after
 * close() has returned (sqlite unlinks its WAL and shm files before closing them).
 */
async function settledSnapshot(root: string, opts: { mtimes?: boolean } = {}): Promise<Map<string, Entry>> {
  let left: string[] = [];
  await waitUntil(() => `files unlinked while open to be released (left: ${left.join(', ')})`, async () => {
    left = await filesNamed(root, /^\.cachefs-hidden-/);
    return left.length === 0;
  }, 60_000);
  return snapshot(root, opts);
}

async function filesNamed(root: string, re: RegExp): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(root, { withFileTypes: true, recursive: true })) {
    if (re.test(e.name)) out.push(path.relative(root, path.join(e.parentPath ?? e.path, e.name)));
  }
  return out;
}

interface ConflictItem { path?: string }

for (const kind of BACKEND_KINDS) describe(`a trip offline with git, sqlite3, editors and make (${kind} backend)`, { skip: skipKind(kind) }, () => {
  let nfs: NfsServer | undefined;
  let m: Mounted;
  let origin: string;
  let conflicts: ConflictItem[] = [];
  const broken = new Set<string>();

  before(async () => {
    if (kind === 'nfs') nfs = await startNfsServer('trip');
    m = await mountFresh('trip', nfs ? { nfs } : {});
    origin = tempRoot('trip-origin');
    // A directory the server has, that the laptop never lists (the names scenario).
    await fsp.mkdir(m.b('shared'));
    // The user has looked at the mount (ls): its root's listing is cached.
    await fsp.readdir(m.mnt);
  });
  after(async () => {
    await m?.cleanup();
    await nfs?.dispose();
    if (origin) await fsp.rm(origin, { recursive: true, force: true });
  });

  /** One step of a scenario: fails (not skips) when an earlier step of the same scenario failed. */
  const step = (scenario: string, title: string, fn: () => Promise<void>) => it(`${scenario}: ${title}`, async () => {
    if (broken.has(scenario)) throw new Error(`an earlier step of the ${scenario} scenario failed`);
    try { await fn(); } catch (e) { broken.add(scenario); throw e; }
  });

  /**
   * The replay left no conflict in this scenario's directory. (A conflict about an object
   * that no name reaches any more may carry its bare name: the step after the replay checks
   * that there is none at all.)
   */
  const noConflictUnder = (dir: string) => {
    const mine = conflicts.filter((c) => (c.path ?? '').startsWith(`/${dir}/`));
    assert.deepEqual(mine, [], `no conflict under /${dir}`);
  };

  // ---- names ----------------------------------------------------------------------------
  // Directories made through the mount, connected, inside a directory it never listed: each
  // creation moves that directory's version, and the names the mount learnt must still
  // answer offline. (Runs first: the kernel's entry cache is long expired when they are
  // looked up again offline, so the lookups reach the mount.)
  step('names', 'connected: three directories made in a directory never listed', async () => {
    for (const d of ['a', 'b', 'c']) await fsp.mkdir(m.m('shared', d));
    assert.ok((await fsp.stat(m.b('shared', 'c'))).isDirectory());
  });

  // ---- git ------------------------------------------------------------------------------
  const gitOffline: { refs?: string; log?: string; head?: string; tree?: Map<string, Entry> } = {};
  step('git', 'connected: clone a repository into the mount, then fetch', async () => {
    const o = path.join(origin, 'repo');
    await fsp.mkdir(path.join(o, 'src'), { recursive: true });
    await fsp.mkdir(path.join(o, 'scripts'));
    await git(o, 'init', '-q');
    await fsp.writeFile(path.join(o, 'README'), 'a project\n');
    await fsp.writeFile(path.join(o, 'src', 'main.c'), 'int main(void) { return 0; }\n');
    await fsp.writeFile(path.join(o, 'src', 'lib.c'), 'int lib(void) { return 1; }\n');
    await fsp.writeFile(path.join(o, 'scripts', 'run.sh'), '#!/bin/sh\necho run\n', { mode: 0o755 });
    await git(o, 'add', '-A');
    await git(o, 'commit', '-q', '-m', 'first');
    await fsp.appendFile(path.join(o, 'src', 'lib.c'), 'int lib2(void) { return 2; }\n');
    await git(o, 'commit', '-q', '-am', 'second');
    await git(o, 'tag', 'v1');
    await fsp.appendFile(path.join(o, 'src', 'main.c'), '/* third */\n');
    await git(o, 'commit', '-q', '-am', 'third');
    await fsp.mkdir(m.m('git'));
    await git(m.m('git'), 'clone', '-q', `file://${o}`, 'repo');
    const r = m.m('git', 'repo');
    // a branch of the user's, made connected, to be rebased offline
    await git(r, 'checkout', '-q', '-b', 'topic', 'HEAD~1');
    await fsp.writeFile(path.join(r, 'TOPIC'), 'topic work\n');
    await git(r, 'add', 'TOPIC');
    await git(r, 'commit', '-q', '-m', 'topic: started before the trip');
    await git(r, 'checkout', '-q', 'main');
    // someone else pushes; the laptop fetches before leaving
    await fsp.appendFile(path.join(o, 'README'), 'pushed by a colleague\n');
    await git(o, 'commit', '-q', '-am', 'colleague');
    await git(r, 'fetch', '-q');
    assert.match(await git(r, 'log', '--format=%s', 'origin/main'), /^colleague$/m);
    assert.equal(await git(r, 'status', '--porcelain'), '');
  });

  // ---- sqlite3 --------------------------------------------------------------------------
  const MODES = ['wal', 'delete'] as const;
  const dbSummarySql = "PRAGMA integrity_check; PRAGMA journal_mode; SELECT count(*), total(v) FROM t; SELECT hex(sha3_query('SELECT * FROM t ORDER BY id'));";
  const sqliteOffline: { summary: Map<string, string>; tree?: Map<string, Entry> } = { summary: new Map() };
  step('sqlite3', 'connected: a database in WAL mode and one in rollback (DELETE) mode', async () => {
    assert.ok((await sh('sqlite3', ['-version'])).code === 0, 'sqlite3 is installed (scripts/setup.sh)');
    await fsp.mkdir(m.m('sqlite'));
    for (const mode of MODES) {
      const db = m.m('sqlite', `${mode}.db`);
      const out = await sqlite(db, `PRAGMA journal_mode=${mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER, b BLOB);
        CREATE INDEX t_k ON t(k);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
        INSERT INTO t(k, v, b) SELECT 'before-' || i, i, randomblob(200) FROM n;`);
      assert.equal(out.trim(), mode);
      assert.match(await sqlite(db, dbSummarySql), /^ok\n/);
    }
  });

  // ---- editors --------------------------------------------------------------------------
  const editOffline: { tree?: Map<string, Entry> } = {};
  step('editors', 'connected: the files to edit', async () => {
    await fsp.mkdir(m.m('edit'));
    await fsp.writeFile(m.m('edit', 'notes.txt'), 'notes, version 0\n');
    await fsp.writeFile(m.m('edit', 'vimmed.txt'), 'old line\nsecond line\n');
    await fsp.writeFile(m.m('edit', 'backup.txt'), 'backed up, version 0\n');
  });

  // ---- make -----------------------------------------------------------------------------
  const MAKEFILE = 'app: main.o util.o\n\tcc -o app main.o util.o\n\n%.o: %.c util.h\n\tcc -c -o $@ $<\n';
  const makeOffline: { dryRun?: string; tree?: Map<string, Entry> } = {};
  step('make', 'connected: a small C project built in the mount', async () => {
    const d = m.m('make');
    await fsp.mkdir(d);
    await fsp.writeFile(path.join(d, 'Makefile'), MAKEFILE);
    await fsp.writeFile(path.join(d, 'util.h'), 'int util(void);\n');
    await fsp.writeFile(path.join(d, 'util.c'), '#include "util.h"\nint util(void) { return 41; }\n');
    await fsp.writeFile(path.join(d, 'main.c'), '#include "util.h"\nint main(void) { return util() == 41 ? 0 : 1; }\n');
    await run('make', ['-s'], d);
    assert.equal((await sh(path.join(d, 'app'), [], { cwd: d })).code, 0);
    assert.equal((await sh('make', ['-q'], { cwd: d })).code, 0, 'make -q: up to date after the build');
  });

  // ---- the trip -------------------------------------------------------------------------
  it('the server goes away: the mount goes disconnected by itself, files stay readable', async () => {
    if (!nfs) {
      assert.equal((await ctl(m, 'offline')).state, 'disconnected');
      return;
    }
    await nfs.stop();
    // The first operations that need the server find it gone (no `cachefs offline`).
    await waitUntil('the mount to notice the server is gone', async () => {
      await fsp.readdir(m.m('edit')).catch(() => undefined);
      await fsp.readFile(m.m('edit', 'notes.txt')).catch(() => undefined);
      return (await ctl(m, 'status')).state === 'disconnected';
    }, 20_000, 100);
    assert.equal(await fsp.readFile(m.m('edit', 'notes.txt'), 'utf8'), 'notes, version 0\n');
  });

  step('git', 'offline: commit, branch, checkout, merge, rebase, gc', async () => {
    const r = m.m('git', 'repo');
    await fsp.appendFile(path.join(r, 'src', 'lib.c'), 'int offline_fix(void) { return 3; }\n');
    await git(r, 'commit', '-q', '-am', 'offline: fix in lib');
    await git(r, 'branch', 'feature');
    await git(r, 'checkout', '-q', 'feature');
    await fsp.mkdir(path.join(r, 'docs'));
    await fsp.writeFile(path.join(r, 'docs', 'feature.md'), '# the feature\n');
    await git(r, 'add', 'docs');
    await git(r, 'commit', '-q', '-m', 'offline: feature doc');
    await fsp.appendFile(path.join(r, 'src', 'main.c'), '/* feature */\n');
    await git(r, 'commit', '-q', '-am', 'offline: feature in main');
    await git(r, 'checkout', '-q', 'main');
    await git(r, 'merge', '-q', '--no-ff', '-m', 'offline: merge feature', 'feature');
    await git(r, 'merge', '-q', '--no-edit', 'origin/main');
    await git(r, 'branch', '-q', '-d', 'feature');
    await git(r, 'checkout', '-q', 'topic');
    await fsp.appendFile(path.join(r, 'TOPIC'), 'more, offline\n');
    await git(r, 'commit', '-q', '-am', 'topic: offline');
    await git(r, 'rebase', '-q', 'main');
    await git(r, 'checkout', '-q', 'main');
    await git(r, 'gc', '-q', '--prune=now');
    assert.equal(await git(r, 'status', '--porcelain'), '', 'a clean work tree in the mount');
    await git(r, 'fsck', '--strict', '--no-progress');
    gitOffline.refs = await git(r, 'for-each-ref', '--format=%(refname) %(objectname)');
    gitOffline.log = await git(r, 'log', '--all', '--format=%H %P %s');
    gitOffline.head = await git(r, 'rev-parse', '--symbolic-full-name', 'HEAD');
    assert.match(gitOffline.log, / topic: offline$/m);
    assert.match(gitOffline.refs, /^refs\/heads\/topic /m);
    assert.doesNotMatch(gitOffline.refs, /^refs\/heads\/feature /m);
    gitOffline.tree = await settledSnapshot(r);
  });

  step('sqlite3', 'offline: many transactions, updates, deletes, a VACUUM, in several sessions', async () => {
    for (const mode of MODES) {
      const db = m.m('sqlite', `${mode}.db`);
      for (let session = 0; session < 3; session++) {
        let sql = '';
        for (let i = 1; i <= 15; i++) {
          const n = session * 100 + i;
          sql += `BEGIN;
            WITH RECURSIVE s(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM s WHERE j < 20)
            INSERT INTO t(k, v, b) SELECT 'offline-${n}-' || j, ${n} * j, randomblob(100 + j * 10) FROM s;
            UPDATE t SET v = v + ${n}, k = k || '+' WHERE id % 7 = ${n % 7};
            DELETE FROM t WHERE id % 11 = ${n % 11} AND id < ${n * 3};
            COMMIT;\n`;
        }
        if (session === 1) sql += mode === 'wal' ? 'PRAGMA wal_checkpoint(TRUNCATE);\n' : '';
        if (session === 2) sql += 'DELETE FROM t WHERE id % 3 = 0; VACUUM;\n';
        await sqlite(db, sql);
      }
      const summary = await sqlite(db, dbSummarySql);
      assert.match(summary, new RegExp(`^ok\\n${mode}\\n`), `integrity_check in the mount, offline (${mode})`);
      sqliteOffline.summary.set(mode, summary);
    }
    sqliteOffline.tree = await settledSnapshot(m.m('sqlite'));
    assert.deepEqual([...sqliteOffline.tree.keys()], ['delete.db', 'wal.db'], 'the databases are closed: no journal, WAL or shm file');
  });

  step('editors', 'offline: save by temp + fsync + rename, and vim saving with a backup (rename to file~)', async () => {
    const d = m.m('edit');
    // An editor saving three times: write a temporary file, fsync it, rename it over the original.
    for (let v = 1; v <= 3; v++) {
      const tmp = path.join(d, `.notes.txt.tmp${v}`);
      const h = await fsp.open(tmp, 'wx', 0o644);
      await h.writeFile(`notes, version ${v}\n`);
      await h.sync();
      await h.close();
      await fsp.rename(tmp, path.join(d, 'notes.txt'));
    }
    // vim's own way (backupcopy=no): rename the original to file~, write a new file, fsync, drop
    // its swap file; twice, so the second save renames over the first one's backup.
    const vim = ['-u', 'NONE', '-i', 'NONE', '-N', '-es', '--cmd', 'set backup writebackup backupcopy=no backupskip= backupdir=.'];
    await run('vim', [...vim, '-c', '%s/old line/new line/', '-c', 'wq', 'vimmed.txt'], d);
    await run('vim', [...vim, '-c', '$s/$/, edited again/', '-c', 'wq', 'vimmed.txt'], d);
    // The same by hand, keeping the backup: original -> backup.txt~, a new backup.txt, fsync.
    await fsp.rename(path.join(d, 'backup.txt'), path.join(d, 'backup.txt~'));
    const h = await fsp.open(path.join(d, 'backup.txt'), 'wx', 0o644);
    await h.writeFile('backed up, version 1\n');
    await h.sync();
    await h.close();
    assert.equal(await fsp.readFile(path.join(d, 'notes.txt'), 'utf8'), 'notes, version 3\n');
    assert.equal(await fsp.readFile(path.join(d, 'vimmed.txt'), 'utf8'), 'new line\nsecond line, edited again\n');
    assert.equal(await fsp.readFile(path.join(d, 'vimmed.txt~'), 'utf8'), 'new line\nsecond line\n');
    assert.equal(await fsp.readFile(path.join(d, 'backup.txt~'), 'utf8'), 'backed up, version 0\n');
    editOffline.tree = await settledSnapshot(d);
    assert.deepEqual([...editOffline.tree.keys()], ['backup.txt', 'backup.txt~', 'notes.txt', 'vimmed.txt', 'vimmed.txt~']);
  });

  step('make', 'offline: one source changed; make -n would rebuild only it', async () => {
    const d = m.m('make');
    await fsp.writeFile(path.join(d, 'util.c'), '#include "util.h"\nint util(void) { return 40 + 1; }\n');
    makeOffline.dryRun = await run('make', ['-n'], d);
    assert.equal(makeOffline.dryRun, 'cc -c -o util.o util.c\ncc -o app main.o util.o\n');
    makeOffline.tree = await settledSnapshot(d, { mtimes: true });
  });

  step('names', 'offline: the three directories are still there, and take new files', async () => {
    for (const d of ['a', 'b', 'c']) {
      assert.ok((await fsp.stat(m.m('shared', d))).isDirectory(), `shared/${d} offline`);
      await fsp.writeFile(m.m('shared', d, 'offline.txt'), `made offline in ${d}\n`);
    }
  });

  // The laptop crashes on the train and is started again there: the mount is killed, and
  // mounted again while the server is still away. Everything the tools did offline is only
  // in the cache and the journal. (A local backend is never away at a mount: that mount
  // replays the journal at once, and shows the same.)
  it('the laptop restarts on the train: after a kill -9 and a mount while the server is away, the mount shows what it showed', async () => {
    const shown = await settledSnapshot(m.mnt, { mtimes: true });
    await killMount(m);
    await m.mount();
    if (nfs) assert.equal((await ctl(m, 'status')).state, 'disconnected');
    assert.deepEqual(diff(shown, await settledSnapshot(m.mnt, { mtimes: true }), ['before the restart', 'after it']), [],
      'the same tree, contents and mtimes after the restart');
  });

  it('the server comes back: cachefs sync replays the whole journal, with no conflict', async () => {
    if (nfs) await nfs.start();
    const r = await cli(['sync', m.mnt, '--json']);
    assert.equal(r.code, 0, `cachefs sync: ${r.stderr}${r.stdout}`);
    await waitReplayed(m, 60_000);
    const c = await cli(['conflicts', m.mnt, '--json', '--all']);
    assert.equal(c.code, 0, c.stderr);
    conflicts = JSON.parse(c.stdout) as ConflictItem[];
    const log = (await fsp.readFile(path.join(m.cache, 'cachefs.log'), 'utf8').catch(() => '')).split('\n')
      .filter((l) => /conflict|replay.*(fail|error)/i.test(l)).slice(-10).join('\n');
    assert.deepEqual(conflicts, [], `no conflict at all\n${log}`);
  });

  step('names', 'replayed: the files made offline are on the server', async () => {
    noConflictUnder('shared');
    for (const d of ['a', 'b', 'c']) assert.equal(await fsp.readFile(m.b('shared', d, 'offline.txt'), 'utf8'), `made offline in ${d}\n`);
  });

  step('git', 'replayed: no lock file, the same files, fsck --strict, log and refs as offline, clean status (server copy)', async () => {
    noConflictUnder('git');
    const s = m.b('git', 'repo');
    assert.deepEqual(await filesNamed(path.join(s, '.git'), /\.lock$/), [], 'no *.lock file in the server\'s .git');
    assert.deepEqual(diff(gitOffline.tree!, await snapshot(s)), [], 'the server has what the mount showed offline');
    await git(s, 'fsck', '--strict', '--no-progress');
    assert.equal(await git(s, 'for-each-ref', '--format=%(refname) %(objectname)'), gitOffline.refs);
    assert.equal(await git(s, 'log', '--all', '--format=%H %P %s'), gitOffline.log);
    assert.equal(await git(s, 'rev-parse', '--symbolic-full-name', 'HEAD'), gitOffline.head);
    // The mount, connected again, agrees. Its cached .git/index is fresh (just read) when git
    // on the server rewrites it (index.lock renamed over index: the stat data differ there),
    // and git in the mount must then open the new one, not get ENOENT for the old one.
    const r = m.m('git', 'repo');
    assert.equal(await git(r, 'log', '--all', '--format=%H %P %s'), gitOffline.log);
    await fsp.readFile(path.join(r, '.git', 'index'));
    assert.equal(await git(s, 'status', '--porcelain'), '', 'a clean work tree on the server');
    assert.equal(await git(r, 'status', '--porcelain'), '', 'a clean work tree in the mount');
  });

  step('sqlite3', 'replayed: the same database files; integrity_check ok, same rows and checksums (server copy)', async () => {
    noConflictUnder('sqlite');
    const s = m.b('sqlite');
    // before sqlite3 opens them on the server: a stray hot journal there would be rolled back
    assert.deepEqual(diff(sqliteOffline.tree!, await snapshot(s)), [], 'the server has what the mount showed offline');
    for (const mode of MODES) {
      assert.equal(await sqlite(path.join(s, `${mode}.db`), dbSummarySql), sqliteOffline.summary.get(mode), `${mode}: integrity, row count, sum and checksum`);
    }
  });

  step('editors', 'replayed: the saved contents and backups, no temporary file, on the server', async () => {
    noConflictUnder('edit');
    assert.deepEqual(diff(editOffline.tree!, await snapshot(m.b('edit'))), [], 'the server has what the mount showed offline');
    assert.equal(await fsp.readFile(m.b('edit', 'notes.txt'), 'utf8'), 'notes, version 3\n');
    assert.equal(await fsp.readFile(m.b('edit', 'vimmed.txt'), 'utf8'), 'new line\nsecond line, edited again\n');
    assert.equal(await fsp.readFile(m.b('edit', 'vimmed.txt~'), 'utf8'), 'new line\nsecond line\n');
    assert.equal(await fsp.readFile(m.b('edit', 'backup.txt~'), 'utf8'), 'backed up, version 0\n');
  });

  step('make', 'replayed: mtimes kept; make -n on the server copy and in the mount rebuilds only what changed', async () => {
    noConflictUnder('make');
    const s = m.b('make');
    assert.deepEqual(diff(makeOffline.tree!, await snapshot(s, { mtimes: true })), [], 'the server has the files and mtimes the mount showed offline');
    assert.equal(await run('make', ['-n'], s), makeOffline.dryRun, 'make -n on the server copy');
    assert.equal(await run('make', ['-n'], m.m('make')), makeOffline.dryRun, 'make -n in the mount');
    await run('make', ['-s'], m.m('make'));
    assert.equal((await sh('make', ['-q'], { cwd: m.m('make') })).code, 0, 'make -q in the mount after the build');
    assert.equal((await sh('make', ['-q'], { cwd: s })).code, 0, 'make -q on the server copy after the build in the mount');
  });
});
