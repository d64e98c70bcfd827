// Benchmarks of the local backend against the native directory and Debian's bindfs (a C
// FUSE passthrough, -o big_writes), all measured in this one run, reported as ratios.
// Usage (as root, after scripts/setup.sh):  node dist/bench/run.js [--runs N] [--size-mib N]
//   [--files N] [--bigdir N] [--out docs/PERFORMANCE.md] [--passthrough] [--passthrough-writes] [--writeback]
//   --passthrough-writes: fuse.passthroughWrites too (implies --passthrough).
//   --passthrough / --writeback: mount cachefs with fuse.passthrough / fuse.writebackCache (the config refuses the latter for now: README).
// Every workload runs in a child process (dd, cat, ls, find, tar): this process never
// serves a mount. "cold" drops the kernel's page cache first (needs root).
import { spawn, execFileSync } from 'node:child_process';
import { promises as fsp, existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg, makeBigFile, makeTree, makeFlatDir, CLI, REPO, type OpsTable } from './common.js';


const RUNS = Number(arg('runs', '3'));
const SIZE_MIB = Number(arg('size-mib', '512'));
const FILES = Number(arg('files', '10000'));
/** Entries of the one big directory (`ls` of it cold, and after a file is made in it). */
const BIGDIR = Number(arg('bigdir', '20000'));
const OUT = arg('out', path.join(REPO, 'docs', 'PERFORMANCE.md'));
const WORK = arg('work', path.join(os.tmpdir(), 'cachefs-bench'));
const PASSTHROUGH_WRITES = process.argv.includes('--passthrough-writes');
const PASSTHROUGH = PASSTHROUGH_WRITES || process.argv.includes('--passthrough');
const WRITEBACK = process.argv.includes('--writeback');

