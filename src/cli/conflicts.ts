// `cachefs conflicts` and `cachefs resolve`: list conflicts, show one (a unified diff for
// text, sizes and hashes otherwise), and resolve them. The mount process does the
// resolving (through its journal); this side reads the variants from the cache directory
// only to show them, and copies a --use FILE into the conflict's resolved variant.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/errors.js';
import { sendControl } from '../daemon/control.js';
import { CONTROL_SOCKET, ConflictListSchema, ResolvedSchema, type ConflictView } from '../daemon/protocol.js';
import { fetchStatus } from './commands.js';
import { mountOf, requireMountOf } from './where.js';

export { mountOf };
import { formatBytes, formatLocalTime } from './format.js';

const SHOW_DIFF_MAX = 4 * 1024 * 1024;

async function socketOf(mountpoint: string): Promise<{ sock: string; mountpoint: string }> {
  const s = await fetchStatus(mountpoint);
  return { sock: path.join(s.cacheDir, CONTROL_SOCKET), mountpoint: s.mountpoint };
}

async function list(sock: string, all: boolean): Promise<ConflictView[]> {
  const parsed = ConflictListSchema.safeParse(await sendControl(sock, { op: 'conflicts', all }));
  if (!parsed.success) throw new UserError('the mount process sent a conflict list this cachefs does not understand');
  return parsed.data.conflicts;
}

export async function commandConflicts(mountpoint: string, opts: { json?: boolean; all?: boolean; show?: string }): Promise<void> {
  const { sock, mountpoint: mp } = await socketOf(mountpoint);
  if (opts.show !== undefined) {
    const id = Number(opts.show);
    if (!Number.isInteger(id) || id <= 0) throw new UserError(`--show takes a conflict id, not "${opts.show}"`, { hint: `cachefs conflicts ${mp} lists them` });
    const c = (await list(sock, true)).find((x) => x.id === id);
    if (!c) throw new UserError(`there is no conflict ${id} on ${mp}`, { hint: `cachefs conflicts ${mp} --all lists every one` });
    await show(c, mp, opts.json === true);
    return;
  }
  const items = await list(sock, opts.all === true);
  if (opts.json) { process.stdout.write(JSON.stringify(items, null, 2) + '\n'); return; }
  if (items.length === 0) {
    process.stdout.write(opts.all ? 'no conflicts were ever found on this mount\n' : 'no open conflicts\n');
    return;
  }
  for (const c of items) {
    const state = c.resolvedAt === null ? 'OPEN' : `${c.resolution}${c.resolvedBy === 'auto' ? ' (auto)' : ''}`;
    const from = c.detail.from ? ` (renamed from ${c.detail.from})` : '';
    process.stdout.write(`#${String(c.id).padEnd(4)} ${c.kind.padEnd(26)} ${c.path}${from}  ${formatLocalTime(new Date(c.detectedAt).toISOString())}  ${state}\n`);
    if (c.detail.note) process.stdout.write(`       ${c.detail.note}\n`);
  }
  const open = items.filter((c) => c.resolvedAt === null);
  if (open.length > 0) {
    process.stdout.write(`\n${open.length} open: see one with \`cachefs conflicts ${mp} --show ID\`, its variants in ${mp}/.cachefs/conflicts/ID/,\n`
      + `then \`cachefs resolve ${mp} --id ID --keep client|server|both\` (or --use FILE, or --resolved)\n`);
  }
}

async function show(c: ConflictView, mp: string, json: boolean): Promise<void> {
  const v = (name: string) => (c.dir ? path.join(c.dir, name) : null);
  const diff = await diffOf(v('client'), v('server'), c);
  if (json) { process.stdout.write(JSON.stringify({ ...c, diff }, null, 2) + '\n'); return; }
  const out: string[] = [];
  out.push(`conflict #${c.id}: ${c.kind} on ${c.path}${c.detail.from ? ` (renamed from ${c.detail.from})` : ''}`);
  out.push(`  found       ${formatLocalTime(new Date(c.detectedAt).toISOString())}`);
  out.push(`  state       ${c.resolvedAt === null ? 'open' : `resolved: ${c.resolution} by ${c.resolvedBy}`}`);
  if (c.detail.note) out.push(`  what        ${c.detail.note}`);
  out.push(`  versions    base ${c.baseVersion ?? '-'}  client ${c.clientVersion ?? '-'}  server ${c.serverVersion ?? '-'}`);
  for (const name of ['base', 'client', 'server', 'resolved'] as const) {
    const i = c.detail[name];
    if (!i) continue;
    const bits: string[] = [i.type];
    if (i.type === 'file') bits.push(formatBytes(i.size ?? 0));
    if (i.mode !== undefined) bits.push(`mode ${i.mode.toString(8).padStart(4, '0')}`);
    if (i.uid !== undefined) bits.push(`owner ${i.uid}:${i.gid}`);
    if (i.target !== undefined) bits.push(`-> ${i.target}`);
    if (i.sha256) bits.push(`sha256 ${i.sha256.slice(0, 16)}…`);
    if (i.complete === false) bits.push('INCOMPLETE (not all of it could be kept)');
    out.push(`  ${name.padEnd(11)} ${bits.join(', ')}`);
  }
  if (c.detail.fields?.length) out.push(`  both changed ${c.detail.fields.join(', ')}`);
  if (c.resolvedAt === null) out.push(`  variants    ${mp}/.cachefs/conflicts/${c.id}/{client,server${c.detail.base ? ',base' : ''},resolved}`);
  process.stdout.write(out.join('\n') + '\n');
  if (diff) process.stdout.write('\n' + diff);
}

