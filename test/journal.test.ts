// The journal and the replayer on a real SQLite file, with a scripted target standing in
// for the backend (fault injection: refusals, connection loss, slow applies, a crash).
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { openDb, SCHEMA_VERSION } from '../src/index/db.js';
import { Journal, type JournalEntry } from '../src/journal/journal.js';
import { Replayer, type ReplayTarget } from '../src/journal/replayer.js';
import { JournalRecordSchema, type JournalRecord } from '../src/journal/records.js';
import { FsError } from '../src/core/errors.js';
import { tempRoot, sleep } from './helpers/cachefs.js';
import { waitUntil } from './helpers/wait.js';

type Out = { kind: 'done'; seq: number };

class ScriptedTarget implements ReplayTarget<Out> {
  applied: number[] = [];
  delayMs = 0;
  failWith: Map<number, FsError> = new Map();
  async apply(entry: JournalEntry): Promise<Out> {
    if (this.delayMs) await sleep(this.delayMs);
    const f = this.failWith.get(entry.seq);
    if (f) throw f;
    this.applied.push(entry.seq);
    return { kind: 'done', seq: entry.seq };
  }
}

const rec = (n: number): JournalRecord => ({ op: 'setattr', obj: n, set: { mode: 0o644 }, base: null });

describe('journal and replayer', () => {
  const root = tempRoot('journal');
  after(() => rmSync(root, { recursive: true, force: true }));
  let dbn = 0;
  const freshDb = () => openDb(path.join(root, `j${++dbn}.sqlite`));

  it('a record\'s names are at most NAME_MAX (255) bytes of UTF-8, not 255 characters', () => {
    const create = (name: string) => JournalRecordSchema.safeParse({ op: 'create', parent: 1, name, mode: 0o644, uid: 0, gid: 0, obj: 2, base: null });
    for (const ok of ['x'.repeat(255), 'é'.repeat(127), `d${'é'.repeat(127)}`]) assert.equal(create(ok).success, true, `${Buffer.byteLength(ok)} bytes`);
    for (const bad of ['x'.repeat(256), 'é'.repeat(128), '😀'.repeat(64)]) assert.equal(create(bad).success, false, `${Buffer.byteLength(bad)} bytes`);
  });

  it('creates the schema at the current version and reopens it', () => {
    const file = path.join(root, 'schema.sqlite');
    let db = openDb(file);
    assert.equal((db.prepare(`SELECT value FROM meta WHERE key='schema_version'`).get() as { value: string }).value, String(SCHEMA_VERSION));
    db.close();
    db = openDb(file);
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    db.close();
  });

  it('refuses a cache written by a newer schema', () => {
    const file = path.join(root, 'newer.sqlite');
    const db = openDb(file);
    db.prepare(`UPDATE meta SET value = '999' WHERE key = 'schema_version'`).run();
    db.close();
    assert.throws(() => openDb(file), /newer cachefs/);
  });

  it('applies records strictly in order and empties the journal', async () => {
    const db = freshDb();
    const j = new Journal(db);
    const t = new ScriptedTarget();
    const r = new Replayer(j, t);
    const seqs = [1, 2, 3, 4, 5].map((n) => r.append(rec(n)));
    const outs = await Promise.all(seqs.map((s) => r.waitFor(s)));
    assert.deepEqual(t.applied, seqs);
    assert.deepEqual(outs.map((o) => (o as Out).seq), seqs);
    assert.equal(j.pending(), 0);
  });

  it('a refusal reaches the waiting caller and removes only that record', async () => {
    const db = freshDb();
    const j = new Journal(db);
    const t = new ScriptedTarget();
    const r = new Replayer(j, t);
    const a = r.append(rec(1));
    const b = r.append(rec(2));
    const c = r.append(rec(3));
    t.failWith.set(b, new FsError('EEXIST'));
    const [oa, ob, oc] = await Promise.all([r.waitFor(a), r.waitFor(b), r.waitFor(c)]);
    assert.equal(oa.kind, 'done');
    assert.equal(ob.kind, 'refused');
    assert.equal((ob as { error: FsError }).error.code, 'EEXIST');
    assert.equal(oc.kind, 'done');
    assert.equal(j.pending(), 0);
  });

  it('a connection error pauses replay and keeps the record for later', async () => {
    const db = freshDb();
    const j = new Journal(db);
    const t = new ScriptedTarget();
    const r = new Replayer(j, t);
    const a = r.append(rec(1));
    t.failWith.set(a, new FsError('ETIMEDOUT'));
    await assert.rejects(r.waitFor(a), { code: 'ETIMEDOUT' });
    assert.equal(r.isPaused, true);
    assert.equal(j.pending(), 1, 'the record stays in the journal');
    t.failWith.clear();
    r.resume();
    await r.drained();
    assert.deepEqual(t.applied, [a]);
    assert.equal(j.pending(), 0);
  });

  it('records survive a restart (a new replayer on the same file) and replay in order', async () => {
    const file = path.join(root, 'restart.sqlite');
    let db = openDb(file);
    const r1 = new Replayer(new Journal(db), new ScriptedTarget());
    r1.pause(); // as if disconnected, or killed before replaying
    const seqs = [1, 2, 3].map((n) => r1.append(rec(n)));
    db.close();
    db = openDb(file);
    const j = new Journal(db);
    assert.equal(j.pending(), 3);
    const t = new ScriptedTarget();
    const r2 = new Replayer(j, t);
    r2.kick();
    await r2.drained();
    assert.deepEqual(t.applied, seqs);
    assert.equal(j.pending(), 0);
  });

  it('an unreadable record is left in place, never dropped', async () => {
    const db = freshDb();
    // Left by an earlier run (the Journal is the table's only writer while it is open).
    db.prepare(`INSERT INTO journal (record, created_at) VALUES ('{"op":"nonsense"}', 0)`).run();
    const j = new Journal(db);
    const t = new ScriptedTarget();
    const r = new Replayer(j, t);
    const s = r.append(rec(1));
    await r.waitFor(s);
    assert.deepEqual(t.applied, [s]);
    assert.equal(j.pending(), 1, 'the bad row is still there for a person to look at');
  });

  it('settled() resolves for records applied long ago and for ones still queued', async () => {
    const db = freshDb();
    const t = new ScriptedTarget();
    t.delayMs = 20;
    const r = new Replayer(new Journal(db), t);
    const a = r.append(rec(1));
    await r.waitFor(a);
    await r.settled(a); // already applied: resolves at once
    const b = r.append(rec(2));
    const c = r.append(rec(3));
    void r.waitFor(c);
    await r.settled(b);
    assert.ok(t.applied.includes(b));
  });

  it('a record appended while the loop is finishing is not left behind (fsync hang regression)', async () => {
    const db = freshDb();
    const t = new ScriptedTarget();
    const r = new Replayer(new Journal(db), t);
    for (let i = 0; i < 50; i++) {
      const a = r.append(rec(1));
      // Chain the next append onto the settlement of the previous record, as fsync does.
      await r.settled(a).then(() => r.waitFor(r.append(rec(2))));
    }
    assert.equal(t.applied.length, 100);
  });

  it('writes to disjoint ranges go out together; an overlapping write and other records wait their turn', async () => {
    const db = freshDb();
    const j = new Journal(db);
    let inFlight = 0;
    let maxInFlight = 0;
    const started: number[] = [];
    const t: ReplayTarget<Out> = {
      async apply(entry) {
        started.push(entry.seq);
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await sleep(20);
        inFlight--;
        return { kind: 'done', seq: entry.seq };
      },
    };
    const r = new Replayer(j, t);
    r.pause();
    const w = (obj: number, offset: number): JournalRecord => ({ op: 'write', obj, offset, length: 100, crc: 0, base: null });
    const seqs = [w(1, 0), w(1, 100), w(2, 0), w(1, 50) /* overlaps the first */, rec(1), w(1, 0)].map((x) => r.append(x));
    r.resume();
    const outs = await Promise.all(seqs.map((s) => r.waitFor(s)));
    assert.deepEqual(outs.map((o) => (o as Out).seq), seqs, 'outcomes in journal order');
    assert.equal(maxInFlight, 3, 'the three disjoint writes were in flight together, no more');
    assert.deepEqual(started.slice(0, 3).sort((a, b) => a - b), seqs.slice(0, 3));
    assert.deepEqual(started.slice(3), seqs.slice(3), 'the overlapping write, the setattr and the last write one by one');
    assert.equal(j.pending(), 0);
  });

  it('disjoint writes keep eight in flight: the next starts as soon as the oldest is finished, not the whole batch', async () => {
    const db = freshDb();
    const j = new Journal(db);
    const started: number[] = [];
    const gates = new Map<number, () => void>();
    const t: ReplayTarget<Out> = {
      async apply(entry) {
        started.push(entry.seq);
        // The first record answers at once; the others wait until the test lets them.
        if (started.length > 1) await new Promise<void>((resolve) => gates.set(entry.seq, resolve));
        return { kind: 'done', seq: entry.seq };
      },
    };
    const r = new Replayer(j, t);
    r.pause();
    const seqs = Array.from({ length: 10 }, (_, i) => r.append({ op: 'write', obj: 1, offset: i * 100, length: 100, crc: 0, base: null }));
    const outs = Promise.all(seqs.map((s) => r.waitFor(s)));
    r.resume();
    await waitUntil('the ninth write is sent while the second to eighth are still at the backend', () => started.length === 9, 5_000);
    await sleep(30);
    assert.deepEqual(started, seqs.slice(0, 9), 'the tenth waits');
    assert.equal(gates.size, 8, 'never more than eight in flight');
    for (let i = 1; i < 10; i++) {
      await waitUntil(`write ${i + 1} sent`, () => gates.has(seqs[i]!), 5_000);
      gates.get(seqs[i]!)!();
    }
    assert.deepEqual((await outs).map((o) => (o as Out).seq), seqs, 'outcomes in journal order');
    assert.equal(j.pending(), 0);
  });

  it('a connection lost in the middle of a write batch keeps the failed record and the rest queued', async () => {
    const db = freshDb();
    const j = new Journal(db);
    const t = new ScriptedTarget();
    const r = new Replayer(j, t);
    r.pause();
    const w = (offset: number): JournalRecord => ({ op: 'write', obj: 7, offset, length: 10, crc: 0, base: null });
    const seqs = [0, 10, 20, 30].map((o) => r.append(w(o)));
    t.failWith.set(seqs[1]!, new FsError('ETIMEDOUT', 'gone'));
    const outs = seqs.map((s) => r.waitFor(s).then((o) => o, (e: unknown) => e));
    r.resume();
    assert.equal(((await outs[0]) as Out).seq, seqs[0]);
    assert.ok(await outs[1] instanceof FsError, 'the failed record\'s caller hears of it');
    await r.drained();
    assert.ok(r.isPaused);
    assert.equal(j.pending(), 3, 'the failed record and the two after it stay in the journal');
    t.failWith.clear();
    r.resume();
    await r.drained();
    assert.equal(j.pending(), 0);
    for (const s of seqs.slice(1)) assert.ok(t.applied.includes(s), `record ${s} reached the backend`);
  });

  describe('volatile records (a connected caller waits for its own: no row unless it must be kept)', () => {
    /** Rows in the journal table, in seq order. */
    const rows = (db: ReturnType<typeof openDb>) => (db.prepare('SELECT seq FROM journal ORDER BY seq').all() as { seq: number }[]).map((x) => x.seq);
    /** A paused replayer (the backend is not answering yet) with one volatile record `v`. */
    const waitingOnVolatile = (name: string) => {
      const db = openDb(path.join(root, name));
      const j = new Journal(db);
      const t = new ScriptedTarget();
      const r = new Replayer(j, t);
      r.pause();
      const v = r.append(rec(1), undefined, { volatile: true });
      return { db, j, t, r, v };
    };

    it('applied, it never touches the journal table; sequence numbers still only grow, across a restart too', async () => {
      const file = path.join(root, 'volatile-applied.sqlite');
      let db = openDb(file);
      const t = new ScriptedTarget();
      const r = new Replayer(new Journal(db), t);
      const durable = r.append(rec(1));
      await r.waitFor(durable);
      t.delayMs = 20;
      const v = r.append(rec(2), undefined, { volatile: true });
      assert.ok(v > durable);
      assert.deepEqual(rows(db), [], 'no row while it is applied');
      assert.deepEqual(await r.waitFor(v), { kind: 'done', seq: v });
      assert.deepEqual(rows(db), []);
      db.close();
      // A later record, after a restart, never reuses a number a conflict may keep (`upTo`):
      db = openDb(file);
      const again = new Replayer(new Journal(db), new ScriptedTarget());
      again.pause();
      assert.ok(again.append(rec(3)) > v, 'not even the number of a record that never had a row');
      db.close();
    });

    it('a durable record appended behind it writes its row first, in order: the journal holds every pending record older than its newest row', async () => {
      const { db, t, r, v } = waitingOnVolatile('volatile-prefix.sqlite');
      assert.deepEqual(rows(db), []);
      const d = r.append(rec(2));
      assert.deepEqual(rows(db), [v, d]);
      r.resume();
      await r.drained();
      assert.deepEqual(t.applied, [v, d]);
      assert.deepEqual(rows(db), [], 'both rows deleted once applied');
    });

    it('a connection lost while it is applied: makeDurable writes its row (with the failed attempt); replayed after a restart', async () => {
      const file = path.join(root, 'volatile-lost.sqlite');
      let db = openDb(file);
      const t = new ScriptedTarget();
      const r = new Replayer(new Journal(db), t);
      const v = r.append(rec(7), undefined, { volatile: true });
      t.failWith.set(v, new FsError('ETIMEDOUT'));
      await assert.rejects(r.waitFor(v), { code: 'ETIMEDOUT' });
      assert.deepEqual(rows(db), [], 'not durable until the caller says it is kept');
      r.makeDurable(v);
      assert.deepEqual(rows(db), [v]);
      r.makeDurable(v); // a second call writes nothing more
      db.close();
      db = openDb(file);
      const j = new Journal(db);
      const t2 = new ScriptedTarget();
      const r2 = new Replayer(j, t2);
      assert.equal(r2.pendingEntries()[0]!.attempts, 1, 'the failed attempt is on record (it may have reached the backend)');
      r2.kick();
      await r2.drained();
      assert.deepEqual(t2.applied, [v]);
      assert.equal(j.pending(), 0);
      db.close();
    });

    it('a row that cannot be written (SQLITE_FULL): the error reaches the caller and the record leaves the queue, never applied later', async () => {
      const { db, j, t, r, v } = waitingOnVolatile('volatile-full.sqlite'); // disconnected while it waited
      const write = j.write.bind(j);
      j.write = () => { throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }); };
      assert.throws(() => r.makeDurable(v), /disk is full/);
      j.write = write;
      assert.equal(r.pendingCount, 0, 'the change the caller was told failed is gone');
      r.resume();
      await r.drained();
      assert.deepEqual(t.applied, []);
      assert.deepEqual(rows(db), []);
    });

    describe('a write record whose CRC waits for its row (crcLater: connected write-back)', () => {
      const bytes = Buffer.from('the bytes of a connected write, kept by the hint until the backend has them');
      const writeRec = (obj: number): JournalRecord => ({ op: 'write', obj, offset: 4096, length: bytes.length, crc: 0, base: 'v1' });
      const rowCrc = (db: ReturnType<typeof openDb>, seq: number): number => {
        const row = db.prepare('SELECT record FROM journal WHERE seq = ?').get(seq) as { record: string };
        return (JournalRecordSchema.parse(JSON.parse(row.record)) as Extract<JournalRecord, { op: 'write' }>).crc;
      };

      it('applied, it never gets a row; persisted, its row has the CRC of the bytes it is replayed with', async () => {
        const file = path.join(root, 'crc-later.sqlite');
        let db = openDb(file);
        const t = new ScriptedTarget();
        const r = new Replayer(new Journal(db), t);
        const fast = r.append(writeRec(1), { data: bytes, crcLater: true }, { volatile: true });
        await r.waitFor(fast);
        assert.deepEqual(rows(db), [], 'applied at once: no row');
        r.pause();
        const v = r.append(writeRec(2), { data: bytes, crcLater: true }, { volatile: true });
        r.dropHint(v);
        assert.equal(r.hintedWrites().length, 1, 'the hint stays while the CRC still needs its bytes');
        assert.equal(r.persist(), true);
        assert.deepEqual(rows(db), [v]);
        assert.equal(rowCrc(db, v), crc32(bytes), 'the row carries the CRC of the bytes');
        r.dropHint(v);
        assert.equal(r.hintedWrites().length, 0, 'once written, the bytes may go (the replay reads the cache file)');
        db.close();
        db = openDb(file);
        const again = new Replayer(new Journal(db), new ScriptedTarget());
        const left = again.pendingEntries();
        assert.deepEqual(left.map((e) => e.seq), [v], 'it survives a restart');
        assert.equal((left[0]!.record as Extract<JournalRecord, { op: 'write' }>).crc, crc32(bytes));
        db.close();
      });

      it('a durable append behind it writes its row, with the CRC, first', () => {
        const db = openDb(path.join(root, 'crc-later-prefix.sqlite'));
        const r = new Replayer(new Journal(db), new ScriptedTarget());
        r.pause();
        const v = r.append(writeRec(3), { data: bytes, crcLater: true }, { volatile: true });
        const d = r.append(rec(4));
        assert.deepEqual(rows(db), [v, d]);
        assert.equal(rowCrc(db, v), crc32(bytes));
        db.close();
      });

      it('a row that cannot be written (SQLITE_FULL): persist keeps it queued, unlike makeDurable, and a later persist writes it', async () => {
        const { db, j, t, r, v: m } = waitingOnVolatile('crc-later-full.sqlite');
        const v = r.append(writeRec(5), { data: bytes, crcLater: true }, { volatile: true });
        const write = j.write.bind(j);
        j.write = () => { throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }); };
        assert.equal(r.persist(), false);
        assert.equal(r.pendingCount, 2, 'an acknowledged write is never dropped');
        assert.deepEqual(rows(db), []);
        j.write = write;
        assert.equal(r.persist(), true);
        assert.deepEqual(rows(db), [m, v]);
        assert.equal(rowCrc(db, v), crc32(bytes));
        r.resume();
        await r.drained();
        assert.deepEqual(t.applied, [m, v]);
        assert.deepEqual(rows(db), []);
        db.close();
      });
    });

    it('an optimization that folds a durable record into a later volatile one keeps it durable', async () => {
      const db = openDb(path.join(root, 'volatile-optimize.sqlite'));
      const j = new Journal(db);
      const r = new Replayer(j, new ScriptedTarget());
      r.pause();
      const d = r.append(rec(1));
      const v = r.append(rec(1), undefined, { volatile: true });
      // As the optimizer does with two chmods of one object: the earlier goes, the later stays.
      const dropped = r.optimize((entries) => ({ keep: entries.filter((e) => e.seq === v), drop: [d] }));
      assert.equal(dropped, 1);
      assert.deepEqual(rows(db), [v], 'the record that carries the change now has a row');
    });
  });
});
