// The journal optimizer (src/journal/optimize.ts): hand-written cases for each rule, and a
// property test against an in-memory model of the server: replaying the optimized journal
// must leave exactly the state the whole journal leaves, for thousands of random valid
// journals. No FUSE, no server. CACHEFS_OPT_SEED=<n> replays one run of the property test.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { optimizeJournal, type Optimized } from '../src/journal/optimize.js';
import type { JournalEntry } from '../src/journal/journal.js';
import type { JournalRecord, SetAttrRecord } from '../src/journal/records.js';
import { mulberry32 } from './helpers/rng.js';

// ---------------------------------------------------------------------------------------
// The model server

type Time = NonNullable<SetAttrRecord['mtime']>;
type Kind = 'file' | 'dir' | 'symlink' | 'node';

interface MObj {
  id: number;
  type: Kind;
  data: Buffer;            // files: the content (its length is the size)
  target?: string;         // symlinks
  rdev?: number;           // device nodes
  mode: number;
  uid: number;
  gid: number;
  atime?: Time;            // only when set explicitly by a record (undefined: the server's own clock)
  mtime?: Time;
  nlink: number;           // names of a non-directory
  entries?: Map<string, number>;
  parent?: number;         // directories
  alive: boolean;
}

/** The bytes of write record `seq`, as the cache file would hold them. */
function bytesOf(seq: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (seq * 131 + i * 7 + 1) & 0xff;
  return b;
}

class Model {
  readonly objs = new Map<number, MObj>();
  /** Ids of objects made by records that do not carry one (older journals), by seq. */
  constructor(private readonly madeIds: Map<number, number> = new Map()) {}

  static initial(madeIds?: Map<number, number>): Model {
    const m = new Model(madeIds);
    const dir = (id: number, parent: number, entries: [string, number][]) =>
      m.objs.set(id, { id, type: 'dir', data: Buffer.alloc(0), mode: 0o755, uid: 0, gid: 0, nlink: 1, entries: new Map(entries), parent, alive: true });
    const file = (id: number, len: number, nlink = 1) =>
      m.objs.set(id, { id, type: 'file', data: bytesOf(100000 + id, len), mode: 0o644, uid: 1000, gid: 1000, nlink, alive: true });
    dir(1, 1, [['a', 10], ['b', 2], ['c', 11], ['d', 12], ['e', 13], ['f', 15]]);
    dir(2, 1, [['a', 13], ['b', 3], ['f', 14]]);
    dir(3, 2, [['c', 15]]);
    file(10, 20);
    file(11, 0);
    m.objs.set(12, { id: 12, type: 'symlink', data: Buffer.alloc(0), target: 'a', mode: 0o777, uid: 1000, gid: 1000, nlink: 1, alive: true });
    file(13, 40, 2);
    file(14, 5);
    file(15, 33, 2);
    return m;
  }

  private live(id: number): MObj | undefined {
    const o = this.objs.get(id);
    return o && o.alive ? o : undefined;
  }
  private dir(id: number): MObj | undefined {
    const o = this.live(id);
    return o && o.type === 'dir' ? o : undefined;
  }

