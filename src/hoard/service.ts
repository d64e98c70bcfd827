// Pins and hoard walks as the mount process serves them: the control ops `pin`, `unpin`,
// `pins` and `hoard`, and the walks that start by themselves (at mount and after every
// reconnection, when there are pins).
import { UserError, isFsError } from '../core/errors.js';
import { log } from '../core/log.js';
import type { Db } from '../index/db.js';
import type { ConnSnapshot } from '../layers/connectivity.js';
import { PinStore, isGlob, normalizePinPath, type Pin } from './pins.js';
import { HoardWalker, type HoardFs, type HoardProgress } from './walk.js';

/** What the service needs of the mount. */
export interface HoardMount {
  hoardFs(): HoardFs;
  connectivity: { state: string; onChange(fn: (s: ConnSnapshot) => void): void };
}

export class HoardService {
  readonly pins: PinStore;
  readonly walker: HoardWalker;

  constructor(db: Db, private readonly mount: HoardMount, opts: { concurrency: number; afterReconnect: boolean }) {
    this.pins = new PinStore(db);
    this.walker = new HoardWalker(mount.hoardFs(), this.pins, opts.concurrency);
    if (opts.afterReconnect) {
      mount.connectivity.onChange((s) => {
        if (s.state === 'connected' && this.pins.list().length > 0) void this.walker.start(`reconnected (${s.reason})`);
      });
    }
  }

  /** At mount: the pinned set is brought up to date in the background. */
  startup(): void {
    if (this.pins.list().length > 0 && this.mount.connectivity.state === 'connected') void this.walker.start('mounted');
  }

  /**
   * Pins `paths`. `recursive` applies to directories (and globs) only: a file, symlink or other
   * non-directory is pinned as itself, not recursively (as `chmod -R` treats a file), so
   * `pin FILE -r` does not store or report a recursion it does not have. A path whose type
   * cannot be known now (disconnected, never cached) keeps the flag as given.
   */
  async pin(paths: string[], recursive: boolean, priority: number): Promise<{ pins: Pin[]; notFound: string[] }> {
    const fs = this.mount.hoardFs();
    const added: Pin[] = [];
    const notFound: string[] = [];
    for (const raw of paths) {
      const p = normalizePinPath(raw);
      let tree = recursive;
      if (!isGlob(p)) {
        try {
          if ((await fs.stat(p)).type !== 'dir') tree = false;
        } catch (e) {
          // Not there: a clear error. Unreachable (disconnected, never cached): the pin is
          // kept, and the walk after reconnecting fetches it.
          if (isFsError(e, 'ENOENT') || isFsError(e, 'ENOTDIR')) { notFound.push(p); continue; }
          if (!isFsError(e)) throw e;
        }
      }
      added.push(this.pins.add({ path: p, recursive: tree, priority }));
    }
    if (added.length === 0 && notFound.length > 0) {
      throw new UserError(`nothing to pin: ${notFound.join(', ')} ${notFound.length === 1 ? 'does' : 'do'} not exist in the mount`, {
        hint: 'pin paths that exist, or a glob (quoted) that will match',
      });
    }
    log.info(`pinned ${added.map((x) => `${x.path}${x.recursive ? ' (recursive)' : ''} priority ${x.priority}`).join(', ')}`);
    return { pins: added, notFound };
  }

  unpin(paths: string[], recursive: boolean): { removed: number } {
    let removed = 0;
    const none: string[] = [];
    for (const p of paths) {
      const n = this.pins.remove(p, recursive);
      if (n === 0) none.push(normalizePinPath(p));
      removed += n;
    }
    if (removed === 0) {
      throw new UserError(`no pin on ${none.join(', ')}`, { hint: `cachefs pins <mountpoint> lists them${recursive ? '' : '; -r removes the pins under a directory too'}` });
    }
    return { removed };
  }

  list(): { pins: Pin[]; hoard: HoardProgress & { failedCount: number } } {
    return { pins: this.pins.list(), hoard: this.walker.progress() };
  }

  /** `cachefs hoard`: starts a walk (or follows the one under way) and answers at once. */
  hoard(start: boolean): HoardProgress & { failedCount: number } {
    if (start) {
      if (this.mount.connectivity.state !== 'connected') {
        throw new UserError(`the mount is ${this.mount.connectivity.state}: nothing can be fetched now`, {
          hint: 'the walk runs by itself after reconnecting (cachefs online)',
        });
      }
      if (this.pins.list().length === 0) throw new UserError('nothing is pinned', { hint: 'cachefs pin <path>... first' });
      void this.walker.start('cachefs hoard').catch((e: unknown) => log.warn('hoard walk failed', e));
    }
    return this.walker.progress();
  }
}

