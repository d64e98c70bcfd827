// Shrinks a cfsx failure to a few operations: runs a scenario of test/fsx.test.ts (the same
// seeds give the same operations), records every operation, then replays the record with
// operations removed (ddmin, Zeller's delta debugging) as long as the same step still fails
// the same way (mismatch, size, SIGBUS, the same errno, the backend differing, ...).
//
// Usage (as root for nfs, after scripts/setup.sh and npm run build):
//   node dist/bench/fsx-minimize.js --scenario connected --seed 2 --ops 3000 [--backend local|nfs]
//     [--chunk 65536] [--max-tests 400] [--timeout-ms 120000] [--cfsx-args '-M -o truncate=0']
//   node dist/bench/fsx-minimize.js --replay bench/.work/fsx-min-<...>.json   (runs a saved case again)
// Scenarios: connected, p2 (-P 2: replayed by two processes in the recorded order), pre, offline-new,
// offline-cached, replay (seed, seed+1, seed+2 for its three runs; --ops is the test's total).
// The shrunk case is saved as JSON under bench/.work/ (scenario, mount config and the
// recorded operations of each step) and printed with the failing run's report.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { mountFresh, type Mounted } from '../test/helpers/cachefs.js';
import { startNfsServer, type NfsServer } from '../test/helpers/nfs-server.js';
import { buildCfsx } from '../test/helpers/cfsx.js';
import { arg, REPO } from './common.js';
import { SCENARIOS, scenario, runScenario, describeStep, type Records, type Scenario, type ScenarioName, type Outcome } from './fsx-scenarios.js';

interface SavedCase {
  backend: 'local' | 'nfs';
  chunk: number;
  scenario: Scenario;
  records: Records;
  failure: { step: number; cls: string };
}

/** One op line of one step: what ddmin removes. */
interface Item { step: number; line: string }

const group = (sc: Scenario, items: Item[]): Records => sc.steps.map((_, i) => items.filter((x) => x.step === i).map((x) => x.line));

/**
 * ddmin over `items`: the smallest list it finds for which `fails` still holds (1-minimal when
 * the budget lasts: removing any single item makes the failure go away).
 */
async function ddmin(items: Item[], fails: (xs: Item[]) => Promise<boolean>, budget: { left: number }): Promise<Item[]> {
  let n = 2;
  while (items.length >= 2 && budget.left > 0) {
    const size = Math.ceil(items.length / n);
    const chunks: Item[][] = [];
    for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
    let reduced = false;
    // the complements first (drop one chunk): a failure usually needs few of many operations
    for (let c = chunks.length - 1; c >= 0 && !reduced && budget.left > 0; c--) {
      const rest = chunks.filter((_, k) => k !== c).flat();
      if (await fails(rest)) { items = rest; n = Math.max(n - 1, 2); reduced = true; }
    }
    for (let c = 0; c < chunks.length && !reduced && n > 2 && budget.left > 0; c++) {
      if (await fails(chunks[c]!)) { items = chunks[c]!; n = 2; reduced = true; }
    }
    if (!reduced) {
      if (n >= items.length) break;
      n = Math.min(items.length, n * 2);
    }
  }
  return items;
}

