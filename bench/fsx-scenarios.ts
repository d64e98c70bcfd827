// The cfsx scenarios of test/fsx.test.ts as data, and one runner for them, shared by
// bench/fsx-long.ts (long runs) and bench/fsx-minimize.ts (shrinking a failure).
//
// A scenario is a list of steps on one file of one mount: cfsx runs (each starting from the
// model the previous one saved, -i/-w), `offline`, `online` (replays the journal), `cache`
// (read the whole file through the mount) and `compare` (the backend's copy and the mount's
// view against the model). Every cfsx run records its operations (-O) as they start, so a
// failing run can be replayed (-R) with fewer operations (with -P, in the recorded interleaving).
//
// Everything through the mount runs in cfsx child processes, or reads the mount from here
// (never served by this process); offline/online go over the control socket.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { sendControl } from '../src/daemon/control.js';
import { CONTROL_SOCKET } from '../src/daemon/protocol.js';
import type { Mounted } from '../test/helpers/cachefs.js';
import { runCfsx, compareWithModel, describeRun } from '../test/helpers/cfsx.js';
import { mulberry32 } from '../test/helpers/rng.js';

export type Step =
  /** cfsx with this seed: `n` random operations, or (replaying) exactly the recorded ones. */
  | { do: 'ops'; seed: number; n: number; args?: string[] }
  | { do: 'offline' } | { do: 'online' } | { do: 'cache' } | { do: 'compare' };

export interface Scenario {
  name: string;
  /** Bytes the backend file holds before the first step (seeded random), or none (no file). */
  preexisting?: number;
  /** cfsx -l */
  maxlen: string;
  steps: Step[];
}

