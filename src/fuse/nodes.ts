// The kernel's node ids and what they stand for. A node id is the cache's object id (stable,
// never reused), so every name of a hard link is one kernel inode: they agree on nlink and
// ctime at once. FUSE fixes the root's node id at 1, so the root object's id and 1 trade
// places. Control-directory nodes (paths below /.cachefs, never objects) live above 2^48.
//
// File handles (name_to_handle_at, an NFS re-export; EXPORT_SUPPORT): the kernel encodes the
// node id and the generation given with it, and asks LOOKUP(node, ".") for a node it no
// longer holds. Object ids are never reused within one cache, but a new cache starts them
// again: the generation is the cache's own (a random number kept in its index), so a handle
// from another cache is stale, never another file.
//
// Lookup counts follow the protocol: each reply that gives the kernel a node (LOOKUP, the
// creates, LINK, READDIRPLUS entries) adds one, FORGET takes n away. A node the kernel does
// not hold needs no invalidation; a control node it forgot is dropped from the table.

/** What a node id stands for. */
export type NodeRef = { kind: 'obj'; id: number } | { kind: 'ctl'; path: string };

const CTL_BASE = 1n << 48n;

/**
 * A node id as the tables' key: a number (exact: node ids stay below 2^53), where a bigint
 * key was a heap object of its own in each table, for each node the kernel holds (a `find`
 * over 100,000 files leaves the kernel holding 100,000).
 */
const key = (node: bigint): number => Number(node);

export class NodeTable {
  private readonly counts = new Map<number, number>();
  private readonly ctl = new Map<number, string>();
  /** The object version of the attributes each node was last given with (see objectAt). */
  private readonly versions = new Map<number, string>();
  /**
   * What each node's data (a file's mtime and size, a directory's version) was at its last
   * open (auto_cache, FOPEN_KEEP_CACHE). Kept only while the kernel holds the node: the pages
   * it cached go with the inode, and a memo per object ever opened would grow for as long as
   * the mount lives.
   */
  private readonly openedAs = new Map<number, string>();

  /** `generation`: the cache's, given with every node but the root (see generationOf). */
  constructor(private readonly rootId: number, private readonly generation = 0) {}

  /** The generation an entry gives with `node`: the kernel fixes the root's at 0. */
  generationOf(node: bigint): number {
    return node === 1n ? 0 : this.generation;
  }

  /** The node id of an object. */
  nodeOf(id: number): bigint {
    if (id === this.rootId) return 1n;
    if (id === 1) return BigInt(this.rootId);
    return BigInt(id);
  }

  /** The node id of a control-directory path (its control inode number, moved above 2^48). */
  ctlNode(path: string, ino: number): bigint {
    const n = CTL_BASE + BigInt(ino);
    this.ctl.set(key(n), path);
    return n;
  }

  ref(node: bigint): NodeRef | undefined {
    if (node >= CTL_BASE) {
      const path = this.ctl.get(key(node));
      return path === undefined ? undefined : { kind: 'ctl', path };
    }
    const n = Number(node);
    return { kind: 'obj', id: n === 1 ? this.rootId : n === this.rootId ? 1 : n };
  }

  /** The kernel was given `node` once more. */
  looked(node: bigint): void {
    const k = key(node);
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
  }

  forget(node: bigint, n: number): void {
    const k = key(node);
    const left = (this.counts.get(k) ?? 0) - n;
    if (left > 0) { this.counts.set(k, left); return; }
    this.counts.delete(k);
    this.versions.delete(k);
    this.openedAs.delete(k);
    if (node >= CTL_BASE) this.ctl.delete(k);
  }

  /** The kernel was given `node`'s attributes as of `version`. */
  gave(node: bigint, version: string): void { this.versions.set(key(node), version); }

  versionGiven(node: bigint): string | undefined { return this.versions.get(key(node)); }

  /** Notes that `node` is opened as `what`; whether it was the same at its last open. */
  sameAsLastOpen(node: bigint, what: string): boolean {
    const k = key(node);
    const same = this.openedAs.get(k) === what;
    this.openedAs.set(k, what);
    return same;
  }

  /** Whether the kernel holds this node (the root always). */
  known(node: bigint): boolean { return node === 1n || this.counts.has(key(node)); }

  /** Nodes the kernel holds now (status and tests). */
  get size(): number { return this.counts.size; }
}
