// The connectivity state machine of a mount (ARCHITECTURE §6): how it goes disconnected,
// looks for the backend, replays the journal and comes back. connectivity.ts holds the
// state itself; this file moves it.
//
// connected: backend calls go out; a mutation waits for its own record.
// disconnected: no backend call goes out (EHOSTUNREACH at once); the cache is served as it
//   is; mutations are journaled and return; a probe looks for the backend.
// reintegrating: the journal is replayed; calls go out, but mutations still only wait for
//   the journal (the backlog may take longer than FUSE waits).
// A backend call that fails with a connection error (or misses its deadline) switches to
// disconnected (gated-backend.ts), within backendTimeoutMs (at most 10 s).
//
// What must stay true:
// - going disconnected pauses the replayer, spills in-memory write-behind bytes to the cache
//   files (invariant 1), and wakes every wait that must not outlast the connection;
// - `cachefs offline` stays offline: no probe reconnects until `cachefs online`;
// - after a replay nothing cached is trusted until revalidated, and cached directories are
//   listed again (directory diffing) so remote deletions show;
// - a reintegration that fails is never left in a promise: the mount goes disconnected and
//   tries again later.
import { FsError } from '../core/errors.js';
import { withDeadline } from '../core/deadline.js';
import { log } from '../core/log.js';
import type { Backend, BackendCall, Node } from '../backends/types.js';
import type { CachedObject, ObjectIndex } from '../index/objects.js';
import type { Replayer } from '../journal/replayer.js';
import { optimizeJournal } from '../journal/optimize.js';
import type { Config } from '../config/schema.js';
import type { ConflictStore } from '../conflict/store.js';
import type { OfflineBases } from '../conflict/bases.js';
import type { AppliedOutcome } from './backend-target.js';
import type { Connectivity } from './connectivity.js';
import { now } from './freshness.js';

/** While disconnected, how often the backend is probed. */
const PROBE_INTERVAL_MS = 2000;
/** Directories listed again after a reconnection (the most recently used). */
const DIFF_MAX_DIRS = 2000;

/** What the state machine needs; the cache layer wires it. */
export interface ReconnectDeps {
  connectivity: Pick<Connectivity, 'state' | 'set' | 'force'>;
  replayer: Pick<Replayer<AppliedOutcome>, 'pause' | 'resume' | 'drained' | 'optimize' | 'pendingCount' | 'isPaused'>;
  index: Pick<ObjectIndex, 'get' | 'loaded' | 'clearReplayVersions' | 'namesOf' | 'batch' | 'replaceListing'>;
  /** Asked directly by the probe (bypassing the gate), and through `call` otherwise. */
  backend: Pick<Backend, 'getattr' | 'readdir'>;
  /** The gated backend call (gated-backend.ts). */
  call: BackendCall;
  config: Pick<Config, 'reintegration' | 'backendTimeoutMs'>;
  rootId(): number;
  /** What objects changed offline were before (null without a conflict store). */
  bases: Pick<OfflineBases, 'clear'> | null;
  conflicts: Pick<ConflictStore, 'nextEpoch'> | undefined;
  /** Revalidates an object's attributes with the backend (the layer's revalidate). */
  revalidate(obj: CachedObject, force: boolean): Promise<void>;
  /** The cached object for a node the backend reported (freshness.ts). */
  adopt(node: Node, t: number): CachedObject;
  /** The connection went: in-memory write-behind bytes go to cache files (write-back.ts). */
  spillWriteBehind(): void;
  /** The replay is over and the mount connected; `renamed`: names diffing found changed, by directory. */
  replayed?(renamed: Map<number, string[]>): void;
}

export class Reconnector {
  private manualOffline = false;
  private probeTimer: NodeJS.Timeout | null = null;
  private probing = false;
  /** Waits of untilOffline() still pending: each leaves as soon as its promise settles. */
  private readonly offlineWaiters = new Set<() => void>();
  private reintegration: Promise<void> | null = null;
  /** Between resuming the replayer and its queue running dry, during reintegration. */
  private replayingNow = false;
  /** Directories a reconciliation touched: listed again once the replay is over. */
  private readonly relistDirs = new Set<number>();

