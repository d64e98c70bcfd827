// Watches the directories of a local backend for changes made by others, with one inotify
// watch per directory (fs.watch) and nothing else: no stat calls, no rescans.
//
// Why not chokidar (which the design card named): measured here, chokidar re-lists and
// lstat()s every entry of a directory each time anything in it changes, and watches every
// file on its own. Under our own writes that cost 30% of write throughput and made
// `tar x` of /usr/include twice as slow (61 s against 31 s without a watcher), even when
// configured to watch directories only. We only need "something changed at this name in
// this directory": the cache revalidates lazily, and open() revalidates anyway.
import { watch, type FSWatcher } from 'node:fs';
import { log } from '../../core/log.js';

export class DirWatcher {
  private readonly watchers = new Map<string, FSWatcher>();
  private warnedLimit = false;

  constructor(private readonly onEvent: (dirAbs: string, name: string) => void) {}

  /** Starts watching `dirAbs` (no-op if already watched or gone). */
  add(dirAbs: string): void {
    if (this.watchers.has(dirAbs)) return;
    let w: FSWatcher;
    try {
      w = watch(dirAbs, { persistent: false }, (_event, filename) => {
        if (filename) this.onEvent(dirAbs, filename.toString());
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code === 'ENOSPC' || code === 'EMFILE') && !this.warnedLimit) {
        this.warnedLimit = true;
        log.warn(`cannot watch more directories (${code}: inotify limit); outside changes there are seen at the next open()`);
      }
      return;
    }
    w.on('error', () => this.remove(dirAbs));
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

  get size(): number { return this.watchers.size; }

  close(): void {
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }
}