function run(cmd: string, args: string[], opts: { shell?: boolean } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = opts.shell ? spawn('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => { err += d; });
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err}`))));
  });
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

function dropCaches(): void {
  execFileSync('sync');
  try { writeFileSync('/proc/sys/vm/drop_caches', '3'); } catch { /* not root: "cold" is then only FUSE-cold */ }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Target {
  name: 'native' | 'bindfs' | 'cachefs';
  /** Where workloads run. */
  dir: string;
  mount(opts: { freshCache: boolean }): Promise<void>;
  umount(): Promise<void>;
  pid(): number | null;
}

function makeTargets(backend: string): Target[] {
  const native: Target = { name: 'native', dir: backend, mount: async () => undefined, umount: async () => undefined, pid: () => null };
  const bindMnt = path.join(WORK, 'bindfs-mnt');
  const bindfs: Target = {
    name: 'bindfs', dir: bindMnt,
    mount: async () => { await fsp.mkdir(bindMnt, { recursive: true }); await run('bindfs', ['-o', 'big_writes', backend, bindMnt]); },
    umount: async () => { await run('fusermount3', ['-u', bindMnt]).catch(() => run('fusermount3', ['-u', '-z', bindMnt])); },
    pid: () => null,
  };
  const cMnt = path.join(WORK, 'cachefs-mnt');
  const cache = path.join(WORK, 'cachefs-cache');
  let pid: number | null = null;
  const cachefs: Target = {
    name: 'cachefs', dir: cMnt,
    mount: async ({ freshCache }) => {
      if (freshCache) await fsp.rm(cache, { recursive: true, force: true });
      await fsp.mkdir(cMnt, { recursive: true });
      const configFile = path.join(WORK, 'cachefs.config.json');
      writeFileSync(configFile, JSON.stringify({ fuse: { passthrough: PASSTHROUGH, passthroughWrites: PASSTHROUGH_WRITES, writebackCache: WRITEBACK } }));
      await run(process.execPath, [CLI, 'mount', backend, cMnt, '--cache-dir', cache, '--log-level', 'warn', '--config', configFile]);
      const status = execFileSync(process.execPath, [CLI, 'status', cMnt, '--json'], { encoding: 'utf8' });
      pid = (JSON.parse(status) as { pid: number }).pid;
    },
    umount: async () => { await run(process.execPath, [CLI, 'umount', cMnt]); pid = null; },
    pid: () => pid,
  };
  return [native, bindfs, cachefs];
}

/** Peak RSS of the cachefs mount process, sampled while the benchmark runs. */
class RssSampler {
  peak = 0;
  private t: NodeJS.Timeout | null = null;
  start(pid: () => number | null): void {
    this.t = setInterval(() => {
      const p = pid();
      if (!p) return;
      try {
        const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
        if (m) this.peak = Math.max(this.peak, Number(m[1]) * 1024);
      } catch { /* between mounts */ }
    }, 50);
  }
  stop(): void { if (this.t) clearInterval(this.t); }
}

type OpsDelta = { requests: number; handlerMs: number };
type Row = { workload: string; note: string; secs: Record<string, number>; profile?: OpsDelta };

function opsOf(mnt: string): OpsTable {
  const out = execFileSync(process.execPath, [CLI, 'status', mnt, '--json'], { encoding: 'utf8' });
  return (JSON.parse(out) as { ops: OpsTable }).ops;
}

function deltaOps(a: OpsTable, b: OpsTable): OpsDelta {
  let requests = 0;
  let handlerMs = 0;
  for (const [k, v] of Object.entries(b)) {
    requests += v.count - (a[k]?.count ?? 0);
    handlerMs += v.ms - (a[k]?.ms ?? 0);
  }
  return { requests, handlerMs };
}

async function main(): Promise<void> {
  if (!existsSync('/dev/fuse')) throw new Error('no /dev/fuse');
  await fsp.rm(WORK, { recursive: true, force: true });
  const backend = path.join(WORK, 'backend');
  await fsp.mkdir(backend, { recursive: true });
  process.stderr.write(`preparing ${SIZE_MIB} MiB file and ${FILES}-file tree in ${backend}\n`);
  await makeBigFile(path.join(backend, 'big.bin'), SIZE_MIB);
  await makeTree(path.join(backend, 'tree'), FILES);
  await makeFlatDir(path.join(backend, 'bigdir'), BIGDIR);
  const srcTar = path.join(WORK, 'src.tar');
  const srcDir = existsSync('/usr/include') ? '/usr/include' : path.join(REPO, 'node_modules');
  await run('tar', ['-C', path.dirname(srcDir), '-cf', srcTar, path.basename(srcDir)]);

  const targets = makeTargets(backend);
  const results: Row[] = [];
  const samples = new Map<string, number[]>();
  const add = (workload: string, note: string, t: Target, s: number, prof?: OpsDelta) => {
    let row = results.find((r) => r.workload === workload);
    if (!row) { row = { workload, note, secs: {} }; results.push(row); }
    const key = `${workload}\0${t.name}`;
    const all = samples.get(key) ?? [];
    all.push(s);
    samples.set(key, all);
    row.secs[t.name] = median(all);
    if (prof) row.profile = prof;
  };
  /** Times `fn`; for cachefs also how many FUSE requests it made and their handler time. */
  const measure = async (workload: string, note: string, t: Target, fn: () => Promise<void>) => {
    const before = t.name === 'cachefs' ? opsOf(t.dir) : null;
    const secs = await timed(fn);
    const after = t.name === 'cachefs' ? opsOf(t.dir) : null;
    add(workload, note, t, secs, before && after ? deltaOps(before, after) : undefined);
  };
  const rss = new RssSampler();
  const cachefs = targets.find((t) => t.name === 'cachefs')!;
  rss.start(() => cachefs.pid());

  for (let r = 0; r < RUNS; r++) {
    for (const t of targets) {
      process.stderr.write(`run ${r + 1}/${RUNS}: ${t.name}\n`);
      const big = path.join(t.dir, 'big.bin');
      // Sequential read, cold: empty cachefs cache, kernel page cache dropped.
      await t.mount({ freshCache: true });
      dropCaches();
      await measure(`read ${SIZE_MIB} MiB, cold`, 'first read: from the backend disk', t, () => run('cat', [big], {}));
      await measure(`read ${SIZE_MIB} MiB, warm`, 'second read in the same mount', t, () => run('cat', [big]));
      // Warm after a remount: the kernel's FUSE page cache is gone; cachefs serves its cache files.
      await t.umount();
      await t.mount({ freshCache: false });
      await measure(`read ${SIZE_MIB} MiB, warm after remount`, 'cachefs: from its cache files; others: backend page cache', t, () => run('cat', [big]));
      // Sequential write with fsync.
      const w = path.join(t.dir, 'written.bin');
      await measure(`write ${SIZE_MIB} MiB + fsync`, 'dd bs=1M conv=fsync', t, () => run('dd', ['if=/dev/zero', `of=${w}`, 'bs=1M', `count=${SIZE_MIB}`, 'conv=fsync']));
      await fsp.rm(w);
      // Metadata: ls -lR and stat of the tree, cold then warm.
      await t.umount();
      await t.mount({ freshCache: true });
      dropCaches();
      const tree = path.join(t.dir, 'tree');
      await measure(`ls -lR ${FILES} files, cold`, 'fresh cache, page cache dropped', t, () => run(`ls -lR '${tree}' > /dev/null`, [], { shell: true }));
      await measure(`ls -lR ${FILES} files, warm`, 'second pass', t, () => run(`ls -lR '${tree}' > /dev/null`, [], { shell: true }));
      await measure(`stat ${FILES} files, warm`, 'find -printf size+mtime, third pass', t, () => run(`find '${tree}' -printf '%s %T@\\n' > /dev/null`, [], { shell: true }));
      await t.umount();
      await t.mount({ freshCache: false });
      await measure(`stat ${FILES} files, after remount`, 'cachefs: attributes revalidated from its index', t, () => run(`find '${tree}' -printf '%s %T@\\n' > /dev/null`, [], { shell: true }));
      // A big directory: its first listing, and a listing after a file was made in it (the
      // kernel asks for the first part of each pass with attributes, READDIRPLUS).
      const bigdir = path.join(t.dir, 'bigdir');
      await measure(`ls ${BIGDIR}-entry directory, first`, 'plain ls (names only), first listing in this mount', t, () => run(`ls '${bigdir}' > /dev/null`, [], { shell: true }));
      await measure(`ls ${BIGDIR}-entry directory, after a create`, 'touch a new name in it, then plain ls', t, () => run(`touch '${bigdir}/new' && ls '${bigdir}' > /dev/null`, [], { shell: true }));
      await fsp.rm(path.join(t.dir, 'bigdir', 'new'));
      // tar x into the mount, tar c out of it.
      const into = path.join(t.dir, 'untar');
      await fsp.mkdir(into);
      await measure(`tar x ${path.basename(srcDir)}`, `${srcDir} tarball into the mount`, t, () => run('tar', ['-C', into, '-xf', srcTar]));
      await measure(`tar c ${path.basename(srcDir)}`, 'out of the mount, piped to /dev/null', t, () => run(`tar -C '${into}' -cf - . | cat > /dev/null`, [], { shell: true }));
      await fsp.rm(into, { recursive: true, force: true });
      await t.umount();
    }
  }
  rss.stop();

  const lines: string[] = [];
  const cmd = `node dist/bench/run.js --runs ${RUNS} --size-mib ${SIZE_MIB} --files ${FILES} --bigdir ${BIGDIR}${PASSTHROUGH_WRITES ? ' --passthrough-writes' : PASSTHROUGH ? ' --passthrough' : ''}${WRITEBACK ? ' --writeback' : ''}`;
  lines.push('# Performance', '');
  lines.push(`Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ` +
    `kernel ${os.release()}, Node ${process.version}. Produced by (as root, after \`bash scripts/setup.sh\`):`, '');
  lines.push('```sh', cmd, '```', '');
  lines.push(`Median of ${RUNS} runs; every baseline measured in the same run. Ratios are time relative to bindfs ` +
    '(a C FUSE passthrough, `-o big_writes`): below 1 is faster than bindfs.', '');
  lines.push('| workload | native s | bindfs s | cachefs s | cachefs / bindfs | cachefs / native | note |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of results) {
    const n = r.secs.native!, b = r.secs.bindfs!, c = r.secs.cachefs!;
    lines.push(`| ${r.workload} | ${n.toFixed(3)} | ${b.toFixed(3)} | ${c.toFixed(3)} | ${(c / b).toFixed(2)}× | ${(c / n).toFixed(2)}× | ${r.note} |`);
  }
  lines.push('', '### Where cachefs spends a workload\'s time (last run)', '');
  lines.push('FUSE requests the workload made, the time cachefs\'s handlers spent on them (from ' +
    '`cachefs status --json`, `ops`), and the rest of the wall time: the kernel, the session\'s ' +
    'dispatch to the JS thread and back, and the application itself.', '');
  lines.push('| workload | requests | in cachefs handlers s | rest of wall time s | per request: handler µs / rest µs |');
  lines.push('| --- | ---: | ---: | ---: | ---: |');
  for (const r of results) {
    const p = r.profile;
    if (!p || p.requests === 0) continue;
    const wall = r.secs.cachefs!;
    const rest = Math.max(0, wall - p.handlerMs / 1000);
    lines.push(`| ${r.workload} | ${p.requests} | ${(p.handlerMs / 1000).toFixed(3)} | ${rest.toFixed(3)} | ` +
      `${(p.handlerMs * 1000 / p.requests).toFixed(0)} / ${(rest * 1e6 / p.requests).toFixed(0)} |`);
  }
  lines.push('', `Peak RSS of the cachefs mount process over the whole run: ${(rss.peak / 2 ** 20).toFixed(0)} MiB.`, '');
  const table = lines.join('\n');
  process.stdout.write(table + '\n');
  // Keep the hand-written analysis below the generated part, and the NFS and offline sections
  // that bench/nfs.ts and bench/offline.ts write (between their markers) as they are.
  let rest = '';
  const kept: string[] = [];
  if (existsSync(OUT)) {
    const old = readFileSync(OUT, 'utf8');
    const i = old.indexOf('<!-- analysis -->');
    if (i >= 0) rest = old.slice(i);
    for (const name of ['nfs', 'offline', 'hoard']) {
      const b = old.indexOf(`<!-- ${name}:begin -->`);
      const e = old.indexOf(`<!-- ${name}:end -->`);
      if (b >= 0 && e > b && (i < 0 || e < i)) kept.push(old.slice(b, e + `<!-- ${name}:end -->`.length) + '\n\n');
    }
  }
  await fsp.mkdir(path.dirname(OUT), { recursive: true });
  writeFileSync(OUT, table + '\n' + kept.join('') + (rest || '<!-- analysis -->\n'));
  await fsp.rm(WORK, { recursive: true, force: true });
}

main().catch((e) => { process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`); process.exit(1); });
