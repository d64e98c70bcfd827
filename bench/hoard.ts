// Benchmark of the hoard walk (issue 6): a pinned tree of N files totalling S MiB brought into
// the cache by `cachefs hoard`, against a plain copy of the same tree in the same run, on both
// backends (a local directory; NFSv3 on one nfs-ganesha, scripts/nfs-server.sh, 127.0.0.1):
//   local: `cp -r <tree> <scratch dir on the cache's disk>`;
//   NFS:   libnfs's `nfs-cp`, one process per file, PAR of them at a time (xargs -P), and, when
//          libnfs's headers and a C compiler are there, a small libnfs program that copies its
//          share of the files over one mount (PAR of them at a time): the same copy without a
//          process start and a MOUNT per file.
// Target: the walk takes at most 1.3× the copy's time.
// Usage (as root, after scripts/setup.sh):  node dist/bench/hoard.js [--runs N] [--files N]
//   [--size-mib N] [--par N] [--backends local,nfs] [--hoard-concurrency N] [--cpu-prof DIR]
//   [--verify full|sample] [--warm] [--json] [--out FILE] [--work DIR]
// Writes its tables between <!-- hoard:begin --> and <!-- hoard:end --> in docs/PERFORMANCE.md
// (the hand-written part from <!-- hoard:analysis --> on is kept).
//
// Every cold step starts with `sync; echo 3 > /proc/sys/vm/drop_caches`, for cachefs and the
// baselines alike. Each cachefs step: a fresh mount with a fresh cache directory, `cachefs pin
// <mnt> -r --no-hoard` (untimed), caches dropped, then `cachefs hoard <mnt> --json` timed from
// start to exit (a CLI process, as a user runs it). After it: the walk's summary and `cachefs
// pins --json` must say every file and byte is in the cache with nothing failed, the mount must
// have fetched each byte once, and, offline (`cachefs offline`), the tree read through the mount
// must equal the source byte for byte (diff -r; with --verify sample, a sample after run 1).
// This process never serves a mount and does no I/O on one; it talks to the mount daemons only
// on their control sockets (status, walk progress every POLL_MS).
import { execFileSync } from 'node:child_process';
import { promises as fsp, existsSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNfsServer, type NfsServer } from '../test/helpers/nfs-server.js';
import { cpuDelta, cpuSnap, watchGanesha, type Cpu } from './cpu.js';
import {
  arg, deltaOps, deltaCounters, deltaRecord, dropCaches, debVersion, machineFacts, runChild, shq, summarizeCpuProfile,
  threadCpu, writeDocSection, BenchMount, SampleSet, MiB, REPO, type OpsTable, type Counters, type CpuProfileSummary,
  type MountStatus,
} from './common.js';

const RUNS = Number(arg('runs', '3'));
const FILES = Number(arg('files', '10000'));
const SIZE_MIB = Number(arg('size-mib', '1024'));
/** Files copied at once by the NFS baselines (cachefs's walk: hoard.concurrency, 16 by default). */
const PAR = Number(arg('par', '16'));
const OUT = arg('out', path.join(REPO, 'docs', 'PERFORMANCE.md'));
const WORK = arg('work', path.join(os.tmpdir(), 'cachefs-bench-hoard'));
const BACKENDS = arg('backends', 'local,nfs').split(',') as ('local' | 'nfs')[];
const CPU_PROF = arg('cpu-prof', '');
/** hoard.concurrency of the cachefs mounts (files fetched at once); 0: the default (16). */
const HOARD_CONC = Number(arg('hoard-concurrency', '0'));
const JSON_OUT = process.argv.includes('--json');
const PER_DIR = 100;
/** With `--verify sample`: files compared byte for byte through the mount (offline) after runs other than the first. */
const SAMPLE = 200;
const POLL_MS = 100;
/** `--verify sample`: diff -r of the whole tree after the first run's walk only, `cmp` of SAMPLE files after the others (default: full, every walk). */
const VERIFY_FULL = arg('verify', 'full') !== 'sample';
/** `--warm`: no step starts cold; the tree is read into the page cache before each instead (a diagnostic: disk vs the rest). */
const WARM = process.argv.includes('--warm');
const TARGET = 1.3;

