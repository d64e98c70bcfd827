// Mounting while the backend is away (on the train): a Backend that stands in for an
// adapter whose open() failed with a connection error, when the cache already knows the
// backend (its fsid and root from an earlier mount). The mount then starts disconnected
// and serves the cache; every call first tries to open the real adapter (at most once per
// RETRY_MS, each try bounded by a deadline) and fails with a connection error until it
// opens, so the layer's probe reconnects (and replays the journal) as soon as it can.
//
// What must stay true: once open, the real backend must be the same filesystem (same
// fsid): objects are keyed by (fsid, handle), and another export behind the same URL
// would make every cached handle wrong. A different fsid keeps the mount disconnected and
// says so.
import { FsError, isFsError } from '../core/errors.js';
import { withDeadline } from '../core/deadline.js';
import { log } from '../core/log.js';
import type { Attr, Backend, LentBytes, Node } from './types.js';

/** What the cache remembers of a backend from an earlier mount. */
export interface KnownBackend { fsid: string; root: Node }

const RETRY_MS = 1000;

export class DeferredBackend implements Backend {
  readonly fsid: string;
  readonly description: string;
  readonly commitOnClose?: boolean;
  readonly needsGroups?: boolean;
  private open: Backend | null = null;
  private opening: Promise<Backend> | null = null;
  private lastTry = 0;
  private lastError = '';

  /**
   * `openReal` makes and opens a fresh adapter (a failed one is closed by it); `like` is an
   * unopened adapter of the same kind, for its description and properties.
   */
  constructor(like: Backend, private readonly known: KnownBackend, private readonly timeoutMs: number,
    private readonly openReal: () => Promise<Backend>) {
    this.fsid = known.fsid;
    this.description = like.description;
    if (like.commitOnClose !== undefined) this.commitOnClose = like.commitOnClose;
    if (like.needsGroups !== undefined) this.needsGroups = like.needsGroups;
  }

  /**
   * The next call tries to open the real adapter whatever the last try was: someone asked
   * for the backend now (`cachefs online` / `sync` after the network came back), and the
   * probe's or a lookup's try a moment ago must not answer for it.
   */
  retryNow(): void {
    this.lastTry = 0;
  }

  /** The real adapter, opened (or a connection error). */
  private real(): Promise<Backend> {
    if (this.open) return Promise.resolve(this.open);
    if (this.opening) return this.opening;
    if (Date.now() - this.lastTry < RETRY_MS) {
      return Promise.reject(new FsError('EHOSTUNREACH', `the backend is still unreachable (${this.lastError})`));
    }
    this.lastTry = Date.now();
    const attempt = this.openReal();
    this.opening = withDeadline(attempt, this.timeoutMs, 'opening the backend').then(async (b) => {
      if (b.fsid !== this.known.fsid) {
        await b.close().catch(() => undefined);
        log.error(`${this.description} is now ${b.fsid}, not the ${this.known.fsid} this cache holds: staying disconnected`);
        throw new FsError('EHOSTUNREACH', 'the backend is another filesystem than the one cached: remount with another --cache-dir');
      }
      log.info(`backend ${this.description} reachable again`);
      this.open = b;
      return b;
    }, (e: unknown) => {
      // Opened after the deadline after all: not wanted any more.
      void attempt.then((b) => b.close(), () => undefined).catch(() => undefined);
      this.lastError = (e as Error)?.message ?? String(e);
      // Whatever kept it from opening, to the layer it means "unreachable".
      throw isFsError(e) && ['ETIMEDOUT', 'ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH'].includes(e.code)
        ? e : new FsError('EHOSTUNREACH', `the backend cannot be opened: ${this.lastError}`);
    }).finally(() => { this.opening = null; });
    return this.opening;
  }

  async root(): Promise<Node> {
    if (this.open) return this.open.root();
    return this.known.root; // served from the cache until the backend answers
  }

  async getattr(fh: Buffer): Promise<Attr> { return (await this.real()).getattr(fh); }
  async lookup(dir: Buffer, name: string) { return (await this.real()).lookup(dir, name); }
  async readdir(dir: Buffer) { return (await this.real()).readdir(dir); }
  async readlink(fh: Buffer) { return (await this.real()).readlink(fh); }
  async read(fh: Buffer, offset: number, length: number, into?: Buffer) { return (await this.real()).read(fh, offset, length, into); }
  async readLent(fh: Buffer, offset: number, length: number): Promise<LentBytes> {
    const b = await this.real();
    return b.readLent ? b.readLent(fh, offset, length) : { data: await b.read(fh, offset, length), release: () => undefined };
  }
  async copyInto(...a: Parameters<NonNullable<Backend['copyInto']>>): Promise<Attr> {
    const b = await this.real();
    if (!b.copyInto) throw new FsError('EOPNOTSUPP', 'this backend makes no kernel copies');
    return b.copyInto(...a);
  }
  async write(...a: Parameters<Backend['write']>) { return (await this.real()).write(...a); }
  async commit(fh: Buffer) { return (await this.real()).commit(fh); }
  async create(...a: Parameters<Backend['create']>) { return (await this.real()).create(...a); }
  async mkdir(...a: Parameters<Backend['mkdir']>) { return (await this.real()).mkdir(...a); }
  async symlink(...a: Parameters<Backend['symlink']>) { return (await this.real()).symlink(...a); }
  async mknod(...a: Parameters<Backend['mknod']>) { return (await this.real()).mknod(...a); }
  async link(...a: Parameters<Backend['link']>) { return (await this.real()).link(...a); }
  async unlink(...a: Parameters<Backend['unlink']>) { return (await this.real()).unlink(...a); }
  async rmdir(...a: Parameters<Backend['rmdir']>) { return (await this.real()).rmdir(...a); }
  async rename(...a: Parameters<Backend['rename']>) { return (await this.real()).rename(...a); }
  async setattr(...a: Parameters<Backend['setattr']>) { return (await this.real()).setattr(...a); }
  async statfs() { return (await this.real()).statfs(); }

  async watch(...a: Parameters<NonNullable<Backend['watch']>>): Promise<void> {
    // Started once the backend is there: try now, and again on the next successful open.
    const start = async (): Promise<void> => {
      const b = this.open;
      if (b?.watch) await b.watch(...a);
    };
    if (this.open) { await start(); return; }
    const timer = setInterval(() => {
      if (!this.open) return;
      clearInterval(timer);
      void start().catch((e: unknown) => log.warn('cannot watch the backend', e));
    }, RETRY_MS);
    timer.unref();
  }

  notifiesChanges(): boolean { return this.open?.notifiesChanges?.() ?? false; }

  async close(): Promise<void> { await this.open?.close().catch(() => undefined); }

  info(): Record<string, unknown> {
    return { ...(this.open?.info?.() ?? {}), ...(this.open ? {} : { deferred: `not reached since the mount (${this.lastError})` }) };
  }
}
