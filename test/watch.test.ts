// `cachefs watch`: the event stream a desktop notifier or a script follows. Real mounts (a
// local directory, and a real nfs-ganesha when run as root), watchers run as child processes
// of the real CLI: a disconnect/replay cycle arrives in order (state, offline, reintegrating,
// progress, online) as JSON and as one sentence per event; conflicts say whether they need
// the user; a malformed `watch` request gets an error answer; watchers that hang up are
// unsubscribed; unmounting ends every watcher with an `unmounted` line and exit 0. One
// socket-level test shows a watcher that stops reading costs bounded memory and is told how
// many events it missed.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { CLI, cli, mountFresh, sleep, tempRoot, type Mounted, BACKEND_KINDS, skipKind } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';
import { serveControl, watchControl, type WatchStream } from '../src/daemon/control.js';
import { UserError } from '../src/core/errors.js';
import { MountEventSchema, type WatchEvent } from '../src/daemon/protocol.js';

/** A `cachefs watch` child process and what it printed. */
class Watcher {
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  private partial = '';

  constructor(mnt: string, readonly json: boolean) {
    this.child = spawn(process.execPath, [CLI, 'watch', mnt, ...(json ? ['--json'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      const parts = (this.partial + d).split('\n');
      this.partial = parts.pop()!;
      this.lines.push(...parts);
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => { this.stderr += d; });
    this.exited = new Promise((r) => this.child.on('exit', (code) => r(code)));
  }

  get events(): WatchEvent[] { return this.lines.map((l) => MountEventSchema.parse(JSON.parse(l))); }

  async waitFor(pred: (lines: string[]) => boolean, what: string, ms = 15_000): Promise<void> {
    const t0 = Date.now();
    while (!pred(this.lines)) {
      if (Date.now() - t0 > ms) assert.fail(`watcher: no ${what} after ${ms} ms; got:\n${this.lines.join('\n')}\n${this.stderr}`);
      await sleep(25);
    }
  }

  /** Ctrl-C; resolves with the exit code. */
  async interrupt(): Promise<number | null> {
    this.child.kill('SIGINT');
    return this.exited;
  }

  /** Teardown: ends the child if it is still there (by its own pid). */
  kill(): void { if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL'); }
}

/** One request on the control socket by hand; everything the mount answers, until it closes. */
function rawControl(sock: string, payload: string, ms = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock);
    let buf = '';
    const t = setTimeout(() => { c.destroy(); reject(new Error(`no answer to ${payload} within ${ms} ms (got ${buf})`)); }, ms);
    c.setEncoding('utf8');
    c.on('connect', () => c.write(payload));
    c.on('data', (d: string) => { buf += d; });
    c.on('error', (e) => { clearTimeout(t); reject(e); });
    c.on('close', () => { clearTimeout(t); resolve(buf); });
  });
}

const LINE = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)  (\S+)\s+(.+)$/;

