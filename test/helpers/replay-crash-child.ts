// A mount's life cut short at one exact point of its replay, for replay-crash.test.ts: opens
// the layer over a cache an earlier run left records in (init() replays them) and kills this
// process with SIGKILL at the moment the first record of the named kind has been applied by
// the backend and its journal row is about to be deleted. Exits 3 if no such record came.
// Usage: node replay-crash-child.js <dir made by layerHere> <record op>
import { reopenLayer, withoutJournalOptimization } from './layer.js';

const [dir, op] = process.argv.slice(2);
if (!dir || !op) throw new Error('usage: replay-crash-child.js <dir> <op>');
const here = await reopenLayer(dir, {
  config: withoutJournalOptimization,
  journal: (j) => {
    const ops = new Map(j.after(0, 1_000_000).map((e) => [e.seq, e.record.op]));
    const remove = j.remove.bind(j);
    j.remove = (seq) => {
      if (ops.get(seq) === op) process.kill(process.pid, 'SIGKILL');
      remove(seq);
    };
  },
});
await here.layer.goOnline();
await here.close();
process.exit(3);
