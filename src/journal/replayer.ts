// The replayer drains the journal to the backend, strictly in journal order, one record at a
// time (a later record may depend on an earlier one: create before write, mkdir before
// create inside it). Connected callers wait for their own record (`waitFor`); when the mount
// is disconnected the replayer is paused and records accumulate.
//
// What must stay true: a record leaves the journal only after the backend applied it, or
// after the backend refused it and the refusal was handed to the waiting caller (or logged,
// for a record left by an earlier run).
//
// The cache's own storage failing (SQLite cannot write: the cache disk is full, or failing)
// is neither: replay *stalls*. The record stays in the journal (applied again later, which
// replay tolerates as it does after a crash), or, when the backend did apply it and only its
// row could not be deleted, stays queued to be deleted before anything else goes out. The
// replayer pauses and tells `onStall`; nothing here throws into a timer or a promise, so a
// failing disk never takes the mount process down. `resume()` tries again.
//
// The queue is kept in memory (loaded from SQLite at start, appended to as records are
// written), so the hot path never reads the journal table back.
//
// Volatile records (append with `volatile`): a connected mutation whose caller waits for
// the backend's answer needs no row while it waits. If the process dies meanwhile, the
// caller is never answered (the application gets an error from the dead mount), as when
// it dies before a durable append commits. Its row is written (`makeDurable`) before the
// caller may be told the change is kept for later (JOURNALED); and every durable append
// first writes the rows of the volatile records before it, in the same transaction, so the
// journal on disk always holds, in order, every pending record older than its newest row.
// A volatile record applied (or refused) leaves the queue without ever touching SQLite:
// that saves two commits (append, delete) of a connected mutation's three or more.
// A connected write record is volatile too, though write() was answered before it: its
// CRC waits with it (`crcLater`) and is computed from the bytes the hint holds only when
// its row is written, by `persist` (write-back calls it for a record the backend has not
// applied soon, and when the connection goes) or by any durable append after it.
import { crc32 } from 'node:zlib';
import type { Journal, JournalEntry } from './journal.js';
import type { JournalRecord } from './records.js';
import { FsError, isCacheFull, isCacheStorageError, isFsError } from '../core/errors.js';
import { log } from '../core/log.js';

/** What the replayer needs from the world: somewhere to apply a record. */
export interface ReplayTarget<O extends { kind: string } = { kind: string }> {
  apply(entry: JournalEntry, hint: ReplayHint | undefined): Promise<O>;
  /** False for a record that must go alone (e.g. while its base version is checked). */
  batchable?(entry: JournalEntry): boolean;
}

/**
 * In-memory help for a record appended by this process: the bytes of a write, and `keep`,
 * which pins them (they are a pooled buffer) until the release it returns is called, for a
 * backend that needs them after the write (Backend.write's KeepBytes).
 */
export interface ReplayHint {
  data?: Buffer;
  keep?: () => () => void;
  /**
   * A write record's `crc` is not computed yet: it is, from `data`, when the record's row is
   * written (a volatile record the backend applies first never needs one). Such a hint is
   * kept until then (dropHint leaves it); it means nothing once the record has its row.
   */
  crcLater?: boolean;
}

/** What applying a record produced (the target's outcome, or the backend's refusal). */
export type ReplayOutcome<O> = O | { kind: 'refused'; error: FsError };

/** Errors that mean "the backend cannot be reached", not "the backend said no". */
export function isConnectionError(e: unknown): boolean {
  return isFsError(e) && ['ETIMEDOUT', 'ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH',
    'EPIPE', 'ENOTCONN', 'ECONNABORTED'].includes(e.code);
}

/** Most write records sent together (1 MiB each at most: bounded memory in flight). */
const WRITE_BATCH_MAX = 8;

interface Waiter<O> { resolve(o: ReplayOutcome<O>): void; reject(e: unknown): void }

/** A record sent to the backend, and what became of it. */
interface Started<O> {
  entry: JournalEntry;
  result: Promise<{ ok: true; outcome: ReplayOutcome<O> } | { ok: false; error: unknown }>;
}

/** Why replay stopped on the cache's side, and since when (ms since the epoch). */
export interface ReplayStall { reason: string; since: number }