  /** Applies a record; returns why it is refused (and changes nothing), or null. */
  apply(r: JournalRecord, seq: number): string | null {
    switch (r.op) {
      case 'write': {
        const o = this.live(r.obj);
        if (!o || o.type !== 'file') return 'write: not a live file';
        if (r.length === 0) return null; // writing nothing changes nothing (Linux)
        const end = r.offset + r.length;
        if (o.data.length < end) o.data = Buffer.concat([o.data, Buffer.alloc(end - o.data.length)]);
        bytesOf(seq, r.length).copy(o.data, r.offset);
        delete o.mtime; // the server stamps its own time
        return null;
      }
      case 'setattr': {
        const o = this.live(r.obj);
        if (!o) return 'setattr: no object';
        const s = r.set;
        if (s.size !== undefined && o.type !== 'file') return 'setattr size: not a file';
        if (s.size !== undefined && s.size !== o.data.length) {
          // Linux's truncate(2): mtime changes only when the size does.
          o.data = s.size < o.data.length ? Buffer.from(o.data.subarray(0, s.size)) : Buffer.concat([o.data, Buffer.alloc(s.size - o.data.length)]);
          delete o.mtime;
        }
        if (s.mode !== undefined) o.mode = s.mode;
        if (s.uid !== undefined) o.uid = s.uid;
        if (s.gid !== undefined) o.gid = s.gid;
        if (s.atime !== undefined) o.atime = s.atime;
        if (s.mtime !== undefined) o.mtime = s.mtime;
        return null;
      }
      case 'commit':
        return this.live(r.obj) ? null : 'commit: no object';
      case 'create': case 'mkdir': case 'symlink': case 'mknod': {
        const d = this.dir(r.parent);
        if (!d) return `${r.op}: no parent`;
        if (d.entries!.has(r.name)) return `${r.op}: exists`;
        const id = r.obj ?? this.madeIds.get(seq);
        if (id === undefined || this.objs.has(id)) return `${r.op}: bad id`;
        const type: Kind = r.op === 'create' ? 'file' : r.op === 'mkdir' ? 'dir' : r.op === 'symlink' ? 'symlink' : 'node';
        const o: MObj = { id, type, data: Buffer.alloc(0), mode: r.op === 'symlink' ? 0o777 : r.mode, uid: r.uid, gid: r.gid, nlink: 1, alive: true };
        if (r.op === 'symlink') o.target = r.target;
        if (r.op === 'mknod') o.rdev = r.rdev;
        if (type === 'dir') { o.entries = new Map(); o.parent = r.parent; }
        this.objs.set(id, o);
        d.entries!.set(r.name, id);
        delete d.mtime;
        return null;
      }
      case 'link': {
        const o = this.live(r.obj);
        const d = this.dir(r.parent);
        if (!o || o.type === 'dir' || !d) return 'link: bad object or dir';
        if (d.entries!.has(r.name)) return 'link: exists';
        d.entries!.set(r.name, o.id);
        o.nlink++;
        delete d.mtime;
        return null;
      }
      case 'unlink': case 'rmdir': {
        const d = this.dir(r.parent);
        const id = d?.entries!.get(r.name);
        if (!d || id === undefined) return `${r.op}: no entry`;
        if (r.obj !== undefined && r.obj !== id) return `${r.op}: other object`;
        const o = this.objs.get(id)!;
        if (r.op === 'unlink' && o.type === 'dir') return 'unlink: a directory';
        if (r.op === 'rmdir' && (o.type !== 'dir' || o.entries!.size > 0)) return 'rmdir: not an empty directory';
        d.entries!.delete(r.name);
        this.drop(o);
        delete d.mtime;
        return null;
      }
      case 'rename': {
        const fd = this.dir(r.fromParent);
        const td = this.dir(r.toParent);
        const id = fd?.entries!.get(r.fromName);
        if (!fd || !td || id === undefined) return 'rename: no source';
        if (r.obj !== undefined && r.obj !== id) return 'rename: other object';
        if (r.fromParent === r.toParent && r.fromName === r.toName) return null;
        const tid = td.entries!.get(r.toName);
        if (tid === id) return null; // two links to the same file: POSIX does nothing
        const o = this.objs.get(id)!;
        const t = tid === undefined ? undefined : this.objs.get(tid)!;
        if (o.type === 'dir') {
          for (let p = r.toParent; ; p = this.objs.get(p)!.parent!) {
            if (p === id) return 'rename: into itself';
            if (p === 1) break;
          }
          if (t && (t.type !== 'dir' || t.entries!.size > 0)) return 'rename: target not an empty directory';
        } else if (t && t.type === 'dir') return 'rename: target is a directory';
        if (t) this.drop(t);
        fd.entries!.delete(r.fromName);
        td.entries!.set(r.toName, id);
        if (o.type === 'dir') o.parent = r.toParent;
        delete fd.mtime;
        delete td.mtime;
        return null;
      }
    }
  }

  private drop(o: MObj): void {
    if (o.type === 'dir') o.alive = false;
    else if (--o.nlink === 0) o.alive = false;
  }

  /** Everything the contract compares: live objects, their names, contents and attributes. */
  snapshot(): unknown[] {
    return [...this.objs.values()].filter((o) => o.alive).sort((a, b) => a.id - b.id).map((o) => ({
      id: o.id, type: o.type, data: o.data.toString('hex'), target: o.target, rdev: o.rdev,
      mode: o.mode, uid: o.uid, gid: o.gid, atime: o.atime, mtime: o.mtime,
      nlink: o.type === 'dir' ? undefined : o.nlink,
      entries: o.entries ? [...o.entries].sort(([a], [b]) => (a < b ? -1 : 1)) : undefined,
    }));
  }

  liveIds(pred: (o: MObj) => boolean = () => true): number[] {
    return [...this.objs.values()].filter((o) => o.alive && pred(o)).map((o) => o.id);
  }
}

// ---------------------------------------------------------------------------------------
// Helpers

