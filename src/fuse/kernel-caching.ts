// How long the kernel may keep the names and attributes the mount gives it (the entry,
// attribute and negative-lookup timeouts of each reply), and whether it may keep directory
// listings (FOPEN_CACHE_DIR). Read at every reply: the answer can change while mounted.
//
// "auto" (the default of each timeout): long while the backend reports every change made to
// what the kernel holds (a local disk watched with inotify; see Backend.notifiesChanges).
// The cache then tells the kernel of each change (outside-changes.ts), so the kernel need
// not ask again: `ls -lR` and `stat` of a tree seen before make no request at all. Short
// otherwise (NFS, a polled directory, a watch limit reached): with nobody to tell it, the
// kernel's copies must expire about as soon as an NFS client's attribute cache would.
//
// What must stay true:
// - a long time is given only while changes are reported: an object the kernel holds with no
//   notice to come would be shown stale for that long;
// - the kernel keeps directory listings only where it also keeps the names' attributes for
//   long: a listing from its copy carries no attributes, and with short timeouts every name
//   would cost a LOOKUP (measured: a warm `ls -lR` of 5,000 files 4x slower);
// - `untoldAttrS` is what the cache's own trust in attributes must leave room for
//   (freshness.ts): the time the kernel keeps attributes with nobody telling it of a change.
import type { Config } from '../config/schema.js';

/** A timeout while the backend's changes are reported: the kernel is told, so it need not ask. */
export const TOLD_TIMEOUT_S = 60;
/** A timeout while they are not: the kernel's copies expire about as fast as NFS's would. */
export const UNTOLD_TIMEOUT_S = 1;

export interface KernelCaching {
  readonly entry: number;
  readonly attr: number;
  readonly negative: number;
  /** Whether OPENDIR may answer FOPEN_CACHE_DIR. */
  readonly listings: boolean;
  /** Seconds the kernel may keep attributes with nobody telling it of a change (0: it is told). */
  readonly untoldAttrS: number;
  /** Whether the backend's changes are reported now (and the kernel told of each). */
  readonly told: boolean;
}

type Fuse = Pick<Config['fuse'], 'entryTimeout' | 'attrTimeout' | 'negativeTimeout' | 'autoCache'>;

/** The kernel caching of a mount; `told()`: the backend reports every change now. */
export function kernelCaching(f: Fuse, told: () => boolean): KernelCaching {
  const pick = (v: number | 'auto'): number => (v !== 'auto' ? v : told() ? TOLD_TIMEOUT_S : UNTOLD_TIMEOUT_S);
  return {
    get entry() { return pick(f.entryTimeout); },
    get attr() { return pick(f.attrTimeout); },
    get negative() { return pick(f.negativeTimeout); },
    get listings() { return f.autoCache && told() && pick(f.entryTimeout) >= TOLD_TIMEOUT_S && pick(f.attrTimeout) >= TOLD_TIMEOUT_S; },
    get untoldAttrS() { return told() ? 0 : pick(f.attrTimeout); },
    get told() { return told(); },
  };
}

/** The control directory's: nobody tells the kernel of its changes (conflicts come and go). */
export function untoldCaching(f: Fuse): KernelCaching {
  return kernelCaching(f, () => false);
}
