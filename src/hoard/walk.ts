// The hoard walk: brings everything the pins cover into the cache, metadata (every
// directory on the way listed, every object's attributes) and data (every byte of every
// file), highest priority first, a bounded number of files at once (p-queue). It runs after
// a pin, after every reconnection, and on `cachefs hoard`; one walk at a time per mount.
//
// What must stay true: a walk never changes anything (it only reads through the cache);
// one file failing (gone, unreadable, the cache full) is noted and the walk goes on; the
// progress it reports only grows, and ends with the list of what could not be fetched.
import PQueue from 'p-queue';
import path from 'node:path';
import picomatch from 'picomatch';
import { isFsError } from '../core/errors.js';
import { log } from '../core/log.js';
import { PinStore, type Pin } from './pins.js';

/** What the walk needs of the mount (the cache layer, by path from the mount root). */
export interface HoardFs {
  stat(p: string): Promise<{ type: string; size: number; cachedBytes: number }>;
  /** `ref` names the entry's object for fetch (so it is not looked up again by path). */
  list(p: string): Promise<{ name: string; type: string; size: number; cachedBytes: number; ref?: number }[]>;
  readlink(p: string): Promise<string>;
  /** Fetches every byte of a file into the cache; reports bytes as they arrive. */
  fetch(p: string, onBytes: (n: number) => void, ref?: number): Promise<number>;
}

export interface HoardFailure { path: string; error: string }

export interface HoardProgress {
  state: 'idle' | 'scanning' | 'fetching' | 'done';
  reason: string;
  startedAt: number | null;
  finishedAt: number | null;
  pins: number;
  files: { done: number; total: number };
  /** Bytes of pinned files in the cache (done) out of all of them (total). */
  bytes: { done: number; total: number };
  /** Bytes this walk fetched from the backend. */
  fetched: number;
  failed: HoardFailure[];
}

/** Most failures kept in the summary (the count is exact). */
const FAILURES_KEPT = 200;

interface Item { path: string; size: number; cached: number; priority: number; ref?: number }

export class HoardWalker {
  private progressNow: HoardProgress = idle();
  private running: Promise<HoardProgress> | null = null;
  private failedCount = 0;

  constructor(private readonly fs: HoardFs, private readonly pins: PinStore, private readonly concurrency: number) {}

  progress(): HoardProgress & { failedCount: number } {
    return { ...this.progressNow, files: { ...this.progressNow.files }, bytes: { ...this.progressNow.bytes },
      failed: [...this.progressNow.failed], failedCount: this.failedCount };
  }

  get busy(): boolean { return this.running !== null; }

  /** Starts a walk (or joins the one under way); resolves with its final progress. */
  start(reason: string): Promise<HoardProgress> {
    if (this.running) return this.running;
    const pins = this.pins.list();
    this.failedCount = 0;
    this.progressNow = { ...idle(), state: 'scanning', reason, startedAt: Date.now(), pins: pins.length };
    this.running = this.walk(pins).then(() => {
      this.progressNow.state = 'done';
      this.progressNow.finishedAt = Date.now();
      const p = this.progressNow;
      log.info(`hoard walk (${reason}): ${p.files.done}/${p.files.total} files, ${p.fetched} bytes fetched, `
        + `${this.failedCount} could not be fetched, in ${((p.finishedAt! - p.startedAt!) / 1000).toFixed(1)} s`);
      return this.progress();
    }).finally(() => { this.running = null; });
    return this.running;
  }

  private fail(p: string, e: unknown): void {
    this.failedCount++;
    const f = this.progressNow.failed;
    const what = isFsError(e) ? `${e.code}: ${e.message}` : String((e as Error)?.message ?? e);
    if (f.length < FAILURES_KEPT) f.push({ path: p, error: what });
  }

  private async walk(pins: Pin[]): Promise<void> {
    // Scanning: metadata first (the listings and attributes are hoarded by it too), so the
    // totals are known before any data moves and the progress can show an ETA.
    const items = new Map<string, Item>();
    const add = (p: string, e: { type: string; size: number; cachedBytes: number; ref?: number }, priority: number): void => {
      if (e.type !== 'file') return;
      const had = items.get(p);
      if (had) { had.priority = Math.max(had.priority, priority); return; }
      items.set(p, { path: p, size: e.size, cached: Math.min(e.size, e.cachedBytes), priority, ...(e.ref !== undefined ? { ref: e.ref } : {}) });
      this.progressNow.files.total++;
      this.progressNow.bytes.total += e.size;
      this.progressNow.bytes.done += Math.min(e.size, e.cachedBytes);
    };
    const scanTree = async (dir: string, priority: number, depth: number | null, keep: (p: string) => boolean): Promise<void> => {
      let entries;
      try {
        entries = await this.fs.list(dir);
      } catch (e) {
        this.fail(dir, e);
        return;
      }
      const subdirs: string[] = [];
      for (const e of entries) {
        const p = path.posix.join(dir, e.name);
        if (e.type === 'dir') subdirs.push(p);
        else if (e.type === 'symlink') { if (keep(p)) await this.fs.readlink(p).catch((err: unknown) => this.fail(p, err)); }
        else if (keep(p)) add(p, e, priority);
      }
      if (depth === 0) return;
      for (const d of subdirs) await scanTree(d, priority, depth === null ? null : depth - 1, keep);
    };
    for (const pin of pins) {
      if (pin.glob) {
        const match = picomatch(pin.path, { dot: true });
        await scanTree(PinStore.globBase(pin.path), pin.priority, null, match);
        continue;
      }
      let st;
      try {
        st = await this.fs.stat(pin.path);
      } catch (e) {
        this.fail(pin.path, e);
        continue;
      }
      if (st.type === 'dir') await scanTree(pin.path, pin.priority, pin.recursive ? null : 0, () => true);
      else if (st.type === 'symlink') await this.fs.readlink(pin.path).catch((e: unknown) => this.fail(pin.path, e));
      else add(pin.path, st, pin.priority);
    }

    // Fetching: highest priority first, files whole.
    this.progressNow.state = 'fetching';
    const queue = new PQueue({ concurrency: this.concurrency });
    const order = [...items.values()].sort((a, b) => b.priority - a.priority || a.path.localeCompare(b.path));
    for (const it of order) {
      void queue.add(async () => {
        if (it.cached >= it.size) { this.progressNow.files.done++; return; }
        let got = 0;
        try {
          await this.fs.fetch(it.path, (n) => {
            const counted = Math.min(n, it.size - it.cached - got);
            got += n;
            this.progressNow.fetched += n;
            if (counted > 0) this.progressNow.bytes.done += counted;
          }, it.ref);
          // Whatever was not counted on the way (it was cached meanwhile) is in the cache now.
          const rest = it.size - it.cached - Math.min(got, it.size - it.cached);
          if (rest > 0) this.progressNow.bytes.done += rest;
          this.progressNow.files.done++;
        } catch (e) {
          this.fail(it.path, e);
        }
      });
    }
    await queue.onIdle();
  }
}

function idle(): HoardProgress {
  return {
    state: 'idle', reason: '', startedAt: null, finishedAt: null, pins: 0,
    files: { done: 0, total: 0 }, bytes: { done: 0, total: 0 }, fetched: 0, failed: [],
  };
}