export class Replayer<O extends { kind: string }> {
  private readonly waiters = new Map<number, Waiter<O>>();
  private readonly hints = new Map<number, ReplayHint>();
  private readonly queue: JournalEntry[] = [];
  private head = 0;
  private running = false;
  private paused = false;
  private idleWaiters: (() => void)[] = [];
  private settledWaiters: { seq: number; resolve: () => void }[] = [];
  /** Records the backend applied whose journal rows could not be deleted yet (cache disk full). */
  private readonly unremoved = new Set<number>();
  /** Volatile records still pending whose rows are not written (see the top of this file). */
  private readonly unwritten = new Set<number>();
  private stall: ReplayStall | null = null;
  /**
   * Told when replay stalls because the cache's own storage failed (the replayer is paused
   * then; `resume()` retries). The composition root makes the mount say so and retry later.
   */
  onStall: ((reason: string) => void) | null = null;

  constructor(private readonly journal: Journal, private readonly target: ReplayTarget<O>) {
    // Records a previous run left behind go first, in their order.
    for (let after = 0; ;) {
      const batch = journal.after(after, 1000);
      if (batch.length === 0) break;
      this.queue.push(...batch);
      for (const e of batch) this.countPending(e, 1);
      after = batch[batch.length - 1]!.seq;
    }
  }

  /**
   * Appends a record and returns its sequence number; the record is durable on return,
   * unless `volatile` (its caller waits for it, and calls makeDurable before telling anyone
   * it is kept: see the top of this file).
   */
  append(record: JournalRecord, hint?: ReplayHint, opts: { volatile?: boolean } = {}): number {
    const createdAt = Date.now();
    let seq: number;
    if (opts.volatile) {
      seq = this.journal.reserve(record);
      this.unwritten.add(seq);
    } else {
      seq = this.writeUnwritten(Infinity, () => this.journal.append(record, createdAt));
    }
    if (hint) this.hints.set(seq, hint);
    const entry = { seq, record, createdAt, attempts: 0, lastError: null };
    this.queue.push(entry);
    this.countPending(entry, 1);
    return seq;
  }

  /** The pending volatile records whose rows are not written, in order. */
  private unwrittenEntries(): JournalEntry[] {
    const out: JournalEntry[] = [];
    for (let i = this.head; i < this.queue.length && out.length < this.unwritten.size; i++) {
      const e = this.queue[i]!;
      if (this.unwritten.has(e.seq)) out.push(e);
    }
    return out;
  }

  /**
   * Makes a volatile record durable: its row, and those of the volatile records before it,
   * in one transaction (nothing to do for a record already written, applied or refused).
   * If the cache cannot write them (a full cache disk), throws its storage error; the record
   * then leaves the queue unless it is being applied right now, so a caller told that its
   * change failed does not see it made later.
   */
  makeDurable(seq: number): void {
    if (!this.unwritten.has(seq)) return;
    try {
      this.writeUnwritten(seq, () => undefined);
    } catch (e) {
      const i = this.queue.findIndex((x, at) => at >= this.head && x.seq === seq);
      const inFlight = this.running && i === this.head;
      if (i >= 0 && !inFlight) {
        const [gone] = this.queue.splice(i, 1);
        this.countPending(gone!, -1);
        this.unwritten.delete(seq);
        this.hints.delete(seq);
        this.waiters.delete(seq);
        this.wakeSettled();
      }
      throw e;
    }
  }

  /**
   * Makes every volatile record up to `upTo` durable (their rows, in order, in one
   * transaction), acknowledged writes among them. Unlike makeDurable, a failure (a full
   * cache disk) drops nothing: the records stay queued without rows, the failure is logged
   * and false returned; the next durable append, or the next call, writes them.
   */
  persist(upTo = Infinity): boolean {
    if (this.unwritten.size === 0) return true;
    try {
      this.writeUnwritten(upTo, () => undefined);
      return true;
    } catch (e) {
      log.error(`${this.unwritten.size} journal record(s) of this process cannot be written to the journal now; they are kept in memory until they can be`, e);
      return false;
    }
  }

