// `cachefs pin`, `unpin`, `pins` and `hoard`: what to keep in the cache for a trip, and
// watching it arrive (a progress bar with files, bytes, rate and ETA, or JSON lines).
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { sendControl } from '../daemon/control.js';
import { CONTROL_SOCKET, HoardProgressSchema, PinListSchema, PinResultSchema, type HoardProgressView } from '../daemon/protocol.js';
import { fetchStatus } from './commands.js';
import { formatBytes } from './format.js';
import { progressBar } from './progress.js';
import { requireMountOf } from './where.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function socketOf(mountpoint: string): Promise<{ sock: string; mountpoint: string; state: string }> {
  const s = await fetchStatus(mountpoint);
  return { sock: path.join(s.cacheDir, CONTROL_SOCKET), mountpoint: s.mountpoint, state: s.state };
}

/** One line of a hoard profile: a path (or glob) from the mount root, a priority, -r. */
export interface ProfileEntry { path: string; priority: number; recursive: boolean }

/**
 * A hoard profile: one pin per line, `PATH [PRIORITY] [-r]`, `#` starts a comment. PATH is
 * from the mount root (a leading / is optional) and may be a glob (`notes/**\/*.md`).
 */
export function parseHoardProfile(text: string, file: string): ProfileEntry[] {
  const out: ProfileEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    const words = line.split(/\s+/);
    const p = words.shift()!;
    let priority = 0;
    let recursive = false;
    for (const w of words) {
      if (w === '-r' || w === 'r' || w === 'recursive') recursive = true;
      else if (/^-?\d+$/.test(w)) priority = Number(w);
      else {
        throw new UserError(`${file}:${i + 1}: "${w}" is neither a priority nor -r`, {
          hint: 'each line is PATH [PRIORITY] [-r], e.g. "/src 10 -r" (paths with spaces are not supported)',
        });
      }
    }
    out.push({ path: '/' + p.replace(/^\/+/, ''), priority, recursive });
  });
  return out;
}

export interface PinOpts { recursive?: boolean; priority?: string; from?: string; hoard?: boolean; json?: boolean }

export async function commandPin(args: string[], opts: PinOpts): Promise<void> {
  const priority = opts.priority === undefined ? 0 : Number(opts.priority);
  if (!Number.isInteger(priority)) throw new UserError(`--priority takes an integer, not "${opts.priority}"`, { exitCode: 2 });
  // Which mount, and the pins in it, by path from its root.
  const groups: { priority: number; recursive: boolean; paths: string[] }[] = [];
  let mount: string | null = null;
  const inMount = (p: string): string => {
    const where = requireMountOf(p, 'pin paths inside a mounted cachefs (see cachefs status <mountpoint>)');
    if (mount !== null && where.mountpoint !== mount) throw new UserError('pin paths of one mount at a time', { exitCode: 2 });
    mount = where.mountpoint;
    return where.rel;
  };
  if (opts.from !== undefined) {
    if (args.length > 1) throw new UserError('with --from, give at most one argument: the mountpoint', { exitCode: 2 });
    const text = await fsp.readFile(opts.from, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new UserError(`cannot read the hoard profile ${opts.from}: ${e.code ?? e.message}`);
    });
    const entries = parseHoardProfile(text, opts.from);
    if (entries.length === 0) throw new UserError(`${opts.from} names nothing to pin`);
    // Profile paths are from the mount root, of the mount given (or the one we are in).
    const root = args[0] ?? process.cwd();
    const where = requireMountOf(root, 'cachefs pin --from FILE <mountpoint>');
    mount = where.mountpoint;
    for (const e of entries) groups.push({ priority: e.priority, recursive: e.recursive, paths: [e.path] });
  } else {
    if (args.length === 0) throw new UserError('pin what? give paths inside the mount, or --from FILE', { exitCode: 2 });
    groups.push({ priority, recursive: opts.recursive === true, paths: args.map(inMount) });
  }
  const { sock, mountpoint, state } = await socketOf(mount!);
  const pinned: string[] = [];
  const notFound: string[] = [];
  for (const g of groups) {
    const r = PinResultSchema.parse(await sendControl(sock, { op: 'pin', paths: g.paths, recursive: g.recursive, priority: g.priority }));
    // -r on a file: the mount pinned the file itself (recursion is for directories); say so.
    pinned.push(...r.pins.map((p) => `${p.path}${p.recursive ? ' (recursive)' : g.recursive && !p.glob ? ' (not a directory: -r does not apply)' : ''}`
      + `${p.priority ? ` priority ${p.priority}` : ''}`));
    notFound.push(...r.notFound);
  }
  if (!opts.json) {
    process.stdout.write(`pinned ${pinned.join(', ')}\n`);
    for (const p of notFound) process.stderr.write(`cachefs: ${p} does not exist in the mount: not pinned\n`);
  }
  if (opts.hoard === false) {
    if (opts.json) process.stdout.write(JSON.stringify({ pinned, notFound }) + '\n');
    return;
  }
  if (state !== 'connected') {
    if (opts.json) process.stdout.write(JSON.stringify({ pinned, notFound, hoard: 'after reconnecting' }) + '\n');
    else process.stdout.write(`the mount is ${state}: the pinned data is fetched when it reconnects\n`);
    return;
  }
  await followHoard(sock, mountpoint, opts.json === true, true);
}

