// A record the backend applied, whose journal row the dying process did not delete, is
// replayed again by the next run: replay must find its own change already there and go on,
// never take it for someone else's (a conflict, parking every later change to the object).
// For each kind of record, a child process replays an offline journal and is killed with
// SIGKILL exactly as the backend's answer arrives, or between it and the row's deletion (offline-crash.test.ts
// hits such points only by chance: CI once found a create replayed twice that way, parked as
// a create/create conflict with our own file, and the rename after it never reached the server).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { layerHere, reopenLayer, withoutJournalOptimization, type LayerHere } from './helpers/layer.js';
import { BACKEND_KINDS, skipKind } from './helpers/cachefs.js';
import { waitUntil } from './helpers/wait.js';
import type { Backend } from '../src/backends/types.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';

const CHILD = fileURLToPath(new URL('./helpers/replay-crash-child.js', import.meta.url));
const ME = { uid: process.getuid!(), gid: process.getgid!() };
const OPS = ['create', 'write', 'setattr', 'mkdir', 'symlink', 'link', 'rename', 'unlink', 'rmdir'] as const;

/** What the backend holds: type, mode and content of every name. */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(path.join(root, rel))).sort()) {
      const r = path.join(rel, name);
      const p = path.join(root, r);
      const st = await fsp.lstat(p);
      if (st.isDirectory()) { out[r] = 'dir'; await walk(r); }
      else if (st.isSymbolicLink()) out[r] = `-> ${await fsp.readlink(p)}`;
      else out[r] = `${(st.mode & 0o777).toString(8)} nlink=${st.nlink}: ${await fsp.readFile(p, 'utf8')}`;
    }
  };
  await walk('');
  return out;
}

/** A cache that saw the backend, then made one change of every kind while offline, closed. */
async function offlineWork(nfs: NfsServer | undefined): Promise<LayerHere> {
  const here = await layerHere('replay-crash', {
    config: withoutJournalOptimization,
    ...(nfs ? { nfs } : {}),
    fill: async (be) => {
      await fsp.writeFile(path.join(be, 'base.txt'), 'base\n');
      await fsp.writeFile(path.join(be, 'old.txt'), 'old\n');
      await fsp.mkdir(path.join(be, 'gone'));
    },
  });
  const { layer } = here;
  for (const e of (await layer.readdir('/')).entries) if (e.obj.attr.type === 'file') await layer.read(await layer.open(`/${e.name}`, 0), 0, 100);
  layer.goOffline();
  const fd = await layer.create('/new.txt', 0o644, 0o1 /* O_WRONLY */, ME);
  await layer.write(fd, 0, Buffer.from('made offline\n'));
  await layer.release(fd);
  await layer.mkdir('/sub', 0o755, ME);
  await layer.symlink('../base.txt', '/sub/ln', ME);
  await layer.link('/base.txt', '/sub/base-link');
  await layer.chmod('/base.txt', 0o600);
  const bd = await layer.open('/base.txt', 0o2 /* O_RDWR */);
  await layer.write(bd, 5, Buffer.from('appended offline\n'));
  await layer.release(bd);
  await layer.rename('/new.txt', '/sub/moved.txt');
  await layer.unlink('/old.txt');
  await layer.rmdir('/gone');
  await here.close();
  return here;
}

function runChild(dir: string, op: string, at: 'answer' | 'row'): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CHILD, dir, op, at], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('error', reject);
    p.on('exit', (code, signal) => resolve({ code, signal, stderr }));
  });
}

/** The next run: opening the cache replays what is left; then nothing is pending. */
async function finish(dir: string): Promise<{ tree: Record<string, string>; conflicts: string[] }> {
  const here = await reopenLayer(dir, { config: withoutJournalOptimization });
  try {
    await here.layer.goOnline();
    await here.layer.replayer.drained();
    assert.equal(here.layer.replayer.pendingCount, 0, 'nothing left to replay');
    return {
      tree: await snapshot(here.backend),
      conflicts: here.conflicts.list({ all: true }).map((c) => `${c.kind} ${c.path}`),
    };
  } finally {
    await here.close();
  }
}

