// The test NFS server of scripts/nfs-server.sh (nfs-ganesha on 127.0.0.1), driven through
// test/helpers/nfs-server.ts and checked with libnfs' own tools (nfs-ls, nfs-cp). Needs root.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { NFS_SERVER_SCRIPT, startNfsServer, type NfsServer } from './helpers/nfs-server.js';

const isRoot = process.getuid?.() === 0;

function run(cmd: string, args: string[], timeoutMs = 10_000, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, cwd: '/', env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      const code = !err ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** libnfs wants the ports as URL options (it does not take host:port). */
function libnfsUrl(srv: NfsServer, rel = ''): string {
  return `nfs://127.0.0.1/export${rel}?nfsport=${srv.nfsPort}&mountport=${srv.mntPort}`;
}

async function nfsLsNames(srv: NfsServer): Promise<string[]> {
  const r = await run('nfs-ls', [libnfsUrl(srv)]);
  assert.equal(r.code, 0, `nfs-ls failed: ${r.stderr}`);
  // lines look like: "-rw-r--r--  1     0     0            5 name"
  return r.stdout.split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/).slice(5).join(' '));
}

/** Runs scripts/nfs-server.sh CMD for this server's state dir and ports; resolves to its exit code. */
let script: (cmd: 'start' | 'status') => Promise<number>;

function connectResult(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.setTimeout(2000);
    s.once('connect', () => { s.destroy(); resolve('connected'); });
    s.once('timeout', () => { s.destroy(); resolve('timeout'); });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? String(e)));
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return true;
}