  constructor(private readonly d: ReconnectDeps) {}

  /**
   * The journal is being replayed: the backend does not show all our changes yet, so what
   * the cache holds is the answer (reintegration revalidates after the replay).
   */
  get replaying(): boolean { return this.replayingNow; }

  /** A reconciliation touched directory `id`: list it again after the replay. */
  relist(id: number): void { this.relistDirs.add(id); }

  /**
   * `p`'s outcome, or `value` once the mount stops being connected, whichever comes first
   * (for waits that must not outlast the connection). The wait for the disconnection is
   * dropped as soon as `p` settles: a mount connected for days answers millions of changes,
   * and Promise.race against one promise settled only at the next disconnection would keep
   * a reaction, and the outcome it carries, for every one of them.
   */
  untilOffline<T, U>(p: Promise<T>, value: U): Promise<T | U> {
    if (this.d.connectivity.state !== 'connected') return Promise.race([p, Promise.resolve(value)]);
    return new Promise<T | U>((resolve, reject) => {
      const wake = (): void => resolve(value);
      this.offlineWaiters.add(wake);
      p.then((v) => { this.offlineWaiters.delete(wake); resolve(v); },
        (e: unknown) => { this.offlineWaiters.delete(wake); reject(e); });
    });
  }

  /** The backend is unreachable (a call failed with a connection error): go disconnected. */
  lostConnection(reason: string): void {
    if (this.d.connectivity.state === 'disconnected') return;
    log.warn(`working disconnected: ${reason}`);
    this.d.connectivity.set('disconnected', reason);
    this.d.replayer.pause();
    this.d.spillWriteBehind();
    const w = [...this.offlineWaiters];
    this.offlineWaiters.clear();
    for (const f of w) f();
    if (!this.manualOffline) this.startProbe();
  }

  private startProbe(): void {
    if (this.probeTimer) return;
    this.probeTimer = setInterval(() => { void this.probe().catch(() => undefined); }, PROBE_INTERVAL_MS);
    this.probeTimer.unref();
  }

  private stopProbe(): void {
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.probeTimer = null;
  }

  /** Asks the backend for the root's attributes (bypassing the disconnected gate). */
  private async probe(): Promise<boolean> {
    if (this.probing || this.d.connectivity.state !== 'disconnected' || this.manualOffline) return false;
    this.probing = true;
    try {
      const root = this.d.index.get(this.d.rootId());
      if (!root) return false;
      await withDeadline(this.d.backend.getattr(root.fh), Math.min(3000, this.d.config.backendTimeoutMs), 'probe');
    } catch {
      return false;
    } finally {
      this.probing = false;
    }
    void this.reintegrate('the backend answers again');
    return true;
  }

  /** Replays the journal, then trusts nothing cached until it is revalidated. */
  reintegrate(reason: string): Promise<void> {
    if (this.reintegration) return this.reintegration;
    const { connectivity, replayer, index } = this.d;
    this.stopProbe();
    connectivity.set('reintegrating', reason);
    log.info(`reintegrating: ${reason}; ${replayer.pendingCount} journal records to replay`);
    this.reintegration = (async () => {
      if (this.d.config.reintegration.optimize) {
        const before = replayer.pendingCount;
        const dropped = replayer.optimize(optimizeJournal);
        if (dropped > 0) log.info(`journal optimized before replay: ${before} records, ${dropped} no longer needed`);
      }
      this.replayingNow = true;
      replayer.resume();
      await replayer.drained().finally(() => { this.replayingNow = false; });
      if (replayer.isPaused || connectivity.state !== 'reintegrating') return; // lost it again
      index.clearReplayVersions();
      // Every offline change is on the backend now, or parked with a conflict (which keeps
      // its own copies): the bases are not needed any more, and the next replay is a new epoch.
      await this.d.bases?.clear();
      this.d.conflicts?.nextEpoch();
      for (const o of index.loaded()) o.attrAt = 0;
      const renamed = await this.diffDirectories();
      if (connectivity.state !== 'reintegrating') return;
      connectivity.set('connected', 'journal replayed');
      log.info('connected: journal replayed');
      this.d.replayed?.(renamed);
    })().catch((e: unknown) => {
      // Never left in a promise (nor the mount left 'reintegrating'): say why, try again later.
      log.warn('the reintegration could not finish', e);
      this.lostConnection(`the reintegration could not finish (${(e as Error)?.message ?? e}); it is tried again`);
    }).finally(() => { this.reintegration = null; });
    return this.reintegration;
  }

