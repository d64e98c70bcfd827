// Watches the directories of a local backend for changes made by others. Two ways:
//
// - InotifyDirWatcher (local disks): one inotify watch per directory (fs.watch) and nothing
//   else: no stat calls, no rescans. chokidar is not used for this: measured here, it
//   re-lists and lstat()s every entry of a directory each time anything in it changes, and
//   watches every file on its own. Under our own writes that cost 30% of write throughput
//   and made `tar x` of /usr/include twice as slow (61 s against 31 s), even when
//   configured to watch directories only.
// - PollingDirWatcher (network file systems, where inotify does not see other clients'
//   changes): chokidar polling the directories' attributes, so created, removed and renamed
//   entries are noticed within the poll interval; changed file contents are seen at the
//   next open() (close-to-open), as with NFS itself.
//
// Either way we only report "something changed at this name in this directory" (or "in
// this directory"); the cache revalidates lazily.
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { log } from '../../core/log.js';
import { fsName, nameFromBytes } from '../../core/names.js';

/** What the backend needs from a watcher. `name` is '' when the directory itself changed. */
export interface DirWatching {
  /**
   * Every directory asked for is watched, and a change to anything in one (names, a file's
   * attributes or contents) is reported promptly. False for polling (it sees only names),
   * and for inotify once a directory could not be watched (a limit) or lost its watch.
   */
  readonly complete: boolean;
  add(dirAbs: string): void;
  remove(dirAbs: string): void;
  rename(from: string, to: string): void;
  close(): void;
}

export type DirEvent = (dirAbs: string, name: string) => void;

export class InotifyDirWatcher implements DirWatching {
  private readonly watchers = new Map<string, FSWatcher>();
  private warnedLimit = false;
  private missed = false;

  constructor(private readonly onEvent: DirEvent) {}

  get complete(): boolean { return !this.missed; }

  /** Starts watching `dirAbs` (no-op if already watched or gone). */
  add(dirAbs: string): void {
    if (this.watchers.has(dirAbs)) return;
    let w: FSWatcher;
    try {
      // Names as bytes, made exact strings (core/names.ts): a name that is not UTF-8 would
      // otherwise be reported as another name.
      w = watch(fsName(dirAbs), { persistent: false, encoding: 'buffer' }, (_event, filename) => {
        if (filename) this.onEvent(dirAbs, nameFromBytes(filename));
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') this.missed = true;
      if ((code === 'ENOSPC' || code === 'EMFILE') && !this.warnedLimit) {
        this.warnedLimit = true;
        log.warn(`cannot watch more directories (${code}: inotify limit); outside changes there are seen at the next open()`);
      }
      return;
    }
    w.on('error', () => { this.missed = true; this.remove(dirAbs); });
    this.watchers.set(dirAbs, w);
  }

  remove(dirAbs: string): void {
    const w = this.watchers.get(dirAbs);
    if (!w) return;
    this.watchers.delete(dirAbs);
    w.close();
  }

  /** Moves watches after a rename of `from` to `to` (and everything below it). */
  rename(from: string, to: string): void {
    for (const d of [...this.watchers.keys()]) {
      if (d === from || d.startsWith(from + '/')) {
        this.remove(d);
        this.add(to + d.slice(from.length));
      }
    }
  }

  close(): void {
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }
}

/** chokidar in polling mode, directories only (see the top of this file). */
export class PollingDirWatcher implements DirWatching {
  private readonly dirs = new Set<string>();

  /** It sees names come and go, not a file's contents change in place. */
  readonly complete = false;

  private constructor(private readonly w: import('chokidar').FSWatcher) {}

  static async start(onEvent: DirEvent, intervalMs: number): Promise<PollingDirWatcher> {
    const { watch } = await import('chokidar');
    const w = watch([], {
      usePolling: true,
      interval: intervalMs,
      binaryInterval: intervalMs,
      ignoreInitial: true,
      persistent: false,
      depth: 0,
      // Files are not polled one by one (a stat each per interval): a directory's own
      // attributes change when entries come and go, and that is what we poll.
      ignored: (_p: string, stats?: { isDirectory(): boolean }) => stats !== undefined && !stats.isDirectory(),
    });
    w.on('raw', (_event: string, p: string) => { if (typeof p === 'string' && path.isAbsolute(p)) onEvent(p, ''); });
    w.on('addDir', (p: string) => onEvent(path.dirname(p), path.basename(p)));
    w.on('unlinkDir', (p: string) => onEvent(path.dirname(p), path.basename(p)));
    w.on('error', (e: unknown) => log.warn('backend watcher (polling)', e));
    return new PollingDirWatcher(w);
  }

  add(dirAbs: string): void {
    if (this.dirs.has(dirAbs)) return;
    this.dirs.add(dirAbs);
    this.w.add(dirAbs);
  }

  remove(dirAbs: string): void {
    if (!this.dirs.delete(dirAbs)) return;
    this.w.unwatch(dirAbs);
  }

  rename(from: string, to: string): void {
    for (const d of [...this.dirs]) {
      if (d === from || d.startsWith(from + '/')) { this.remove(d); this.add(to + d.slice(from.length)); }
    }
  }

  close(): void { void this.w.close(); }
}