/** A unified diff client -> server for text files; a note for anything else. */
async function diffOf(client: string | null, server: string | null, c: ConflictView): Promise<string | null> {
  if (!client || !server || c.resolvedAt !== null) return null;
  // Loaded only to show a diff (the diff library and the variant reader: CLI startup time).
  const [{ unifiedDiff }, { isText }, { readVariant }] = await Promise.all([import('../conflict/merge.js'), import('../conflict/content.js'), import('../conflict/variants.js')]);
  const [a, b] = await Promise.all([readVariant(client, SHOW_DIFF_MAX), readVariant(server, SHOW_DIFF_MAX)]);
  if (!a || !b) return null;
  if (!isText(a) || !isText(b)) return `binary variants: client ${formatBytes(a.length)}, server ${formatBytes(b.length)} (they differ)\n`;
  const d = unifiedDiff(a.toString('utf8'), b.toString('utf8'), `client${c.path}`, `server${c.path}`);
  return d || 'the variants have the same bytes\n';
}

export interface ResolveOpts { id?: string; keep?: string; use?: string; resolved?: boolean; json?: boolean }

export async function commandResolve(target: string, opts: ResolveOpts): Promise<void> {
  const chosen = [opts.keep !== undefined, opts.use !== undefined, opts.resolved === true].filter(Boolean).length;
  if (chosen !== 1) {
    throw new UserError('say what to keep: exactly one of --keep client|server|both, --use FILE, --resolved', { exitCode: 2 });
  }
  if (opts.keep !== undefined && !['client', 'server', 'both'].includes(opts.keep)) {
    throw new UserError(`--keep takes client, server or both, not "${opts.keep}"`, { exitCode: 2 });
  }
  const where = requireMountOf(target, 'give a path inside the mount, or the mountpoint with --id N');
  const { sock, mountpoint } = await socketOf(where.mountpoint);
  let id: number | undefined;
  if (opts.id !== undefined) {
    id = Number(opts.id);
    if (!Number.isInteger(id) || id <= 0) throw new UserError(`--id takes a conflict id, not "${opts.id}"`, { hint: `cachefs conflicts ${mountpoint} lists them` });
  } else if (where.rel === '/') {
    throw new UserError('which conflict? give a path inside the mount, or --id N', { hint: `cachefs conflicts ${mountpoint} lists them`, exitCode: 2 });
  }
  if (opts.use !== undefined) {
    // The chosen file becomes the conflict's resolved variant (copied here, by the user who
    // can read it), then the mount resolves with it.
    const c = (await list(sock, false)).find((x) => (id !== undefined ? x.id === id : x.path === where.rel || x.detail.from === where.rel));
    if (!c?.dir) throw new UserError(`no open conflict ${id !== undefined ? `#${id}` : `at ${where.rel}`}`, { hint: `cachefs conflicts ${mountpoint}` });
    id = c.id;
    const st = await fsp.stat(opts.use).catch(() => null);
    if (!st?.isFile()) throw new UserError(`--use ${opts.use}: not a readable regular file`);
    await fsp.copyFile(opts.use, path.join(c.dir, 'resolved'));
  }
  const keep = opts.keep ?? 'resolved';
  const raw = await sendControl(sock, { op: 'resolve', keep: keep as 'client' | 'server' | 'both' | 'resolved',
    ...(id !== undefined ? { id } : { path: where.rel }) }, 120_000);
  const r = ResolvedSchema.parse(raw);
  if (opts.json) { process.stdout.write(JSON.stringify(r, null, 2) + '\n'); return; }
  process.stdout.write(`conflict #${r.id} on ${r.path}: kept ${r.choice}`
    + `${r.placed.length ? ` (${r.placed.map((p) => path.join(mountpoint, p)).join(', ')})` : ''}\n`);
  if (r.lostFound.length) process.stdout.write(`  the variant not kept is in ${r.lostFound.join(', ')}\n`);
}