let nextSeq = 1;
function journal(...records: JournalRecord[]): JournalEntry[] {
  return records.map((record) => ({ seq: nextSeq++, record, createdAt: 0, attempts: 0, lastError: null }));
}
const seqs = (es: readonly JournalEntry[]): number[] => es.map((e) => e.seq);

const w = (obj: number, offset: number, length: number): JournalRecord => ({ op: 'write', obj, offset, length, crc: 0, base: null });
const sa = (obj: number, set: SetAttrRecord): JournalRecord => ({ op: 'setattr', obj, set, base: null });
const commit = (obj: number): JournalRecord => ({ op: 'commit', obj, base: null });
const create = (parent: number, name: string, obj?: number): JournalRecord =>
  ({ op: 'create', parent, name, mode: 0o644, uid: 1000, gid: 1000, ...(obj !== undefined ? { obj } : {}), base: null });
const mkdir = (parent: number, name: string, obj: number): JournalRecord => ({ op: 'mkdir', parent, name, mode: 0o755, uid: 1000, gid: 1000, obj, base: null });
const link = (obj: number, parent: number, name: string): JournalRecord => ({ op: 'link', obj, parent, name, base: null });
const unlink = (parent: number, name: string, obj?: number): JournalRecord => ({ op: 'unlink', parent, name, ...(obj !== undefined ? { obj } : {}), base: null });
const rmdir = (parent: number, name: string, obj: number): JournalRecord => ({ op: 'rmdir', parent, name, obj, base: null });
const rename = (fromParent: number, fromName: string, toParent: number, toName: string, obj?: number, base: string | null = null): JournalRecord =>
  ({ op: 'rename', fromParent, fromName, toParent, toName, ...(obj !== undefined ? { obj } : {}), base });
const at = (ns: string): Time => ({ kind: 'set', ns });

/** Checks the bookkeeping, and (when the journal is valid from the model's start) the state. */
function check(entries: JournalEntry[], opt: Optimized = optimizeJournal(entries), madeIds?: Map<number, number>): Optimized {
  assert.equal(opt.keep.length + opt.drop.length, entries.length);
  const all = seqs(entries);
  const kept = seqs(opt.keep);
  assert.deepEqual([...kept].sort((a, b) => a - b), kept, 'kept records stay in order');
  assert.deepEqual([...kept, ...opt.drop].sort((a, b) => a - b), all, 'every seq is kept or dropped, once');
  assert.equal(Object.values(opt.stats).reduce((a, b) => a + b, 0), opt.drop.length, 'stats count every dropped record');
  const bySeq = new Map(entries.map((e) => [e.seq, e.record]));
  for (const e of opt.keep) {
    const orig = bySeq.get(e.seq)!;
    if (JSON.stringify(orig) === JSON.stringify(e.record)) continue;
    if (orig.op === 'setattr' && e.record.op === 'setattr') {
      assert.equal(e.record.obj, orig.obj);
      assert.equal(e.record.set.size, orig.set.size, 'size is never collapsed');
      for (const [k, v] of Object.entries(e.record.set)) assert.deepEqual(v, orig.set[k as keyof SetAttrRecord]);
      assert.ok(Object.keys(e.record.set).length < Object.keys(orig.set).length);
    } else if (orig.op === 'rename' && e.record.op === 'rename') {
      assert.equal(e.record.obj, orig.obj);
      assert.deepEqual([e.record.toParent, e.record.toName], [orig.toParent, orig.toName], 'a merged rename keeps the later target');
    } else assert.fail(`record ${e.seq} rewritten unexpectedly: ${JSON.stringify(orig)} -> ${JSON.stringify(e.record)}`);
  }
  const raw = Model.initial(madeIds);
  for (const e of entries) assert.equal(raw.apply(e.record, e.seq), null, `test journal invalid at ${e.seq}: ${JSON.stringify(e.record)}`);
  const replay = Model.initial(madeIds);
  for (const e of opt.keep) {
    const err = replay.apply(e.record, e.seq);
    assert.equal(err, null, `optimized journal fails at ${e.seq} (${JSON.stringify(e.record)}): ${err}`);
  }
  assert.deepEqual(replay.snapshot(), raw.snapshot(), 'same final state');
  return opt;
}

function dropped(entries: JournalEntry[], ...idx: number[]): number[] {
  return idx.map((i) => entries[i]!.seq);
}

// ---------------------------------------------------------------------------------------
// Hand-written cases