const T0 = Date.now();
const log = (s: string) => process.stderr.write(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(6)} s] ${s}\n`);

// ------------------------------------------------------------------ the tree

interface TreeFile { rel: string; size: number }

/** xorshift32: the same tree for the same --files and --size-mib. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
}

/** FILES paths dNNN/fM, PER_DIR to a directory, sizes 0.1-1.9 × the mean, exactly `total` bytes in all. */
function planTree(files: number, total: number): TreeFile[] {
  const rnd = prng(0x9e3779b9);
  const mean = total / files;
  const raw = Array.from({ length: files }, () => mean * (0.1 + 1.8 * (rnd() / 2 ** 32)));
  const sum = raw.reduce((a, b) => a + b, 0);
  const sizes = raw.map((s) => Math.max(1, Math.floor(s * total / sum)));
  let rest = total - sizes.reduce((a, b) => a + b, 0);
  for (let i = 0; rest !== 0; i = (i + 1) % files) {
    const d = rest > 0 ? 1 : (sizes[i]! > 1 ? -1 : 0);
    sizes[i]! += d;
    rest -= d;
  }
  return sizes.map((size, i) => ({ rel: `d${String(Math.floor(i / PER_DIR)).padStart(3, '0')}/f${i % PER_DIR}`, size }));
}

/**
 * Times of every file and directory of the tree: 30 days before the run, like a tree one pins for
 * a trip (cachefs trusts attributes for age/10 s, between acregmin 3 s and acregmax 60 s: a tree
 * written a second before the walk would have its attributes fetched again during the walk).
 */
const TREE_TIME = new Date(Date.now() - 30 * 86400_000);

/** Writes the tree under root: pseudo-random bytes, each file different (its index in its first 8 bytes). */
async function writeTree(root: string, plan: TreeFile[]): Promise<void> {
  const rnd = prng(12345);
  const pool = Buffer.alloc(16 * MiB);
  for (let i = 0; i < pool.length; i += 4) pool.writeUInt32LE(rnd(), i);
  for (let d = 0; d * PER_DIR < plan.length; d++) {
    const part = plan.slice(d * PER_DIR, (d + 1) * PER_DIR);
    await fsp.mkdir(path.join(root, path.dirname(part[0]!.rel)), { recursive: true, mode: 0o755 });
    await Promise.all(part.map((f, j) => {
      const i = d * PER_DIR + j;
      const off = (i * 104729 * 8) % (pool.length - f.size);
      const b = Buffer.from(pool.subarray(off, off + f.size));
      if (f.size >= 8) b.writeBigUInt64LE(BigInt(i), 0);
      const file = path.join(root, f.rel);
      return fsp.writeFile(file, b, { mode: 0o644 }).then(() => fsp.utimes(file, TREE_TIME, TREE_TIME));
    }));
    await fsp.utimes(path.join(root, path.dirname(part[0]!.rel)), TREE_TIME, TREE_TIME);
  }
  await fsp.utimes(root, TREE_TIME, TREE_TIME);
}

/** The copy at `dir` is the tree: every file (count and sizes), and with `full` every byte (diff -r). */
async function verifyCopy(src: string, dir: string, plan: TreeFile[], full: boolean, what: string): Promise<void> {
  const listing = await runChild('sh', ['-c', `cd ${shq(dir)} && find . -type f -printf '%P %s\\n'`]);
  const got = new Map(listing.trim().split('\n').filter(Boolean).map((l) => { const [p, s] = l.split(' '); return [p!, Number(s)]; }));
  if (got.size !== plan.length) throw new Error(`${what}: ${got.size} files in ${dir}, not ${plan.length}`);
  for (const f of plan) {
    if (got.get(f.rel) !== f.size) throw new Error(`${what}: ${dir}/${f.rel} has ${got.get(f.rel)} bytes, not ${f.size}`);
  }
  if (full) {
    await runChild('diff', ['-r', '-q', src, dir]).catch((e) => { throw new Error(`${what}: ${dir} differs from ${src}: ${(e as Error).message}`); });
  }
}

// ------------------------------------------------------------------ the libnfs tree copy (second NFS baseline)

/** Copies the files named on stdin (one path a line, relative to the URL's directory) to DEST, over one MOUNT. */
const TREE_COPY_C = String.raw`
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <nfsc/libnfs.h>

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s nfs://server/dir?nfsport=N&mountport=M DEST < paths\n", argv[0]); return 2; }
  struct nfs_context *nfs = nfs_init_context();
  struct nfs_url *url = nfs ? nfs_parse_url_dir(nfs, argv[1]) : NULL;
  if (!url) { fprintf(stderr, "bad url %s: %s\n", argv[1], nfs ? nfs_get_error(nfs) : "no context"); return 1; }
  if (nfs_mount(nfs, url->server, url->path) != 0) { fprintf(stderr, "mount: %s\n", nfs_get_error(nfs)); return 1; }
  size_t bufsize = 1024 * 1024;
  char *buf = malloc(bufsize);
  char line[4096], dst[8192];
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    if (!*line) continue;
    char src[4200];
    snprintf(src, sizeof src, "/%s", line);
    snprintf(dst, sizeof dst, "%s/%s", argv[2], line);
    struct nfsfh *fh;
    if (nfs_open(nfs, src, O_RDONLY, &fh) != 0) { fprintf(stderr, "open %s: %s\n", src, nfs_get_error(nfs)); return 1; }
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) { perror(dst); return 1; }
    for (;;) {
      int n = nfs_read(nfs, fh, bufsize, buf);
      if (n < 0) { fprintf(stderr, "read %s: %s\n", src, nfs_get_error(nfs)); return 1; }
      if (n == 0) break;
      for (int off = 0; off < n;) {
        ssize_t w = write(out, buf + off, n - off);
        if (w < 0) { perror(dst); return 1; }
        off += w;
      }
    }
    close(out);
    nfs_close(nfs, fh);
  }
  nfs_destroy_url(url);
  nfs_destroy_context(nfs);
  return 0;
}
`;

/** Builds the libnfs tree copy into WORK; null (with the reason) when it cannot be built here. */
async function buildTreeCopy(): Promise<{ bin: string | null; why: string }> {
  if (!existsSync('/usr/include/nfsc/libnfs.h')) return { bin: null, why: 'libnfs-dev (its headers) is not installed' };
  const src = path.join(WORK, 'nfs-tree-copy.c');
  const bin = path.join(WORK, 'nfs-tree-copy');
  writeFileSync(src, TREE_COPY_C);
  try {
    await runChild('cc', ['-O2', '-o', bin, src, '-lnfs']);
    return { bin, why: '' };
  } catch (e) {
    return { bin: null, why: `it did not build: ${(e as Error).message.slice(0, 200)}` };
  }
}

// ------------------------------------------------------------------ measuring

interface Point { t: number; at: number; state: string; files: number; bytes: number }
interface Profile {
  cpu: Cpu;
  /** The mount daemon's CPU seconds by thread name (cachefs steps). */
  threads?: Record<string, number>;
  ops?: OpsTable;
  counters?: Counters;
  rpcCalls?: number;
  /** The walk's own duration (its summary: finishedAt - startedAt), s. */
  walkS?: number;
  /**
   * The step in phases, s (from the walk's startedAt/finishedAt and its progress): the CLI
   * starting and asking for the walk; the scan (listings and attributes: until the progress
   * first showed \`fetching\`, so up to POLL_MS late); the fetches; the CLI noticing the end
   * (it polls every 250 ms) and exiting.
   */
  phases?: { start: number; scan: number; fetch: number; end: number };
  /** The walk's progress every POLL_MS. */
  timeline?: Point[];
  /** `sync` right after the step: the dirty pages it left, written back. */
  syncS?: number;
  /** Monotonic µs at the start and end of the step (to cut a CPU profile to it). */
  fromUs?: number;
  toUs?: number;
}

const samples = new SampleSet<Profile>();
/** Per run: the keys measured (for the per-run ratio table). */
const perRun: Record<string, number>[] = [];

const rpcOf = (s: MountStatus) => s.backendInfo?.rpc?.calls ?? 0;
const nowUs = () => Number(process.hrtime.bigint() / 1000n);

/** Times fn (child processes); through `m`, also what the mount did meanwhile (and the walk's progress with `poll`). */
async function measure(key: string, run: number, m: BenchMount | null, fn: () => Promise<unknown>, opts: { poll?: boolean } = {}): Promise<Profile> {
  const before = m ? await m.status() : null;
  const th0 = threadCpu(m?.pid ?? null);
  const c0 = cpuSnap(m?.pid ?? null);
  const fromUs = nowUs();
  const epoch0 = Date.now();
  const t = process.hrtime.bigint();
  const points: Point[] = [];
  let done = false;
  const poller = m && opts.poll ? (async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      if (done) break;
      const p = await m.request({ op: 'hoard', start: false }).catch(() => null) as { state: string; files: { done: number }; bytes: { done: number } } | null;
      if (p && !done) points.push({ t: Number(process.hrtime.bigint() - t) / 1e9, at: Date.now(), state: p.state, files: p.files.done, bytes: p.bytes.done });
    }
  })() : null;
  try {
    await fn();
  } finally {
    done = true;
  }
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  const epoch1 = Date.now();
  const toUs = nowUs();
  const c1 = cpuSnap(m?.pid ?? null);
  const th1 = threadCpu(m?.pid ?? null);
  await poller;
  const prof: Profile = { cpu: cpuDelta(c0, c1), fromUs, toUs };
  if (m && before) {
    const after = await m.status();
    prof.threads = deltaRecord(th0, th1);
    prof.ops = deltaOps(before.ops, after.ops);
    prof.counters = deltaCounters(before.counters, after.counters);
    prof.rpcCalls = rpcOf(after) - rpcOf(before);
    if (opts.poll) {
      prof.timeline = points;
      const walk = await m.request({ op: 'hoard', start: false }) as { startedAt: number | null; finishedAt: number | null };
      const fetching = points.find((p) => p.state === 'fetching' || p.state === 'done');
      if (walk.startedAt !== null && walk.finishedAt !== null && fetching) {
        const scanEnd = Math.min(fetching.at, walk.finishedAt);
        prof.phases = { start: (walk.startedAt - epoch0) / 1000, scan: (scanEnd - walk.startedAt) / 1000,
          fetch: (walk.finishedAt - scanEnd) / 1000, end: (epoch1 - walk.finishedAt) / 1000 };
      }
    }
  }
  // What the step left to write back (both sides write the tree into the page cache, no fsync).
  const ts = process.hrtime.bigint();
  execFileSync('sync');
  prof.syncS = Number(process.hrtime.bigint() - ts) / 1e9;
  samples.add(key, secs, prof);
  (perRun[run] ??= {})[key] = secs;
  log(`  ${key}: ${secs.toFixed(3)} s (then sync ${prof.syncS.toFixed(2)} s)`);
  return prof;
}

// ------------------------------------------------------------------ main

let server: NfsServer | null = null;
let cleaning: Promise<void> | null = null;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const m of [...BenchMount.live]) await m.umount().catch(() => undefined);
    if (server) {
      await server.stop().catch((e) => log(`stopping the NFS server: ${(e as Error).message}`));
      await fsp.rm(server.dir, { recursive: true, force: true }).catch(() => undefined);
    }
    await fsp.rm(WORK, { recursive: true, force: true }).catch(() => undefined);
  })();
  return cleaning;
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    log(`bench: ${sig}, cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

