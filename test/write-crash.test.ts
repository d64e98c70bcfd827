// Crash safety of file data (issue 11, invariant 1): kill -9 of the mount at seeded points
// while a process writes large files offline (in write()s of mixed sizes), and at seeded
// points of the replay of such writes. After a remount and its replay, every byte write()
// acknowledged before the kill is on the backend, over both backends.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { mountFresh, type Mounted, BACKEND_KINDS, skipKind, control as ctl, killMount, waitReplayed } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';
import { waitUntil } from './helpers/wait.js';
import { mulberry32 } from './helpers/rng.js';

const MiB = 1024 * 1024;
const SEED = Number(process.env.CACHEFS_WRITE_CRASH_SEED ?? 20261204);
/**
 * Kill points per backend: during offline writes, and during the replay of such writes. The
 * suite runs 44 (and test/offline-crash.test.ts 50 more over metadata work); a longer run:
 * CACHEFS_WRITE_CRASH_POINTS=100 CACHEFS_REPLAY_CRASH_POINTS=100 node --test dist/test/write-crash.test.js
 */
const POINTS = {
  local: { write: Number(process.env.CACHEFS_WRITE_CRASH_POINTS ?? 10), replay: Number(process.env.CACHEFS_REPLAY_CRASH_POINTS ?? 6) },
  nfs: { write: Number(process.env.CACHEFS_WRITE_CRASH_POINTS ?? 6), replay: Number(process.env.CACHEFS_REPLAY_CRASH_POINTS ?? 6) },
};
const SIZES = [131072, 65536, 300000, 4096, 1 << 20, 777];


/** The bytes the writer below writes with `seed`, up to `length`. */
function expected(seed: number, length: number): Buffer {
  const want = Buffer.alloc(length);
  for (let i = 0, pos = 0; pos < length; i++) {
    const n = SIZES[(i + seed) % SIZES.length]!;
    want.fill((i * 7 + seed) & 255, pos, Math.min(pos + n, length));
    pos += n;
  }
  return want;
}

/**
 * A writer in its own process: sequential write()s of mixed sizes; it prints how far write()
 * has acknowledged (a write cut short by the mount dying acknowledges only its count).
 */
function startWriter(file: string, seed: number, total: number): { acked: () => number; done: Promise<void> } {
  const script = `
    const fs = require('fs');
    const sizes = ${JSON.stringify(SIZES)};
    const fd = fs.openSync(process.argv[1], 'w');
    const seed = Number(process.argv[2]), total = Number(process.argv[3]);
    for (let i = 0, pos = 0; pos < total; i++) {
      const n = Math.min(sizes[(i + seed) % sizes.length], total - pos);
      const w = fs.writeSync(fd, Buffer.alloc(n, (i * 7 + seed) & 255), 0, n, pos);
      pos += w;
      process.stdout.write(pos + '\\n');
      if (w < n) break;
    }
    fs.closeSync(fd);`;
  const child = spawn(process.execPath, ['-e', script, file, String(seed), String(total)], { stdio: ['ignore', 'pipe', 'ignore'] });
  let acked = 0;
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) if (l) acked = Number(l);
  });
  return { acked: () => acked, done: new Promise((r) => child.on('close', () => r())) };
}

async function remountAndReplay(m: Mounted): Promise<void> {
  await m.mount();
  await waitReplayed(m);
}

async function inParallel<T>(items: T[], fn: (item: T) => Promise<void>, width: number): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

function assertPrefix(onBackend: Buffer, want: Buffer, what: string): void {
  assert.ok(onBackend.length >= want.length, `${what}: ${onBackend.length} bytes on the backend, ${want.length} acknowledged`);
  const head = onBackend.subarray(0, want.length);
  if (!head.equals(want)) {
    let i = 0;
    while (head[i] === want[i]) i++;
    assert.fail(`${what}: the acknowledged bytes differ from offset ${i}`);
  }
}

for (const kind of BACKEND_KINDS) {
  describe(`kill -9 during offline writes and their replay (${kind} backend, seed ${SEED})`, { skip: skipKind(kind) }, () => {
    let nfs: NfsServer | undefined;
    const mounts: Mounted[] = [];
    before(async () => { if (kind === 'nfs') nfs = await startNfsServer('write-crash'); });
    after(async () => {
      for (const m of mounts) await m.cleanup();
      await nfs?.dispose();
    });
    const fresh = async (tag: string, env: NodeJS.ProcessEnv = {}): Promise<Mounted> => {
      const m = await mountFresh(`wcrash-${tag}`, { ...(nfs ? { nfs } : {}), env });
      mounts.push(m);
      await fsp.readdir(m.mnt);
      return m;
    };
    const rng = mulberry32(SEED + (kind === 'nfs' ? 1 : 0));
    const writePoints = Array.from({ length: POINTS[kind].write }, (_, i) => ({ i, at: Math.floor(rng() * 6 * MiB) }));
    const replayPoints = Array.from({ length: POINTS[kind].replay }, (_, i) => ({ i, afterMs: Math.floor(rng() * 1500) }));

    it(`${writePoints.length} kill points while writing offline: every acknowledged byte replays`, async () => {
      await inParallel(writePoints, async ({ i, at }) => {
        const m = await fresh(`w${i}`);
        assert.equal((await ctl(m, 'offline')).state, 'disconnected');
        const w = startWriter(m.m('big'), i, 8 * MiB);
        await waitUntil(`point ${i}: the writer to pass ${at}`, () => w.acked() >= at, 60_000, 2);
        await killMount(m);
        await w.done;
        const acked = w.acked();
        await remountAndReplay(m);
        assertPrefix(await fsp.readFile(m.b('big')), expected(i, acked), `point ${i} (killed past ${at})`);
        await m.cleanup();
      }, 3);
    });

    it(`${replayPoints.length} kill points while replaying offline writes: the backend ends up with every byte`, async () => {
      // Backend writes are slowed down so the replay lasts long enough to be hit.
      const env = { CACHEFS_FAULTS: JSON.stringify({ delayMs: { write: 15 } }) };
      await inParallel(replayPoints, async ({ i, afterMs }) => {
        const m = await fresh(`r${i}`, env);
        assert.equal((await ctl(m, 'offline')).state, 'disconnected');
        const total = 3 * MiB + i * 4099;
        const w = startWriter(m.m('big'), i, total);
        await w.done;
        assert.equal(w.acked(), total, 'the offline writer finished');
        void ctl(m, 'online').catch(() => undefined); // answers once replayed, if it lives that long
        await new Promise((r) => setTimeout(r, afterMs));
        await killMount(m);
        await remountAndReplay(m);
        const onBackend = await fsp.readFile(m.b('big'));
        assert.equal(onBackend.length, total, `point ${i} (killed ${afterMs} ms into the replay): size`);
        assertPrefix(onBackend, expected(i, total), `point ${i} (killed ${afterMs} ms into the replay)`);
        await m.cleanup();
      }, 3);
    });
  });
}
