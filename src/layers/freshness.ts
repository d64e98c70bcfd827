// Freshness: how long the cache trusts an object's attributes, and what the attributes the
// backend reports do to the cached data and names (ARCHITECTURE §4).
//
// What must stay true:
// - attributes are trusted for an NFS-style time (acregmin..acregmax, acdirmin..acdirmax,
//   growing with the time since the object last changed), minus what the kernel keeps on top
//   untold (nothing where the backend's changes are reported and the kernel is told of each);
// - a new version from the backend drops clean cached data, never data of ours the backend
//   does not have yet (a dirty run, journal records not yet applied, a writer not flushed);
// - our own changes move the backend's version too, and must not look like someone else's:
//   the data or names version is then SELF, "adopt the next version the backend reports",
//   and that next version is adopted only once nothing of ours is still on its way.
import type { Attr, Node } from '../backends/types.js';
import type { CachedObject, ObjectIndex } from '../index/objects.js';
import type { Config } from '../config/schema.js';

/**
 * Marks a data or names version as "changed by us, adopt the next version the backend
 * reports": our own writes change the backend's version, which must not drop our cache.
 */
export const SELF = 'self';

/** The clock `attrAt` is measured with (ms, monotonic; never 0, which means "never checked"). */
export function now(): number {
  return performance.now() || 1;
}

/** Wall-clock time in ns, for the times attributes made here carry (mtime, ctime). */
export function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** What the rules need to know of the rest of the layer; the cache layer wires it. */
export interface FreshnessDeps {
  index: Pick<ObjectIndex, 'byHandle' | 'upsert' | 'setAttr' | 'setDataVersion' | 'setNamesVersion' | 'invalidateNames'>;
  config: Pick<Config, 'consistency'>;
  /** Seconds the kernel keeps attributes with nobody telling it of a change (KernelCache.untoldAttrS). */
  untoldKernelS(): number;
  /** The object has a dirty run not journaled yet (write-back). */
  hasDirtyRun(id: number): boolean;
  /** Some open file wrote to the object and has not flushed yet. */
  hasOpenWriters(obj: CachedObject): boolean;
  /** The journal holds records for the object the backend has not applied yet. */
  hasPendingRecords(id: number): boolean;
  /** Drops the object's cached data (chunk-fetcher.ts). */
  dropData(obj: CachedObject): void;
}

export class Freshness {
  constructor(private readonly d: FreshnessDeps) {}

  /** How long `obj`'s attributes are trusted after they were last checked (ms). */
  timeoutFor(obj: CachedObject): number {
    const c = this.d.config.consistency;
    const [lo, hi] = obj.attr.type === 'dir' ? [c.acdirmin, c.acdirmax] : [c.acregmin, c.acregmax];
    // NFS's heuristic: the longer an object has gone unchanged, the longer we trust it.
    const ageS = Math.max(0, Date.now() / 1000 - Number(obj.attr.mtimeNs / 1_000_000_000n));
    // Where nobody tells the kernel of changes, it keeps what we answer for its attribute
    // timeout on top of this: what applications see must be no older than an NFS client
    // would show (acregmin for a young file), so our own trust is shorter by that much. (A
    // file changed on the server 0.3 s after a read was served stale for 3 + 1 s: the
    // kernel's i_size came from our cached attributes at the LOOKUP just before open().)
    return Math.max(0, Math.min(hi, Math.max(lo, ageS / 10)) * 1000 - this.d.untoldKernelS() * 1000);
  }

  isFresh(obj: CachedObject): boolean {
    return obj.attrAt !== 0 && now() - obj.attrAt < this.timeoutFor(obj);
  }

  /**
   * Records attributes the backend reported and drops what they make stale. An object with
   * changes of ours the backend does not have yet (a dirty run, journal records not yet
   * applied, a writer that has not flushed) keeps its cached data and its local size and
   * mtime: our own writes are never an outside change, and the backend's size is behind.
   */
  applyAttr(obj: CachedObject, attr: Attr): void {
    const index = this.d.index;
    const v = attr.version;
    const unsent = attr.type === 'file' && this.hasUnsentChanges(obj);
    if (obj.dataVersion !== null && obj.dataVersion !== v) {
      // Ours (SELF) is adopted once nothing of ours is still on its way: the backend's
      // version before then does not include all of our bytes.
      if (obj.dataVersion === SELF) { if (!unsent) index.setDataVersion(obj, v); }
      else if (!unsent && !this.d.hasOpenWriters(obj)) this.d.dropData(obj);
    }
    if (attr.type === 'dir') {
      if (obj.namesVersion === SELF) index.setNamesVersion(obj, v);
      // Names learnt one lookup at a time carry no version of their own: the directory's
      // version moving means any of them may now be wrong (renamed or replaced elsewhere).
      else if (obj.namesVersion !== null ? obj.namesVersion !== v : obj.attr.version !== v && obj.names !== null && obj.names.size > 0) {
        index.invalidateNames(obj);
      }
    }
    if (unsent) attr = { ...attr, size: obj.attr.size };
    index.setAttr(obj, attr, now());
  }

  /** Data or size changes of ours that the backend has not applied yet. */
  hasUnsentChanges(obj: CachedObject): boolean {
    return this.d.hasDirtyRun(obj.id) || this.d.hasOpenWriters(obj) || this.d.hasPendingRecords(obj.id);
  }

  /** The cached object for a node the backend reported: known ones get the new attributes. */
  adopt(node: Node, t = now()): CachedObject {
    const known = this.d.index.byHandle(node.fh);
    if (!known) return this.d.index.upsert(node, t);
    this.applyAttr(known, node.attr);
    return known;
  }

  /**
   * Our write reached the backend and it told us the version it made: later records of this
   * object are based on it. Only the version moves (the cache's size and times are ahead of
   * this one write while more are on their way); the cached data is ours (SELF) already.
   */
  ownWriteVersion(obj: CachedObject, attr: Attr): void {
    if (obj.dataVersion !== null && obj.dataVersion !== SELF) return; // dropped or re-fetched meanwhile
    obj.attr = { ...obj.attr, version: attr.version };
  }
}
