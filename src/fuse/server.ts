// A mounted cachefs: the mount (./mount.ts), its session on /dev/fuse (./session.ts), the
// handlers (./ops.ts) and the node table (./nodes.ts) put together, plus what the layer
// tells the kernel when it learns that the backend changed (invalidation).
import type { Config } from '../config/schema.js';
import type { Creds } from '../core/creds.js';
import { log } from '../core/log.js';
import { nameToBytes } from '../core/names.js';
import { isFsError } from '../core/errors.js';
import type { CacheLayer } from '../layers/cache-layer.js';
import type { ControlDir } from '../layers/control-dir.js';
import { mountFuse, setReadahead, unmountFuse, type Mounted } from './mount.js';
import { abortConnection, connectionOf } from '../core/mount-table.js';
import { NodeTable } from './nodes.js';
import { INTERRUPTIBLE, type NodeFs } from './ops.js';
import { fuseHandlers } from './route.js';
import { Init, Notify, notifyInvalEntry, notifyInvalInode, type InHeader } from './protocol.js';
import { FuseSession, type Negotiated } from './session.js';
import { backingClose, backingOpen, cloneNonBlocking, readNow } from './sys.js';
import { kernelCaching, untoldCaching, type KernelCaching } from './kernel-caching.js';

export interface ServerOptions {
  mountpoint: string;
  fsname: string;
  config: Config;
  layer: NodeFs & Pick<CacheLayer, 'rootObjectId'>;
  control?: ControlDir;
  creds(h: InHeader): Creds;
  /** The cache's generation for file handles (nodes.ts); 0 when absent. */
  generation?: number;
  /**
   * Whether the backend reports every change to what the kernel holds now (its watcher:
   * Backend.notifiesChanges); absent: never. Long kernel timeouts hang on it.
   */
  told?: () => boolean;
}

/** Outstanding reads of /dev/fuse (each holds a pool thread). */
const READERS = 2;

export class FuseServer {
  private session: FuseSession | null = null;
  private mounted: Mounted | null = null;
  /** The connection's number under /sys/fs/fuse/connections (null: not found). */
  private connection: number | null = null;
  readonly nodes: NodeTable;
  /** The timeouts each reply carries, and whether listings are kept (kernel-caching.ts). */
  readonly caching: KernelCaching;

  constructor(private readonly o: ServerOptions) {
    this.nodes = new NodeTable(o.layer.rootObjectId, o.generation ?? 0);
    this.caching = kernelCaching(o.config.fuse, o.told ?? (() => false));
  }

  /** Mounts and starts serving; resolves once the kernel can send requests. */
  async mount(): Promise<void> {
    const f = this.o.config.fuse;
    this.mounted = await mountFuse({ mountpoint: this.o.mountpoint, fsname: this.o.fsname, config: this.o.config });
    let want = Init.ASYNC_READ | Init.ATOMIC_O_TRUNC | Init.BIG_WRITES | Init.MAX_PAGES | Init.DO_READDIRPLUS
      | Init.READDIRPLUS_AUTO | Init.PARALLEL_DIROPS | Init.ASYNC_DIO | Init.AUTO_INVAL_DATA | Init.HANDLE_KILLPRIV_V2
      | Init.EXPORT_SUPPORT;
    if (f.writebackCache) want |= Init.WRITEBACK_CACHE;
    // The kernel lets only CAP_SYS_ADMIN register backing files.
    if (f.passthrough && process.getuid?.() === 0) want |= Init.PASSTHROUGH;
    let pollFd: number | null = null;
    try {
      pollFd = cloneNonBlocking(this.mounted.fd);
    } catch (e) {
      log.warn('cannot clone the /dev/fuse descriptor; requests come only through the readers', e);
    }
    const session: FuseSession = new FuseSession(this.mounted.fd, {
      want,
      maxWrite: f.maxWrite,
      readers: READERS,
      ...(pollFd !== null ? { poll: { fd: pollFd, read: readNow } } : {}),
      interruptible: INTERRUPTIBLE,
      // Before INIT is answered: the kernel then bounds read-ahead by the smaller of the two.
      onInit: () => { if (this.connection !== null) setReadahead(this.connection, f.maxWrite); },
      forget: (pairs) => { for (const [node, n] of pairs) this.nodes.forget(node, n); },
      handlers: fuseHandlers({
        layer: this.o.layer,
        nodes: this.nodes,
        ...(this.o.control ? { control: this.o.control } : {}),
        caching: this.caching,
        controlTimeouts: untoldCaching(f),
        creds: this.o.creds,
        autoCache: f.autoCache,
        passthroughWrites: f.passthrough && f.passthroughWrites,
        negotiated: (): Negotiated | null => session.init,
        backing: { open: (fd) => backingOpen(session.fd, fd), close: (id) => backingClose(session.fd, id) },
      }),
    });
    this.session = session;
    this.connection = connectionOf(this.o.mountpoint);
    session.start();
    log.info(`mounted through ${this.mounted.how}`);
  }

