// A mount killed while its connected writes wait for the backend, for write-records.test.ts:
// opens the layer over a directory layerHere made, with every backend write held (never
// answered), creates `f` and writes MIBS MiB to it (1 MiB a write, as `dd bs=1M` does), and
// then, by the mode given:
// - `late`: waits until every write's record has its journal row (write-back gives one to a
//   record the backend has not applied within DURABLE_AFTER_MS), prints each row's CRC check;
// - `offline`: goes offline as soon as the records are queued, and prints how many rows the
//   journal has right then (going offline must write them all, with no wait);
// - `partial`: writes only TAIL, which does not fill a run (a dirty run, in the cache file and
//   in memory, not yet a record), goes offline and prints the rows: it must be journaled;
// and kills itself with SIGKILL, the file still open.
// Usage: node write-records-child.js <dir made by layerHere> late|offline|partial
import { crc32 } from 'node:zlib';
import type { Backend } from '../../src/backends/types.js';
import { reopenLayer } from './layer.js';
import { waitUntil } from './wait.js';
import { MIBS, TAIL, mibOf } from './write-records-data.js';

const MiB = 1 << 20;

const [dir, mode] = process.argv.slice(2);
if (!dir || (mode !== 'late' && mode !== 'offline' && mode !== 'partial')) throw new Error('usage: write-records-child.js <dir> late|offline|partial');

/** The backend, never answering a write (fault injection). */
const holdingWrites = (inner: Backend): Backend => new Proxy(inner, {
  get(target, prop, receiver) {
    const v = Reflect.get(target, prop, receiver) as unknown;
    if (typeof v !== 'function') return v;
    const fn = (v as (...x: unknown[]) => unknown).bind(target);
    return prop === 'write' ? () => new Promise(() => undefined) : fn;
  },
});

// A deadline far away: the held writes must not time out (and take the mount offline,
// which also writes the rows) before the check below.
const here = await reopenLayer(dir, { wrap: holdingWrites, config: (c) => ({ ...c, backendTimeoutMs: 60_000 }) });
const { layer, journal } = here;
const me = { uid: process.getuid!(), gid: process.getgid!() };
const fd = await layer.create('/f', 0o644, 0o1 /* O_WRONLY */, me);
if (mode === 'partial') await layer.write(fd, 0, TAIL);
else for (let i = 0; i < MIBS; i++) await layer.write(fd, i * MiB, mibOf(i));
await new Promise((r) => setImmediate(r)); // the last run becomes a record just after its write()
if (mode !== 'late') {
  layer.goOffline();
  process.stdout.write(`rows ${journal.pending()}\n`);
} else {
  await waitUntil('every write record to have its row', () => journal.pending() >= MIBS, 2_000, 5);
  for (const e of journal.after(0, 100)) {
    const r = e.record;
    if (r.op !== 'write') continue;
    const ok = r.length === MiB && r.crc === crc32(mibOf(r.offset / MiB));
    process.stdout.write(`crc ${r.offset / MiB} ${ok ? 'ok' : 'WRONG'}\n`);
  }
}
process.kill(process.pid, 'SIGKILL');