describe('journal optimizer: superseded writes', () => {
  it('drops a write rewritten later, by one write or by the union of several', () => {
    const j = journal(w(10, 0, 10), w(10, 0, 10), w(10, 20, 8), w(10, 18, 6), w(10, 24, 10));
    const o = check(j);
    assert.deepEqual(o.drop, dropped(j, 0, 2));
    assert.equal(o.stats.supersededWrites, 2);
  });
  it('keeps a write only partly covered, and one covered only by writes to another object', () => {
    const j = journal(w(10, 0, 10), w(10, 0, 5), w(10, 30, 4), w(11, 30, 4), w(10, 6, 10));
    assert.deepEqual(check(j).drop, []);
  });
  it('drops a covered write even across truncates in between (shorter and longer)', () => {
    const j = journal(w(10, 0, 30), sa(10, { size: 4 }), sa(10, { size: 50 }), w(10, 0, 30));
    const o = check(j);
    assert.deepEqual(o.drop, dropped(j, 0));
  });
  it('a zero-length write goes only when some write follows', () => {
    const j = journal(w(10, 5, 0), w(10, 40, 1), w(11, 3, 0));
    assert.deepEqual(check(j).drop, dropped(j, 0));
  });
});

describe('journal optimizer: dead writes', () => {
  it('drops a write cut off by a later truncate at or below its offset', () => {
    const j = journal(w(10, 10, 10), w(10, 25, 5), w(10, 0, 4), sa(10, { size: 10 }), w(10, 0, 2));
    const o = check(j);
    assert.deepEqual(o.drop, dropped(j, 0, 1));
    assert.equal(o.stats.deadWrites, 2);
    const k = journal(w(10, 10, 10), sa(10, { size: 10, mtime: at('3') }));
    assert.deepEqual(check(k).drop, dropped(k, 0));
  });
  it('keeps it when nothing decides mtime after the truncate (the truncate may not change the size without it)', () => {
    // From size 10: the write makes it 20 and the truncate 10 again, a change that resets
    // mtime; without the write the truncate changes nothing, and mtime stays at 5.
    const j = journal(sa(14, { size: 10, mtime: at('5') }), w(14, 10, 10), sa(14, { size: 10 }));
    assert.deepEqual(check(j).drop, []);
  });
  it('keeps a write the truncate only shortens', () => {
    const j = journal(w(10, 10, 10), sa(10, { size: 15 }));
    assert.deepEqual(check(j).drop, []);
  });
  it('keeps a write followed by a commit of its object before the truncate', () => {
    const j = journal(w(10, 10, 10), commit(10), sa(10, { size: 0 }));
    assert.deepEqual(check(j).drop, []);
  });
  it('extending writes: the truncate sets the size either way', () => {
    const j = journal(w(11, 100, 50), sa(11, { size: 60 }), w(11, 70, 1), sa(11, { size: 100 }));
    const o = check(j);
    assert.deepEqual(o.drop, dropped(j, 0));
  });
});

describe('journal optimizer: setattr collapse', () => {
  it('drops a chmod/chown set again later, and trims a setattr to the fields still needed', () => {
    const j = journal(sa(10, { mode: 0o600 }), sa(10, { mode: 0o640, uid: 1 }), sa(10, { uid: 2, mtime: at('5') }), sa(10, { mtime: at('7') }));
    const o = check(j);
    assert.deepEqual(o.drop, dropped(j, 0));
    assert.deepEqual(o.keep.map((e) => e.record.op === 'setattr' && e.record.set), [{ mode: 0o640 }, { uid: 2 }, { mtime: at('7') }]);
    assert.deepEqual(seqs(o.keep), dropped(j, 1, 2, 3), 'trimmed records keep their seq');
    assert.equal(o.stats.collapsedSetattrs, 1);
  });
  it('never collapses size', () => {
    const j = journal(sa(10, { size: 5, mtime: at('1') }), sa(10, { size: 3, mtime: at('2') }));
    const o = check(j);
    assert.deepEqual(o.drop, []);
    assert.deepEqual(o.keep.map((e) => e.record.op === 'setattr' && e.record.set), [{ size: 5 }, { size: 3, mtime: at('2') }]);
  });
  it('a write between two mtime sets does not matter; an mtime set before a write alone stays', () => {
    const j = journal(sa(10, { mtime: at('1') }), w(10, 0, 1), sa(10, { mtime: at('2') }), sa(11, { mtime: at('3') }), w(11, 0, 1));
    const o = check(j);
    assert.deepEqual(o.drop, dropped(j, 0));
  });
  it('keeps a chmod the server checks a later operation against (chmod u+w; write; chmod u-w)', () => {
    const j = journal(sa(10, { mode: 0o644 }), w(10, 0, 1), sa(10, { mode: 0o444 }));
    assert.deepEqual(check(j).drop, []);
    const d = journal(sa(2, { mode: 0o700 }), create(2, 'x', 300), sa(2, { mode: 0o755 }));
    assert.deepEqual(check(d).drop, []);
  });
});

