// Pins and hoard walks end to end, over both backends: pin a tree, watch it arrive, go
// offline and read every pinned byte; pins survive remounts, cover files made later, come
// from hoard profiles; walks run after a pin, on request and after reconnecting, and say
// what they could not fetch.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { cli, mountFresh, sleep, type Mounted, BACKEND_KINDS, skipKind } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';

interface PinsJson {
  pins: { path: string; recursive: boolean; glob: boolean; priority: number }[];
  hoard: { state: string; reason: string; files: { done: number; total: number }; bytes: { done: number; total: number }; failedCount: number };
}

for (const kind of BACKEND_KINDS) describe(`pins and hoard walks (${kind} backend)`, { skip: skipKind(kind) }, () => {
  let m: Mounted;
  let srv: NfsServer | undefined;
  before(async () => {
    srv = kind === 'nfs' ? await startNfsServer('hoard') : undefined;
    m = await mountFresh('hoard', { nfs: srv, config: { backendTimeoutMs: 2000, fuse: { attrTimeout: 0, entryTimeout: 0, negativeTimeout: 0 } } });
  });
  after(async () => {
    await m?.cleanup();
    await srv?.dispose();
  });

  async function ok(args: string[]): Promise<string> {
    const r = await cli(args, { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `cachefs ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }
  const pins = async (): Promise<PinsJson> => JSON.parse(await ok(['pins', m.mnt, '--json'])) as PinsJson;
  async function tree(dir: string, files: number, size: number): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    for (let i = 0; i < files; i++) {
      const rel = path.join(dir, i % 3 === 0 ? 'sub' : '', `f${i}.bin`);
      await fsp.mkdir(path.dirname(m.b(rel)), { recursive: true });
      const data = randomBytes(size + i);
      await fsp.writeFile(m.b(rel), data);
      out.set(rel, data);
    }
    return out;
  }
  async function waitWalk(reason: RegExp): Promise<PinsJson> {
    for (let i = 0; i < 150; i++) {
      const p = await pins();
      if (reason.test(p.hoard.reason) && p.hoard.state === 'done') return p;
      await sleep(100);
    }
    assert.fail(`no finished hoard walk matching ${reason}: ${JSON.stringify(await pins())}`);
  }

  it('pin -r fetches a tree with JSON progress; offline, every pinned byte reads back exact', async () => {
    const files = await tree('trip', 24, 300_000);
    await fsp.writeFile(m.b('unpinned.txt'), 'not pinned');
    const out = await ok(['pin', m.m('trip'), '-r', '--priority', '7', '--json']);
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { type: string; files?: { done: number; total: number }; failedCount?: number });
    const summary = lines.at(-1)!;
    assert.equal(summary.type, 'summary');
    assert.deepEqual(summary.files, { done: 24, total: 24 });
    assert.equal(summary.failedCount, 0);
    assert.ok(lines.slice(0, -1).every((l) => l.type === 'progress'), 'progress lines, then one summary');
    const p = await pins();
    assert.deepEqual(p.pins.map((x) => [x.path, x.recursive, x.priority]), [['/trip', true, 7]]);
    assert.equal(p.hoard.bytes.done, p.hoard.bytes.total);
    await ok(['offline', m.mnt]);
    try {
      for (const [rel, data] of files) assert.ok((await fsp.readFile(m.m(rel))).equals(data), `${rel} byte-exact offline`);
      await assert.rejects(fsp.readFile(m.m('unpinned.txt')), /EHOSTUNREACH|ENODATA/, 'what is not pinned was not fetched');
    } finally {
      await ok(['online', m.mnt]);
    }
  });

  it('a recursive pin covers files made later; a walk after reconnecting fetches them', async () => {
    await tree('later', 2, 1000);
    await ok(['pin', m.m('later'), '-r']);
    await ok(['offline', m.mnt]);
    const fresh = randomBytes(200_000);
    await fsp.mkdir(m.b('later', 'new'), { recursive: true });
    await fsp.writeFile(m.b('later', 'new', 'made-meanwhile.bin'), fresh);
    await ok(['online', m.mnt]);
    await waitWalk(/reconnected/);
    await ok(['offline', m.mnt]);
    try {
      assert.ok((await fsp.readFile(m.m('later', 'new', 'made-meanwhile.bin'))).equals(fresh), 'fetched by the walk after reconnecting');
    } finally {
      await ok(['online', m.mnt]);
    }
  });

  it('pins survive a remount (and the walk at mount refreshes them); unpin -r removes them', async () => {
    await ok(['pin', m.m('trip', 'sub'), '--no-hoard']);
    await m.remount();
    const p = await waitWalk(/mounted/);
    assert.ok(p.pins.some((x) => x.path === '/trip' && x.recursive), JSON.stringify(p.pins));
    assert.ok(p.pins.some((x) => x.path === '/trip/sub' && !x.recursive));
    await ok(['unpin', m.m('trip'), '-r']);
    const after = await pins();
    assert.ok(!after.pins.some((x) => x.path.startsWith('/trip')), JSON.stringify(after.pins));
    const r = await cli(['unpin', m.m('trip')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no pin on \/trip/);
  });

  it('a hoard profile with priorities and globs; cachefs hoard reports what it could not fetch', async () => {
    await fsp.mkdir(m.b('notes', 'a'), { recursive: true });
    await fsp.writeFile(m.b('notes', 'a', 'one.md'), '# one');
    await fsp.writeFile(m.b('notes', 'two.md'), '# two');
    await fsp.writeFile(m.b('notes', 'skip.txt'), 'not matched');
    await fsp.writeFile(m.b('vanishing.txt'), 'soon gone');
    const profile = path.join(m.root, 'trip.hoard');
    await fsp.writeFile(profile, '# what I need on the train\n/notes/**/*.md 20\nvanishing.txt 5\n');
    await ok(['pin', '--from', profile, m.mnt, '--no-hoard']);
    const p = await pins();
    assert.deepEqual(p.pins.filter((x) => !x.path.startsWith('/later')).map((x) => [x.path, x.glob, x.priority]),
      [['/notes/**/*.md', true, 20], ['/vanishing.txt', false, 5]]);
    await fsp.rm(m.b('vanishing.txt'));
    const r = await cli(['hoard', m.mnt]);
    assert.equal(r.code, 3, `a walk with failures exits 3: ${r.stdout} ${r.stderr}`);
    assert.match(r.stdout, /not fetched: \/vanishing\.txt: ENOENT/);
    assert.match(r.stderr, /1 pinned item\(s\) could not be fetched/);
    await ok(['offline', m.mnt]);
    try {
      assert.equal(await fsp.readFile(m.m('notes', 'a', 'one.md'), 'utf8'), '# one');
      assert.equal(await fsp.readFile(m.m('notes', 'two.md'), 'utf8'), '# two');
      await assert.rejects(fsp.readFile(m.m('notes', 'skip.txt')), /ENODATA|EHOSTUNREACH/, 'the glob did not match it');
    } finally {
      await ok(['online', m.mnt]);
    }
  });

  it('clear errors: a path outside any mount, a missing path, a bad profile line', async () => {
    let r = await cli(['pin', path.join(m.root, 'elsewhere')]);
    assert.equal(r.code, 1, 'not in a mount: 1, as from every command');
    assert.match(r.stderr, /is not in a cachefs mount/);
    assert.match(r.stderr, /hint:/);
    r = await cli(['pin', m.m('no-such-thing')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /\/no-such-thing does not exist in the mount/);
    const bad = path.join(m.root, 'bad.hoard');
    await fsp.writeFile(bad, '/ok 1\n/bad high\n');
    r = await cli(['pin', '--from', bad, m.mnt]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.hoard:2: "high" is neither a priority nor -r/);
  });

  it('pin FILE -r pins the file itself, and neither says nor stores "recursive" (a profile line too)', async () => {
    await fsp.writeFile(m.b('single.txt'), 'one file');
    await fsp.writeFile(m.b('other.txt'), 'another file');
    const out = await ok(['pin', m.m('single.txt'), '-r', '--no-hoard']);
    assert.doesNotMatch(out, /\(recursive\)/);
    assert.match(out, /pinned \/single\.txt \(not a directory: -r does not apply\)/);
    const profile = path.join(m.root, 'files.hoard');
    await fsp.writeFile(profile, '/other.txt 3 -r\n');
    assert.doesNotMatch(await ok(['pin', '--from', profile, m.mnt, '--no-hoard']), /\(recursive\)/);
    const stored = (await pins()).pins.filter((x) => x.path === '/single.txt' || x.path === '/other.txt');
    assert.deepEqual(stored.map((x) => [x.path, x.recursive]), [['/other.txt', false], ['/single.txt', false]]);
    assert.doesNotMatch(await ok(['pins', m.mnt]), /txt +\(recursive\)/);
    await ok(['unpin', m.m('single.txt'), m.m('other.txt')]);
  });
});