for (const kind of BACKEND_KINDS) describe(`kill -9 between a record reaching the backend and leaving the journal (${kind} backend)`, { skip: skipKind(kind) }, () => {
  const dirs: string[] = [];
  let nfs: NfsServer | undefined;
  before(async () => { if (kind === 'nfs') nfs = await startNfsServer('replay-crash'); });
  after(async () => {
    for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
    await nfs?.dispose();
  });
  let reference: Record<string, string> = {};

  it('the uninterrupted replay (the reference)', async () => {
    const here = await offlineWork(nfs);
    dirs.push(here.dir);
    const { tree, conflicts } = await finish(here.dir);
    assert.deepEqual(conflicts, []);
    assert.deepEqual(tree, {
      'base.txt': '600 nlink=2: base\nappended offline\n',
      sub: 'dir',
      'sub/base-link': '600 nlink=2: base\nappended offline\n',
      'sub/ln': '-> ../base.txt',
      'sub/moved.txt': '644 nlink=1: made offline\n',
    });
    reference = tree;
  });

  for (const op of OPS) for (const at of ['answer', 'row'] as const) {
    const when = at === 'answer' ? 'as its answer arrived' : 'before its journal row was deleted';
    it(`killed after the backend applied the ${op}, ${when}: the next run replays it again, same result`, async () => {
      const here = await offlineWork(nfs);
      dirs.push(here.dir);
      const child = await runChild(here.dir, op, at);
      assert.equal(child.signal, 'SIGKILL', `the child died at its ${op} (exit ${child.code}): ${child.stderr}`);
      const { tree, conflicts } = await finish(here.dir);
      assert.deepEqual(conflicts, [], 'our own change is no conflict');
      assert.deepEqual(tree, reference);
    });
  }
});

// A connected change's record has no row while its caller waits for the backend (volatile
// records, journal/replayer.ts). If the mount goes disconnected meanwhile, the caller hears
// "kept for later": by then the record must be in the journal (invariant 1), and a run that
// dies right after must replay it.
describe('a connected change caught by a disconnection, then a crash', () => {
  it('the record is durable when the call returns, and the next run replays it', async () => {
    let started = 0;
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    // Fault injection: the backend's setattr hangs until the test opens the gate.
    const hang = (inner: Backend): Backend => new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === 'setattr') return async (...a: Parameters<Backend['setattr']>) => { started++; await gate; return target.setattr(...a); };
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v;
      },
    });
    const first = await layerHere('volatile-crash', { fill: (be) => fsp.writeFile(path.join(be, 'x'), 'x', { mode: 0o644 }), wrap: hang });
    let second: LayerHere | null = null;
    try {
      await first.layer.resolve('/x');
      const chmod = first.layer.chmod('/x', 0o600, ME);
      await waitUntil('the chmod to reach the backend', () => started === 1, 10_000, 5);
      assert.equal(first.journal.pending(), 0, 'no row while the caller waits for the backend');
      first.layer.goOffline();
      await chmod; // JOURNALED: kept for later
      assert.equal(first.journal.pending(), 1, 'the record is in the journal when the call returns');
      assert.equal((await fsp.stat(path.join(first.backend, 'x'))).mode & 0o777, 0o644, 'the backend never got it');
      // The process dies here (the first layer is never closed); the next run replays.
      second = await reopenLayer(first.dir);
      await second.layer.replayer.drained();
      assert.equal((await fsp.stat(path.join(first.backend, 'x'))).mode & 0o777, 0o600, 'replayed by the next run');
      assert.equal(second.journal.pending(), 0);
      assert.deepEqual(second.conflicts.list().map((c) => c.kind), [], 'our own change is no conflict');
    } finally {
      open();
      await second?.close();
      await first.dispose();
    }
  });
});