  /** Resolves when the kernel ends the session (an unmount from outside, an abort). */
  get ended(): Promise<string> { return this.session?.ended ?? Promise.resolve('never mounted'); }

  /**
   * Whether the mount at our mountpoint is still this session's. Once the kernel has ended
   * the session (an unmount from outside), the mountpoint and the connection number may
   * already belong to a new mount (the user mounting again, another file system): an
   * unmount or an abort by number would then hit that one.
   */
  private ours(): boolean {
    if (!this.session || this.session.isClosed) return false;
    return this.connection === null || connectionOf(this.o.mountpoint) === this.connection;
  }

  /**
   * Unmounts. Busy (files still open): its connection aborted, then detached lazily, so the
   * processes holding files get ENOTCONN instead of a mount nobody serves. Reads of
   * /dev/fuse only end when the connection does (closing the descriptor does not wake
   * them, and the process cannot exit while they wait): the abort ends them; a clean
   * unmount ends them by itself. Nothing is done to a mount that is no longer ours.
   */
  async unmount(lazy = false): Promise<void> {
    try {
      if (!this.ours()) return;
      await unmountFuse(this.o.mountpoint, lazy).catch(async (e: unknown) => {
        if (lazy || !isFsError(e, 'EBUSY')) throw e;
        log.warn(`${this.o.mountpoint} is busy: aborting its connection and detaching it lazily`);
        await this.detach();
      });
    } finally {
      this.session?.close('unmounted');
    }
  }

  /**
   * The recovery when an unmount fails: abort the connection and detach the mount, both
   * while it is still ours (checked first: aborting a number after the mount has gone could
   * abort the next mount to be given that number).
   */
  async detach(): Promise<void> {
    if (!this.ours()) return;
    if (this.connection !== null) await abortConnection(this.connection);
    await unmountFuse(this.o.mountpoint, true);
  }

  // ---------------------------------------------------------------- invalidation

  untoldAttrS(): number {
    return this.caching.untoldAttrS;
  }

  objectAt(id: number, version: string): boolean {
    const node = this.nodes.nodeOf(id);
    if (!this.session || !this.nodes.known(node) || this.nodes.versionGiven(node) === version) return false;
    this.nodes.gave(node, version);
    void this.session.notify(Notify.INVAL_INODE, notifyInvalInode(node, 0, 0));
    return true;
  }

  /** The kernel must look `name` in directory `dirId` up again. */
  invalidateEntry(dirId: number, name: string): void {
    const node = this.nodes.nodeOf(dirId);
    if (!this.session || !this.nodes.known(node)) return;
    void this.session.notify(Notify.INVAL_ENTRY, notifyInvalEntry(node, nameToBytes(name)));
  }

  holds(id: number): boolean { return this.session !== null && this.nodes.known(this.nodes.nodeOf(id)); }

}