describe('scripts/nfs-server.sh (nfs-ganesha on 127.0.0.1)', { skip: !isRoot && 'needs root (ganesha FSAL_VFS)' }, () => {
  let srv: NfsServer;
  let tmp: string;

  before(async () => {
    srv = await startNfsServer('selftest');
    script = async (cmd) => (await run('bash', [NFS_SERVER_SCRIPT, cmd], 30_000, {
      CACHEFS_NFS_DIR: srv.dir, CACHEFS_NFS_EXPORT_DIR: srv.exportDir,
      CACHEFS_NFS_PORT: String(srv.nfsPort), CACHEFS_MNT_PORT: String(srv.mntPort),
    })).code;
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cachefs-nfs-selftest-out-'));
  });
  after(async () => {
    await srv?.stop();
    if (srv) await fsp.rm(srv.dir, { recursive: true, force: true });
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('reports its URL, ports and pid, and listens on loopback only', async () => {
    assert.equal(srv.url, `nfs://127.0.0.1:${srv.nfsPort}/export?mountport=${srv.mntPort}`);
    assert.notEqual(srv.nfsPort, srv.mntPort);
    assert.ok(srv.pid() > 0 && pidAlive(srv.pid()), `pid ${srv.pid()} not alive`);
    const cmdline = (await fsp.readFile(`/proc/${srv.pid()}/cmdline`, 'utf8')).split('\0');
    assert.ok(cmdline[0]!.endsWith('ganesha.nfsd'), cmdline.join(' '));
    assert.ok(cmdline.includes(path.join(srv.dir, 'ganesha.conf')), cmdline.join(' '));
    const st = await fsp.stat(srv.exportDir);
    assert.equal(st.mode & 0o777, 0o777);
    // every listening socket of this ganesha is on 127.0.0.1, and both ports are among them
    const ss = await run('ss', ['-Hltnp']);
    assert.equal(ss.code, 0, ss.stderr);
    const mine = ss.stdout.split('\n').filter((l) => l.includes(`pid=${srv.pid()},`));
    const locals = mine.map((l) => l.trim().split(/\s+/)[3]!);
    assert.deepEqual(locals.sort(), [`[::ffff:127.0.0.1]:${srv.mntPort}`, `[::ffff:127.0.0.1]:${srv.nfsPort}`].sort());
    assert.ok(!/:111\s/.test(ss.stdout), 'something listens on port 111');
  });

  it('serves a file written directly into the export dir (nfs-ls) and copies it out (nfs-cp)', async () => {
    const data = Buffer.from(`hello over NFS ${Date.now()}\n`.repeat(1000));
    await fsp.writeFile(path.join(srv.exportDir, 'fixture.txt'), data);
    assert.ok((await nfsLsNames(srv)).includes('fixture.txt'));

    const out = path.join(tmp, 'copy.txt');
    const r = await run('nfs-cp', [libnfsUrl(srv, '/fixture.txt'), out]);
    assert.equal(r.code, 0, `nfs-cp failed: ${r.stderr}`);
    assert.deepEqual(await fsp.readFile(out), data);

    // a missing file is an error, not an empty copy
    const missing = await run('nfs-cp', [libnfsUrl(srv, '/no-such-file'), path.join(tmp, 'missing.txt')]);
    assert.notEqual(missing.code, 0);
  });

  it('sees a local delete at once (Attr_Expiration_Time = 0)', async () => {
    await fsp.writeFile(path.join(srv.exportDir, 'gone.txt'), 'x');
    assert.ok((await nfsLsNames(srv)).includes('gone.txt'));
    await fsp.unlink(path.join(srv.exportDir, 'gone.txt'));
    assert.ok(!(await nfsLsNames(srv)).includes('gone.txt'));
  });

  it('`nfs-server.sh status` exits 0 while it runs; `start` again is a no-op', async () => {
    assert.equal(await script('status'), 0);
    const pid = srv.pid();
    assert.equal(await script('start'), 0);
    assert.equal(Number((await fsp.readFile(path.join(srv.dir, 'ganesha.pid'), 'utf8')).trim()), pid);
  });

  it('restart() keeps the export and starts a new process', async () => {
    await fsp.writeFile(path.join(srv.exportDir, 'before-restart.txt'), 'kept');
    const oldPid = srv.pid();
    await srv.restart();
    assert.ok(srv.pid() > 0 && srv.pid() !== oldPid, `pid ${oldPid} -> ${srv.pid()}`);
    assert.ok(!pidAlive(oldPid) || (await fsp.readFile(`/proc/${oldPid}/stat`, 'utf8')).includes(') Z'), `old pid ${oldPid} still running`);
    const names = await nfsLsNames(srv);
    assert.ok(names.includes('before-restart.txt'), names.join(','));
    assert.ok(names.includes('fixture.txt'), names.join(','));
  });

  it('stop() stops the server: both ports refuse connections', async () => {
    const pid = srv.pid();
    assert.equal(await connectResult(srv.nfsPort), 'connected');
    await srv.stop();
    assert.equal(srv.pid(), 0);
    assert.equal(await connectResult(srv.nfsPort), 'ECONNREFUSED');
    assert.equal(await connectResult(srv.mntPort), 'ECONNREFUSED');
    assert.ok(!pidAlive(pid) || (await fsp.readFile(`/proc/${pid}/stat`, 'utf8')).includes(') Z'), `pid ${pid} still running`);
    assert.equal(await script('status'), 3);
    await srv.stop(); // idempotent
  });
});

// A child process starts a server and never stops it: the safety nets must.
describe('nfs server safety nets', { skip: !isRoot && 'needs root (ganesha FSAL_VFS)' }, () => {
  const helperUrl = pathToFileURL(fileURLToPath(new URL('./helpers/nfs-server.js', import.meta.url))).href;

  /** Starts a child that starts a server (watchdog on/off), reports it, then exits or waits. */
  function child(watchdog: boolean, thenExit: boolean): Promise<{ proc: ReturnType<typeof spawn>; pid: number; dir: string }> {
    const code = `import { startNfsServer } from ${JSON.stringify(helperUrl)};
      const s = await startNfsServer('orphan', { watchdog: ${watchdog} });
      process.stdout.write(JSON.stringify({ pid: s.pid(), dir: s.dir }) + '\\n');
      ${thenExit ? '' : 'setInterval(() => {}, 1000);'}`;
    const proc = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    return new Promise((resolve, reject) => {
      let out = '';
      proc.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve({ proc, ...JSON.parse(out) });
      });
      proc.once('exit', (c) => { if (!out.includes('\n')) reject(new Error(`child exited ${c} before reporting`)); });
    });
  }

  async function waitGone(pid: number, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    for (;;) {
      let state = '';
      try { state = (await fsp.readFile(`/proc/${pid}/stat`, 'utf8')).replace(/^.*\) /s, '')[0]!; } catch { return true; }
      if (state === 'Z' || state === 'X') return true;
      if (Date.now() > end) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it("the 'exit' hook SIGTERMs a server the process forgot to stop", async () => {
    const c = await child(false, true);
    try {
      assert.ok(c.pid > 0);
      await new Promise((r) => c.proc.exitCode !== null ? r(null) : c.proc.once('exit', r));
      assert.ok(await waitGone(c.pid, 5000), `ganesha pid ${c.pid} survived its owner's exit`);
    } finally {
      await run('bash', [NFS_SERVER_SCRIPT, 'stop'], 30_000, { CACHEFS_NFS_DIR: c.dir });
      await fsp.rm(c.dir, { recursive: true, force: true });
    }
  });

  it('the watchdog stops the server when its owner is SIGKILLed', async () => {
    const c = await child(true, false);
    try {
      const wpid = Number((await fsp.readFile(path.join(c.dir, 'watchdog.pid'), 'utf8')).trim());
      assert.ok(wpid > 0 && !(await waitGone(wpid, 0)), 'no watchdog running');
      assert.ok(!(await waitGone(c.pid, 0)), 'server not running');
      c.proc.kill('SIGKILL');
      assert.ok(await waitGone(c.pid, 5000), `ganesha pid ${c.pid} survived its owner's SIGKILL`);
      assert.ok(await waitGone(wpid, 2000), `watchdog pid ${wpid} still running`);
      assert.match(await fsp.readFile(path.join(c.dir, 'watchdog.log'), 'utf8'), /is gone: stopping ganesha/);
    } finally {
      c.proc.kill('SIGKILL');
      await run('bash', [NFS_SERVER_SCRIPT, 'stop'], 30_000, { CACHEFS_NFS_DIR: c.dir });
      await fsp.rm(c.dir, { recursive: true, force: true });
    }
  });
});
