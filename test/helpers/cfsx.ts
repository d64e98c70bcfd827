// Test helper: the cfsx file-data exerciser (test/fsx/cfsx.c), compiled once per run, and
// run in a child process with a deadline. The test process never serves a mount, so the
// child may do any I/O on one.
//
//   const r = await runCfsx(['-S', '7', '-N', '3000', '-w', model, m.m('f')]);
//   assert.equal(r.code, 0, describeRun(r));
import { execFile, spawn } from 'node:child_process';
import { promises as fsp, existsSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import { REPO } from './cachefs.js';

/** The exerciser's source, in the repository (tsc does not copy it to dist/). */
export const CFSX_SOURCE = path.join(REPO, 'test', 'fsx', 'cfsx.c');
/** Where the binary is built: beside the compiled tests, out of the source tree. */
export const CFSX_BINARY = path.join(REPO, 'dist', 'test', 'fsx', 'cfsx');
// No -Werror: a newer gcc's new warning must not stop the suite (this one compiles it clean).
const CFLAGS = ['-O2', '-Wall', '-Wextra', '-D_GNU_SOURCE'];

let built: Promise<string> | undefined;

/**
 * Compiles cfsx.c unless the binary is newer than it (once per process), and returns the
 * binary's path. Throws with gcc's output if it cannot, or a hint if gcc is missing.
 */
export function buildCfsx(): Promise<string> {
  built ??= (async () => {
    if (existsSync(CFSX_BINARY) && statSync(CFSX_BINARY).mtimeMs >= statSync(CFSX_SOURCE).mtimeMs) return CFSX_BINARY;
    await fsp.mkdir(path.dirname(CFSX_BINARY), { recursive: true });
    // A private name, then rename: a bench and a test building at once never run half a file.
    const tmp = `${CFSX_BINARY}.${process.pid}.tmp`;
    await new Promise<void>((resolve, reject) => {
      execFile('gcc', [...CFLAGS, '-o', tmp, CFSX_SOURCE], (err, _stdout, stderr) => {
        if (!err) return resolve();
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(new Error('cfsx needs gcc to be built, and gcc is not installed (bash scripts/setup.sh installs it, or: apt-get install gcc)'));
        } else {
          reject(new Error(`gcc could not build ${CFSX_SOURCE}:\n${stderr}`));
        }
      });
    });
    renameSync(tmp, CFSX_BINARY);
    return CFSX_BINARY;
  })();
  built.catch(() => { built = undefined; });
  return built;
}

export interface CfsxRun {
  args: string[];
  code: number;
  /** The signal that ended it (SIGKILL when the deadline passed), or null. */
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface CfsxOpts {
  /** Killed (SIGKILL) after this long; the run then reports timedOut. Default 120 s. */
  timeoutMs?: number;
  cwd?: string;
}

/** Runs cfsx with `args` to its end (or its deadline). Never rejects for a failing run. */
export async function runCfsx(args: string[], opts: CfsxOpts = {}): Promise<CfsxRun> {
  const bin = await buildCfsx();
  const started = Date.now();
  return await new Promise((resolve) => {
    const child = spawn(bin, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, opts.timeoutMs ?? 120_000);
    const done = (code: number, signal: NodeJS.Signals | null): void => {
      clearTimeout(timer);
      resolve({ args, code, signal, timedOut, stdout, stderr, ms: Date.now() - started });
    };
    child.on('close', (code, signal) => done(code ?? 128, signal));
    child.on('error', (e) => { stderr += String(e); done(127, null); });
  });
}

/** A failed run, for an assertion message: the command, how it ended, and its output. */
export function describeRun(r: CfsxRun): string {
  const how = r.timedOut ? `killed after ${r.ms} ms (deadline)` : r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
  return `cfsx ${r.args.join(' ')}: ${how}\n${r.stdout}${r.stderr ? `stderr:\n${r.stderr}` : ''}`;
}

/**
 * Compares a file (e.g. the backend's copy after a sync) with an expected-contents file
 * (cfsx -w): null when they are byte-identical, else what differs first.
 */
export async function compareWithModel(file: string, model: string): Promise<string | null> {
  const [got, want] = await Promise.all([fsp.readFile(file), fsp.readFile(model)]);
  if (got.equals(want)) return null;
  const n = Math.min(got.length, want.length);
  let i = 0;
  while (i < n && got[i] === want[i]) i++;
  let differing = 0;
  for (let j = i; j < n; j++) if (got[j] !== want[j]) differing++;
  const hex = (b: Buffer, at: number): string => [...b.subarray(at, at + 16)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
  const from = Math.max(0, i - 8);
  const lines = [`${file} differs from the model ${model}:`,
    `  size ${got.length} (0x${got.length.toString(16)}), expected ${want.length} (0x${want.length.toString(16)})`];
  if (i < n) {
    lines.push(`  first differing offset 0x${i.toString(16)}; ${differing} of the first ${n} bytes differ`,
      `  expected @0x${from.toString(16)}: ${hex(want, from)}`,
      `  got      @0x${from.toString(16)}: ${hex(got, from)}`);
    const zeros = got.subarray(i, Math.min(n, i + 64)).every((x) => x === 0);
    if (zeros) lines.push('  the wrong bytes are zeros (a lost write, or a hole where data belongs)');
  } else {
    lines.push('  the common part is identical');
  }
  return lines.join('\n');
}