  /**
   * Writes the rows of the volatile records up to `upTo`, in order, then `then` (a durable
   * append), in one transaction; they leave `unwritten` only once it has committed.
   */
  private writeUnwritten<T>(upTo: number, then: () => T): T {
    if (this.unwritten.size === 0) return then();
    const rows = this.unwrittenEntries().filter((e) => e.seq <= upTo);
    if (rows.length === 0) return then();
    const out = this.journal.transaction(() => {
      for (const e of rows) this.journal.write(this.sealed(e));
      return then();
    });
    for (const e of rows) this.unwritten.delete(e.seq);
    return out;
  }

  /**
   * The entry as its row must be written: a write record whose CRC waited (crcLater) gets
   * it now, from the bytes its hint holds (the same bytes it is replayed with).
   */
  private sealed(e: JournalEntry): JournalEntry {
    const h = this.hints.get(e.seq);
    if (!this.crcWaits(e.seq) || e.record.op !== 'write') return e;
    if (!h?.data || h.data.length < e.record.length) throw new Error(`journal record ${e.seq}: the bytes its CRC needs are gone`);
    e.record = { ...e.record, crc: crc32(h.data.subarray(0, e.record.length)) };
    return e;
  }

  /**
   * Applies a journal optimization to the pending records (only while nothing is being
   * replayed): dropped records leave the journal (a caller waiting on one hears 'done'),
   * rewritten ones are stored anew, in one transaction. Returns how many were dropped.
   */
  optimize(fn: (entries: readonly JournalEntry[]) => { keep: JournalEntry[]; drop: number[] }): number {
    // Not while a record the backend has applied still waits for its row to go: the
    // optimizer could fold a later change into it, and that change would never be sent.
    if (this.running || this.unremoved.size > 0) return 0;
    const pending = this.queue.slice(this.head);
    if (pending.length < 2) return 0;
    const { keep, drop } = fn(pending);
    const before = new Map(pending.map((e) => [e.seq, e]));
    try {
      // Kept volatile records are written too: the optimizer may have folded a durable
      // record into a later volatile one, and the row it dropped must not be lost with it.
      this.journal.transaction(() => {
        for (const seq of drop) if (!this.unwritten.has(seq)) this.journal.remove(seq);
        for (const e of keep) {
          if (this.unwritten.has(e.seq)) this.journal.write(this.sealed(e));
          else if (before.get(e.seq)?.record !== e.record) this.journal.update(e.seq, e.record);
        }
      });
    } catch (e) {
      // One transaction: nothing changed. The records are replayed as they are.
      if (!isCacheStorageError(e)) throw e;
      log.warn('the journal was not optimized before replay: the cache cannot write its index now', e);
      return 0;
    }
    for (const e of keep) this.unwritten.delete(e.seq);
    this.queue.splice(0, this.queue.length, ...keep);
    this.head = 0;
    this.pendingObjs.clear();
    for (const e of keep) this.countPending(e, 1);
    for (const seq of drop) {
      this.hints.delete(seq);
      this.unwritten.delete(seq);
      const w = this.waiters.get(seq);
      if (w) { this.waiters.delete(seq); w.resolve({ kind: 'done' } as unknown as O); }
    }
    this.wakeSettled();
    return drop.length;
  }

  /** Whether a pending record after `seq` changes bytes [from, to) of object `obj`. */
  laterChange(seq: number, obj: number, from: number, to: number): boolean {
    for (let i = this.head; i < this.queue.length; i++) {
      const e = this.queue[i]!;
      if (e.seq <= seq) continue;
      const r = e.record;
      if (r.op === 'write' && r.obj === obj && r.offset < to && from < r.offset + r.length) return true;
      if (r.op === 'setattr' && r.obj === obj && r.set.size !== undefined && r.set.size < to) return true;
    }
    return false;
  }

  /**
   * True while a record not yet applied changes object `id` or names it (a rename's
   * target: replay checks that object against the server, so it must stay known).
   */
  hasPendingFor(id: number): boolean {
    return this.pendingObjs.has(id);
  }

