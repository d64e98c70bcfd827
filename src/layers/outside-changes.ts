// Outside changes, and what the kernel is told of changes it did not ask for. The backend's
// watcher reports changes made behind our back (noticeOutsideChange); a replay
// (afterReplay) and a conflict resolution (tellKernelAbout) change what the mount shows
// without a kernel request too. The kernel caches names and attributes for as long as the
// mount's timeouts say, so what it holds of those objects is rechecked, in a batch soon
// after, and dropped where it is out of date.
//
// What must stay true:
// - noticing a change is cheap (the watcher also reports our own writes): it only makes the
//   objects revalidate at their next use, and queues those the kernel holds for a recheck;
// - the kernel is told to drop only what moved: an object whose version is not the one it
//   was given, a name that leads elsewhere now (our own changes lead where it was told);
// - nothing is rechecked while not connected: the cache is the answer then.
import { isFsError } from '../core/errors.js';
import { log } from '../core/log.js';
import type { OutsideChange } from '../backends/types.js';
import type { CachedObject, ObjectIndex } from '../index/objects.js';

/**
 * What the layer tells the kernel when it learns that the backend changed behind the
 * kernel's caches (the FUSE server implements it; null: nobody to tell).
 */
export interface KernelCache {
  /**
   * Object `id` is at `version` on the backend now. The kernel is told to drop its copies
   * (attributes, pages) when what it was given is of another version; true if it was.
   */
  objectAt(id: number, version: string): boolean;
  /** `name` in directory `dirId` may lead elsewhere now (or nowhere). */
  invalidateEntry(dirId: number, name: string): void;
  /** Whether the kernel holds object `id` (a node it was given and has not forgotten). */
  holds(id: number): boolean;
  /**
   * Seconds the kernel may keep attributes it was given with nobody telling it of a change
   * (0 while the backend's changes are reported and it is told of each).
   */
  untoldAttrS(): number;
}

/** What the rechecks need of the rest of the layer; the cache layer wires it. */
export interface OutsideChangeDeps {
  index: Pick<ObjectIndex, 'byHandle' | 'get' | 'namesOf' | 'loaded' | 'invalidateNames' | 'takeRemovedHere'>;
  /** Who to tell (the layer's `kernel`, set by the daemon; null: nobody). */
  kernel(): KernelCache | null;
  connected(): boolean;
  rootId(): number;
  /** Revalidates an object's attributes with the backend (the layer's revalidate). */
  revalidate(obj: CachedObject, force: boolean): Promise<void>;
  /** Where a name in a directory leads now (the layer's lookup). */
  lookup(dir: CachedObject, name: string): Promise<CachedObject>;
}

export class OutsideChanges {
  constructor(private readonly d: OutsideChangeDeps) {}

  /**
   * The backend told us (its watcher) that something changed behind our back. Cheap on purpose
   * (it also fires for our own writes): it only makes the directory and the named object
   * revalidate at their next use. A created, removed or renamed entry changes the
   * directory's version, which drops its name cache then; a modified file changes its own.
   */
  noticeOutsideChange(change: OutsideChange): void {
    const dir = change.dir ? this.d.index.byHandle(change.dir) : undefined;
    if (dir) {
      dir.attrAt = 0;
      // A name this directory's complete listing does not have was made by someone else (our
      // own changes leave every name they make in the listing, and the index remembers for
      // a while the names they removed). Its version is not enough to tell: a change of ours
      // adopts the directory's next version when the backend reports the version just
      // before it (mutations' afterDirChange), and a change made from outside in between
      // would then be taken for ours.
      if (change.name !== undefined && dir.complete && this.d.connected() && !this.d.index.namesOf(dir).has(change.name)
        && !this.d.index.takeRemovedHere(dir, change.name)) {
        this.d.index.invalidateNames(dir);
      }
      const child = change.name !== undefined ? dir.names?.get(change.name) : undefined;
      if (child !== undefined && child !== null) {
        const o = this.d.index.get(child);
        if (o) o.attrAt = 0;
      }
      this.tellKernelLater(dir, change.name);
      if (child !== undefined && child !== null) {
        const o = this.d.index.get(child);
        if (o) this.tellKernelLater(o);
      }
    }
    if (change.fh) {
      const o = this.d.index.byHandle(change.fh);
      if (o) { o.attrAt = 0; this.tellKernelLater(o); }
    }
  }