describe('journal optimizer: provisional objects vanish', () => {
  it('create, write, setattr, commit, rename, unlink of a new file: all of it goes', () => {
    const j = journal(unlink(2, 'f', 14), create(1, 'x', 200), w(200, 0, 10), sa(200, { mode: 0o600 }), commit(200), rename(1, 'x', 2, 'f', 200),
      unlink(2, 'f', 200), w(10, 0, 1));
    const o = check(j);
    assert.deepEqual(o.drop, dropped(j, 1, 2, 3, 4, 5, 6));
    assert.equal(o.stats.vanishedObjects, 6);
  });
  it('a new file that keeps a name (a link) stays', () => {
    const j = journal(create(1, 'x', 200), link(200, 2, 'x'), unlink(1, 'x', 200));
    assert.deepEqual(check(j).drop, []);
  });
  it('a new directory vanishes with its new children; one with a surviving child stays', () => {
    const gone = journal(mkdir(1, 'x', 200), create(200, 'f', 201), mkdir(200, 'g', 202), unlink(200, 'f', 201), rmdir(200, 'g', 202), rmdir(1, 'x', 200));
    assert.equal(check(gone).drop.length, 6);
    const kept = journal(mkdir(1, 'x', 210), create(210, 'f', 211), rename(210, 'f', 1, 'kept', 211), rmdir(1, 'x', 210));
    assert.deepEqual(check(kept).drop, []);
    const moved = journal(mkdir(1, 'x', 220), rename(1, 'c', 220, 'c', 11), w(11, 0, 1), rename(220, 'c', 1, 'c', 11), rmdir(1, 'x', 220));
    assert.deepEqual(check(moved).drop, [], 'an old file passed through it');
    // Without the write, the two renames cancel out, and then the directory vanishes.
    const back = journal(mkdir(1, 'x', 230), rename(1, 'c', 230, 'c', 11), rename(230, 'c', 1, 'c', 11), rmdir(1, 'x', 230));
    const o = check(back);
    assert.equal(o.drop.length, 4);
    assert.deepEqual([o.stats.collapsedRenames, o.stats.vanishedObjects], [2, 2]);
  });
  it('an unlink without obj pins the object', () => {
    const j = journal(create(1, 'x', 200), unlink(1, 'x'));
    assert.deepEqual(check(j).drop, []);
  });
  it('a rename of a new file over an old name keeps it (the old object was removed by it)', () => {
    const j = journal(create(1, 'x', 200), rename(1, 'x', 1, 'a', 200), unlink(1, 'a', 200));
    assert.deepEqual(check(j).drop, []);
  });
  it('a rename over another vanishing object is fine; a rename of an old file over a new one too', () => {
    const j = journal(create(1, 'x', 200), create(1, 'y', 201), rename(1, 'x', 1, 'y', 200), unlink(1, 'y', 200));
    assert.equal(check(j).drop.length, 4);
    const k = journal(create(1, 'x', 210), rename(1, 'c', 1, 'x', 11));
    const o = check(k);
    assert.deepEqual(o.drop, dropped(k, 0));
  });
  it('atomic saves: of N temporary files renamed over a file, the first N-1 vanish', () => {
    const save = (id: number) => [create(1, 't', id), w(id, 0, 30), rename(1, 't', 1, 'a', id)];
    const j = journal(...save(200), ...save(201), ...save(202));
    const o = check(j);
    assert.deepEqual(o.drop, dropped(j, 0, 1, 2, 3, 4, 5));
    // The last one must stay: it is what replaces the old file.
    const k = journal(...save(210));
    assert.deepEqual(check(k).drop, []);
    // The displaced file may be another link of the file renamed over it later (a no-op then).
    const l = journal(w(13, 0, 1), create(1, 't', 230), rename(1, 't', 2, 'a', 230), unlink(2, 'a', 230), rename(1, 'e', 2, 'a', 13));
    assert.deepEqual(check(l).drop, []);
    // A directory cannot replace a file: then the displaced file would stay.
    const d = journal(...save(220), mkdir(1, 'm', 221), unlink(1, 'a', 220), rename(1, 'm', 1, 'a', 221));
    assert.deepEqual(check(d).drop, []);
  });
  it("keeps entry changes that decide a directory's explicitly set mtime", () => {
    const j = journal(sa(2, { mtime: at('9') }), create(2, 'x', 200), unlink(2, 'x', 200));
    assert.deepEqual(check(j).drop, []);
    const k = journal(create(2, 'x', 210), unlink(2, 'x', 210), sa(2, { mtime: at('9') }));
    assert.deepEqual(check(k).drop, dropped(k, 0, 1));
  });
});