  /**
   * Per object, how many records not yet applied change or name it (hasPendingFor is asked
   * on every revalidation: a scan of a long offline queue there cost O(queue) per entry of a
   * listing). Kept in step wherever a record enters or leaves the pending part of the queue.
   */
  private readonly pendingObjs = new Map<number, number>();

  private countPending(entry: JournalEntry, delta: 1 | -1): void {
    const r = entry.record;
    const ids: number[] = [];
    if ('obj' in r && typeof r.obj === 'number') ids.push(r.obj);
    if (r.op === 'rename' && r.target !== undefined) ids.push(r.target);
    for (const id of ids) {
      const n = (this.pendingObjs.get(id) ?? 0) + delta;
      if (n > 0) this.pendingObjs.set(id, n); else this.pendingObjs.delete(id);
    }
  }

  /**
   * Replaces the journal's last record `seq`, still `was`, with `record` (an offline write
   * extended by the next one), only while nothing replays (paused, not running).
   * Durable on return, as an append is. Returns false when it cannot: append instead.
   */
  extendLast(seq: number, was: JournalRecord, record: JournalRecord): boolean {
    if (!this.paused || this.running || this.queue.length === this.head) return false;
    const last = this.queue[this.queue.length - 1]!;
    // `was`: the very record the caller last wrote (an optimization may have rewritten it).
    if (last.seq !== seq || last.record !== was || this.hints.has(seq) || this.unwritten.has(seq)) return false;
    this.journal.update(seq, record);
    last.record = record;
    return true;
  }

  /** Pending write records whose bytes this process holds in memory, in journal order. */
  hintedWrites(): { seq: number; obj: number; offset: number; data: Buffer }[] {
    const out: { seq: number; obj: number; offset: number; data: Buffer }[] = [];
    for (let i = this.head; i < this.queue.length; i++) {
      const e = this.queue[i]!;
      const data = this.hints.get(e.seq)?.data;
      if (data && e.record.op === 'write') out.push({ seq: e.seq, obj: e.record.obj, offset: e.record.offset, data });
    }
    return out;
  }

  /**
   * The record's bytes are in the cache file now: the replay reads them from there. Not
   * while the record's CRC still waits for them (crcLater: it has no row yet).
   */
  dropHint(seq: number): void {
    if (this.crcWaits(seq)) return;
    this.hints.delete(seq);
  }

  /** Record `seq` has no row yet and its CRC waits for the bytes its hint holds (crcLater). */
  private crcWaits(seq: number): boolean {
    return this.unwritten.has(seq) && this.hints.get(seq)?.crcLater === true;
  }

  /** Resolves once record `seq` has been applied (or refused) by the backend. */
  waitFor(seq: number): Promise<ReplayOutcome<O>> {
    const p = new Promise<ReplayOutcome<O>>((resolve, reject) => this.waiters.set(seq, { resolve, reject }));
    this.kick();
    return p;
  }

  /**
   * Resolves once every record up to and including `seq` has left the queue (applied or
   * refused). Unlike waitFor it may be called any time, even after the record was applied.
   */
  settled(seq: number): Promise<void> {
    if (this.pendingCount === 0 || this.queue[this.head]!.seq > seq) return Promise.resolve();
    const p = new Promise<void>((r) => this.settledWaiters.push({ seq, resolve: r }));
    this.kick();
    return p;
  }

  private wakeSettled(): void {
    if (this.settledWaiters.length === 0) return;
    const next = this.pendingCount === 0 ? Infinity : this.queue[this.head]!.seq;
    const keep: { seq: number; resolve: () => void }[] = [];
    for (const w of this.settledWaiters) (w.seq < next ? w.resolve() : keep.push(w));
    this.settledWaiters = keep;
  }

  pause(): void { this.paused = true; }
  resume(): void { this.paused = false; this.kick(); }
  get isPaused(): boolean { return this.paused; }
  /** Why replay is stalled on the cache's side (null: it is not). Cleared by the next progress. */
  get stalled(): ReplayStall | null { return this.stall; }
  /** The records not yet applied, in order (a copy). */
  pendingEntries(): JournalEntry[] {
    return this.queue.slice(this.head);
  }

