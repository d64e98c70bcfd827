// The replay journal: an ordered, persistent list of mutations not yet applied to the
// backend. One SQLite transaction per append (it is committed before the caller is told
// anything), and a record is deleted only after the backend has applied it, so a crash at
// any point leaves every unapplied mutation in the journal.
//
// Sequence numbers are handed out here, in memory, from the highest ever used (the table
// is AUTOINCREMENT: a conflict keeps a seq, `upTo`, that a later record must never reuse);
// so while a Journal is open, it is the table's only writer.
// A number may be reserved without a row (`reserve`): the replayer's volatile records,
// written later with `write` if they must become durable (see replayer.ts). A conflict's
// `upTo` may be such a number, so numbers are claimed in blocks in sqlite_sequence before
// they are handed out (one write per SEQ_BLOCK): the next run starts past every number
// this one could have used, with a row or without.
//
// The journal lives on the cache disk: `admit` (set by the composition root) refuses a record
// that the disk has no room to keep for long, with ENOSPC, before SQLite is asked (see append).
import type { Db } from '../index/db.js';
import { FsError } from '../core/errors.js';
import { JournalRecordSchema, type JournalRecord } from './records.js';
import { log } from '../core/log.js';

export interface JournalEntry {
  seq: number;
  record: JournalRecord;
  createdAt: number;
  attempts: number;
  lastError: string | null;
}

interface Row { seq: number; record: string; created_at: number; attempts: number; last_error: string | null }

/** Sequence numbers claimed in sqlite_sequence at a time (see the top of this file). */
const SEQ_BLOCK = 1 << 16;

export class Journal {
  private readonly st;
  /** The next sequence number to hand out. */
  private nextSeq: number;
  /** The highest number claimed in sqlite_sequence (handed out only up to it). */
  private claimed: number;

  constructor(private readonly db: Db) {
    this.st = {
      append: db.prepare(`INSERT INTO journal (seq, record, created_at) VALUES (?, ?, ?)`),
      write: db.prepare(`INSERT INTO journal (seq, record, created_at, attempts, last_error) VALUES (?, ?, ?, ?, ?)`),
      remove: db.prepare(`DELETE FROM journal WHERE seq = ?`),
      update: db.prepare(`UPDATE journal SET record = ? WHERE seq = ?`),
      next: db.prepare(`SELECT * FROM journal WHERE seq > ? ORDER BY seq LIMIT ?`),
      count: db.prepare(`SELECT COUNT(*) AS n FROM journal`),
      fail: db.prepare(`UPDATE journal SET attempts = attempts + 1, last_error = ? WHERE seq = ?`),
    };
    const rows = (db.prepare(`SELECT COALESCE(MAX(seq), 0) AS n FROM journal`).get() as { n: number }).n;
    const used = (db.prepare(`SELECT seq AS n FROM sqlite_sequence WHERE name = 'journal'`).get() as { n: number } | undefined)?.n ?? 0;
    this.claimed = Math.max(rows, used);
    this.nextSeq = this.claimed + 1;
  }

  /**
   * Claims the next block of numbers in sqlite_sequence when the current one is used up.
   * Not inside a caller's transaction (its rollback would undo the claim behind our back):
   * a row written there raises sqlite_sequence itself, and the next claim starts past it.
   */
  private claim(): void {
    if (this.nextSeq <= this.claimed || this.db.inTransaction) return;
    const upTo = this.nextSeq + SEQ_BLOCK - 1;
    this.db.transaction(() => {
      const had = this.db.prepare(`UPDATE sqlite_sequence SET seq = ? WHERE name = 'journal'`).run(upTo).changes;
      if (had === 0) this.db.prepare(`INSERT INTO sqlite_sequence (name, seq) VALUES ('journal', ?)`).run(upTo);
    })();
    this.claimed = upTo;
  }

  /**
   * Asked before each append: may this record be kept? Null: always. The composition root
   * refuses changes made while disconnected once the cache disk is nearly full, so the room
   * left stays for what must not fail (the write records of data already acknowledged, and
   * the replay's own bookkeeping).
   */
  admit: ((record: JournalRecord) => boolean) | null = null;

  append(record: JournalRecord, createdAt = Date.now()): number {
    this.checkAdmitted(record);
    this.claim();
    const seq = this.nextSeq;
    this.st.append.run(seq, JSON.stringify(record), createdAt);
    this.nextSeq = seq + 1;
    return seq;
  }

  /** A sequence number for a record kept in memory only for now (no row; see `write`). */
  reserve(record: JournalRecord): number {
    this.checkAdmitted(record);
    this.claim();
    return this.nextSeq++;
  }

  /** Writes the row of a record whose number was reserved (with its failed attempts so far). */
  write(e: JournalEntry): void {
    this.st.write.run(e.seq, JSON.stringify(e.record), e.createdAt, e.attempts, e.lastError);
  }

  private checkAdmitted(record: JournalRecord): void {
    if (this.admit && !this.admit(record)) {
      throw new FsError('ENOSPC', 'the cache disk is full: this change cannot be journaled while disconnected');
    }
  }

  remove(seq: number): void {
    this.st.remove.run(seq);
  }

  /** Replaces a record (the optimizer rewrote it); its place in the order stays. */
  update(seq: number, record: JournalRecord): void {
    this.st.update.run(JSON.stringify(record), seq);
  }

  /** Runs `fn` in one transaction (the optimizer's edits land together or not at all). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  noteFailure(seq: number, error: string): void {
    this.st.fail.run(error, seq);
  }

  /** Up to `limit` entries after `afterSeq`, in order. Rows that fail validation are logged and skipped. */
  after(afterSeq: number, limit: number): JournalEntry[] {
    const rows = this.st.next.all(afterSeq, limit) as Row[];
    const out: JournalEntry[] = [];
    for (const r of rows) {
      let parsed;
      try {
        parsed = JournalRecordSchema.safeParse(JSON.parse(r.record));
      } catch {
        parsed = { success: false as const };
      }
      if (!parsed.success) {
        // Keep the row (never drop a user's change silently); it is reported by `status`.
        log.error(`journal record ${r.seq} is unreadable and is left in place`);
        continue;
      }
      out.push({ seq: r.seq, record: parsed.data, createdAt: r.created_at, attempts: r.attempts, lastError: r.last_error });
    }
    return out;
  }

  pending(): number {
    return (this.st.count.get() as { n: number }).n;
  }
}