describe('journal optimizer: rename chains', () => {
  it('a -> b -> c becomes a -> c, with the later seq and the first base', () => {
    const j = journal(unlink(1, 'c', 11), unlink(2, 'f', 14), rename(1, 'a', 1, 'c', 10, 'v1'), w(13, 0, 1), rename(1, 'c', 2, 'f', 10, 'v2'));
    const o = check(j);
    assert.deepEqual(o.drop, dropped(j, 2));
    assert.equal(o.stats.collapsedRenames, 1);
    const merged = o.keep.find((e) => e.seq === j[4]!.seq)!.record;
    assert.deepEqual(merged, { op: 'rename', fromParent: 1, fromName: 'a', toParent: 2, toName: 'f', obj: 10, base: 'v1' });
  });
  it('does not merge when the last target may be another link of the same file (POSIX: nothing happens)', () => {
    const j = journal(unlink(1, 'c', 11), rename(1, 'e', 1, 'c', 13), rename(1, 'c', 2, 'a', 13));
    assert.deepEqual(check(j).drop, []);
  });
  it('a -> b -> a vanishes; chains of three collapse', () => {
    const j = journal(unlink(1, 'c', 11), rename(1, 'a', 1, 'c', 10), rename(1, 'c', 1, 'a', 10));
    assert.deepEqual(check(j).drop, dropped(j, 1, 2));
    const k = journal(unlink(3, 'c', 15), mkdir(1, 'n', 200), rename(2, 'f', 200, 'p', 14), rename(200, 'p', 200, 'q', 14), rename(200, 'q', 3, 'c', 14));
    const o = check(k);
    assert.deepEqual(o.drop, dropped(k, 2, 3));
    assert.deepEqual(o.keep[2]!.record, rename(2, 'f', 3, 'c', 14));
  });
  it('does not merge when the intermediate name may have been occupied', () => {
    const j = journal(rename(1, 'a', 1, 'z', 10), rename(1, 'z', 2, 'x', 10));
    assert.deepEqual(check(j).drop, []);
  });
  it('does not merge across a record using the source name, the object, or without obj', () => {
    const base = [unlink(1, 'c', 11), unlink(2, 'f', 14), rename(1, 'a', 1, 'c', 10)];
    const last = () => rename(1, 'c', 2, 'f', 10);
    assert.equal(check(journal(...base, last())).drop.length, 1, 'the control case merges');
    assert.deepEqual(check(journal(...base, create(1, 'a', 300), last())).drop, []);
    assert.deepEqual(check(journal(...base, w(10, 0, 1), last())).drop, []);
    assert.deepEqual(check(journal(...base, rename(2, 'b', 1, 'q'), last())).drop, []);
    assert.deepEqual(check(journal(...base.slice(0, 2), rename(1, 'a', 1, 'c'), last())).drop, []);
  });
  it('does not merge a directory across a directory move that would become a cycle', () => {
    // D (201) leaves old dir 3 (inside old dir 2) for /a, then dir 2 moves into D's subdir E
    // (202), then D moves on to /c. Merged, D would still be inside dir 2 when dir 2 moves
    // into D: a cycle the server refuses.
    const j = journal(mkdir(3, 'd', 201), mkdir(201, 'e', 202), unlink(1, 'a', 10), unlink(1, 'c', 11),
      rename(3, 'd', 1, 'a', 201), rename(1, 'b', 202, 'q', 2), rename(1, 'a', 1, 'c', 201));
    assert.deepEqual(check(j).drop, []);
  });
  it("does not merge across a directory rename that replaces the source's directory", () => {
    // X (201) leaves the new dir P (200), which a directory rename then replaces (it is empty);
    // merged, X would still be in P.
    const j = journal(mkdir(1, 'p', 200), create(200, 'x', 201), unlink(1, 'c', 11), rename(200, 'x', 1, 'c', 201),
      mkdir(1, 'q', 202), rename(1, 'q', 1, 'p', 202), unlink(1, 'a', 10), rename(1, 'c', 1, 'a', 201));
    assert.deepEqual(check(j).drop, []);
  });
});