  /** Data bytes the pending write records carry. */
  get pendingBytes(): number {
    let n = 0;
    for (let i = this.head; i < this.queue.length; i++) {
      const r = this.queue[i]!.record;
      if (r.op === 'write') n += r.length;
    }
    return n;
  }

  /** Records not yet applied. */
  get pendingCount(): number { return this.queue.length - this.head; }

  /** The newest record queued (0: none yet). */
  get lastSeq(): number { return this.queue.length > 0 ? this.queue[this.queue.length - 1]!.seq : 0; }

  /** Resolves when the queue is empty (or the replayer is paused with records left). */
  drained(): Promise<void> {
    if (!this.running && (this.paused || this.pendingCount === 0)) return Promise.resolve();
    this.kick();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  kick(): void {
    if (this.running || this.paused) return;
    this.running = true;
    // loop() handles every failure it can foresee; anything else (a bug) stalls the replay
    // rather than becoming an unhandled rejection that would end the process.
    void this.loop().catch((e: unknown) => {
      log.error('replay stopped on an unexpected error', e);
      this.stallOn(null, e);
    }).finally(() => {
      this.running = false;
      // A record appended while the loop was finishing (its kick() saw `running`) must not
      // be left waiting for the next append.
      if (!this.paused && this.pendingCount > 0) { this.kick(); return; }
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const r of w) r();
    });
  }

  private async loop(): Promise<void> {
    // Records sent to the backend and not yet finished, in journal order from the head.
    const started: Started<O>[] = [];
    try {
      // Paused, the records already sent are still finished (their answers are coming).
      while ((started.length > 0 || !this.paused) && this.head < this.queue.length) {
        const head = this.queue[this.head]!;
        if (started.length === 0 && this.unremoved.has(head.seq)) {
          // Applied by the backend before the cache disk filled up: only its row is left.
          if (!this.removeRow(head)) return;
          this.unremoved.delete(head.seq);
          this.countPending(head, -1);
          this.head++;
          this.wakeSettled();
          continue;
        }
        if (started.length === 0) started.push(this.start(head));
        if (!this.paused) this.widen(started);
        // Outcomes are taken in journal order, whatever order the backend answers in.
        const { entry, result } = started.shift()!;
        if (this.finish(entry, await result)) return;
        this.countPending(entry, -1);
        this.head++;
        this.wakeSettled();
        // Applied entries leave the array once they are half of it (amortized O(1)); 64 at
        // least, so that a long connected session keeps few records it is done with.
        if (this.head > 64 && this.head * 2 > this.queue.length) {
          this.queue.splice(0, this.head);
          this.head = 0;
        }
      }
    } finally {
      // Replay stopped with records still at the backend: they stay queued and are sent
      // again later, which is harmless (a write of the same bytes to the same range); the
      // next loop starts only once these have answered.
      if (started.length > 0) await Promise.all(started.map((x) => x.result));
    }
  }

  private start(entry: JournalEntry): Started<O> {
    return {
      entry,
      result: this.target.apply(entry, this.hints.get(entry.seq)).then(
        (outcome) => ({ ok: true as const, outcome }),
        (error: unknown) => ({ ok: false as const, error }),
      ),
    };
  }

  /**
   * Consecutive writes to disjoint byte ranges commute, so they go out together: while the
   * head is such a write, the records after it are sent too, up to WRITE_BATCH_MAX in
   * flight, as long as each is a write whose range overlaps none in flight (one round trip
   * for several records on a network backend, and the backend never waits for the next
   * record while an earlier one is finished). Everything else is applied alone, in order.
   */
  private widen(started: Started<O>[]): void {
    if (!this.commutes(started[0]!.entry)) return;
    while (started.length < WRITE_BATCH_MAX) {
      const e = this.queue[this.head + started.length];
      if (!e || !this.commutes(e) || this.unremoved.has(e.seq)) return;
      const r = e.record as Extract<JournalRecord, { op: 'write' }>;
      const to = r.offset + r.length;
      if (started.some(({ entry: { record: x } }) => x.op === 'write' && x.obj === r.obj && x.offset < to && r.offset < x.offset + x.length)) return;
      started.push(this.start(e));
    }
  }