for (const kind of BACKEND_KINDS) describe(`cachefs watch (${kind} backend)`, { skip: skipKind(kind) }, () => {
  let m: Mounted;
  let srv: NfsServer | undefined;
  const watchers: Watcher[] = [];
  const watch = (json: boolean): Watcher => { const w = new Watcher(m.mnt, json); watchers.push(w); return w; };
  const statusWatchers = async (): Promise<number> => ((await m.status()) as unknown as { watchers?: number }).watchers ?? -1;

  before(async () => {
    srv = kind === 'nfs' ? await startNfsServer('watch') : undefined;
    // Each create on the backend takes 20 ms more: replaying 60 of them lasts past two
    // progress ticks (500 ms apart), so the ticker is seen at work, not only the last line.
    m = await mountFresh('watch', { nfs: srv, config: { backendTimeoutMs: 2000 }, env: { CACHEFS_FAULTS: JSON.stringify({ delayMs: { create: 20 } }) } });
    await fsp.readdir(m.m('')); // the root is listed while connected: names can be made in it offline
  });
  after(async () => {
    for (const w of watchers) w.kill();
    await m?.cleanup();
    await srv?.dispose();
  });

  it('a disconnect and replay cycle streams state, offline, reintegrating, progress and online, in order, as JSON and as sentences', async () => {
    const jw = watch(true);
    const hw = watch(false);
    await jw.waitFor((l) => l.length >= 1, 'state line');
    await hw.waitFor((l) => l.length >= 1, 'state line');

    assert.equal((await cli(['offline', m.mnt])).code, 0);
    // Enough records (and bytes) for a replay that has something to report.
    await fsp.mkdir(m.m('offline-dir'));
    for (let i = 0; i < 60; i++) await fsp.writeFile(m.m('offline-dir', `f${i}.txt`), `file ${i} written offline\n`.repeat(50));
    await fsp.writeFile(m.m('big.bin'), Buffer.alloc(2 * 1024 * 1024, 7));
    const r = await cli(['online', m.mnt]);
    assert.equal(r.code, 0, r.stderr);

    await jw.waitFor((l) => l.some((x) => x.includes('"type":"online"')), 'online line');
    await hw.waitFor((l) => l.some((x) => LINE.exec(x)?.[2] === 'online'), 'online line');
    const ev = jw.events;
    const types = ev.map((e) => e.type);
    const firstProgress = types.indexOf('progress');
    assert.ok(firstProgress > 0, `a replay of records shows progress: ${types.join(' ')}`);
    assert.deepEqual(types.filter((t) => t !== 'progress'), ['state', 'offline', 'reintegrating', 'online'], types.join(' '));
    assert.deepEqual(types.slice(2), ['reintegrating', ...types.slice(3, -1).map(() => 'progress'), 'online'], 'progress only between reintegrating and online');

    const [state, offline, reint] = ev as [Extract<WatchEvent, { type: 'state' }>, Extract<WatchEvent, { type: 'offline' }>, Extract<WatchEvent, { type: 'reintegrating' }>];
    assert.equal(state.state, 'connected');
    assert.equal(state.pending, 0);
    assert.equal(offline.reason, 'cachefs offline');
    assert.equal(reint.reason, 'cachefs online');
    assert.ok(reint.pending >= 62, `the journal held every change: ${reint.pending}`);
    const progress = ev.filter((e): e is Extract<WatchEvent, { type: 'progress' }> => e.type === 'progress');
    for (let i = 0; i < progress.length; i++) {
      const p = progress[i]!;
      assert.ok(p.total >= reint.pending && p.pending <= p.total, JSON.stringify(p));
      if (i > 0) assert.ok(p.pending <= progress[i - 1]!.pending, 'the backlog only shrinks');
    }
    assert.ok(progress.length >= 2, `a replay of over a second shows progress while it runs: ${JSON.stringify(progress)}`);
    assert.ok(progress[0]!.pending > 0, 'the first tick comes before the end');
    assert.deepEqual([progress.at(-1)!.pending, progress.at(-1)!.bytes], [0, 0], 'the last progress line says all went');
    const online = ev.at(-1) as Extract<WatchEvent, { type: 'online' }>;
    assert.equal(online.reason, 'journal replayed');
    const times = ev.map((e) => Date.parse(e.at));
    assert.ok(times.every((t, i) => !Number.isNaN(t) && (i === 0 || t >= times[i - 1]!)), 'ISO times, in order');

    // The same events, one sentence each, with the type in its own column.
    assert.equal(hw.lines.length, jw.lines.length, `a line per event:\n${hw.lines.join('\n')}`);
    hw.lines.forEach((l, i) => {
      const mm = LINE.exec(l);
      assert.ok(mm, `human line ${i}: ${l}`);
      assert.equal(mm[2], types[i], l);
    });
    assert.match(hw.lines[0]!, /connected since .*no pending changes; no conflicts$/);
    assert.match(hw.lines[1]!, /offline\s+cachefs offline; working from the cache/);
    assert.match(hw.lines[2]!, new RegExp(`reintegrating cachefs online; replaying ${reint.pending} change`));
    assert.match(hw.lines.at(-2)!, /progress\s+(\d+) of \1 change\(s\) replayed, 0 left$/);

    assert.equal(await jw.interrupt(), 0, 'Ctrl-C ends a watcher with exit 0');
    assert.equal(await hw.interrupt(), 0);
    const t0 = Date.now();
    while (await statusWatchers() !== 0) {
      assert.ok(Date.now() - t0 < 5000, 'watchers that hung up are unsubscribed');
      await sleep(50);
    }
  });

  it('a conflict says whether it needs you, and how to look at it', async () => {
    await fsp.writeFile(m.m('both.txt'), 'base version\n');
    await fsp.writeFile(m.m('gone.txt'), 'base of a file the server removes\n');
    assert.equal(await fsp.readFile(m.m('both.txt'), 'utf8'), 'base version\n');
    assert.equal(await fsp.readFile(m.m('gone.txt'), 'utf8'), 'base of a file the server removes\n');
    const jw = watch(true);
    const hw = watch(false);
    await jw.waitFor((l) => l.length >= 1, 'state line');
    await hw.waitFor((l) => l.length >= 1, 'state line');
    assert.equal((await cli(['offline', m.mnt])).code, 0);
    await fsp.writeFile(m.m('both.txt'), 'client variant, written offline\n');
    await fsp.writeFile(m.m('gone.txt'), 'client variant of a removed file\n');
    await sleep(20); // a new ctime on the server
    await fsp.writeFile(m.b('both.txt'), 'server variant, written meanwhile\n');
    await fsp.rm(m.b('gone.txt'));
    assert.equal((await cli(['sync', m.mnt])).code, 0);
    await jw.waitFor((l) => l.some((x) => x.includes('"type":"online"')), 'online line');
    await hw.waitFor((l) => l.some((x) => LINE.exec(x)?.[2] === 'online'), 'online line');

    const conflicts = jw.events.filter((e): e is Extract<WatchEvent, { type: 'conflict' }> => e.type === 'conflict');
    assert.deepEqual(conflicts.map((c) => c.path).sort(), ['/both.txt', '/gone.txt'], JSON.stringify(conflicts));
    for (const c of conflicts) assert.equal(c.needsYou, c.resolution === null, 'open, or settled by a rule');
    // A rule may also settle a conflict after it was announced open: then `resolved` follows.
    const resolved = jw.events.filter((e): e is Extract<WatchEvent, { type: 'resolved' }> => e.type === 'resolved');
    for (const r of resolved) assert.ok(conflicts.some((c) => c.id === r.id && c.needsYou), `resolved ${r.id} was announced open first`);
    const open = conflicts.filter((c) => c.needsYou && !resolved.some((r) => r.id === c.id));
    assert.equal((await m.status()).conflicts, open.length, 'the open ones are the ones status counts');
    const types = jw.events.map((e) => e.type);
    assert.ok(types.indexOf('conflict') > types.indexOf('reintegrating') && types.lastIndexOf('conflict') < types.indexOf('online'), types.join(' '));
    for (const c of conflicts) {
      const line = hw.lines.find((l) => LINE.exec(l)?.[2] === 'conflict' && l.includes(` ${c.id} (${c.kind}) on ${c.path} `));
      assert.ok(line, `a sentence for conflict ${c.id}:\n${hw.lines.join('\n')}`);
      if (c.needsYou) assert.ok(line.endsWith(`needs you: cachefs conflicts ${m.mnt} --show ${c.id}`), line);
      else assert.match(line, /settled automatically/);
    }
    for (const r of resolved) {
      assert.ok(hw.lines.some((l) => LINE.exec(l)?.[2] === 'resolved' && l.includes(` ${r.id} (${r.kind}) on ${r.path}: ${r.resolution}`)), `a sentence for resolved ${r.id}`);
    }
    // A new watcher starts from a state that counts them.
    const late = watch(true);
    await late.waitFor((l) => l.length >= 1, 'state line');
    assert.equal((late.events[0] as Extract<WatchEvent, { type: 'state' }>).conflicts, open.length);
    for (const w of [jw, hw, late]) assert.equal(await w.interrupt(), 0);
  });

  it('a malformed watch request gets an error answer, and the mount goes on', async () => {
    const sock = path.join(m.cache, 'control.sock');
    for (const bad of ['{"op":"watch","since":0}\n', '{"op":"watch","json":true}\n', 'watch\n']) {
      const answer = JSON.parse(await rawControl(sock, bad)) as { ok: boolean; error?: string };
      assert.equal(answer.ok, false, bad);
      assert.match(answer.error ?? '', /malformed/);
    }
    // A well-formed one by hand: the first line is the state; hanging up unsubscribes.
    const before = await statusWatchers();
    const conns = await Promise.all([1, 2, 3].map(() => new Promise<net.Socket>((resolve, reject) => {
      const c = net.connect(sock);
      c.setEncoding('utf8');
      c.on('connect', () => c.write('{"op":"watch"}\n'));
      c.once('data', (d: string) => {
        try { assert.equal(MountEventSchema.parse(JSON.parse(d.split('\n')[0]!)).type, 'state'); resolve(c); } catch (e) { reject(e); }
      });
      c.on('error', reject);
    })));
    assert.equal(await statusWatchers(), before + 3);
    for (const c of conns) c.destroy();
    const t0 = Date.now();
    while (await statusWatchers() !== before) {
      assert.ok(Date.now() - t0 < 5000, 'watchers that hung up are unsubscribed');
      await sleep(50);
    }
    assert.equal((await m.status()).state, 'connected');
  });

  it('unmounting ends every watcher with an unmounted line and exit 0', async () => {
    const jw = watch(true);
    const hw = watch(false);
    await jw.waitFor((l) => l.length >= 1, 'state line');
    await hw.waitFor((l) => l.length >= 1, 'state line');
    const r = await m.umount();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await jw.exited, 0, jw.stderr);
    assert.equal(await hw.exited, 0, hw.stderr);
    const last = jw.events.at(-1)!;
    assert.equal(last.type, 'unmounted');
    assert.equal((last as Extract<WatchEvent, { type: 'unmounted' }>).reason, 'cachefs umount');
    assert.match(hw.lines.at(-1)!, new RegExp(`^\\S+ \\S+  unmounted\\s+${m.mnt} \\(cachefs umount\\)$`));
    // Nothing to follow any more: a clear error with a hint.
    const again = await cli(['watch', m.mnt, '--json']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /is not a cachefs mount/);
    assert.match(again.stderr, /hint: /);
    assert.equal(again.stdout, '');
  });
});

