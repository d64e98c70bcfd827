// Two laptops on one server: two cachefs mounts of the same backend, each with its own cache,
// both taken offline, each changing things (some the same things), then synced one after the
// other. What must hold: the changes of the first to sync all land; the second's land where
// they do not collide, follow the objects the first renamed (identity is the handle, not the
// path), and park as conflicts where they collide; resolving them makes the server what was
// chosen, and the first laptop sees that too once it opens the files again (close-to-open).
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { cli, control, mountFresh, type Mounted, BACKEND_KINDS, skipKind } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';
import { waitUntil } from './helpers/wait.js';

interface ConflictJson { id: number; kind: string; path: string }

/** Every regular file under `root` with its content, by path relative to it (the control directory left out). */
async function files(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(path.join(root, rel))).sort()) {
      if (rel === '' && name === '.cachefs') continue;
      const r = rel ? `${rel}/${name}` : name;
      const st = await fsp.lstat(path.join(root, r));
      if (st.isDirectory()) await walk(r);
      else out[r] = await fsp.readFile(path.join(root, r), 'utf8');
    }
  };
  await walk('');
  return out;
}

for (const kind of BACKEND_KINDS) describe(`two laptops on one server, both offline (${kind} backend)`, { skip: skipKind(kind) }, () => {
  let nfs: NfsServer | undefined;
  const mounts: Mounted[] = [];
  after(async () => {
    for (const m of mounts.reverse()) await m.cleanup();
    await nfs?.dispose();
  });

  it('the first to sync lands whole; the second merges around it, follows its rename, parks the collisions; resolutions reach both', async () => {
    if (kind === 'nfs') nfs = await startNfsServer('two-laptops');
    // Short attribute and name trust, and quick polling: the test is about what merges, not
    // about how long a laptop may show what it cached (up to acdirmax by default).
    const config = { consistency: { pollIntervalS: 0.3, acregmin: 1, acregmax: 2, acdirmin: 1, acdirmax: 2 } };
    const a = await mountFresh('laptop-a', { config, ...(nfs ? { nfs } : {}) });
    mounts.push(a);
    await fsp.mkdir(a.b('dir', 'sub'), { recursive: true });
    for (const f of ['same', 'a', 'b', 'c']) await fsp.writeFile(a.b(f), `orig ${f}\n`);
    await fsp.writeFile(a.b('dir', 'sub', 'f'), 'in\n');
    const b = await mountFresh('laptop-b', { config, sameBackendAs: a });
    mounts.push(b);
    const start = await files(a.backend);
    for (const m of [a, b]) {
      assert.deepEqual(await files(m.mnt), start, 'each laptop reads the whole tree before the trip');
      await control(m, 'offline');
    }

    // Laptop A: edits a and same, renames dir, adds a file in the renamed tree.
    await fsp.appendFile(a.m('a'), 'A edit\n');
    await fsp.writeFile(a.m('same'), 'A same\n');
    await fsp.rename(a.m('dir'), a.m('dir2'));
    await fsp.writeFile(a.m('dir2', 'sub', 'fa'), 'newA\n');
    // Laptop B: edits b and same, removes c, appends to dir/sub/f, saves a by rename.
    await fsp.appendFile(b.m('b'), 'B edit\n');
    await fsp.writeFile(b.m('same'), 'B same\n');
    await fsp.unlink(b.m('c'));
    await fsp.appendFile(b.m('dir', 'sub', 'f'), 'B in\n');
    await fsp.writeFile(b.m('a.new'), 'B replaces a\n');
    await fsp.rename(b.m('a.new'), b.m('a'));

    const online = async (m: Mounted): Promise<ConflictJson[]> => {
      const st = await control(m, 'online');
      assert.equal(st.state, 'connected');
      const r = await cli(['conflicts', m.mnt, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as ConflictJson[];
    };
    assert.deepEqual(await online(a), [], 'the first laptop to sync has no conflict');
    const parked = await online(b);
    assert.deepEqual(parked.map((c) => [c.kind, c.path]).sort(), [['rename-target', '/a'], ['update-update', '/same']],
      JSON.stringify(parked));
    assert.deepEqual(await files(a.backend), {
      'a': 'orig a\nA edit\n',
      'a.new': 'B replaces a\n', // B's rename onto A's changed file waits for a decision
      'b': 'orig b\nB edit\n',
      'dir2/sub/f': 'in\nB in\n', // B's append followed the file into A's renamed directory
      'dir2/sub/fa': 'newA\n',
      'same': 'A same\n',
    }, 'the server after both syncs');

    const idOf = (k: string): string => String(parked.find((c) => c.kind === k)!.id);
    for (const [k, keep] of [['rename-target', 'client'], ['update-update', 'both']] as const) {
      const r = await cli(['resolve', b.mnt, '--id', idOf(k), '--keep', keep]);
      assert.equal(r.code, 0, r.stderr);
    }
    const resolvedB = await cli(['conflicts', b.mnt, '--json']);
    assert.deepEqual(JSON.parse(resolvedB.stdout), [], 'nothing open after the resolutions');
    const marked = `same.client-conflict-${idOf('update-update')}`;
    const final = {
      'a': 'B replaces a\n',
      'b': 'orig b\nB edit\n',
      'dir2/sub/f': 'in\nB in\n',
      'dir2/sub/fa': 'newA\n',
      [marked]: 'B same\n',
      'same': 'A same\n',
    };
    let onServer = '';
    await waitUntil(() => `the server to hold the resolutions (it holds ${onServer})`, async () => {
      const now = await files(a.backend);
      onServer = JSON.stringify(now);
      return isDeepStrictEqual(now, final);
    }, 30_000);
    assert.deepEqual(await files(b.mnt), final, 'laptop B shows the server');
    // Laptop A sees B's changes once its cached attributes and names are revalidated.
    let seen = '';
    await waitUntil(() => `laptop A to show the server (it shows ${seen})`, async () => {
      const now = await files(a.mnt);
      seen = JSON.stringify(now);
      return isDeepStrictEqual(now, final);
    }, 60_000, 200);
  });
});