  /**
   * Directory diffing after a reconnection: every fully cached directory is listed again, so
   * what the server deleted or added meanwhile shows at once, and the directory stays fully
   * cached (the next disconnection can create names in it again).
   */
  private async diffDirectories(): Promise<Map<number, string[]>> {
    const renamed = new Map<number, string[]>();
    const { index } = this.d;
    const forced = new Set(this.relistDirs);
    this.relistDirs.clear();
    const dirs = [...index.loaded()].filter((o) => o.attr.type === 'dir' && (o.complete || forced.has(o.id)))
      .sort((a, b) => b.lastAccess - a.lastAccess).slice(0, DIFF_MAX_DIRS);
    for (const id of forced) {
      const o = index.get(id);
      if (o && o.attr.type === 'dir' && !dirs.includes(o)) dirs.push(o);
    }
    let gone = 0;
    await Promise.all(dirs.map(async (dir) => {
      try {
        const seen = dir.attr.version;
        await this.d.revalidate(dir, true);
        // Unchanged: its names are current. Changed, even by our own replayed records (which
        // the names already show), it is listed: the server may have changed it too. A
        // directory a conflict touched is listed anyway (its names may show our variant).
        if (dir.complete && dir.attr.version === seen && !forced.has(dir.id)) return;
        const before = new Map(index.namesOf(dir));
        const listed = await this.d.call('readdir', () => this.d.backend.readdir(dir.fh));
        index.batch(() => {
          const t = now();
          index.replaceListing(dir, listed.map((e) => ({ name: e.name, id: this.d.adopt(e, t).id })), dir.attr.version);
        });
        const after = index.namesOf(dir);
        const moved: string[] = [];
        for (const [n, id] of before) {
          if (!after.has(n)) gone++;
          if (after.get(n) !== id) moved.push(n);
        }
        // A name new to the listing may be one the kernel was told is absent (a lookup
        // while disconnected; negativeTimeout): it is told again.
        for (const n of after.keys()) if (!before.has(n)) moved.push(n);
        if (moved.length) renamed.set(dir.id, moved);
      } catch (e) {
        log.debug(`directory diffing of object ${dir.id} failed`, e);
      }
    }));
    if (gone > 0) log.info(`directory diffing: ${gone} name(s) deleted on the backend meanwhile`);
    return renamed;
  }

  /** Mounted while the backend was away: start disconnected, probing for it. */
  startDisconnected(reason: string): void {
    this.lostConnection(reason);
  }

  /** `cachefs offline`: stop using the backend until `online`. */
  goOffline(): void {
    this.manualOffline = true;
    this.stopProbe();
    this.lostConnection('cachefs offline');
    this.d.connectivity.force('disconnected', 'cachefs offline');
  }

  /** `cachefs online`: probe now; replay and reconnect if the backend answers. */
  async goOnline(): Promise<void> {
    this.manualOffline = false;
    if (this.d.connectivity.state === 'connected') return;
    if (this.d.connectivity.state === 'reintegrating') { await this.reintegration; return; }
    const root = this.d.index.get(this.d.rootId());
    try {
      await withDeadline(this.d.backend.getattr(root!.fh), Math.min(3000, this.d.config.backendTimeoutMs), 'probe');
    } catch (e) {
      this.startProbe();
      throw new FsError('EHOSTUNREACH', `the backend does not answer (${(e as Error).message}); cachefs keeps trying`);
    }
    await this.reintegrate('cachefs online');
  }
}