// ---------------------------------------------------------------------------------------
// The property test

const prng = mulberry32;

const NAMES = ['a', 'b', 'c', 'd', 'e', 'f'];
const TIMES: Time[] = [at('1'), at('2'), at('1700000000000000000'), { kind: 'now' }];

interface Generated { entries: JournalEntry[]; madeIds: Map<number, number> }

function generate(rand: () => number, length: number, seqBase: number): Generated {
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number) => rand() < p;
  const m = Model.initial();
  const madeIds = new Map<number, number>();
  const entries: JournalEntry[] = [];
  let seq = seqBase;
  let nextId = 100;
  let lastRenamed: { parent: number; name: string } | undefined;
  const writesOf = new Map<number, [number, number][]>();

  const preferNew = (ids: number[]) => {
    const fresh = ids.filter((x) => x >= 100);
    return fresh.length > 0 && chance(0.5) ? pick(fresh) : pick(ids);
  };
  const anEntry = (): { parent: number; name: string; id: number } | undefined => {
    const all: { parent: number; name: string; id: number }[] = [];
    for (const d of m.liveIds((o) => o.type === 'dir')) for (const [name, id] of m.objs.get(d)!.entries!) all.push({ parent: d, name, id });
    if (all.length === 0) return undefined;
    const fresh = all.filter((e) => e.id >= 100);
    return fresh.length > 0 && chance(0.5) ? pick(fresh) : pick(all);
  };
  const aDir = () => preferNew(m.liveIds((o) => o.type === 'dir'));

  // Each journal gets its own mix of operations (some mostly renames, some mostly writes...).
  const weights = [18, 15, 15, 4, 12, 26, 4, 6].map((x) => x * (0.1 + 2 * rand()));
  const total = weights.reduce((x, y) => x + y, 0);
  let pendingSave: { tmp: { parent: number; name: string; id: number }; over: { parent: number; name: string } } | undefined;
  for (let attempt = 0; entries.length < length && attempt < length * 30; attempt++) {
    let roll = rand() * total;
    let op = 0;
    while (op < weights.length - 1 && roll >= weights[op]!) roll -= weights[op++]!;
    let r: JournalRecord;
    let made: number | undefined;
    if (pendingSave && chance(0.5)) {
      // The second half of an atomic save: the temporary file renamed over the file.
      const { tmp, over } = pendingSave;
      pendingSave = undefined;
      r = rename(tmp.parent, tmp.name, over.parent, over.name, tmp.id);
    } else if (op === 7) {
      // The first half of an atomic save: a new file next to an existing one, written.
      const e = anEntry();
      const name = pick(NAMES);
      if (!e || m.objs.get(e.id)!.type === 'dir' || m.objs.get(e.parent)!.entries!.has(name)) continue;
      const id = nextId++;
      r = create(e.parent, name, id);
      pendingSave = { tmp: { parent: e.parent, name, id }, over: { parent: e.parent, name: e.name } };
    } else if (op === 0) {
      const files = m.liveIds((o) => o.type === 'file');
      const obj = preferNew(files);
      const prev = writesOf.get(obj);
      let offset: number;
      let len: number;
      if (prev && chance(0.3)) [offset, len] = pick(prev);
      else { offset = int(8) * 6 + (chance(0.3) ? int(5) : 0); len = chance(0.05) ? 0 : 1 + int(20); }
      r = w(obj, offset, len);
      writesOf.set(obj, [...(prev ?? []), [offset, len]]);
    } else if (op === 1) {
      const obj = preferNew(m.liveIds());
      const o = m.objs.get(obj)!;
      const set: SetAttrRecord = {};
      if (o.type !== 'symlink' && chance(0.3)) set.mode = pick([0o644, 0o600, 0o755, 0o444]);
      if (chance(0.15)) set.uid = pick([0, 1000, 1001]);
      if (chance(0.15)) set.gid = pick([0, 1000, 1001]);
      if (o.type === 'file' && chance(0.3)) set.size = chance(0.3) ? 0 : int(70);
      if (chance(0.2)) set.atime = pick(TIMES);
      if (chance(0.35)) set.mtime = pick(TIMES);
      if (Object.keys(set).length === 0) set.mtime = pick(TIMES);
      r = sa(obj, set);
    } else if (op === 2) {
      const kind = pick(['create', 'create', 'create', 'mkdir', 'mkdir', 'symlink', 'mknod'] as const);
      const parent = aDir();
      const name = pick(NAMES);
      const id = nextId++;
      const withObj = !chance(0.02);
      const common = { parent, name, uid: pick([1000, 1001]), gid: 1000, ...(withObj ? { obj: id } : {}), base: null };
      r = kind === 'symlink' ? { op: 'symlink', ...common, target: pick(NAMES) }
        : kind === 'mknod' ? { op: 'mknod', ...common, mode: 0o20644, rdev: 259 }
        : { op: kind, ...common, mode: kind === 'mkdir' ? 0o755 : 0o644 };
      if (!withObj) made = id;
    } else if (op === 3) {
      r = link(preferNew(m.liveIds((o) => o.type !== 'dir')), aDir(), pick(NAMES));
    } else if (op === 4) {
      const e = anEntry();
      if (!e) continue;
      const isDir = m.objs.get(e.id)!.type === 'dir';
      r = { op: isDir ? 'rmdir' : 'unlink', parent: e.parent, name: e.name, ...(chance(0.03) ? {} : { obj: e.id }), base: null };
    } else if (op === 5) {
      let src: { parent: number; name: string; id: number } | undefined;
      const lr = lastRenamed;
      const lrDir = lr ? m.objs.get(lr.parent) : undefined;
      const chained = lr && lrDir?.alive ? lrDir.entries!.get(lr.name) : undefined;
      if (lr && chained !== undefined && chance(0.5)) src = { parent: lr.parent, name: lr.name, id: chained };
      else src = anEntry();
      if (!src) continue;
      const toParent = chance(0.5) ? src.parent : aDir();
      const toName = pick(NAMES);
      r = rename(src.parent, src.name, toParent, toName, chance(0.03) ? undefined : src.id);
    } else {
      const files = m.liveIds((o) => o.type === 'file');
      r = commit(preferNew(files));
    }
    seq += 1 + (chance(0.2) ? int(3) : 0);
    if (made !== undefined) madeIds.set(seq, made);
    if (m.apply(r, seq) !== null) { if (made !== undefined) madeIds.delete(seq); continue; }
    entries.push({ seq, record: r, createdAt: 0, attempts: 0, lastError: null });
    if (r.op === 'rename') lastRenamed = { parent: r.toParent, name: r.toName };
  }
  return { entries, madeIds };
}

