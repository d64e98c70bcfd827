// Benchmarks of the NFSv3 backend against libnfs's own tools (nfs-cp, nfs-ls) on the same
// nfs-ganesha server (scripts/nfs-server.sh, 127.0.0.1), all measured in this one run.
// Usage (as root, after scripts/setup.sh):  node dist/bench/nfs.js [--runs N] [--size-mib N]
//   [--files N] [--calls N] [--out docs/PERFORMANCE.md] [--work DIR]
// Writes its table between <!-- nfs:begin --> and <!-- nfs:end --> in docs/PERFORMANCE.md
// (bench/run.ts keeps that section when it rewrites the file).
//
// Every workload through a mount runs in a child process (dd, ls, a stat loop): this process
// never serves a mount (each cachefs mount is its own daemon) and does no sync I/O on one.
// "cold" = `sync; echo 3 > /proc/sys/vm/drop_caches` first: the server's page cache (ganesha
// reads the export through it) and the client side's are both empty.
import { spawn, execFileSync } from 'node:child_process';
import { promises as fsp, existsSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNfsServer, type NfsServer } from '../test/helpers/nfs-server.js';
import { NfsBackend } from '../src/backends/nfs/nfs-backend.js';
import { parseNfsUrl } from '../src/core/nfs-url.js';
import { cpuDelta, cpuSnap, watchGanesha, type Cpu } from './cpu.js';
import { writeDocSection, shq, runChild, arg, makeBigFile, makeTree, deltaOps, deltaCounters, CLI, REPO, type OpsTable, type Counters } from './common.js';


const RUNS = Number(arg('runs', '3'));
const SIZE_MIB = Number(arg('size-mib', '256'));
const FILES = Number(arg('files', '10000'));
const CALLS = Number(arg('calls', '5000'));
const OUT = arg('out', path.join(REPO, 'docs', 'PERFORMANCE.md'));
const WORK = arg('work', path.join(os.tmpdir(), 'cachefs-bench-nfs'));
/** Where cold reads land: tmpfs, the same for cachefs (dd) and nfs-cp (which cannot write to /dev/null). */
const SHM_OUT = path.join(existsSync('/dev/shm') ? '/dev/shm' : WORK, `cachefs-bench-nfs-${process.pid}.out`);
const MiB = 1024 * 1024;
const BEGIN = '<!-- nfs:begin -->';

// ------------------------------------------------------------------ processes

/** Runs a child process to its end (bench/common.ts). */
const run = runChild;

let dropWorks = false;
function dropCaches(): void {
  execFileSync('sync');
  try { writeFileSync('/proc/sys/vm/drop_caches', '3'); dropWorks = true; } catch { dropWorks = false; }
}

const q = shq;


// ------------------------------------------------------------------ cachefs mounts

interface StatusJson { pid: number; ops: OpsTable; counters: Counters }

const live = new Set<CachefsMount>();

class CachefsMount {
  pid: number | null = null;
  constructor(readonly label: string, readonly backend: string, readonly mnt: string, readonly cache: string,
    readonly config?: string) {}

  async mount(opts: { fresh: boolean }): Promise<void> {
    if (opts.fresh) await fsp.rm(this.cache, { recursive: true, force: true });
    await fsp.mkdir(this.mnt, { recursive: true });
    live.add(this);
    await run(process.execPath, [CLI, 'mount', this.backend, this.mnt, '--cache-dir', this.cache, '--log-level', 'warn',
      ...(this.config ? ['--config', this.config] : [])], { cwd: WORK });
    this.pid = this.status().pid;
  }

  status(): StatusJson {
    return JSON.parse(execFileSync(process.execPath, [CLI, 'status', this.mnt, '--json'], { encoding: 'utf8', cwd: WORK })) as StatusJson;
  }