async function main(): Promise<void> {
  await buildCfsx();
  const replayFile = arg('replay', '');
  let saved: SavedCase | undefined;
  if (replayFile) saved = JSON.parse(await fsp.readFile(replayFile, 'utf8')) as SavedCase;
  const backend = saved?.backend ?? (arg('backend', 'local') as 'local' | 'nfs');
  const chunk = saved?.chunk ?? Number(arg('chunk', '65536'));
  const name = arg('scenario', 'connected') as ScenarioName;
  if (!saved && !SCENARIOS.includes(name)) throw new Error(`--scenario: one of ${SCENARIOS.join(', ')}`);
  const seed = Number(arg('seed', '1'));
  const ops = Number(arg('ops', '3000'));
  const extra = arg('cfsx-args', '').split(/\s+/).filter(Boolean);
  const sc = saved?.scenario ?? scenario(name, seed, ops, extra);
  const maxTests = Number(arg('max-tests', '400'));
  const timeoutMs = Number(arg('timeout-ms', '120000'));
  const work = path.join(REPO, 'bench', '.work');
  await fsp.mkdir(work, { recursive: true });

  let srv: NfsServer | undefined;
  let m: Mounted | undefined;
  const offlineSteps = sc.steps.some((s) => s.do === 'offline');
  let runs = 0;
  /** A mount for the next run: a fresh one whenever the scenario goes offline (no journal left over). */
  const mountFor = async (): Promise<Mounted> => {
    if (m && !offlineSteps) return m;
    await m?.cleanup();
    if (backend === 'nfs') srv ??= await startNfsServer('fsx-min');
    m = await mountFresh('fsx-min', { nfs: srv, config: { cache: { chunkSize: chunk } } });
    return m;
  };
  const run = async (replay?: Records): Promise<{ outcome: Outcome; records: Records; m: Mounted }> => {
    const mm = await mountFor();
    const dir = path.join(mm.root, 'work');
    await fsp.mkdir(dir, { recursive: true });
    const r = await runScenario(mm, sc, { work: dir, file: `f${runs++}`, replay, timeoutMs });
    return { ...r, m: mm };
  };

  try {
    let records: Records;
    let target: { step: number; cls: string };
    if (saved) {
      records = saved.records;
      target = saved.failure;
    } else {
      console.log(`${sc.name}, seed ${seed}, ${ops} ops, ${backend} backend, chunk ${chunk}: running it once, recording`);
      const first = await run();
      if (first.outcome.ok) {
        console.log(`no failure (${first.outcome.ops} ops, ${(first.outcome.ms / 1000).toFixed(1)} s): nothing to shrink`);
        return;
      }
      records = first.records;
      target = { step: first.outcome.step, cls: first.outcome.cls };
      console.log(`fails at step ${target.step} (${describeStep(sc.steps[target.step]!)}): ${target.cls}, after ${first.outcome.ops} ops`);
      console.log(first.outcome.detail.split('\n').slice(0, 12).join('\n'));
    }
    const again = await run(records);
    const same = (o: Outcome): boolean => !o.ok && o.step === target.step && o.cls === target.cls;
    if (!same(again.outcome)) {
      const how = again.outcome.ok ? 'it passes' : `${again.outcome.cls} at step ${again.outcome.step}`;
      console.log(saved ? `the saved case does not fail as recorded (${target.cls} at step ${target.step}): ${how}`
        : `the replayed record does not fail the same way (${how}): the failure depends on timing or on the interleaving of processes; not shrinking`);
      if (!again.outcome.ok) console.log(again.outcome.detail);
      return;
    }
    let items: Item[] = records.flatMap((lines, step) => lines.map((line) => ({ step, line })));
    console.log(`the replay fails the same way; shrinking ${items.length} operations (at most ${maxTests} runs)`);
    const budget = { left: maxTests };
    const fails = async (xs: Item[]): Promise<boolean> => {
      budget.left--;
      const r = await run(group(sc, xs));
      const yes = same(r.outcome);
      if (yes) process.stdout.write(`  ${xs.length} operations still fail\n`);
      return yes;
    };
    if (!saved) items = await ddmin(items, fails, budget);
    // the shrunk case once more, on a fresh mount, for its report
    await m?.cleanup();
    m = undefined;
    const last = await run(group(sc, items));
    const minimal = group(sc, items);
    console.log(`\n${items.length} operation(s), ${maxTests - budget.left} shrinking runs; the steps:`);
    for (const [i, step] of sc.steps.entries()) {
      console.log(`  ${i}. ${describeStep(step, step.do === 'ops' ? minimal[i] : undefined)}`);
      if (step.do === 'ops') for (const l of minimal[i]!) console.log(`       ${l}`);
    }
    console.log(last.outcome.ok ? '\nthe shrunk case PASSED on a fresh mount (a timing-dependent failure?)' : `\n${last.outcome.detail}`);
    if (!saved) {
      const file = path.join(work, `fsx-min-${backend}-${sc.name}-${seed}-${ops}${extra.length ? `-${extra.join('').replace(/[^A-Za-z0-9=]/g, '')}` : ''}.json`);
      const out: SavedCase = { backend, chunk, scenario: sc, records: minimal, failure: target };
      await fsp.writeFile(file, JSON.stringify(out, null, 1));
      console.log(`\nsaved: ${file}\nagain: node dist/bench/fsx-minimize.js --replay ${path.relative(REPO, file)}`);
    }
  } finally {
    await m?.cleanup();
    await srv?.dispose();
  }
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