export const SCENARIOS = ['connected', 'p2', 'pre', 'offline-new', 'offline-cached', 'replay'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/**
 * The scenarios as test/fsx.test.ts runs them (same seeds give the same operations);
 * `extra` goes to every cfsx run (e.g. ['-M', '-o', 'truncate=0'] to look past one bug).
 */
export function scenario(name: ScenarioName, seed: number, ops: number, extra: string[] = []): Scenario {
  const half = Math.ceil(ops / 2);
  const run = (s: number, n: number, args: string[] = []): Step => ({ do: 'ops', seed: s, n, args: [...args, ...extra] });
  switch (name) {
    case 'connected': return { name, maxlen: '1M', steps: [run(seed, ops), { do: 'compare' }] };
    case 'p2': return { name, maxlen: '1M', steps: [run(seed, ops, ['-P', '2']), { do: 'compare' }] };
    case 'pre': return { name, preexisting: 2 * 1024 * 1024, maxlen: '4M', steps: [run(seed, ops, ['-n']), { do: 'compare' }] };
    case 'offline-new': return { name, maxlen: '1M', steps: [{ do: 'offline' }, run(seed, ops), { do: 'online' }, { do: 'compare' }] };
    case 'offline-cached': return {
      name, preexisting: 768 * 1024, maxlen: '1M',
      steps: [{ do: 'cache' }, { do: 'offline' }, run(seed, ops), { do: 'online' }, { do: 'compare' }],
    };
    case 'replay': return {
      name, maxlen: '1M',
      steps: [run(seed, half), { do: 'compare' }, { do: 'offline' }, run(seed + 1, half),
        { do: 'online' }, { do: 'compare' }, run(seed + 2, half), { do: 'compare' }],
    };
  }
}

/** The seed test/fsx.test.ts gives a scenario's first run. */
export const TEST_SEEDS: Record<ScenarioName, number> = {
  connected: 1, p2: 101, pre: 301, 'offline-new': 401, 'offline-cached': 402, replay: 501,
};

export type Outcome =
  | { ok: true; ms: number; ops: number }
  | {
    ok: false; ms: number; ops: number;
    /** index of the failing step */
    step: number;
    /** what kind of failure: mismatch, size, sigbus, error:EIO, backend-differs, ... */
    cls: string;
    detail: string;
  };

/** The recorded operation lines of each ops step (index = step index; empty for other steps). */
export type Records = string[][];

/** What kind of failure a cfsx run reported (for "the same failure" while shrinking). */
export function classify(stdout: string, code: number, timedOut: boolean): string {
  if (timedOut) return 'timeout';
  if (/cfsx: MISMATCH .*SIGBUS/.test(stdout)) return 'sigbus';
  if (/cfsx: SIZE MISMATCH/.test(stdout)) return 'size';
  if (/cfsx: MISMATCH/.test(stdout)) return 'mismatch';
  const e = /cfsx: ERROR .*: (E[A-Z0-9]+) \(/.exec(stdout);
  if (e) return `error:${e[1]}`;
  return `exit:${code}`;
}

/** Seeded bytes (the same for the same seed), for a file the backend has before the mount sees it. */
function seededBytes(seed: number, n: number): Buffer {
  const next = mulberry32(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE(Math.floor(next() * 2 ** 32), i);
  return b;
}

export interface RunOpts {
  /** A directory outside the mount for models and records. */
  work: string;
  /** The file's name in the mount (fresh for each run). */
  file: string;
  /** Replay these recorded operations (one list per step) instead of drawing random ones. */
  replay?: Records;
  /** Deadline of one cfsx run. */
  timeoutMs?: number;
  /** Called after each step (progress). */
  onStep?: (i: number, step: Step, ms: number) => void;
}

/** Runs a scenario on mount `m` and returns how it ended and what it recorded. Never throws for a failure. */
export async function runScenario(m: Mounted, sc: Scenario, opts: RunOpts): Promise<{ outcome: Outcome; records: Records }> {
  const started = Date.now();
  const records: Records = sc.steps.map(() => []);
  const sock = path.join(m.cache, CONTROL_SOCKET);
  const base = path.join(opts.work, opts.file);
  let model: string | undefined;
  let ops = 0;
  const fail = (step: number, cls: string, detail: string): { outcome: Outcome; records: Records } =>
    ({ outcome: { ok: false, ms: Date.now() - started, ops, step, cls, detail }, records });

  if (sc.preexisting) {
    const first = sc.steps.find((s) => s.do === 'ops');
    const data = seededBytes(first?.do === 'ops' ? first.seed : 1, sc.preexisting);
    await fsp.writeFile(m.b(opts.file), data);
    model = `${base}.initial`;
    await fsp.writeFile(model, data);
  }
  for (const [i, step] of sc.steps.entries()) {
    const t0 = Date.now();
    switch (step.do) {
      case 'ops': {
        const rec = `${base}.${i}.ops`;
        const next = `${base}.${i}.model`;
        const replaying = opts.replay !== undefined;
        if (replaying) await fsp.writeFile(rec, opts.replay![i]!.map((l) => `${l}\n`).join(''));
        const args = ['-S', String(step.seed), '-l', sc.maxlen, ...(model ? ['-i', model] : []), ...(step.args ?? []),
          ...(replaying ? ['-R', rec] : ['-N', String(step.n), '-O', rec]), '-w', next, m.m(opts.file)];
        const r = await runCfsx(args, { timeoutMs: opts.timeoutMs ?? 3_600_000 });
        if (!replaying) records[i] = (await fsp.readFile(rec, 'utf8').catch(() => '')).split('\n').filter((l) => l && !l.startsWith('#'));
        else records[i] = opts.replay![i]!;
        const done = /cfsx: (\d+) ops ok/.exec(r.stdout);
        ops += done ? Number(done[1]) : records[i]!.length;
        if (r.code !== 0 || r.timedOut) return fail(i, classify(r.stdout, r.code, r.timedOut), describeRun(r));
        model = next;
        break;
      }
      case 'offline':
      case 'online': {
        // the root listed while connected: creating a name offline needs a known directory
        if (step.do === 'offline') await fsp.readdir(m.mnt);
        const s = await sendControl(sock, { op: step.do }, 600_000) as { state: string; journal: { pending: number }; conflicts: number };
        const want = step.do === 'offline' ? 'disconnected' : 'connected';
        if (s.state !== want || (step.do === 'online' && s.journal.pending !== 0)) {
          return fail(i, `${step.do}-failed`, `cachefs ${step.do}: state ${s.state}, ${s.journal.pending} pending, ${s.conflicts} conflicts`);
        }
        break;
      }
      case 'cache':
        await fsp.readFile(m.m(opts.file));
        break;
      case 'compare': {
        if (!model) break;
        const b = await compareWithModel(m.b(opts.file), model);
        if (b) {
          const s = await sendControl(sock, { op: 'status' }) as { state: string; journal: { pending: number }; conflicts: number };
          return fail(i, 'backend-differs', `${b}\n  mount: ${s.state}, ${s.journal.pending} pending, ${s.conflicts} conflicts`);
        }
        const v = await compareWithModel(m.m(opts.file), model);
        if (v) return fail(i, 'mount-differs', v);
        break;
      }
    }
    opts.onStep?.(i, step, Date.now() - t0);
  }
  return { outcome: { ok: true, ms: Date.now() - started, ops }, records };
}

/** A step, for a listing: "ops -S 7 (120 operations)", "offline", ... */
export function describeStep(step: Step, recorded?: string[]): string {
  return step.do === 'ops' ? `cfsx -S ${step.seed}${step.args?.length ? ` ${step.args.join(' ')}` : ''}${recorded ? ` (${recorded.length} operations)` : ` -N ${step.n}`}` : step.do;
}