  /** Objects (and names in them) the kernel may hold stale copies of, checked together soon. */
  private readonly toRecheck = new Map<number, Set<string>>();
  private recheckTimer: NodeJS.Timeout | null = null;

  /**
   * After a replay: nothing cached is trusted until revalidated, and what the kernel holds
   * (for as long as its timeouts say) is checked the same way, so the server's changes made
   * meanwhile, and the conflicts the replay parked, show at once. `renamed`: names directory
   * diffing found gone, leading elsewhere, or new (the kernel may hold a negative answer for those).
   */
  afterReplay(renamed: Map<number, string[]>): void {
    const k = this.d.kernel();
    if (!k) return;
    for (const [dir, names] of renamed) for (const n of names) k.invalidateEntry(dir, n);
    for (const o of this.d.index.loaded()) this.tellKernelLater(o);
  }

  /**
   * The kernel caches names and attributes for as long as the mount's timeouts say. When a
   * watcher reports a change to something the kernel holds, the object is revalidated (a
   * batch, soon after) and, if the version the kernel was given is not the backend's now,
   * the kernel is told to drop its copies (and the names reported in a directory).
   */
  private tellKernelLater(o: CachedObject, name?: string): void {
    const k = this.d.kernel();
    if (!k || !k.holds(o.id)) return;
    let names = this.toRecheck.get(o.id);
    if (!names) this.toRecheck.set(o.id, (names = new Set()));
    if (name !== undefined) names.add(name);
    this.recheckTimer ??= setTimeout(() => { this.recheckTimer = null; void this.recheck(); }, 50);
  }

  private async recheck(): Promise<void> {
    const batch = [...this.toRecheck];
    this.toRecheck.clear();
    const k = this.d.kernel();
    if (!k || !this.d.connected()) return;
    await Promise.all(batch.map(async ([id, names]) => {
      const o = this.d.index.get(id);
      if (!o) return;
      // What each reported name led to, as the kernel was last told (undefined: unknown).
      const before = new Map<string, number | null | undefined>();
      if (o.attr.type === 'dir') for (const n of names) before.set(n, this.d.index.namesOf(o).get(n));
      try {
        await this.d.revalidate(o, true);
      } catch (e) {
        if (!isFsError(e, 'ENOENT')) { log.debug(`revalidating object ${id} after an outside change failed`, e); return; }
      }
      const gone = this.d.index.get(id) !== o;
      const told = k.objectAt(id, gone ? '' : o.attr.version);
      // A name is invalidated when it leads elsewhere now (our own creates and renames,
      // reported too, lead where the kernel was told already).
      const moved: string[] = [];
      for (const [n, was] of before) {
        if (gone) { moved.push(n); continue; }
        const now = await this.d.lookup(o, n).then((x) => x.id, (e: unknown) => (isFsError(e, 'ENOENT') ? null : undefined));
        if (was === undefined || now === undefined || now !== was) moved.push(n);
      }
      for (const n of moved) k.invalidateEntry(id, n);
      log.debug(`outside change of object ${id}${gone ? ' (gone)' : ''}: ${told ? 'attributes invalidated' : 'attributes current'}${moved.length ? `; names invalidated: ${moved.join(', ')}` : ''}`);
    }));
  }

  /**
   * The mount changed `p` by itself (a resolution), not at the kernel's request: the kernel
   * drops the name and what it holds of the object (attributes, pages). From the cache
   * alone: a name never looked up here is in no cache of the kernel's either.
   */
  async tellKernelAbout(p: string): Promise<void> {
    const k = this.d.kernel();
    if (!k) return;
    let dir = this.d.index.get(this.d.rootId());
    const parts = p.split('/').filter(Boolean);
    const name = parts.pop();
    for (const part of parts) {
      const id = dir ? this.d.index.namesOf(dir).get(part) : undefined;
      dir = typeof id === 'number' ? this.d.index.get(id) : undefined;
    }
    if (!dir || name === undefined) return;
    k.invalidateEntry(dir.id, name);
    const id = this.d.index.namesOf(dir).get(name);
    if (typeof id === 'number') k.objectAt(id, '');
  }
}
