// A mount's life cut short at one exact point of its replay, for replay-crash.test.ts: opens
// the layer over a cache an earlier run left records in (init() replays them) and kills this
// process with SIGKILL at the moment the backend has applied the first record of the named
// kind: `answer`, as its answer arrives (nothing of it stored yet); `row`, as its journal row
// is about to be deleted (what the layer learnt from it stored). Exits 3 if no such record came.
// Usage: node replay-crash-child.js <dir made by layerHere> <record op> answer|row
import type { Backend } from '../../src/backends/types.js';
import { reopenLayer, withoutJournalOptimization } from './layer.js';

const [dir, op, at] = process.argv.slice(2);
if (!dir || !op || (at !== 'answer' && at !== 'row')) throw new Error('usage: replay-crash-child.js <dir> <op> answer|row');

/** The backend, dying as its first answer to `op` arrives (fault injection). */
const dyingAtAnswer = (inner: Backend): Backend => new Proxy(inner, {
  get(target, prop, receiver) {
    const v = Reflect.get(target, prop, receiver) as unknown;
    if (typeof v !== 'function') return v;
    const fn = (v as (...x: unknown[]) => unknown).bind(target);
    if (prop !== op) return fn;
    return async (...a: unknown[]) => {
      const out = await fn(...a);
      process.kill(process.pid, 'SIGKILL');
      return out;
    };
  },
});

const here = await reopenLayer(dir, {
  config: withoutJournalOptimization,
  ...(at === 'answer' ? { wrap: dyingAtAnswer } : {}),
  journal: (j) => {
    if (at !== 'row') return;
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
