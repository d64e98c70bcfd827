// `cachefs lost-found`: list and empty the variants conflict resolutions discarded, given
// the mountpoint (the mount says where its cache directory is). Like `cachefs conflicts
// --show`, this side works on the cache directory itself: lost+found is plain files there,
// in neither the index nor the journal, and the mount shows it as it is on disk.
import path from 'node:path';
import { UserError, isFsError } from '../core/errors.js';
import { CONTROL_DIR_NAME } from '../core/names.js';
import { LOST_FOUND, emptyLostFound, listLostFound, removeLostFound, type LostEntry } from '../conflict/lost-found.js';
import { fetchStatus } from './commands.js';
import { formatBytes, formatLocalTime } from './format.js';

export interface LostFoundOpts { json?: boolean; empty?: boolean; remove?: string[] }

const total = (es: LostEntry[]) => es.reduce((n, e) => n + e.bytes, 0);

function describe(e: LostEntry, nameWidth: number): string {
  const what = e.conflict === null ? '' : `conflict #${e.conflict}: the ${e.variant} variant of ${e.original}`;
  return `${e.name.padEnd(nameWidth)}  ${e.type.padEnd(7)} ${formatBytes(e.bytes).padStart(10)}  ${formatLocalTime(e.movedAt)}${what ? `  ${what}` : ''}`;
}

export async function commandLostFound(mountpoint: string, opts: LostFoundOpts): Promise<void> {
  if (opts.empty && opts.remove) throw new UserError('give --empty or --remove NAME..., not both', { exitCode: 2 });
  const s = await fetchStatus(mountpoint); // not a mount, or a dead one: the usual error
  const shown = path.join(s.mountpoint, CONTROL_DIR_NAME, LOST_FOUND);
  if (!opts.empty && !opts.remove) {
    const entries = await listLostFound(s.cacheDir);
    if (opts.json) { process.stdout.write(JSON.stringify(entries, null, 2) + '\n'); return; }
    if (entries.length === 0) { process.stdout.write(`lost+found of ${s.mountpoint} is empty\n`); return; }
    process.stdout.write(`${entries.length} item(s), ${formatBytes(total(entries))}, in ${shown}/ (variants resolutions did not keep):\n`);
    const width = Math.max(...entries.map((e) => e.name.length));
    for (const e of entries) process.stdout.write(`  ${describe(e, width)}\n`);
    process.stdout.write(`\nremove one with \`cachefs lost-found ${s.mountpoint} --remove NAME\`, all with --empty\n`);
    return;
  }
  let removed: LostEntry[];
  if (opts.empty) {
    removed = await emptyLostFound(s.cacheDir);
  } else {
    // A name as listed, or its path in the mount (tab completion gives that).
    const names = opts.remove!.map((n) => (n.includes('/') && path.dirname(path.resolve(n)) === shown ? path.basename(n) : n));
    try {
      removed = await removeLostFound(s.cacheDir, names);
    } catch (e) {
      if (isFsError(e, 'ENOENT') || isFsError(e, 'EINVAL')) {
        throw new UserError(`${e.message}; nothing was removed`, { hint: `\`cachefs lost-found ${s.mountpoint}\` lists its entries`, exitCode: 1 });
      }
      throw e;
    }
  }
  if (opts.json) { process.stdout.write(JSON.stringify({ removed, bytes: total(removed) }, null, 2) + '\n'); return; }
  if (removed.length === 0) { process.stdout.write(`lost+found of ${s.mountpoint} was already empty\n`); return; }
  for (const e of removed) process.stdout.write(`removed ${e.name} (${formatBytes(e.bytes)})\n`);
  process.stdout.write(`removed ${removed.length} item(s), ${formatBytes(total(removed))}, from lost+found of ${s.mountpoint}\n`);
}