export async function commandUnpin(args: string[], opts: { recursive?: boolean; json?: boolean }): Promise<void> {
  if (args.length === 0) throw new UserError('unpin what? give pinned paths', { exitCode: 2 });
  let mount: string | null = null;
  const rels = args.map((p) => {
    const where = requireMountOf(p, 'cachefs pins <mountpoint> lists the pins');
    if (mount !== null && where.mountpoint !== mount) throw new UserError('unpin paths of one mount at a time', { exitCode: 2 });
    mount = where.mountpoint;
    return where.rel;
  });
  const { sock } = await socketOf(mount!);
  const r = await sendControl(sock, { op: 'unpin', paths: rels, recursive: opts.recursive === true }) as { removed: number };
  if (opts.json) process.stdout.write(JSON.stringify(r) + '\n');
  else process.stdout.write(`removed ${r.removed} pin(s); the data stays cached until culling needs the room\n`);
}

export async function commandPins(mountpoint: string, opts: { json?: boolean }): Promise<void> {
  const { sock, mountpoint: mp } = await socketOf(mountpoint);
  const r = PinListSchema.parse(await sendControl(sock, { op: 'pins' }));
  if (opts.json) { process.stdout.write(JSON.stringify(r, null, 2) + '\n'); return; }
  if (r.pins.length === 0) { process.stdout.write(`nothing pinned on ${mp}\n`); return; }
  for (const p of r.pins) {
    process.stdout.write(`${String(p.priority).padStart(6)}  ${p.path}${p.glob ? '  (glob)' : p.recursive ? '  (recursive)' : ''}\n`);
  }
  const h = r.hoard;
  if (h.startedAt !== null) {
    process.stdout.write(`\nlast hoard walk (${h.reason}): ${h.state}, ${h.files.done}/${h.files.total} files, `
      + `${formatBytes(h.bytes.done)} of ${formatBytes(h.bytes.total)} cached${h.failedCount ? `, ${h.failedCount} could not be fetched` : ''}\n`);
  }
}

export async function commandHoard(mountpoint: string, opts: { json?: boolean }): Promise<void> {
  const { sock, mountpoint: mp } = await socketOf(mountpoint);
  await followHoard(sock, mp, opts.json === true, true);
}

/**
 * Starts (or joins) the mount's hoard walk and follows it to the end: a progress bar on a
 * terminal, JSON lines with --json. Fails (exit 3) if anything could not be fetched.
 */
async function followHoard(sock: string, mountpoint: string, json: boolean, start: boolean): Promise<void> {
  let p = HoardProgressSchema.parse(await sendControl(sock, { op: 'hoard', start }));
  const t0 = Date.now();
  const bar = await progressBar(!json && process.stderr.isTTY, 'hoarding |{bar}| {percentage}% | {files} files | {bytes} | {rate}/s | ETA {eta_formatted}', { etaBuffer: 20 });
  let last = '';
  const show = (q: HoardProgressView): void => {
    const secs = Math.max(0.001, (Date.now() - t0) / 1000);
    if (json) {
      const line = JSON.stringify({ type: 'progress', state: q.state, files: q.files, bytes: q.bytes, fetched: q.fetched,
        rate: Math.round(q.fetched / secs), failed: q.failedCount });
      if (line !== last) process.stdout.write(line + '\n');
      last = line;
      return;
    }
    if (!bar || q.bytes.total === 0) return; // still scanning: nothing to measure yet
    const payload = { files: `${q.files.done}/${q.files.total}`, bytes: `${formatBytes(q.bytes.done)} of ${formatBytes(q.bytes.total)}`,
      rate: formatBytes(q.fetched / secs) };
    bar.setTotal(Math.max(1, q.bytes.total));
    bar.update(q.bytes.done, payload);
  };
  bar?.start(Math.max(1, p.bytes.total), p.bytes.done, { files: '0/0', bytes: '0 B', rate: '0 B' });
  while (p.state === 'scanning' || p.state === 'fetching') {
    show(p);
    await sleep(100);
    p = HoardProgressSchema.parse(await sendControl(sock, { op: 'hoard', start: false }));
  }
  show(p);
  bar?.stop();
  const secs = p.finishedAt !== null && p.startedAt !== null ? (p.finishedAt - p.startedAt) / 1000 : (Date.now() - t0) / 1000;
  if (json) {
    process.stdout.write(JSON.stringify({ type: 'summary', files: p.files, bytes: p.bytes, fetched: p.fetched, seconds: secs,
      failedCount: p.failedCount, failed: p.failed }) + '\n');
  } else {
    process.stdout.write(`hoarded ${p.files.done} of ${p.files.total} pinned files on ${mountpoint}: ${formatBytes(p.bytes.done)} `
      + `of ${formatBytes(p.bytes.total)} in the cache (${formatBytes(p.fetched)} fetched in ${secs.toFixed(1)} s)\n`);
    for (const f of p.failed) process.stdout.write(`  not fetched: ${f.path}: ${f.error}\n`);
    if (p.failedCount > p.failed.length) process.stdout.write(`  ... and ${p.failedCount - p.failed.length} more (see the mount's log)\n`);
  }
  if (p.failedCount > 0) {
    throw new UserError(`${p.failedCount} pinned item(s) could not be fetched`, {
      hint: `fix what the list says, then \`cachefs hoard ${mountpoint}\` tries again`, exitCode: 3,
    });
  }
}