  private commutes(e: JournalEntry): boolean {
    return e.record.op === 'write' && this.target.batchable?.(e) !== false;
  }

  /** Takes a record's result; returns true if replay must stop (the backend is unreachable). */
  private finish(entry: JournalEntry, result: { ok: true; outcome: ReplayOutcome<O> } | { ok: false; error: unknown }): boolean {
    let outcome: ReplayOutcome<O>;
    let refusal: FsError | null = null;
    if (result.ok) outcome = result.outcome;
    else {
      const e = result.error;
      if (isConnectionError(e)) {
        this.noteFailure(entry, e);
        this.paused = true;
        log.warn(`replay of record ${entry.seq} (${entry.record.op}) stopped: backend unreachable`, e);
        const w = this.waiters.get(entry.seq);
        if (w) { this.waiters.delete(entry.seq); w.reject(e); }
        return true;
      }
      if (isCacheStorageError(e)) {
        // Not the backend's answer: the cache could not record what happened (the backend
        // may have applied it). The record stays and is applied again later; its waiter too.
        this.noteFailure(entry, e);
        this.stallOn(entry, e);
        return true;
      }
      const error = isFsError(e) ? e : new FsError('EIO', String((e as Error)?.message ?? e));
      if (!isFsError(e)) log.error(`replay of record ${entry.seq} (${entry.record.op}) failed`, e);
      refusal = error;
      outcome = { kind: 'refused', error };
    }
    // The backend has spoken: the caller hears it now, even if the row cannot be deleted
    // yet (then it is deleted before anything else is replayed; a crash meanwhile replays
    // it once more, as after any crash between applying and deleting).
    const removed = this.removeRow(entry);
    if (!removed) this.unremoved.add(entry.seq);
    this.hints.delete(entry.seq);
    const w = this.waiters.get(entry.seq);
    if (w) { this.waiters.delete(entry.seq); w.resolve(outcome); }
    else if (refusal) {
      log.warn(`backend refused journal record ${entry.seq} (${entry.record.op}): ${refusal.code}`);
    }
    return !removed;
  }

  /** Deletes a record's row; on a storage failure, stalls and returns false. */
  private removeRow(entry: JournalEntry): boolean {
    if (this.unwritten.delete(entry.seq)) return true; // volatile: it never had a row
    try {
      this.journal.remove(entry.seq);
    } catch (e) {
      this.stallOn(entry, e);
      return false;
    }
    if (this.stall) {
      log.info(`replay goes on: the cache can write its journal again (stalled since ${new Date(this.stall.since).toISOString()})`);
      this.stall = null;
    }
    return true;
  }

  /** Counts a failed attempt (in memory always; in the journal row when the disk lets us). */
  private noteFailure(entry: JournalEntry, e: unknown): void {
    const msg = String((e as Error)?.message ?? e);
    entry.attempts++; // it may have reached the backend: its replay may find it done
    entry.lastError = msg;
    try {
      this.journal.noteFailure(entry.seq, msg);
    } catch (err) {
      log.debug(`cannot note the failed attempt on journal record ${entry.seq}`, err);
    }
  }

  /** Replay cannot go on because the cache's storage failed: pause, say why, keep everything. */
  private stallOn(entry: JournalEntry | null, e: unknown): void {
    this.paused = true;
    const pending = this.pendingCount;
    const msg = String((e as Error)?.message ?? e);
    const reason = isCacheFull(e) ? `the cache disk is full: replay waits for room; ${pending} change(s) stay safe in the journal`
      : isCacheStorageError(e) ? `the cache cannot write its index (${msg}): replay waits; ${pending} change(s) stay safe in the journal`
        : `replay stopped on an unexpected error (${msg}); ${pending} change(s) stay safe in the journal`;
    const what = entry ? ` at record ${entry.seq} (${entry.record.op})` : '';
    if (!this.stall) log.warn(`replay stalled${what}: ${reason}`, e);
    else log.debug(`replay stalled again${what}`, e);
    this.stall = { reason, since: this.stall?.since ?? Date.now() };
    try { this.onStall?.(reason); } catch (err) { log.error('the replay stall handler failed', err); }
  }
}