interface HoardSummary { files: { done: number; total: number }; bytes: { done: number; total: number }; fetched: number; seconds: number; failedCount: number }

async function main(): Promise<void> {
  if (!existsSync('/dev/fuse')) throw new Error('no /dev/fuse');
  if (process.getuid?.() !== 0) throw new Error('run as root (nfs-ganesha, drop_caches, allow_other)');
  const facts = machineFacts();
  const load0 = os.loadavg();
  const totalBytes = SIZE_MIB * MiB;
  const plan = planTree(FILES, totalBytes);

  await fsp.rm(WORK, { recursive: true, force: true });
  await fsp.mkdir(WORK, { recursive: true });
  // Disk: a tree per backend, the cache (a tree) and the copy (a tree), and slack.
  const needGiB = (BACKENDS.length + 2) * totalBytes / 2 ** 30 + FILES * 12 * 1024 / 2 ** 30 + 1;
  const df = await runChild('df', ['-B1', '--output=avail,target', WORK]);
  const [availStr, fsTarget] = df.trim().split('\n')[1]!.trim().split(/\s+/);
  const availGiB = Number(availStr) / 2 ** 30;
  if (availGiB < needGiB) throw new Error(`${availGiB.toFixed(1)} GiB free on ${fsTarget}, ${needGiB.toFixed(1)} GiB needed: lower --size-mib`);
  const diskFacts = `${availGiB.toFixed(0)} GiB free on ${fsTarget}, where the trees, the caches and the copies are (${needGiB.toFixed(1)} GiB needed)`;
  const dropWorks = dropCaches();
  log(`drop_caches ${dropWorks ? 'works' : 'DOES NOT WORK (not root?): "cold" is only cachefs-cold'}`);

  const SCRATCH = path.join(WORK, 'scratch'); // the baselines' copies: the same file system as the caches
  await fsp.mkdir(SCRATCH);
  const mounts: BenchMount[] = [];
  const treeOf: Record<string, string> = {};
  if (BACKENDS.includes('local')) {
    const tree = path.join(WORK, 'tree-local');
    log(`writing ${FILES} files, ${SIZE_MIB} MiB, into ${tree}`);
    await writeTree(tree, plan);
    treeOf.local = tree;
    mounts.push(new BenchMount('local', tree, path.join(WORK, 'mnt-local'), path.join(WORK, 'cache-local'), WORK));
  }
  let libnfs = (_p: string) => '';
  let treeCopy: { bin: string | null; why: string } = { bin: null, why: 'no NFS backend in this run' };
  if (BACKENDS.includes('nfs')) {
    log('starting nfs-ganesha on 127.0.0.1');
    server = await startNfsServer('bench-hoard');
    const srv = server;
    watchGanesha(() => srv.pid());
    const tree = path.join(srv.exportDir, 'tree');
    log(`writing ${FILES} files, ${SIZE_MIB} MiB, into ${tree}`);
    await writeTree(tree, plan);
    treeOf.nfs = tree;
    if (!srv.url.includes('/export?')) throw new Error(`unexpected server URL ${srv.url}`);
    mounts.push(new BenchMount('nfs', srv.url.replace('/export?', '/export/tree?'), path.join(WORK, 'mnt-nfs'), path.join(WORK, 'cache-nfs'), WORK));
    libnfs = (p: string) => `nfs://127.0.0.1/export/tree${p}?nfsport=${srv.nfsPort}&mountport=${srv.mntPort}`;
    treeCopy = await buildTreeCopy();
    log(treeCopy.bin ? `libnfs tree copy built: ${treeCopy.bin}` : `no libnfs tree copy: ${treeCopy.why}`);
  }
  let config: string | undefined;
  if (HOARD_CONC) {
    config = path.join(WORK, 'hoard.config.json');
    writeFileSync(config, JSON.stringify({ hoard: { concurrency: HOARD_CONC } }));
  }
  const dirs = [...new Set(plan.map((f) => path.dirname(f.rel)))];
  /** Before a timed step: caches dropped, or (--warm) the backend's tree read into the page cache. */
  const coldOrWarm = async (B: string) => {
    if (!WARM) { dropCaches(); return; }
    execFileSync('sync');
    await runChild('sh', ['-c', `find ${shq(treeOf[B]!)} -type f -exec cat {} + > /dev/null`]);
  };
  const makeDirs = async (root: string) => { for (const d of dirs) await fsp.mkdir(path.join(root, d), { recursive: true }); };

  const verifyHoard = async (m: BenchMount, out: string, fromBackend: number, full: boolean): Promise<HoardSummary> => {
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { type: string } & HoardSummary);
    const sum = lines.find((l) => l.type === 'summary');
    if (!sum) throw new Error(`${m.label}: \`cachefs hoard --json\` printed no summary`);
    const pins = JSON.parse(await m.cli(['pins', m.mnt, '--json'])) as { hoard: HoardSummary & { state: string } };
    for (const [what, h] of [['the walk\'s summary', sum], ['`cachefs pins --json`', pins.hoard]] as const) {
      if (h.failedCount !== 0 || h.files.done !== FILES || h.files.total !== FILES || h.bytes.done !== totalBytes || h.bytes.total !== totalBytes) {
        throw new Error(`${m.label}: ${what} says ${h.files.done}/${h.files.total} files, ${h.bytes.done}/${h.bytes.total} bytes, ` +
          `${h.failedCount} failed; expected ${FILES} files and ${totalBytes} bytes, none failed`);
      }
    }
    if (sum.fetched !== totalBytes || fromBackend !== totalBytes) {
      throw new Error(`${m.label}: the walk fetched ${sum.fetched} bytes, the mount ${fromBackend} from the backend; expected ${totalBytes}`);
    }
    // Offline, every byte must come from the cache: read files through the mount and compare.
    await m.offline();
    const before = (await m.status()).counters.bytesFromBackend;
    if (full) {
      await runChild('diff', ['-r', '-q', treeOf[m.label]!, m.mnt]).catch((e) => {
        throw new Error(`${m.label}: offline, the mount differs from the tree: ${(e as Error).message}`);
      });
    } else {
      const rnd = prng(m.label.length * 7919 + samples.all(`hoard.${m.label}`).length);
      const pick = new Set<number>([0, FILES - 1]);
      while (pick.size < Math.min(SAMPLE, FILES)) pick.add(rnd() % FILES);
      const script = [...pick].map((i) => `cmp ${shq(path.join(treeOf[m.label]!, plan[i]!.rel))} ${shq(path.join(m.mnt, plan[i]!.rel))}`).join(' && ');
      await runChild('sh', ['-c', script]).catch((e) => { throw new Error(`${m.label}: offline, a file read through the mount differs: ${(e as Error).message}`); });
    }
    if ((await m.status()).counters.bytesFromBackend !== before) {
      throw new Error(`${m.label}: reading offline fetched from the backend`);
    }
    await m.online();
    return sum;
  };

  const walks: Record<string, HoardSummary[]> = {};
  for (let r = 0; r < RUNS; r++) {
    const swap = r % 2 === 1; // alternate which side goes first
    for (const m of mounts) {
      const B = m.label;
      log(`run ${r + 1}/${RUNS}: ${B} backend`);
      const cachefsSide = async () => {
        await m.mount({ fresh: true, config });
        await m.cli(['pin', m.mnt, '-r', '--no-hoard']);
        await coldOrWarm(m.label);
        let out = '';
        const prof = await measure(`hoard.${B}`, r, m, async () => { out = await m.cli(['hoard', m.mnt, '--json']); }, { poll: true });
        const sum = await verifyHoard(m, out, prof.counters!.bytesFromBackend, r === 0 || VERIFY_FULL);
        prof.walkS = sum.seconds;
        (walks[B] ??= []).push(sum);
        await m.umount();
      };
      const copySide = async () => {
        const dest = path.join(SCRATCH, `c${r}`);
        if (B === 'local') {
          await coldOrWarm(B);
          await measure(`copy.${B}`, r, null, () => runChild('cp', ['-r', treeOf.local!, dest]));
          await verifyCopy(treeOf.local!, dest, plan, r === 0, 'cp -r');
          await fsp.rm(dest, { recursive: true, force: true });
          return;
        }
        // nfs-cp: one process (one MOUNT) per file, PAR at a time; it makes no directories.
        await makeDirs(dest);
        const list = path.join(WORK, 'nfs-cp.list');
        writeFileSync(list, plan.map((f) => `${libnfs(`/${f.rel}`)}\0${path.join(dest, f.rel)}\0`).join(''));
        await coldOrWarm(B);
        await measure(`copy.${B}`, r, null, () => runChild('sh', ['-c', `xargs -0 -P ${PAR} -n 2 nfs-cp < ${shq(list)}`]));
        await verifyCopy(treeOf.nfs!, dest, plan, r === 0, 'nfs-cp');
        await fsp.rm(dest, { recursive: true, force: true });
        if (!treeCopy.bin) return;
        // One libnfs context (one MOUNT) per worker, PAR workers, files dealt out round robin.
        await makeDirs(dest);
        const shares = Array.from({ length: PAR }, (_, k) => plan.filter((_, i) => i % PAR === k).map((f) => f.rel));
        shares.forEach((s, k) => writeFileSync(path.join(WORK, `share${k}`), s.join('\n') + '\n'));
        const script = shares.map((_, k) => `${shq(treeCopy.bin!)} ${shq(libnfs(''))} ${shq(dest)} < ${shq(path.join(WORK, `share${k}`))} & p${k}=$!`).join('\n') +
          '\n' + shares.map((_, k) => `wait $p${k} || exit 1`).join('\n') + '\n';
        writeFileSync(path.join(WORK, 'tree-copy.sh'), script);
        await coldOrWarm(B);
        await measure(`copy2.${B}`, r, null, () => runChild('sh', [path.join(WORK, 'tree-copy.sh')]));
        await verifyCopy(treeOf.nfs!, dest, plan, r === 0, 'libnfs tree copy');
        await fsp.rm(dest, { recursive: true, force: true });
      };
      if (swap) { await copySide(); await cachefsSide(); } else { await cachefsSide(); await copySide(); }
    }
  }

  // An extra walk per backend with the mount process under `node --cpu-prof` (not in the timings;
  // NODE_OPTIONS does not take --cpu-prof, so the bench starts that process itself, --foreground).
  const profiles: Record<string, { summary: CpuProfileSummary; secs: number; file: string; threads: Record<string, number> }> = {};
  if (CPU_PROF) {
    await fsp.mkdir(CPU_PROF, { recursive: true });
    for (const m of mounts) {
      log(`profiled walk: ${m.label} backend`);
      const dir = path.resolve(CPU_PROF, m.label);
      await fsp.rm(dir, { recursive: true, force: true });
      await m.mountForeground({ fresh: true, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`], config });
      const pid = m.pid!;
      await m.cli(['pin', m.mnt, '-r', '--no-hoard']);
      await coldOrWarm(m.label);
      const prof = await measure(`profiled.${m.label}`, RUNS, m, () => m.cli(['hoard', m.mnt, '--json']), { poll: true });
      await m.umount();
      const file = readdirSync(dir).find((f) => f.includes(`.${pid}.`) && f.endsWith('.cpuprofile'));
      if (!file) { log(`no profile of pid ${pid} in ${dir}`); continue; }
      profiles[m.label] = {
        summary: summarizeCpuProfile(path.join(dir, file), { fromUs: prof.fromUs!, toUs: prof.toUs! }),
        secs: samples.med(`profiled.${m.label}`).secs, file: path.join(dir, file), threads: prof.threads ?? {},
      };
    }
  }

  // ---------------------------------------------------------------- report
  const load1 = os.loadavg();
  const headEnd = machineFacts().head;
  const T = (k: string) => samples.med(k).secs;
  const secs = (k: string) => `${T(k).toFixed(2)} s [${samples.spread(k)}]`;
  const rates = (k: string) => `${(FILES / T(k)).toFixed(0)} files/s, ${(SIZE_MIB / T(k)).toFixed(0)} MiB/s`;
  const medRatio = (a: string, b: string) => {
    const rs = perRun.filter((x) => x[a] !== undefined && x[b] !== undefined).map((x) => x[a]! / x[b]!);
    return { med: [...rs].sort((x, y) => x - y)[Math.floor(rs.length / 2)]!, all: rs };
  };
  const cmd = `node dist/bench/hoard.js --runs ${RUNS} --files ${FILES} --size-mib ${SIZE_MIB}` +
    (PAR !== 16 ? ` --par ${PAR}` : '') + (HOARD_CONC ? ` --hoard-concurrency ${HOARD_CONC}` : '') + (BACKENDS.join(',') !== 'local,nfs' ? ` --backends ${BACKENDS.join(',')}` : '') +
    (VERIFY_FULL ? '' : ' --verify sample') + (WARM ? ' --warm' : '') + (CPU_PROF ? ` --cpu-prof ${path.resolve(CPU_PROF).startsWith(REPO + '/') ? path.relative(REPO, path.resolve(CPU_PROF)) : path.resolve(CPU_PROF)}` : '');
  const sizes = plan.map((f) => f.size);
  const lines: string[] = [];
  lines.push('<!-- hoard:begin -->', '## Hoard walk: a pinned tree into the cache vs a plain copy', '');
  lines.push(`Measured ${facts.line}${headEnd !== facts.head ? ` (HEAD moved to ${headEnd} during the run: mounts made later ran the code built then)` : ''}; ${diskFacts}` +
    (server ? `; nfs-ganesha ${debVersion('nfs-ganesha')} (FSAL_VFS, scripts/nfs-server.sh) on 127.0.0.1, libnfs-utils ${debVersion('libnfs-utils')}` : '') +
    `. Load average ${load0.map((x) => x.toFixed(2)).join(' ')} at the start, ${load1.map((x) => x.toFixed(2)).join(' ')} at the end. ` +
    'Produced by (as root, after `bash scripts/setup.sh`):', '');
  lines.push('```sh', cmd, '```', '');
  lines.push(`Tree: ${FILES} files, ${SIZE_MIB} MiB in all (${(Math.min(...sizes) / 1024).toFixed(0)}-${(Math.max(...sizes) / 1024).toFixed(0)} KiB, ` +
    `${(totalBytes / FILES / 1024).toFixed(0)} KiB on average, pseudo-random bytes${Math.max(...sizes) <= MiB ? ', each file within one of cachefs\'s 1 MiB chunks' : ''}), ${PER_DIR} to a directory in ${dirs.length} directories, ` +
    'all modified 30 days before the run (so cachefs trusts their attributes for acregmax, 60 s, as it would a tree one pins for a trip). ' +
    `Median of ${RUNS} runs (range in brackets), the baselines against the same backend in the same run, alternating which goes first. ` +
    (WARM ? '**Warm (`--warm`, a diagnostic): no step drops the caches; the tree is read into the page cache (`cat`) before each.** '
      : `Every step starts cold: \`sync; echo 3 > /proc/sys/vm/drop_caches\` (${dropWorks ? 'works here' : 'DID NOT WORK here'}). `) +
    'cachefs: a fresh mount and cache directory, `cachefs pin <mnt> -r --no-hoard` (untimed), then `cachefs hoard <mnt> --json` ' +
    'timed from start to exit (a CLI process; it polls the walk every 250 ms); "walk" is the walk\'s own time from its summary. ' +
    'Each walk was checked: its summary and `cachefs pins --json` show every file and byte in the cache and nothing failed, ' +
    'the mount fetched each byte once, and offline (`cachefs offline`) the files read through the mount equal the source ' +
    (VERIFY_FULL ? '(`diff -r` of the whole tree after every walk). ' : `(\`diff -r\` of the whole tree in the first run, \`cmp\` of ${SAMPLE} files in the others). `) +
    `Baselines: local, \`cp -r\` of the tree into a directory on the cache's file system; NFS, \`nfs-cp\` (libnfs-utils) per file, ` +
    `${PAR} processes at a time (\`xargs -P ${PAR}\`; the walk fetches hoard.concurrency = ${HOARD_CONC || 16} files at a time), the directories made beforehand (untimed)` +
    (treeCopy.bin ? `, and a ${TREE_COPY_C.split('\n').length}-line libnfs program (in bench/hoard.ts) that copies its share of the files ` +
      `over one MOUNT the way \`nfs-cp\` does (open, 1 MiB reads, close), ${PAR} of them at a time` : `; the libnfs tree copy was not run: ${treeCopy.why}`) +
    '. Neither side fsyncs what it writes; "then sync" is the `sync` right after a step (its dirty pages written back), not in its time.', '');
  lines.push('| backend | cachefs `hoard` | walk alone | baseline | cachefs / baseline (median of runs) | target | |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | --- |');
  const verdict = (x: number) => (x <= TARGET ? 'met' : 'NOT met');
  for (const m of mounts) {
    const B = m.label;
    const walkMed = [...(walks[B] ?? []).map((w) => w.seconds)].sort((a, b) => a - b)[Math.floor((walks[B]?.length ?? 1) / 2)] ?? 0;
    const bases: [string, string][] = B === 'local' ? [['copy.local', '`cp -r`']] : [['copy.nfs', `\`nfs-cp\` × ${FILES}, ${PAR} at a time`]];
    if (B === 'nfs' && samples.has('copy2.nfs')) bases.push(['copy2.nfs', `libnfs tree copy, ${PAR} mounts`]);
    for (const [k, name] of bases) {
      const r = medRatio(`hoard.${B}`, k);
      const walkR = walkMed / T(k);
      lines.push(`| ${B} | ${secs(`hoard.${B}`)}; ${rates(`hoard.${B}`)} | ${walkMed.toFixed(2)} s | ${name}: ${secs(k)}; ${rates(k)} | ` +
        `**${r.med.toFixed(2)}×** (runs: ${r.all.map((x) => x.toFixed(2)).join(', ')}; walk alone, median over median: ${walkR.toFixed(2)}×) | ≤ ${TARGET}× | ${verdict(r.med)} |`);
    }
  }
  lines.push('');
  lines.push('### Where the time goes (median run of each step)', '');
  lines.push('CPU seconds during the step by process (from /proc: the cachefs mount daemon, ganesha.nfsd, the client processes — ' +
    'cp, nfs-cp, the libnfs copy, the `cachefs hoard` CLI —, this bench process, everything else), the daemon\'s CPU by thread ' +
    '(main: the JS thread; node: all its other threads, libuv\'s pool — cache-file and local backend I/O —, V8\'s workers, FUSE), ' +
    'its backend calls (`counters.backendCalls`) and, on NFS, RPCs (`backendInfo.rpc.calls`). Phases of a cachefs step: ' +
    'the CLI starting and asking for the walk (to the walk\'s startedAt), the scan (listings and attributes, until the walk\'s ' +
    `progress, polled every ${POLL_MS} ms on the control socket, first showed it fetching: up to ${POLL_MS} ms late), the ` +
    'fetches (to its finishedAt), and the CLI noticing the end (it polls every 250 ms) and exiting.', '');
  lines.push('| step | wall s | phases s: CLI start / scan / fetch / CLI end | CPU s: cachefs / ganesha / client / bench / other | cachefs threads CPU s | backend calls | NFS RPCs | then sync s |');
  lines.push('| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |');
  const keyName: [string, string][] = [];
  for (const m of mounts) {
    const B = m.label;
    keyName.push([`hoard.${B}`, `${B}: cachefs hoard`], [`copy.${B}`, `${B}: ${B === 'local' ? 'cp -r' : `nfs-cp × ${FILES}`}`]);
    if (B === 'nfs') keyName.push([`copy2.${B}`, `${B}: libnfs tree copy`]);
  }
  for (const m of mounts) keyName.push([`profiled.${m.label}`, `${m.label}: cachefs hoard under --cpu-prof (not in the table above)`]);
  const threadList = (t?: Record<string, number>) => t ? Object.entries(t).filter(([, v]) => v >= 0.005).sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ') : '';
  for (const [k, name] of keyName) {
    if (!samples.has(k)) continue;
    const s = samples.med(k);
    const c = s.prof.cpu;
    const ph = s.prof.phases;
    lines.push(`| ${name} | ${s.secs.toFixed(3)} | ${ph ? [ph.start, ph.scan, ph.fetch, ph.end].map((x) => x.toFixed(2)).join(' / ') : ''} | ` +
      `${[c.daemon, c.ganesha, c.client, c.bench, c.other].map((x) => x.toFixed(2)).join(' / ')} | ${threadList(s.prof.threads)} | ` +
      `${s.prof.counters?.backendCalls ?? ''} | ${s.prof.rpcCalls || ''} | ${s.prof.syncS?.toFixed(2) ?? ''} |`);
  }
  lines.push('');
  lines.push('The walk\'s progress in the median run (s: files done, MiB in the cache):', '');
  for (const m of mounts) {
    const tl = samples.med(`hoard.${m.label}`).prof.timeline ?? [];
    const step = Math.max(1, Math.ceil(tl.length / 12));
    const keep = tl.filter((p, i) => i % step === 0 || i === tl.length - 1 || p.state !== tl[i - 1]?.state);
    lines.push(`- ${m.label}: ${keep.map((p) => `${p.t.toFixed(1)}: ${p.files} ${(p.bytes / MiB).toFixed(0)} ${p.state}`).join(' → ')}`);
  }
  lines.push('');
  for (const [B, p] of Object.entries(profiles)) {
    const w = p.summary.windowMs;
    lines.push(`CPU profile of the ${B} mount daemon during a walk (\`node --cpu-prof\`, the mount process started \`--foreground\` by the bench; the samples of the ` +
      `\`cachefs hoard\` step only: ${(w / 1000).toFixed(2)} s of a ${p.secs.toFixed(2)} s step; threads: ${threadList(p.threads)}). ` +
      'Self time of the JS thread by where the code is, and the top functions:', '');
    lines.push(`- by area: ${p.summary.byArea.filter((a) => a.ms / w >= 0.005).map((a) => `${a.area} ${(100 * a.ms / w).toFixed(0)} %`).join(', ')}`);
    lines.push(`- top: ${p.summary.top.slice(0, 15).map((f) => `\`${f.name}\` ${(100 * f.ms / w).toFixed(1)} %`).join(', ')}`);
    lines.push('');
  }
  const section = lines.join('\n');
  writeDocSection(OUT, 'hoard', section, ['<!-- analysis -->']);
  if (JSON_OUT) {
    const dump: Record<string, unknown> = {};
    for (const k of samples.keys()) dump[k] = samples.all(k).map((s) => ({ secs: s.secs, ...s.prof, timeline: undefined }));
    process.stdout.write(JSON.stringify({ cmd, files: FILES, sizeMiB: SIZE_MIB, par: PAR, runs: perRun, samples: dump, walks,
      profiles: Object.fromEntries(Object.entries(profiles).map(([k, v]) => [k, { ...v.summary, file: v.file }])) }, null, 2) + '\n');
  } else {
    process.stdout.write(section + '\n');
  }
}

main().then(
  () => cleanup(),
  async (e) => {
    log(`bench: ${(e as Error).stack ?? e}`);
    await cleanup();
    process.exitCode = 1;
  },
);
