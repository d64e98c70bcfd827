// Conflicts end to end: two writers (the cachefs mount while disconnected, and a direct
// change to the backend standing in for a second client), every conflict kind, every
// automatic rule and every resolution choice, over both backends. After each choice the
// backend must hold exactly what was chosen, and before it both variants must be readable.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { cli, mountFresh, sh, sleep, type Mounted, BACKEND_KINDS, skipKind } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';
import { sendControl } from '../src/daemon/control.js';
import { waitUntil } from './helpers/wait.js';

interface ConflictJson {
  id: number; kind: string; path: string; resolvedAt: number | null; resolution: string | null; resolvedBy: string | null;
  dir: string | null; detail: { from?: string; note?: string; fields?: string[] };
}

for (const kind of BACKEND_KINDS) describe(`conflicts (${kind} backend)`, { skip: skipKind(kind) }, () => {
  let m: Mounted;
  let srv: NfsServer | undefined;
  before(async () => {
    srv = kind === 'nfs' ? await startNfsServer('conflicts') : undefined;
    const config = { backendTimeoutMs: 2000, fuse: { attrTimeout: 0, entryTimeout: 0, negativeTimeout: 0 } };
    m = await mountFresh('conflicts', { nfs: srv, config });
  });
  after(async () => {
    await m?.cleanup();
    await srv?.dispose();
  });

  /** Each test works in its own directory, made and fully cached while connected. */
  let n = 0;
  async function fresh(files: Record<string, string> = {}): Promise<string> {
    const d = `t${++n}`;
    await fsp.mkdir(m.m(d));
    for (const [name, content] of Object.entries(files)) {
      await fsp.mkdir(path.dirname(m.m(d, name)), { recursive: true });
      await fsp.writeFile(m.m(d, name), content);
    }
    await cacheTree(m.m(d));
    return d;
  }
  async function cacheTree(p: string): Promise<void> {
    for (const e of await fsp.readdir(p, { withFileTypes: true })) {
      const q = path.join(p, e.name);
      if (e.isDirectory()) await cacheTree(q);
      else if (e.isFile()) await fsp.readFile(q);
      else if (e.isSymbolicLink()) await fsp.readlink(q);
    }
  }
  // offline, sync and the conflict list go over the control socket from this process: the
  // CLI's forms of them are cli.test.ts's, and a CLI process per step cost this suite ~40%.
  const ctl = (req: Record<string, unknown>, ms?: number) => sendControl(path.join(m.cache, 'control.sock'), req as never, ms);
  async function offline(): Promise<void> {
    await ctl({ op: 'offline' });
  }
  /** The second writer's changes must look newer than the base (ctime/mtime granularity). */
  async function server(fn: () => Promise<void>): Promise<void> {
    await sleep(30);
    await fn();
  }
  async function sync(): Promise<void> {
    await ctl({ op: 'online' }, 120_000);
    const st = await m.statusDirect();
    assert.equal(st.state, 'connected');
    assert.equal(st.journal.pending, 0);
  }
  async function conflicts(all = false): Promise<ConflictJson[]> {
    return ((await ctl({ op: 'conflicts', all })) as { conflicts: ConflictJson[] }).conflicts;
  }
  async function openAt(p: string): Promise<ConflictJson> {
    const hit = (await conflicts()).filter((c) => c.path === p);
    assert.equal(hit.length, 1, `one open conflict at ${p}: ${JSON.stringify(await conflicts(true))}`);
    return hit[0]!;
  }
  async function autoAt(p: string, resolution: string): Promise<ConflictJson> {
    const hit = (await conflicts(true)).filter((c) => c.path === p && c.resolvedBy === 'auto');
    assert.ok(hit.some((c) => c.resolution === resolution), `auto ${resolution} at ${p}: ${JSON.stringify(hit)}`);
    assert.ok(!(await conflicts()).some((c) => c.path === p), `nothing open at ${p}`);
    return hit.find((c) => c.resolution === resolution)!;
  }
  const read = (p: string) => fsp.readFile(p, 'utf8');
  const variant = (id: number, name: string) => m.m('.cachefs', 'conflicts', String(id), name);
  async function resolve(args: string[]): Promise<void> {
    const r = await cli(['resolve', ...args]);
    assert.equal(r.code, 0, r.stderr);
  }
  async function exists(p: string): Promise<boolean> {
    return fsp.lstat(p).then(() => true, () => false);
  }

  // ---------------------------------------------------------------- update / update

  it('update/update: parked, both variants readable in the control directory, --show diffs them; --keep client', async () => {
    const d = await fresh({ 'a.txt': 'line 1\nline 2\n' });
    await offline();
    await fsp.writeFile(m.m(d, 'a.txt'), 'line 1\nclient line 2\n');
    await server(() => fsp.writeFile(m.b(d, 'a.txt'), 'line 1\nserver line 2\n'));
    await sync();
    const c = await openAt(`/${d}/a.txt`);
    assert.equal(c.kind, 'update-update');
    assert.equal(await read(m.b(d, 'a.txt')), 'line 1\nserver line 2\n', 'the server variant is not overwritten');
    assert.equal(await read(m.m(d, 'a.txt')), 'line 1\nserver line 2\n', 'the conflicted path shows the server variant');
    assert.equal(await read(variant(c.id, 'client')), 'line 1\nclient line 2\n');
    assert.equal(await read(variant(c.id, 'server')), 'line 1\nserver line 2\n');
    assert.equal(await read(variant(c.id, 'base')), 'line 1\nline 2\n', 'the base is kept for small files');
    const shown = await cli(['conflicts', m.mnt, '--show', String(c.id)]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /update-update/);
    assert.match(shown.stdout, /^-client line 2$/m);
    assert.match(shown.stdout, /^\+server line 2$/m);
    assert.ok((await m.status()).conflicts >= 1, 'status counts the open conflict');
    await resolve([m.m(d, 'a.txt'), '--keep', 'client']);
    await sync();
    assert.equal(await read(m.b(d, 'a.txt')), 'line 1\nclient line 2\n', 'the server holds the client variant');
    assert.equal(await read(m.m(d, 'a.txt')), 'line 1\nclient line 2\n');
    assert.ok(!(await conflicts()).some((x) => x.id === c.id), 'resolved');
    const lf = await fsp.readdir(m.m('.cachefs', 'lost+found'));
    assert.ok(lf.some((f) => f.startsWith(`${c.id}-server`)), `the discarded server variant is in lost+found: ${lf}`);
  });

  it('update/update: --keep server leaves the server variant; the client one goes to lost+found', async () => {
    const d = await fresh({ 'a.txt': 'base' });
    await offline();
    await fsp.writeFile(m.m(d, 'a.txt'), 'client');
    await server(() => fsp.writeFile(m.b(d, 'a.txt'), 'server!'));
    await sync();
    const c = await openAt(`/${d}/a.txt`);
    await resolve([m.mnt, '--id', String(c.id), '--keep', 'server']);
    await sync();
    assert.equal(await read(m.b(d, 'a.txt')), 'server!');
    const lf = await fsp.readdir(m.m('.cachefs', 'lost+found'));
    const kept = lf.find((f) => f.startsWith(`${c.id}-client`));
    assert.ok(kept, `client variant kept in lost+found: ${lf}`);
    assert.equal(await read(m.m('.cachefs', 'lost+found', kept)), 'client');
  });

  // lost+found is the cache directory's alone (the backend never sees it): one backend is enough.
  it('cachefs lost-found lists what resolutions discarded, removes entries by name, and empties it', {
    skip: kind !== 'local' && 'lost+found does not depend on the backend',
  }, async () => {
    const d = await fresh({ 'lf.txt': 'base' });
    await offline();
    await fsp.writeFile(m.m(d, 'lf.txt'), 'client');
    await server(() => fsp.writeFile(m.b(d, 'lf.txt'), 'server!'));
    await sync();
    const c = await openAt(`/${d}/lf.txt`);
    await resolve([m.mnt, '--id', String(c.id), '--keep', 'server']);
    interface Lost { name: string; type: string; bytes: number; movedAt: string; conflict: number | null; variant: string | null; original: string | null }
    const list = async (): Promise<Lost[]> => {
      const r = await cli(['lost-found', m.mnt, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Lost[];
    };
    const mine = (await list()).filter((e) => e.conflict === c.id);
    // --keep server: every variant the conflict had goes there (the path has the server's bytes).
    assert.deepEqual(mine.filter((e) => e.variant !== 'resolved').map((e) => [e.variant, e.original, e.type, e.bytes]).sort(),
      [['base', 'lf.txt', 'file', 4], ['client', 'lf.txt', 'file', 6], ['server', 'lf.txt', 'file', 7]], JSON.stringify(mine));
    assert.ok(mine.some((e) => e.variant === 'resolved'), 'and the resolved file it was seeded with');
    assert.ok(mine.every((e) => !Number.isNaN(Date.parse(e.movedAt))));
    const text = await cli(['lost-found', m.mnt]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`${c.id}-client-lf\\.txt +file .*conflict #${c.id}: the client variant of lf\\.txt`));
    assert.match(text.stdout, /--empty/);

    const client = mine.find((e) => e.variant === 'client')!.name;
    const base = mine.find((e) => e.variant === 'base')!.name;
    let r = await cli(['lost-found', m.mnt, '--remove', 'no-such-entry', client]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /lost\+found has no entry "no-such-entry"; nothing was removed/);
    assert.ok(await exists(m.m('.cachefs', 'lost+found', client)), 'nothing was removed');
    r = await cli(['lost-found', m.mnt, '--remove', '../control.sock']);
    assert.equal(r.code, 1, 'a name leading out of lost+found is refused');
    r = await cli(['lost-found', m.mnt, '--remove', m.m('.cachefs', 'lost+found', client)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`removed ${c.id}-client-lf\\.txt \\(6 B\\)`));
    assert.equal(await exists(m.m('.cachefs', 'lost+found', client)), false);
    assert.ok((await list()).some((e) => e.name === base), 'the other entry stays');

    r = await cli(['lost-found', m.mnt, '--empty', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const emptied = JSON.parse(r.stdout) as { removed: Lost[]; bytes: number };
    assert.ok(emptied.removed.some((e) => e.name === base));
    assert.equal(emptied.bytes, emptied.removed.reduce((n, e) => n + e.bytes, 0));
    assert.deepEqual(await list(), []);
    assert.deepEqual(await fsp.readdir(m.m('.cachefs', 'lost+found')), [], 'the mount shows it empty');
    r = await cli(['lost-found', m.mnt, '--empty']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /already empty/);
    r = await cli(['lost-found', m.mnt]);
    assert.match(r.stdout, /is empty/);
  });

  it('update/update: --keep both puts the client variant beside the server one under a marked name', async () => {
    const d = await fresh({ 'report.txt': 'base' });
    await offline();
    await fsp.writeFile(m.m(d, 'report.txt'), 'client');
    await server(() => fsp.writeFile(m.b(d, 'report.txt'), 'server'));
    await sync();
    const c = await openAt(`/${d}/report.txt`);
    const listed = async () => (await sh('ls', [m.m(d)])).stdout.split('\n').filter(Boolean);
    assert.deepEqual(await listed(), ['report.txt']);
    await resolve([m.m(d, 'report.txt'), '--keep', 'both']);
    // The mount made the marked name itself, not at the kernel's request: the next listing
    // shows it at once.
    assert.deepEqual(await listed(), [`report.client-conflict-${c.id}.txt`, 'report.txt']);
    await sync();
    assert.equal(await read(m.b(d, 'report.txt')), 'server');
    assert.equal(await read(m.b(d, `report.client-conflict-${c.id}.txt`)), 'client');
  });

  it('a name near NAME_MAX (254 bytes of é): --keep both shortens the marked name to fit 255 bytes, and lost+found entries fit', async () => {
    const long = `${'é'.repeat(125)}.txt`; // 254 bytes, 129 characters
    const d = await fresh({ [long]: 'base' });
    await offline();
    await fsp.writeFile(m.m(d, long), 'client');
    await server(() => fsp.writeFile(m.b(d, long), 'server'));
    await sync();
    const c = await openAt(`/${d}/${long}`);
    await resolve([m.m(d, long), '--keep', 'both']);
    await sync();
    assert.equal(await read(m.b(d, long)), 'server');
    const marked = (await fsp.readdir(m.b(d))).find((n) => n !== long) ?? assert.fail('no marked name beside it');
    assert.ok(marked.endsWith(`.client-conflict-${c.id}.txt`) && marked.startsWith('éé'), `marked name: ${marked}`);
    assert.ok(Buffer.byteLength(marked) <= 255 && Buffer.byteLength(marked) >= 253, `${Buffer.byteLength(marked)} bytes`);
    assert.equal(await read(m.b(d, marked)), 'client');
    assert.equal(await read(m.m(d, marked)), 'client');
    const lf = (await fsp.readdir(m.m('.cachefs', 'lost+found'))).filter((f) => f.startsWith(`${c.id}-`));
    assert.ok(lf.some((f) => f.startsWith(`${c.id}-base-éé`)), `the base variant is in lost+found: ${lf}`);
    assert.ok(lf.every((f) => Buffer.byteLength(f) <= 255), lf.join(', '));
  });

  it('update/update: --use FILE, and a resolved variant written in the mount with --resolved', async () => {
    const d = await fresh({ 'x.bin': 'base', 'y.txt': 'base' });
    await offline();
    await fsp.writeFile(m.m(d, 'x.bin'), Buffer.from([0, 1, 2, 3, 255]));
    await fsp.writeFile(m.m(d, 'y.txt'), 'client y');
    await server(async () => {
      await fsp.writeFile(m.b(d, 'x.bin'), Buffer.from([9, 9, 0, 9]));
      await fsp.writeFile(m.b(d, 'y.txt'), 'server y');
    });
    await sync();
    const cx = await openAt(`/${d}/x.bin`);
    const shown = await cli(['conflicts', m.mnt, '--show', String(cx.id)]);
    assert.match(shown.stdout, /binary variants/);
    assert.match(shown.stdout, /sha256/);
    const mine = path.join(m.root, 'chosen.bin');
    await fsp.writeFile(mine, Buffer.from('chosen by the user'));
    await resolve([m.m(d, 'x.bin'), '--use', mine]);
    const cy = await openAt(`/${d}/y.txt`);
    await fsp.writeFile(variant(cy.id, 'resolved'), 'merged by hand');
    await resolve([m.mnt, '--id', String(cy.id), '--resolved']);
    await sync();
    assert.equal(await read(m.b(d, 'x.bin')), 'chosen by the user');
    assert.equal(await read(m.b(d, 'y.txt')), 'merged by hand');
  });

  it('a resolution keeps the chosen variant\'s mode, and --use / --resolved keep the client variant in lost+found', async () => {
    const d = await fresh({ 'run.sh': 'base', 'use.sh': 'base', 'res.sh': 'base' });
    for (const f of ['run.sh', 'use.sh', 'res.sh']) await fsp.chmod(m.m(d, f), 0o755);
    await cacheTree(m.m(d));
    await offline();
    for (const f of ['run.sh', 'use.sh', 'res.sh']) await fsp.writeFile(m.m(d, f), `client ${f}`);
    await server(async () => { for (const f of ['run.sh', 'use.sh', 'res.sh']) await fsp.writeFile(m.b(d, f), `server ${f}`); });
    await sync();
    const cr = await openAt(`/${d}/run.sh`);
    await resolve([m.mnt, '--id', String(cr.id), '--keep', 'client']);
    const cu = await openAt(`/${d}/use.sh`);
    const mine = path.join(m.root, 'mine.sh');
    await fsp.writeFile(mine, 'chosen', { mode: 0o600 });
    await resolve([m.mnt, '--id', String(cu.id), '--use', mine]);
    const cs = await openAt(`/${d}/res.sh`);
    await fsp.writeFile(variant(cs.id, 'resolved'), 'merged');
    await resolve([m.mnt, '--id', String(cs.id), '--resolved']);
    await sync();
    for (const f of ['run.sh', 'use.sh', 'res.sh']) {
      assert.equal((await fsp.stat(m.b(d, f))).mode & 0o777, 0o755, `${f} keeps its mode on the server`);
    }
    assert.equal(await read(m.b(d, 'use.sh')), 'chosen');
    const lf = await fsp.readdir(m.m('.cachefs', 'lost+found'));
    for (const c of [cu, cs]) {
      const kept = lf.find((f) => f.startsWith(`${c.id}-client`));
      assert.ok(kept, `conflict ${c.id}: the client variant is in lost+found: ${lf}`);
    }
    assert.equal(await read(m.m('.cachefs', 'lost+found', lf.find((f) => f.startsWith(`${cs.id}-client`))!)), 'client res.sh');
  });

  it('resolutions at once each write as their own variant\'s owner', async () => {
    const owners = [1001, 1002, 1001, 1002, 1001, 1002];
    const files = Object.fromEntries(owners.map((_, i) => [`o${i}.txt`, 'base']));
    const d = await fresh(files);
    for (let i = 0; i < owners.length; i++) await fsp.chown(m.b(d, `o${i}.txt`), owners[i]!, owners[i]!);
    await fsp.chmod(m.b(d), 0o777); // both owners may create their copies beside the server's
    await cacheTree(m.m(d));
    for (let i = 0; i < owners.length; i++) await fsp.stat(m.m(d, `o${i}.txt`));
    await offline();
    for (let i = 0; i < owners.length; i++) await fsp.writeFile(m.m(d, `o${i}.txt`), `client ${i}`);
    await server(async () => { for (let i = 0; i < owners.length; i++) await fsp.writeFile(m.b(d, `o${i}.txt`), `server ${i}`); });
    await sync();
    const cs = await Promise.all(owners.map((_, i) => openAt(`/${d}/o${i}.txt`)));
    await Promise.all(cs.map((c) => resolve([m.mnt, '--id', String(c.id), '--keep', 'both'])));
    await sync();
    for (let i = 0; i < owners.length; i++) {
      const st = await fsp.stat(m.b(d, `o${i}.client-conflict-${cs[i]!.id}.txt`));
      assert.equal(st.uid, owners[i], `o${i}'s copy belongs to its owner`);
    }
  });

  it('automatic: identical content on both sides, and a clean three-way merge of text', async () => {
    const base = Array.from({ length: 12 }, (_, i) => `line ${i}`).join('\n') + '\n';
    const d = await fresh({ 'same.txt': 'base', 'merge.txt': base, 'clash.txt': base });
    await offline();
    await fsp.writeFile(m.m(d, 'same.txt'), 'both wrote this');
    await fsp.writeFile(m.m(d, 'merge.txt'), base.replace('line 1\n', 'client line 1\n'));
    await fsp.writeFile(m.m(d, 'clash.txt'), base.replace('line 5\n', 'client line 5\n'));
    await server(async () => {
      await fsp.writeFile(m.b(d, 'same.txt'), 'both wrote this');
      await fsp.writeFile(m.b(d, 'merge.txt'), base.replace('line 10\n', 'server line 10\n'));
      await fsp.writeFile(m.b(d, 'clash.txt'), base.replace('line 5\n', 'server line 5\n'));
    });
    await sync();
    await autoAt(`/${d}/same.txt`, 'auto-identical');
    assert.equal(await read(m.b(d, 'same.txt')), 'both wrote this');
    await autoAt(`/${d}/merge.txt`, 'auto-merged');
    const merged = base.replace('line 1\n', 'client line 1\n').replace('line 10\n', 'server line 10\n');
    assert.equal(await read(m.b(d, 'merge.txt')), merged, 'both edits are on the server');
    assert.equal(await read(m.m(d, 'merge.txt')), merged);
    const clash = await openAt(`/${d}/clash.txt`);
    assert.equal(clash.kind, 'update-update', 'an overlapping edit is not merged');
    const resolved = await read(variant(clash.id, 'resolved'));
    assert.match(resolved, /^<<<<<<< /m, 'the resolved variant starts as the merge with conflict markers');
    assert.match(resolved, /client line 5/);
    assert.match(resolved, /server line 5/);
    assert.equal(await read(m.b(d, 'clash.txt')), base.replace('line 5\n', 'server line 5\n'));
    await resolve([m.m(d, 'clash.txt'), '--keep', 'server']);
  });

  // ---------------------------------------------------------------- remove vs update

  it('update/remove: the server removed a file we changed; the update is kept (made again with our bytes)', async () => {
    const d = await fresh({ 'gone.txt': 'base', 'sub/deep.txt': 'base deep' });
    await offline();
    await fsp.writeFile(m.m(d, 'gone.txt'), 'our change');
    await fsp.writeFile(m.m(d, 'sub/deep.txt'), 'our deep change');
    await server(async () => {
      await fsp.rm(m.b(d, 'gone.txt'));
      await fsp.rm(m.b(d, 'sub'), { recursive: true });
    });
    await sync();
    await autoAt(`/${d}/gone.txt`, 'auto-kept-update');
    assert.equal(await read(m.b(d, 'gone.txt')), 'our change');
    assert.equal(await read(m.b(d, 'sub/deep.txt')), 'our deep change', 'its removed directory is made again too');
    assert.equal(await read(m.m(d, 'sub/deep.txt')), 'our deep change');
  });

  it('remove/update: we removed a file the server changed; the server\'s update stays', async () => {
    const d = await fresh({ 'keep.txt': 'base', 'plain.txt': 'base', 'dir/old.txt': 'x' });
    await offline();
    await fsp.rm(m.m(d, 'keep.txt'));
    await fsp.rm(m.m(d, 'plain.txt'));
    await fsp.rm(m.m(d, 'dir'), { recursive: true });
    await server(async () => {
      await fsp.writeFile(m.b(d, 'keep.txt'), 'changed on the server');
      await fsp.writeFile(m.b(d, 'dir/new.txt'), 'added on the server');
    });
    await sync();
    await autoAt(`/${d}/keep.txt`, 'auto-kept-update');
    assert.equal(await read(m.b(d, 'keep.txt')), 'changed on the server');
    assert.equal(await read(m.m(d, 'keep.txt')), 'changed on the server', 'the mount shows it again');
    assert.equal(await exists(m.b(d, 'plain.txt')), false, 'an unchanged file is removed');
    await autoAt(`/${d}/dir`, 'auto-kept-update');
    assert.equal(await read(m.b(d, 'dir/new.txt')), 'added on the server', 'a directory the server added to stays');
    assert.equal(await exists(m.b(d, 'dir/old.txt')), false);
  });

  // ---------------------------------------------------------------- names

  it('create/create of one name: the server\'s stays, ours is parked; --keep client replaces it', async () => {
    const d = await fresh();
    await offline();
    await fsp.writeFile(m.m(d, 'new.txt'), 'client made this');
    await fsp.writeFile(m.m(d, 'twin.txt'), 'same bytes');
    await server(async () => {
      await fsp.writeFile(m.b(d, 'new.txt'), 'server made this');
      await fsp.writeFile(m.b(d, 'twin.txt'), 'same bytes');
    });
    await sync();
    const c = await openAt(`/${d}/new.txt`);
    assert.equal(c.kind, 'create-create');
    assert.equal(await read(m.b(d, 'new.txt')), 'server made this');
    assert.equal(await read(m.m(d, 'new.txt')), 'server made this');
    assert.equal(await read(variant(c.id, 'client')), 'client made this');
    await autoAt(`/${d}/twin.txt`, 'auto-identical');
    await resolve([m.m(d, 'new.txt'), '--keep', 'client']);
    await sync();
    assert.equal(await read(m.b(d, 'new.txt')), 'client made this');
  });

  it('file vs directory at one name: parked as file-dir; --keep both keeps the server file and our tree beside it', async () => {
    const d = await fresh();
    await offline();
    await fsp.mkdir(m.m(d, 'thing'));
    await fsp.writeFile(m.m(d, 'thing', 'inside.txt'), 'in our directory');
    await server(() => fsp.writeFile(m.b(d, 'thing'), 'a file on the server'));
    await sync();
    const c = await openAt(`/${d}/thing`);
    assert.equal(c.kind, 'file-dir');
    assert.equal(await read(m.b(d, 'thing')), 'a file on the server');
    assert.equal(await read(variant(c.id, 'client/inside.txt')), 'in our directory');
    await resolve([m.m(d, 'thing'), '--keep', 'both']);
    await sync();
    assert.equal(await read(m.b(d, 'thing')), 'a file on the server');
    assert.equal(await read(m.b(d, `thing.client-conflict-${c.id}`, 'inside.txt')), 'in our directory');
  });

  it('rename onto a target the server changed, and onto a name the server created: rename-target', async () => {
    const d = await fresh({ 'src.txt': 'our draft', 'dst.txt': 'old target', 'src2.txt': 'second draft' });
    await offline();
    await fsp.rename(m.m(d, 'src.txt'), m.m(d, 'dst.txt'));
    await fsp.rename(m.m(d, 'src2.txt'), m.m(d, 'fresh.txt'));
    await server(async () => {
      await fsp.writeFile(m.b(d, 'dst.txt'), 'target changed on the server');
      await fsp.writeFile(m.b(d, 'fresh.txt'), 'made on the server');
    });
    await sync();
    const c1 = await openAt(`/${d}/dst.txt`);
    const c2 = await openAt(`/${d}/fresh.txt`);
    assert.equal(c1.kind, 'rename-target');
    assert.equal(c2.kind, 'rename-target');
    assert.equal(c1.detail.from, `/${d}/src.txt`);
    assert.equal(await read(m.b(d, 'dst.txt')), 'target changed on the server', 'the changed target is not replaced');
    assert.equal(await read(m.b(d, 'fresh.txt')), 'made on the server', 'the new file is not replaced');
    assert.equal(await read(variant(c1.id, 'client')), 'our draft');
    await resolve([m.m(d, 'dst.txt'), '--keep', 'client']);
    await resolve([m.mnt, '--id', String(c2.id), '--keep', 'server']);
    await sync();
    assert.equal(await read(m.b(d, 'dst.txt')), 'our draft');
    assert.equal(await exists(m.b(d, 'src.txt')), false, 'the renamed source is gone, as we renamed it');
    assert.equal(await read(m.b(d, 'fresh.txt')), 'made on the server');
  });

  it('a directory removed on the server while we made things in it is made again to hold them', async () => {
    const d = await fresh({ 'proj/old.txt': 'old' });
    await offline();
    await fsp.writeFile(m.m(d, 'proj', 'new.txt'), 'made offline');
    await fsp.mkdir(m.m(d, 'proj', 'sub'));
    await fsp.writeFile(m.m(d, 'proj', 'sub', 'deeper.txt'), 'deeper');
    await server(() => fsp.rm(m.b(d, 'proj'), { recursive: true }));
    await sync();
    await autoAt(`/${d}/proj`, 'auto-kept-update');
    const c = (await conflicts(true)).find((x) => x.path === `/${d}/proj`)!;
    assert.equal(c.kind, 'dir-removed-with-children');
    assert.equal(await read(m.b(d, 'proj', 'new.txt')), 'made offline');
    assert.equal(await read(m.b(d, 'proj', 'sub', 'deeper.txt')), 'deeper');
    assert.equal(await exists(m.b(d, 'proj', 'old.txt')), false, 'what the server removed stays removed');
    assert.deepEqual((await fsp.readdir(m.m(d, 'proj'))).sort(), ['new.txt', 'sub']);
  });

  it('disjoint changes to one directory merge, and directories made on both sides merge', async () => {
    const d = await fresh({ 'keep.txt': 'k' });
    await offline();
    await fsp.writeFile(m.m(d, 'ours.txt'), 'ours');
    await fsp.mkdir(m.m(d, 'both'));
    await fsp.writeFile(m.m(d, 'both', 'c.txt'), 'client file');
    await server(async () => {
      await fsp.writeFile(m.b(d, 'theirs.txt'), 'theirs');
      await fsp.mkdir(m.b(d, 'both'));
      await fsp.writeFile(m.b(d, 'both', 's.txt'), 'server file');
    });
    await sync();
    assert.deepEqual((await fsp.readdir(m.b(d))).sort(), ['both', 'keep.txt', 'ours.txt', 'theirs.txt']);
    assert.deepEqual((await fsp.readdir(m.b(d, 'both'))).sort(), ['c.txt', 's.txt']);
    assert.deepEqual((await fsp.readdir(m.m(d))).sort(), ['both', 'keep.txt', 'ours.txt', 'theirs.txt']);
    assert.deepEqual((await fsp.readdir(m.m(d, 'both'))).sort(), ['c.txt', 's.txt']);
    await autoAt(`/${d}/both`, 'auto-dirs-merged');
    assert.equal((await conflicts()).filter((c) => c.path.startsWith(`/${d}/`)).length, 0);
  });

  // ---------------------------------------------------------------- metadata, symlinks

  it('metadata: a field both changed is a conflict; fields or data changed on one side only merge', async () => {
    const d = await fresh({ 'both.txt': 'b', 'merge.txt': 'm' });
    await fsp.chmod(m.m(d, 'both.txt'), 0o644);
    await fsp.chmod(m.m(d, 'merge.txt'), 0o644);
    await cacheTree(m.m(d));
    await offline();
    await fsp.chmod(m.m(d, 'both.txt'), 0o600);
    await fsp.chmod(m.m(d, 'merge.txt'), 0o600);
    await server(async () => {
      await fsp.chmod(m.b(d, 'both.txt'), 0o640);
      await fsp.writeFile(m.b(d, 'merge.txt'), 'server data');
    });
    await sync();
    const c = await openAt(`/${d}/both.txt`);
    assert.equal(c.kind, 'metadata');
    assert.deepEqual(c.detail.fields, ['mode']);
    assert.equal((await fsp.stat(m.b(d, 'both.txt'))).mode & 0o777, 0o640, 'the server keeps its mode until resolved');
    await autoAt(`/${d}/merge.txt`, 'auto-metadata-merged');
    assert.equal(await read(m.b(d, 'merge.txt')), 'server data');
    assert.equal((await fsp.stat(m.b(d, 'merge.txt'))).mode & 0o777, 0o600, 'our chmod lands on the server\'s new data');
    await resolve([m.m(d, 'both.txt'), '--keep', 'client']);
    await sync();
    assert.equal((await fsp.stat(m.b(d, 'both.txt'))).mode & 0o777, 0o600);
  });

  it('a symlink retargeted on both sides: symlink-retarget; --keep client', async () => {
    const d = await fresh();
    await fsp.symlink('target-a', m.m(d, 'link'));
    await cacheTree(m.m(d));
    await offline();
    await fsp.unlink(m.m(d, 'link'));
    await fsp.symlink('target-client', m.m(d, 'link'));
    await server(async () => {
      await fsp.unlink(m.b(d, 'link'));
      await fsp.symlink('target-server', m.b(d, 'link'));
    });
    await sync();
    const c = await openAt(`/${d}/link`);
    assert.equal(c.kind, 'symlink-retarget');
    assert.equal(await fsp.readlink(m.b(d, 'link')), 'target-server');
    assert.equal(await fsp.readlink(variant(c.id, 'client')), 'target-client');
    assert.equal(await fsp.readlink(variant(c.id, 'server')), 'target-server');
    await resolve([m.m(d, 'link'), '--keep', 'client']);
    await sync();
    assert.equal(await fsp.readlink(m.b(d, 'link')), 'target-client');
  });

  it('resolving while disconnected is journaled and replayed like any change', async () => {
    const d = await fresh({ 'a.txt': 'base' });
    await offline();
    await fsp.writeFile(m.m(d, 'a.txt'), 'client');
    await server(() => fsp.writeFile(m.b(d, 'a.txt'), 'server'));
    await sync();
    const c = await openAt(`/${d}/a.txt`);
    await offline();
    await resolve([m.m(d, 'a.txt'), '--keep', 'client']);
    assert.equal(await read(m.b(d, 'a.txt')), 'server', 'not on the server while disconnected');
    assert.equal(await read(m.m(d, 'a.txt')), 'client', 'the mount shows the choice at once');
    await sync();
    assert.equal(await read(m.b(d, 'a.txt')), 'client');
    assert.equal((await conflicts(true)).find((x) => x.id === c.id)?.resolution, 'client');
  });

  it('our own writes are no conflict: a file written across a disconnection replays whole', async () => {
    const d = await fresh({ 'stream.bin': 'start' });
    const chunk = Buffer.alloc(1024 * 1024 + 17, 7);
    const h = await fsp.open(m.m(d, 'stream.bin'), 'r+');
    // Connected: the first MiB goes to the backend (a journal record applied), the file stays open.
    // `bytes` counts every write record not yet applied; `pending`, the journal's rows, leaves
    // out a connected record the backend takes at once (it never gets a row: write-back.ts).
    await h.write(chunk, 0, chunk.length, 0);
    await waitUntil('the first MiB to be applied', async () => (await m.statusDirect()).journal.bytes === 0, 10_000, 20);
    await sendControl(path.join(m.cache, 'control.sock'), { op: 'offline' });
    const more = Buffer.alloc(512 * 1024, 9);
    await h.write(more, 0, more.length, chunk.length);
    await h.close();
    await sync();
    assert.equal((await conflicts()).filter((c) => c.path === `/${d}/stream.bin`).length, 0, JSON.stringify(await conflicts(true)));
    assert.ok((await fsp.readFile(m.b(d, 'stream.bin'))).equals(Buffer.concat([chunk, more])), 'the backend has every byte');
  });

  it('clear errors: unknown ids, paths without a conflict, and no choice given', async () => {
    let r = await cli(['resolve', m.mnt, '--id', '99999', '--keep', 'client']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no conflict 99999/);
    assert.match(r.stderr, /hint:/);
    r = await cli(['resolve', m.m('nothing-here.txt'), '--keep', 'server']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no open conflict at \/nothing-here\.txt/);
    r = await cli(['resolve', m.m('x'), '--keep', 'mine']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /client, server, both|--keep takes/);
    r = await cli(['resolve', m.m('x')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /exactly one of/);
    r = await cli(['conflicts', m.mnt, '--show', 'abc']);
    assert.notEqual(r.code, 0);
  });
});

// kill -9 of the mount process at seeded points while a replay finds, parks and settles
// conflicts: after a remount (which resumes the replay) nothing is lost and nothing is
// found twice.
describe('conflicts: crash safety of reconciliation (local backend)', () => {
  const POINTS = Number(process.env.CACHEFS_CONFLICT_CRASH_POINTS ?? 6);
  let m: Mounted;
  before(async () => {
    const config = { backendTimeoutMs: 2000, fuse: { attrTimeout: 0, entryTimeout: 0, negativeTimeout: 0 } };
    m = await mountFresh('conflict-crash', { config });
  });
  after(async () => { await m?.cleanup(); });

  for (let point = 0; point < POINTS; point++) {
    it(`kill -9 ${point * 15} ms into a replay with conflicts`, async () => {
      const d = `c${point}`;
      const base = Array.from({ length: 10 }, (_, i) => `line ${i}`).join('\n') + '\n';
      await fsp.mkdir(m.m(d));
      const files: Record<string, string> = { 'uu.txt': 'base uu', 'gone.txt': 'base gone', 'merge.txt': base, 'calm.txt': 'calm', 'meta.txt': 'meta' };
      for (const [f, c] of Object.entries(files)) { await fsp.writeFile(m.m(d, f), c); await fsp.readFile(m.m(d, f)); }
      await fsp.readdir(m.m(d));
      assert.equal((await cli(['offline', m.mnt])).code, 0);
      await fsp.writeFile(m.m(d, 'uu.txt'), 'client uu');
      await fsp.writeFile(m.m(d, 'gone.txt'), 'client gone');
      await fsp.writeFile(m.m(d, 'merge.txt'), base.replace('line 1\n', 'client 1\n'));
      await fsp.writeFile(m.m(d, 'calm.txt'), 'client calm');
      await fsp.writeFile(m.m(d, 'new.txt'), 'client new');
      await fsp.chmod(m.m(d, 'meta.txt'), 0o600);
      await sleep(30);
      await fsp.writeFile(m.b(d, 'uu.txt'), 'server uu');
      await fsp.rm(m.b(d, 'gone.txt'));
      await fsp.writeFile(m.b(d, 'merge.txt'), base.replace('line 8\n', 'server 8\n'));
      await fsp.writeFile(m.b(d, 'new.txt'), 'server new');
      await fsp.chmod(m.b(d, 'meta.txt'), 0o640);
      const pid = (await m.status()).pid;
      const sync = cli(['sync', m.mnt]);
      await sleep(point * 15);
      process.kill(pid, 'SIGKILL');
      await sync;
      await m.mount(); // detaches the dead mount; the records left are replayed
      const r = await cli(['sync', m.mnt]);
      assert.equal(r.code, 0, r.stderr);

      const all = (JSON.parse((await cli(['conflicts', m.mnt, '--json', '--all'])).stdout) as ConflictJson[])
        .filter((c) => c.path.startsWith(`/${d}/`));
      const open = all.filter((c) => c.resolvedAt === null);
      const paths = open.map((c) => c.path);
      assert.equal(new Set(paths).size, paths.length, `no conflict found twice: ${JSON.stringify(open)}`);
      const variantOf = async (p: string, v: string): Promise<string | null> => {
        const c = open.find((x) => x.path === p);
        return c?.dir ? fsp.readFile(path.join(c.dir, v), 'utf8').catch(() => null) : null;
      };
      // update/update: the server keeps its variant, ours is in the open conflict.
      assert.equal(await read(m.b(d, 'uu.txt')), 'server uu');
      assert.equal(await variantOf(`/${d}/uu.txt`, 'client'), 'client uu');
      // create/create likewise.
      assert.equal(await read(m.b(d, 'new.txt')), 'server new');
      assert.equal(await variantOf(`/${d}/new.txt`, 'client'), 'client new');
      // Settled by a rule, or (killed between finding and settling) open with both variants.
      const gone = await fsp.readFile(m.b(d, 'gone.txt'), 'utf8').catch(() => null);
      assert.ok(gone === 'client gone' || await variantOf(`/${d}/gone.txt`, 'client') === 'client gone', `our change to gone.txt survives (${gone})`);
      const merged = base.replace('line 1\n', 'client 1\n').replace('line 8\n', 'server 8\n');
      const mergeNow = await read(m.b(d, 'merge.txt'));
      assert.ok(mergeNow === merged || (await variantOf(`/${d}/merge.txt`, 'client') === base.replace('line 1\n', 'client 1\n')
        && await variantOf(`/${d}/merge.txt`, 'server') === base.replace('line 8\n', 'server 8\n')), `merge.txt: ${mergeNow}`);
      // No conflict: our change is there.
      assert.equal(await read(m.b(d, 'calm.txt')), 'client calm');
      assert.equal((await fsp.stat(m.b(d, 'meta.txt'))).mode & 0o777, 0o640, 'a mode both changed keeps the server\'s until resolved');
      assert.ok(open.some((c) => c.path === `/${d}/meta.txt` && c.kind === 'metadata'), 'and is an open metadata conflict');
    });
  }

  function read(p: string): Promise<string> { return fsp.readFile(p, 'utf8'); }
});

describe('names cachefs makes up for conflicts', () => {
  it('marked and lost+found names: unchanged when short, cut between characters to NAME_MAX bytes when long', async () => {
    const { markedName } = await import('../src/conflict/resolve.js');
    const { lostFoundName } = await import('../src/conflict/lost-found.js');
    assert.equal(markedName('/d/report.txt', 7), '/d/report.client-conflict-7.txt');
    assert.equal(markedName('/d/Makefile', 7), '/d/Makefile.client-conflict-7');
    assert.equal(lostFoundName(7, 'client', 'report.txt'), '7-client-report.txt');
    assert.equal(lostFoundName(7, 'server', ''), '7-server-root');
    const huge = '日'.repeat(85); // 255 bytes, 3 per character
    const marked = path.posix.basename(markedName(`/${huge}.md`, 12));
    assert.ok(Buffer.byteLength(marked) <= 255 && marked.endsWith('日.client-conflict-12.md'), marked);
    assert.equal(Buffer.from(marked).toString('utf8'), marked, 'no character cut in half');
    const lost = lostFoundName(12, 'resolved', huge);
    assert.ok(Buffer.byteLength(lost) <= 255 && lost.startsWith('12-resolved-日'), lost);
    const extOnly = path.posix.basename(markedName(`/a.${'x'.repeat(250)}`, 3));
    assert.ok(Buffer.byteLength(extOnly) <= 255 && extOnly.endsWith('.client-conflict-3'), 'an extension too long to keep goes into the stem');
  });
});