  async umount(): Promise<void> {
    try {
      await run(process.execPath, [CLI, 'umount', this.mnt], { cwd: WORK });
    } catch (e) {
      process.stderr.write(`cachefs umount ${this.mnt} failed (${(e as Error).message}); fusermount3 -u -z\n`);
      await run('fusermount3', ['-u', '-z', this.mnt]).catch(() => undefined);
    }
    this.pid = null;
    live.delete(this);
  }
}

// ------------------------------------------------------------------ measuring

interface Profile {
  cpu: Cpu;
  /** FUSE requests by op (count, handler ms) and the layer's counters, for cachefs rows. */
  ops?: OpsTable;
  counters?: Counters;
}
interface Sample { secs: number; prof: Profile }

const samples = new Map<string, Sample[]>();
const order: string[] = [];

function record(key: string, s: Sample): void {
  if (!samples.has(key)) { samples.set(key, []); order.push(key); }
  samples.get(key)!.push(s);
  process.stderr.write(`  ${key}: ${s.secs.toFixed(3)} s\n`);
}

/** Times fn (a child process); through `m` it also records the FUSE ops and counters it caused. */
async function measure(key: string, m: CachefsMount | null, fn: () => Promise<unknown>): Promise<Sample> {
  const before = m ? m.status() : null;
  const c0 = cpuSnap(m?.pid ?? null);
  const t = process.hrtime.bigint();
  await fn();
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  const c1 = cpuSnap(m?.pid ?? null);
  const after = m ? m.status() : null;
  const prof: Profile = { cpu: cpuDelta(c0, c1) };
  if (before && after) { prof.ops = deltaOps(before.ops, after.ops); prof.counters = deltaCounters(before.counters, after.counters); }
  const s = { secs, prof };
  record(key, s);
  return s;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
/** The median sample (by time) of a key: its profile goes with its time. */
function med(key: string): Sample {
  const all = samples.get(key);
  if (!all?.length) throw new Error(`no samples for ${key}`);
  return [...all].sort((a, b) => a.secs - b.secs)[Math.floor(all.length / 2)]!;
}
function spread(key: string): string {
  const all = samples.get(key)!.map((s) => s.secs);
  return `${Math.min(...all).toFixed(2)}-${Math.max(...all).toFixed(2)}`;
}

// ------------------------------------------------------------------ fixtures

const STAT_LOOP = `'use strict';
const fs = require('fs');
const p = process.argv[2], n = Number(process.argv[3]), warm = Number(process.argv[4]);
for (let i = 0; i < warm; i++) fs.statSync(p);
const t = new Array(n);
for (let i = 0; i < n; i++) { const a = process.hrtime.bigint(); fs.statSync(p); t[i] = Number(process.hrtime.bigint() - a) / 1000; }
process.stdout.write(JSON.stringify(t));
`;
const STAT_WARMUP = 100;

// ------------------------------------------------------------------ main

/** FUSE requests and backend calls per call (the last run's), for calls through a mount. */
interface PerCall { fuse: number; backend: number; ops: OpsTable }
const latencies: Record<string, { median: number[]; p99: number[]; perCall?: PerCall }> = {};
function addLatency(key: string, us: number[], perCall?: PerCall): void {
  const l = (latencies[key] ??= { median: [], p99: [] });
  l.median.push(median(us));
  l.p99.push(pct(us, 99));
  if (perCall) l.perCall = perCall;
  process.stderr.write(`  ${key}: median ${median(us).toFixed(0)} µs, p99 ${pct(us, 99).toFixed(0)} µs\n`);
}

let server: NfsServer | null = null;
let client: NfsBackend | null = null;
let cleaning: Promise<void> | null = null;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const m of [...live]) await m.umount().catch(() => undefined);
    await client?.close().catch(() => undefined);
    client = null;
    if (server) {
      await server.stop().catch((e) => process.stderr.write(`stopping the NFS server: ${(e as Error).message}\n`));
      await fsp.rm(server.dir, { recursive: true, force: true }).catch(() => undefined);
    }
    await fsp.rm(SHM_OUT, { force: true }).catch(() => undefined);
    await fsp.rm(WORK, { recursive: true, force: true }).catch(() => undefined);
  })();
  return cleaning;
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    process.stderr.write(`bench: ${sig}, cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

async function main(): Promise<void> {
  if (!existsSync('/dev/fuse')) throw new Error('no /dev/fuse');
  if (process.getuid?.() !== 0) throw new Error('run as root (nfs-ganesha, drop_caches, allow_other)');
  const nfsLsHelp = await run('sh', ['-c', 'nfs-ls --help 2>&1; true']);
  const nfsLsRecursive = /--recursive/.test(nfsLsHelp);
  const libnfsVersion = (() => { try { return execFileSync('dpkg-query', ['-W', '-f=${Version}', 'libnfs-utils'], { encoding: 'utf8' }); } catch { return '?'; } })();
  const ganeshaVersion = (() => { try { return execFileSync('dpkg-query', ['-W', '-f=${Version}', 'nfs-ganesha'], { encoding: 'utf8' }); } catch { return '?'; } })();
  const head = (() => { try { return execFileSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { return '?'; } })();
  const srcDirty = (() => { try { return execFileSync('git', ['-C', REPO, 'status', '--porcelain', 'src'], { encoding: 'utf8' }).trim(); } catch { return ''; } })();
  const load0 = os.loadavg();

  await fsp.rm(WORK, { recursive: true, force: true });
  await fsp.mkdir(WORK, { recursive: true });
  process.stderr.write('starting nfs-ganesha on 127.0.0.1\n');
  server = await startNfsServer('bench');
  const srv = server;
  watchGanesha(() => srv.pid());
  const libnfs = (p: string) => `nfs://127.0.0.1/export${p}?nfsport=${srv.nfsPort}&mountport=${srv.mntPort}`;

  process.stderr.write(`preparing a ${SIZE_MIB} MiB file and a ${FILES}-file tree in ${srv.exportDir}\n`);
  const BIG = 'f';
  await makeBigFile(path.join(srv.exportDir, BIG), SIZE_MIB);
  await makeTree(path.join(srv.exportDir, 'tree'), FILES);
  const localDir = path.join(WORK, 'local');
  await fsp.mkdir(localDir);
  await fsp.copyFile(path.join(srv.exportDir, BIG), path.join(localDir, BIG));
  const SRC = path.join(WORK, 'src.bin');
  await makeBigFile(SRC, SIZE_MIB);
  const statLoop = path.join(WORK, 'statloop.cjs');
  writeFileSync(statLoop, STAT_LOOP);
  // A mount with every attribute cache off: the kernel's (FUSE entry/attr timeouts) and cachefs's own.
  const noCacheConfig = path.join(WORK, 'nocache.config.json');
  writeFileSync(noCacheConfig, JSON.stringify({
    consistency: { acregmin: 0, acregmax: 0, acdirmin: 0, acdirmax: 0 },
    fuse: { entryTimeout: 0, attrTimeout: 0, negativeTimeout: 0 },
  }, null, 2));

  const nfsM = new CachefsMount('nfs', srv.url, path.join(WORK, 'mnt-nfs'), path.join(WORK, 'cache-nfs'));
  const localM = new CachefsMount('local', localDir, path.join(WORK, 'mnt-local'), path.join(WORK, 'cache-local'));
  const statM = new CachefsMount('nfs-nocache', srv.url, path.join(WORK, 'mnt-nocache'), path.join(WORK, 'cache-nocache'), noCacheConfig);

  client = new NfsBackend(parseNfsUrl(srv.url), { deadlineMs: 5000 });
  await client.open();
  const root = await client.root();
  const bigFh = (await client.lookup(root.fh, BIG)).fh;
  const limits = client.limits;

  dropCaches();
  process.stderr.write(`drop_caches ${dropWorks ? 'works' : 'DOES NOT WORK (not root?): "cold" is only cachefs-cold'}\n`);

  const ddTo = (src: string, dst: string, extra: string[] = []) => () => run('dd', [`if=${src}`, `of=${dst}`, 'bs=1M', ...extra]);
  const rmOut = () => fsp.rm(SHM_OUT, { force: true });
  let verified = false;

  for (let r = 0; r < RUNS; r++) {
    process.stderr.write(`run ${r + 1}/${RUNS}\n`);
    const swap = r % 2 === 1; // alternate which side goes first

    // 1. cold sequential read: cachefs (fresh cache dir, fresh mount) vs nfs-cp; tmpfs target for both.
    const cachefsCold = async (key: string, drop: boolean) => {
      await nfsM.mount({ fresh: true });
      await rmOut();
      if (drop) dropCaches();
      await measure(key, nfsM, ddTo(path.join(nfsM.mnt, BIG), SHM_OUT));
      await rmOut();
    };
    const nfsCpCold = async (key: string, drop: boolean) => {
      await rmOut();
      if (drop) dropCaches();
      await measure(key, null, () => run('nfs-cp', [libnfs(`/${BIG}`), SHM_OUT]));
      if (!verified && statSync(SHM_OUT).size !== SIZE_MIB * MiB) throw new Error('nfs-cp copied a wrong size');
      await rmOut();
    };
    if (swap) await nfsCpCold('read.cold.nfscp', true);
    await cachefsCold('read.cold.cachefs', true);
    // 3. warm reads on that NFS mount: same mount (kernel page cache), then after a remount (cache files)
    await measure('read.warm.nfs', nfsM, ddTo(path.join(nfsM.mnt, BIG), '/dev/null'));
    await nfsM.umount();
    await nfsM.mount({ fresh: false });
    await measure('read.remount.nfs', nfsM, ddTo(path.join(nfsM.mnt, BIG), '/dev/null'));
    if (!verified) {
      await run('cmp', [path.join(nfsM.mnt, BIG), path.join(srv.exportDir, BIG)]);
    }
    await nfsM.umount();
    if (!swap) await nfsCpCold('read.cold.nfscp', true);
    // the same, with the server's page cache warm: the protocol and client, without the server's disk
    if (swap) await nfsCpCold('read.srvwarm.nfscp', false);
    await cachefsCold('read.srvwarm.cachefs', false);
    await nfsM.umount();
    if (!swap) await nfsCpCold('read.srvwarm.nfscp', false);

    // 3'. the same warm reads through a cachefs mount of a local directory with the same file
    await localM.mount({ fresh: true });
    dropCaches();
    await measure('read.cold.local', localM, ddTo(path.join(localM.mnt, BIG), '/dev/null'));
    await measure('read.warm.local', localM, ddTo(path.join(localM.mnt, BIG), '/dev/null'));
    await localM.umount();
    await localM.mount({ fresh: false });
    await measure('read.remount.local', localM, ddTo(path.join(localM.mnt, BIG), '/dev/null'));
    await localM.umount();

    // 2. sequential write incl. fsync and close: dd through the mount vs nfs-cp (UNSTABLE + COMMIT at close)
    const cachefsWrite = async () => {
      await nfsM.mount({ fresh: true });
      const target = path.join(srv.exportDir, 'g');
      await fsp.rm(target, { force: true });
      await run('cat', [SRC]); // the source in the page cache, as for nfs-cp
      execFileSync('sync');
      await measure('write.cachefs', nfsM, ddTo(SRC, path.join(nfsM.mnt, 'g'), ['conv=fsync']));
      const size = statSync(target).size;
      if (size !== SIZE_MIB * MiB) throw new Error(`after dd returned the server has ${size} bytes of g, not ${SIZE_MIB * MiB}`);
      if (!verified) await run('cmp', [SRC, target]);
      await nfsM.umount();
      await fsp.rm(target, { force: true });
    };
    const nfsCpWrite = async () => {
      const target = path.join(srv.exportDir, 'g2');
      await fsp.rm(target, { force: true }); // nfs-cp never overwrites
      await run('cat', [SRC]);
      execFileSync('sync');
      await measure('write.nfscp', null, () => run('nfs-cp', [SRC, libnfs('/g2')]));
      if (!verified) await run('cmp', [SRC, target]);
      await fsp.rm(target, { force: true });
    };
    if (swap) { await nfsCpWrite(); await cachefsWrite(); } else { await cachefsWrite(); await nfsCpWrite(); }
    // the same dd through a cachefs mount of a local directory: what the FUSE and cache side costs alone
    {
      await localM.mount({ fresh: true });
      await run('cat', [SRC]);
      execFileSync('sync');
      await measure('write.local', localM, ddTo(SRC, path.join(localM.mnt, 'g'), ['conv=fsync']));
      await localM.umount();
      await fsp.rm(path.join(localDir, 'g'), { force: true });
    }

    // 4. ls -lR of the tree: cold (fresh cache, fresh mount, caches dropped), then warm
    const cachefsLs = async () => {
      await nfsM.mount({ fresh: true });
      const tree = q(path.join(nfsM.mnt, 'tree'));
      dropCaches();
      await measure('ls.cold.cachefs', nfsM, () => run(`ls -lR ${tree} > /dev/null`, [], { shell: true }));
      await measure('ls.warm.cachefs', nfsM, () => run(`ls -lR ${tree} > /dev/null`, [], { shell: true }));
      if (!verified) {
        const n = Number((await run(`find ${tree} -type f | wc -l`, [], { shell: true })).trim());
        if (n !== FILES) throw new Error(`the mount lists ${n} files under tree, not ${FILES}`);
      }
      // 5b. stat latency with the kernel's and cachefs's attribute caches on (defaults): for reference
      const out = await run(process.execPath, [statLoop, path.join(nfsM.mnt, BIG), String(CALLS), String(STAT_WARMUP)]);
      addLatency('stat.cached', JSON.parse(out) as number[]);
      await nfsM.umount();
    };
    const nfsLs = async () => {
      if (!nfsLsRecursive) return;
      const url = q(libnfs('/tree'));
      dropCaches();
      await measure('ls.cold.nfsls', null, () => run(`nfs-ls -R ${url} > /dev/null`, [], { shell: true }));
      await measure('ls.warm.nfsls', null, () => run(`nfs-ls -R ${url} > /dev/null`, [], { shell: true }));
      if (!verified) {
        const n = Number((await run(`nfs-ls -R ${url} | grep -c '^-'`, [], { shell: true })).trim());
        if (n !== FILES) throw new Error(`nfs-ls -R lists ${n} files, not ${FILES}`);
      }
    };
    if (swap) { await nfsLs(); await cachefsLs(); } else { await cachefsLs(); await nfsLs(); }

    // 5. GETATTR round trips with our RPC client (this process), then stat(2) through a mount
    // with every attribute cache off, in a child process.
    {
      for (let i = 0; i < 200; i++) await client.getattr(bigFh); // connection and server cache warm
      const us: number[] = [];
      for (let i = 0; i < CALLS; i++) {
        const t = process.hrtime.bigint();
        await client.getattr(bigFh);
        us.push(Number(process.hrtime.bigint() - t) / 1000);
      }
      addLatency('getattr.rpc', us);
    }
    {
      await statM.mount({ fresh: true });
      const s0 = statM.status();
      const out = await run(process.execPath, [statLoop, path.join(statM.mnt, BIG), String(CALLS), String(STAT_WARMUP)]);
      const s1 = statM.status();
      const ops = deltaOps(s0.ops, s1.ops);
      const fuse = Object.values(ops).reduce((a, v) => a + v.count, 0);
      const n = CALLS + STAT_WARMUP;
      addLatency('stat.nocache', JSON.parse(out) as number[], { fuse: fuse / n, backend: (s1.counters.backendCalls - s0.counters.backendCalls) / n, ops });
      await statM.umount();
    }

    // Profile: our RPC client alone, in this process (server page cache warm): 1 MiB READs one
    // at a time and 8 in flight (cachefs's read-ahead), each reply's record lent and given
    // back as the chunk fetcher does (readLent), and 1 MiB UNSTABLE WRITEs + COMMIT.
    {
      const n = SIZE_MIB;
      const readOne = async (i: number): Promise<void> => { (await client!.readLent(bigFh, i * MiB, MiB)).release(); };
      await measure('raw.read.qd1', null, async () => {
        for (let i = 0; i < n; i++) await readOne(i);
      });
      await measure('raw.read.qd8', null, async () => {
        let next = 0;
        await Promise.all(Array.from({ length: 8 }, async () => {
          for (let i = next++; i < n; i = next++) await readOne(i);
        }));
      });
      const w = path.join(srv.exportDir, 'raw-w');
      await fsp.rm(w, { force: true });
      writeFileSync(w, '');
      const wFh = (await client.lookup(root.fh, 'raw-w')).fh;
      const data = readFileSync(SRC);
      execFileSync('sync');
      await measure('raw.write', null, async () => {
        for (let i = 0; i < n; i++) await client!.write(wFh, i * MiB, data.subarray(i * MiB, (i + 1) * MiB));
        await client!.commit(wFh);
      });
      await fsp.rm(w, { force: true });
    }
    verified = true;
  }

  // ---------------------------------------------------------------- report
  const mibs = (secs: number) => SIZE_MIB / secs;
  const T = (k: string) => med(k).secs;
  const load1 = os.loadavg();
  const lines: string[] = [];
  const cmd = `node dist/bench/nfs.js --runs ${RUNS} --size-mib ${SIZE_MIB} --files ${FILES}` + (CALLS !== 5000 ? ` --calls ${CALLS}` : '');
  lines.push(BEGIN, '## NFS backend: cachefs over NFSv3 vs libnfs', '');
  lines.push(`Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} cores (${os.cpus()[0]?.model.trim() ?? '?'}), ` +
    `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, kernel ${os.release()}, Node ${process.version}; commit ${head}` +
    `${srcDirty ? ' with uncommitted changes in src/' : ''}; nfs-ganesha ${ganeshaVersion} (FSAL_VFS, scripts/nfs-server.sh) on 127.0.0.1, ` +
    `libnfs-utils ${libnfsVersion} as the baseline. Load average ${load0.map((x) => x.toFixed(2)).join(' ')} at the start, ` +
    `${load1.map((x) => x.toFixed(2)).join(' ')} at the end. Produced by (as root, after \`bash scripts/setup.sh\`):`, '');
  lines.push('```sh', cmd, '```', '');
  lines.push(`Median of ${RUNS} runs (range in brackets), cachefs and baseline against the same server in the same run. ` +
    `"cold": \`sync; echo 3 > /proc/sys/vm/drop_caches\` first (${dropWorks ? 'works here' : 'DID NOT WORK here: cold is only cachefs-cold'}), ` +
    'so ganesha reads the export from disk; "server warm": the export file is in the page cache, the cachefs cache is empty. ' +
    `Reads: \`dd bs=1M\` through the mount (cold: into a tmpfs file, like nfs-cp; warm: to /dev/null) vs \`nfs-cp\`. ` +
    `Writes: \`dd bs=1M conv=fsync\` into the mount (close and fsync return once the server has COMMITted the data) vs ` +
    '`nfs-cp` (libnfs 4.0: UNSTABLE WRITEs of 1 MiB, one at a time, and a COMMIT at close). ' +
    `Server transfer size: rsize ${limits.rsize}, wsize ${limits.wsize}. Warm reads count as equal within noise when the ` +
    'NFS mount is at most 10 % slower than the local one.', '');
  lines.push('| workload | cachefs | baseline | cachefs / baseline (throughput) | target | |');
  lines.push('| --- | ---: | ---: | ---: | ---: | --- |');
  const thr = (k: string) => `${T(k).toFixed(3)} s [${spread(k)}], ${mibs(T(k)).toFixed(0)} MiB/s`;
  const row = (name: string, a: string, b: string, bName: string, target: number | null) => {
    const ratio = T(b) > 0 ? T(b) / T(a) : NaN; // throughput ratio = inverse time ratio
    const verdict = target === null ? '' : ratio >= target ? 'met' : 'NOT met';
    lines.push(`| ${name} | ${thr(a)} | ${bName}: ${thr(b)} | ${ratio.toFixed(2)}× | ${target === null ? '' : `≥ ${target}×`} | ${verdict} |`);
  };
  row(`read ${SIZE_MIB} MiB, cold`, 'read.cold.cachefs', 'read.cold.nfscp', 'nfs-cp', 0.8);
  row(`read ${SIZE_MIB} MiB, cachefs cache cold, server warm`, 'read.srvwarm.cachefs', 'read.srvwarm.nfscp', 'nfs-cp', 0.8);
  row(`write ${SIZE_MIB} MiB + fsync + close`, 'write.cachefs', 'write.nfscp', 'nfs-cp', 0.7);
  const warmRow = (name: string, a: string, b: string) => {
    const ratio = T(b) / T(a);
    lines.push(`| ${name} | ${thr(a)} | local backend: ${thr(b)} | ${ratio.toFixed(2)}× | equal within noise | ` +
      `${ratio >= 0.9 ? 'met' : 'NOT met'} (ranges: ${spread(a)} vs ${spread(b)}) |`);
  };
  warmRow(`read ${SIZE_MIB} MiB, warm (same mount, kernel page cache)`, 'read.warm.nfs', 'read.warm.local');
  warmRow(`read ${SIZE_MIB} MiB, warm after remount (cachefs cache files)`, 'read.remount.nfs', 'read.remount.local');
  lines.push(`| (reference: cold read through a cachefs mount of a local directory) | | ${thr('read.cold.local')} | | | |`);
  lines.push(`| (reference: the same write through a cachefs mount of a local directory) | | ${thr('write.local')} | | | |`);
  const lsRow = (name: string, a: string, b: string) => {
    if (samples.has(b)) {
      lines.push(`| ${name} | ${T(a).toFixed(3)} s [${spread(a)}] | nfs-ls -R: ${T(b).toFixed(3)} s [${spread(b)}] | ${(T(b) / T(a)).toFixed(2)}× | | |`);
    } else lines.push(`| ${name} | ${T(a).toFixed(3)} s [${spread(a)}] | (no nfs-ls -R) | | | |`);
  };
  lsRow(`ls -lR ${FILES} files, cold`, 'ls.cold.cachefs', 'ls.cold.nfsls');
  lsRow(`ls -lR ${FILES} files, warm`, 'ls.warm.cachefs', 'ls.warm.nfsls');
  lines.push('');
  const lat = (k: string) => {
    const l = latencies[k]!;
    const r = (xs: number[]) => `[${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}]`;
    return `${median(l.median).toFixed(0)} µs ${r(l.median)} | ${median(l.p99).toFixed(0)} µs ${r(l.p99)}`;
  };
  lines.push(`Latency, ${CALLS} sequential calls after ${STAT_WARMUP} warm-up calls: the median over runs of each run's median ` +
    'and p99, [range over runs].', '');
  lines.push('| call | median | p99 | what it measures |');
  lines.push('| --- | ---: | ---: | --- |');
  lines.push(`| GETATTR, our RPC client (NfsBackend.getattr) | ${lat('getattr.rpc')} | one NFS round trip to ganesha over loopback TCP, in-process |`);
  const pc = latencies['stat.nocache']!.perCall!;
  lines.push(`| stat(2) through a mount with attribute caches off | ${lat('stat.nocache')} | entry/attr timeouts 0 and acregmin = acregmax = 0: ` +
    `${pc.fuse.toFixed(2)} FUSE requests and ${pc.backend.toFixed(2)} backend calls per stat (${opsList(pc.ops, CALLS + STAT_WARMUP)}) |`);
  lines.push(`| stat(2) through a mount with default caching | ${lat('stat.cached')} | kernel attribute cache (attrTimeout 1 s): mostly no FUSE request |`);
  lines.push('');
  lines.push('### Where the time goes (median run of each workload)', '');
  lines.push('CPU seconds during the workload by process (from /proc: the cachefs mount daemon, ganesha.nfsd, the client ' +
    'process — dd/ls/nfs-cp —, this bench process, and everything else on the machine), and for cachefs the FUSE ' +
    'requests (`cachefs status --json`, `ops`: count and handler time) and backend calls it made.', '');
  lines.push('| workload | wall s | CPU s: cachefs / ganesha / client / bench / other | FUSE requests (handler s) | backend calls | MiB from backend |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: |');
  const profKeys: [string, string][] = [
    ['read.cold.cachefs', 'cold read, cachefs'], ['read.cold.nfscp', 'cold read, nfs-cp'],
    ['read.srvwarm.cachefs', 'server-warm read, cachefs'], ['read.srvwarm.nfscp', 'server-warm read, nfs-cp'],
    ['write.cachefs', 'write, cachefs'], ['write.nfscp', 'write, nfs-cp'], ['write.local', 'write, local-backend mount'],
    ['read.cold.local', 'cold read, local-backend mount'],
    ['read.warm.nfs', 'warm read, NFS mount'], ['read.warm.local', 'warm read, local mount'],
    ['read.remount.nfs', 'warm after remount, NFS mount'], ['read.remount.local', 'warm after remount, local mount'],
    ['ls.cold.cachefs', 'ls -lR cold, cachefs'], ['ls.cold.nfsls', 'ls -lR cold, nfs-ls'],
    ['ls.warm.cachefs', 'ls -lR warm, cachefs'], ['ls.warm.nfsls', 'ls -lR warm, nfs-ls'],
    ['raw.read.qd1', `our RPC client alone: ${SIZE_MIB} × 1 MiB READ, 1 in flight`],
    ['raw.read.qd8', `our RPC client alone: ${SIZE_MIB} × 1 MiB READ, 8 in flight`],
    ['raw.write', `our RPC client alone: ${SIZE_MIB} × 1 MiB WRITE + COMMIT`],
  ];
  for (const [k, name] of profKeys) {
    if (!samples.has(k)) continue;
    const s = med(k);
    const c = s.prof.cpu;
    const ops = s.prof.ops;
    const reqs = ops ? Object.values(ops).reduce((a, v) => a + v.count, 0) : 0;
    const hms = ops ? Object.values(ops).reduce((a, v) => a + v.ms, 0) : 0;
    const isRaw = k.startsWith('raw.');
    lines.push(`| ${name} | ${s.secs.toFixed(3)}${isRaw ? ` (${mibs(s.secs).toFixed(0)} MiB/s)` : ''} | ` +
      `${[c.daemon, c.ganesha, c.client, c.bench, c.other].map((x) => x.toFixed(2)).join(' / ')} | ` +
      `${ops ? `${reqs} (${(hms / 1000).toFixed(2)}): ${opsList(ops)}` : ''} | ${s.prof.counters?.backendCalls ?? ''} | ` +
      `${s.prof.counters ? (s.prof.counters.bytesFromBackend / MiB).toFixed(0) : ''} |`);
  }
  lines.push('');
  const section = lines.join('\n');
  process.stdout.write(section + '\n');
  writeDocSection(OUT, 'nfs', section, ['<!-- offline:begin -->', '<!-- analysis -->']);
}

function opsList(ops: OpsTable, per?: number): string {
  return Object.entries(ops).sort((a, b) => b[1].count - a[1].count).slice(0, per ? 8 : 4)
    .map(([k, v]) => per ? `${k} ${(v.count / per).toFixed(2)}` : `${k} ${v.count}`).join(', ');
}


main().then(
  () => cleanup(),
  async (e) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
    await cleanup();
    process.exitCode = 1;
  },
);