describe('cachefs watch: the stream on the control socket', () => {
  it('a cache-full line says which limit the write met and what to do about that one', async () => {
    const { formatWatchEvent } = await import('../src/cli/format.js');
    const at = new Date().toISOString();
    const line = (cause?: 'maxBytes' | 'disk') => formatWatchEvent(MountEventSchema.parse({
      type: 'cache-full', path: '/big.bin', message: 'the cache is full: this change cannot be kept while disconnected', at, ...(cause ? { cause } : {}),
    }), '/home/me/work');
    const limit = line('maxBytes');
    assert.match(limit, /\/big\.bin: .*refused \(the journal is intact\)/);
    assert.match(limit, /size limit \(culling\.maxBytes\)/);
    assert.match(limit, /cachefs evict.*cachefs unpin/);
    assert.match(limit, /raise culling\.maxBytes/);
    assert.doesNotMatch(limit, /disk/, 'the size limit is not the disk: freeing disk space would not help');
    assert.match(line('disk'), /cache disk is full; free space on it/);
    assert.doesNotMatch(line('disk'), /maxBytes/);
    const unknown = line();
    assert.match(unknown, /culling\.maxBytes/, 'a mount that does not say: both, with how to tell');
    assert.match(unknown, /disk/);
  });

  it('--help says what it follows and how to stop it', async () => {
    const r = await cli(['watch', '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Usage: cachefs watch \[options\] <mountpoint>/);
    assert.match(r.stdout, /--json/);
    assert.match(r.stdout, /Ctrl-C/);
  });

  it('a mount that goes away without ending the stream, or does not serve watch, is an error for the watcher', async () => {
    const root = tempRoot('watch-gone');
    try {
      const sockPath = path.join(root, 'gone.sock');
      const server = await serveControl(sockPath, async () => ({}), {
        watch: (w) => { w.send({ type: 'offline', reason: 'test', at: new Date().toISOString() }); },
      });
      let sock: net.Socket | undefined;
      server.on('connection', (c) => { sock = c; });
      const got: WatchEvent[] = [];
      // After the first event the mount side is cut, as when its process dies.
      const w = watchControl(sockPath, { onEvent: (e) => { got.push(e); sock?.destroy(); } });
      try {
        await assert.rejects(w.done, (e: unknown) => e instanceof UserError && /went away without unmounting/.test(e.message) && e.exitCode === 1);
      } finally { server.close(); }
      assert.deepEqual(got.map((e) => e.type), ['offline']);

      const plainPath = path.join(root, 'plain.sock');
      const plain = await serveControl(plainPath, async () => ({}));
      try {
        const w2 = watchControl(plainPath, { onEvent: () => assert.fail('no events from a mount that does not serve watch') });
        await assert.rejects(w2.done, /does not serve watch/);
      } finally { plain.close(); }
    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });


  it('a watcher that stops reading costs bounded memory and is told how many events it missed', async () => {
    const root = tempRoot('watch-slow');
    const sockPath = path.join(root, 'control.sock');
    let stream: WatchStream | undefined;
    const server = await serveControl(sockPath, async () => ({}), { watch: (w) => { stream = w; } });
    try {
      const client = net.connect(sockPath);
      client.setEncoding('utf8');
      await new Promise<void>((r) => client.on('connect', () => { client.write('{"op":"watch"}\n'); r(); }));
      while (!stream) await sleep(5);
      client.pause(); // reads nothing from here on
      const SENT = 5000;
      const longPath = '/' + 'x'.repeat(1000);
      for (let i = 0; i < SENT; i++) {
        stream.send({ type: 'conflict', id: i, kind: 'update-update', path: longPath, needsYou: true, resolution: null, at: new Date().toISOString() });
      }
      let buf = '';
      client.on('data', (d: string) => { buf += d; });
      const closed = new Promise<void>((r) => client.on('close', () => r()));
      const ended = stream.end({ type: 'unmounted', reason: 'test', at: new Date().toISOString() });
      client.resume();
      await Promise.all([closed, ended]);
      const lines = buf.trim().split('\n').map((l) => MountEventSchema.parse(JSON.parse(l)));
      const got = lines.filter((e) => e.type === 'conflict').length;
      const missed = lines.filter((e): e is Extract<WatchEvent, { type: 'missed' }> => e.type === 'missed');
      assert.ok(missed.length >= 1, 'the watcher is told it missed events');
      assert.equal(got + missed.reduce((n, e) => n + e.count, 0), SENT, 'every event arrived or was counted as missed');
      assert.ok(buf.length < 2 * 1024 * 1024, `what waited for the watcher stayed bounded: ${buf.length} bytes of ${SENT * 1100}`);
      assert.equal(lines.at(-1)!.type, 'unmounted', 'the last line still arrives');
    } finally {
      server.close();
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});