describe('journal optimizer: property test against a model server', () => {
  it('replaying the optimized journal leaves exactly the state of the whole journal', () => {
    const seed = process.env.CACHEFS_OPT_SEED !== undefined ? Number(process.env.CACHEFS_OPT_SEED) : 20261122;
    const runs = Number(process.env.CACHEFS_OPT_RUNS ?? 3000);
    console.log(`journal optimizer property test: seed ${seed} (CACHEFS_OPT_SEED), ${runs} journals`);
    const rand = prng(seed);
    const totals: Optimized['stats'] = { supersededWrites: 0, deadWrites: 0, collapsedSetattrs: 0, vanishedObjects: 0, collapsedRenames: 0 };
    let records = 0;
    let droppedTotal = 0;
    let rewritten = 0;
    for (let run = 0; run < runs; run++) {
      const { entries, madeIds } = generate(rand, 5 + Math.floor(rand() * 56), 1 + Math.floor(rand() * 1000));
      let opt: Optimized;
      try {
        opt = check(entries, optimizeJournal(entries), madeIds);
        const again = optimizeJournal(opt.keep);
        assert.deepEqual(again.drop, [], 'optimizing an optimized journal removes nothing more');
      } catch (e) {
        console.log(`journal ${run} (seed ${seed}) failed:\n${entries.map((x) => `  ${x.seq} ${JSON.stringify(x.record)}`).join('\n')}`);
        throw e;
      }
      records += entries.length;
      droppedTotal += opt.drop.length;
      const orig = new Map(entries.map((x) => [x.seq, JSON.stringify(x.record)]));
      rewritten += opt.keep.filter((x) => orig.get(x.seq) !== JSON.stringify(x.record)).length;
      for (const k of Object.keys(totals) as (keyof Optimized['stats'])[]) totals[k] += opt.stats[k];
    }
    console.log(`  ${records} records, ${droppedTotal} dropped (${(100 * droppedTotal / records).toFixed(1)}%), ${rewritten} rewritten; by rule: ${JSON.stringify(totals)}`);
    for (const [k, v] of Object.entries(totals)) assert.ok(v >= Math.ceil(runs / 100), `rule ${k} fired only ${v} times`);
    assert.ok(droppedTotal / records > 0.05, 'the optimizer removes a meaningful share');
  });
});
