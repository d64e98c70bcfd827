// Long cfsx runs (not part of the test suite): the scenarios of test/fsx.test.ts with many more
// operations, each on a fresh mount, on both backends; prints one table row per run and,
// for each failure, cfsx's report and the command that shrinks it (bench/fsx-minimize.ts).
//
// Usage (as root for nfs, after scripts/setup.sh and npm run build):
//   node dist/bench/fsx-long.js [--ops 100000] [--seeds 1,2] [--backends local,nfs]
//     [--scenarios connected,offline-new,offline-cached,replay] [--chunk 65536] [--cfsx-args '-M']
// Scenarios (bench/fsx-scenarios.ts): connected, p2 (two processes on one file), pre (a 2 MiB
// file the backend had), offline-new (made offline), offline-cached (cached, then offline),
// replay (--ops connected, --ops offline from there, sync, --ops connected again: seeds
// seed, seed+1, seed+2). Every run's end: the backend's copy must equal cfsx's model.
// A full default run (4 scenarios x 100,000+ ops x 2 backends) takes about an hour when
// nothing fails.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { mountFresh, type Mounted } from '../test/helpers/cachefs.js';
import { startNfsServer, type NfsServer } from '../test/helpers/nfs-server.js';
import { buildCfsx } from '../test/helpers/cfsx.js';
import { arg } from './common.js';
import { SCENARIOS, scenario, runScenario, describeStep, type ScenarioName, type Outcome } from './fsx-scenarios.js';

const OPS = Number(arg('ops', '100000'));
const SEEDS = arg('seeds', '1').split(',').map(Number);
const BACKENDS = arg('backends', 'local,nfs').split(',') as ('local' | 'nfs')[];
const NAMES = arg('scenarios', 'connected,offline-new,offline-cached,replay').split(',') as ScenarioName[];
const CHUNK = Number(arg('chunk', '65536'));
/** Added to every cfsx run, e.g. '-M -o truncate=0' to look past a known bug. */
const EXTRA = arg('cfsx-args', '').split(/\s+/).filter(Boolean);

interface Row { backend: string; name: ScenarioName; seed: number; outcome: Outcome; testOps: number }

function resultText(r: Row): string {
  const o = r.outcome;
  if (o.ok) return 'ok';
  const sc = scenario(r.name, r.seed, r.testOps, EXTRA);
  const at = /at (op \d+|the initial check|the final check, after op \d+)/.exec(o.detail)?.[1];
  return `FAIL ${o.cls}, step ${o.step} (${describeStep(sc.steps[o.step]!)})${at ? `, ${at}` : ''}`;
}

async function main(): Promise<void> {
  for (const n of NAMES) if (!SCENARIOS.includes(n)) throw new Error(`--scenarios: each one of ${SCENARIOS.join(', ')}`);
  await buildCfsx();
  const rows: Row[] = [];
  let srv: NfsServer | undefined;
  let m: Mounted | undefined;
  // the replay scenario's --ops is per run (it makes three), the test's total is twice that
  const testOps = (name: ScenarioName): number => name === 'replay' ? OPS * 2 : OPS;
  try {
    for (const backend of BACKENDS) {
      if (backend === 'nfs') srv ??= await startNfsServer('fsx-long');
      for (const name of NAMES) {
        for (const seed of SEEDS) {
          const sc = scenario(name, seed, testOps(name), EXTRA);
          m = await mountFresh(`fsx-long-${name}`, { nfs: backend === 'nfs' ? srv : undefined, config: { cache: { chunkSize: CHUNK } } });
          const work = path.join(m.root, 'work');
          await fsp.mkdir(work);
          process.stdout.write(`${backend} ${name} seed ${seed}:`);
          const { outcome } = await runScenario(m, sc, {
            work, file: 'f', timeoutMs: 4 * 3_600_000,
            onStep: (i, step, ms) => process.stdout.write(` [${i} ${step.do} ${(ms / 1000).toFixed(0)}s]`),
          });
          const row: Row = { backend, name, seed, outcome, testOps: testOps(name) };
          rows.push(row);
          process.stdout.write(` ${resultText(row)}\n`);
          await m.cleanup();
          m = undefined;
        }
      }
    }
  } finally {
    await m?.cleanup();
    await srv?.dispose();
  }

  const head = ['backend', 'scenario', 'seed', 'ops done', 'secs', 'ops/s', 'result'];
  const table = rows.map((r) => [r.backend, r.name, String(r.seed), String(r.outcome.ops), (r.outcome.ms / 1000).toFixed(1),
    (r.outcome.ops / (r.outcome.ms / 1000)).toFixed(0), resultText(r)]);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((t) => t[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  console.log(`\ncfsx long runs, chunk size ${CHUNK}, --ops ${OPS}${EXTRA.length ? `, cfsx ${EXTRA.join(' ')}` : ''}\n`);
  console.log(line(head));
  for (const t of table) console.log(line(t));
  for (const r of rows) {
    if (r.outcome.ok) continue;
    console.log(`\n--- ${r.backend} ${r.name} seed ${r.seed}\n${r.outcome.detail.split('\n').slice(0, 45).join('\n')}`);
    console.log(`shrink it: node dist/bench/fsx-minimize.js --backend ${r.backend} --scenario ${r.name} --seed ${r.seed} --ops ${r.testOps} --chunk ${CHUNK}${EXTRA.length ? ` --cfsx-args '${EXTRA.join(' ')}'` : ''}`);
  }
  if (rows.some((r) => !r.outcome.ok)) process.exitCode = 1;
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
