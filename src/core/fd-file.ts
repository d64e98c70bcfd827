// A file opened synchronously, with the asynchronous calls of fs.promises' FileHandle.
//
// Why: fs.promises.open goes through libuv's thread pool, and on the machines we measure a
// trip there costs 100-150 µs of wall time (two thread wake-ups), more than the open
// itself on a local disk (a few µs). `tar x` into a mount opens two files per file it
// makes (the cache file and the backend's), one request after the other. Node has no
// synchronous open that yields a FileHandle, hence this small one. Only for files on a
// local disk: on a network file system an open may block for long.
//
// What must stay true: the descriptor is closed exactly once (a number closed twice could
// by then be another file's), and never while a call on the thread pool still uses it;
// every call after close() fails with EBADF instead.
import fs from 'node:fs';
import { promisify } from 'node:util';

const readCb = promisify(fs.read);
const writeCb = promisify(fs.write);
const ftruncateCb = promisify(fs.ftruncate);
const fdatasyncCb = promisify(fs.fdatasync);

function badf(): NodeJS.ErrnoException {
  return Object.assign(new Error('EBADF: file already closed'), { code: 'EBADF', errno: -9 });
}

/** What the data paths use of an open file: an FdFile, or fs.promises' FileHandle. */
export interface DataFile {
  readonly fd: number;
  read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  write(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  truncate(size: number): Promise<void>;
  datasync(): Promise<void>;
  close(): Promise<void>;
}

export class FdFile implements DataFile {
  private open = true;
  /** Asynchronous calls on the thread pool not finished yet (see close()). */
  private inflight = 0;
  /** Set by close() while calls are in flight: the last one to finish closes. */
  private closed: Promise<void> | null = null;
  private closeNow: (() => void) | null = null;

  private constructor(private readonly descriptor: number) {}

  /** openSync: the caller knows the file is on a local disk. */
  static openSync(p: fs.PathLike, flags: number, mode?: number): FdFile {
    return new FdFile(fs.openSync(p, flags, mode));
  }

  /** The descriptor, for synchronous calls (throws once closed, or closing). */
  get fd(): number {
    if (!this.open) throw badf();
    return this.descriptor;
  }

  /** Runs a call on the thread pool; the descriptor stays open until it is done. */
  private async call<T>(f: (fd: number) => Promise<T>): Promise<T> {
    const fd = this.fd;
    this.inflight++;
    try {
      return await f(fd);
    } finally {
      if (--this.inflight === 0) this.closeNow?.();
    }
  }

  async read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    const { bytesRead } = await this.call((fd) => readCb(fd, buf, offset, length, position));
    return { bytesRead };
  }

  async write(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    const { bytesWritten } = await this.call((fd) => writeCb(fd, buf, offset, length, position));
    return { bytesWritten };
  }

  truncate(size: number): Promise<void> { return this.call((fd) => ftruncateCb(fd, size)); }

  datasync(): Promise<void> { return this.call((fd) => fdatasyncCb(fd)); }

  /**
   * Closes the descriptor once; later calls resolve when it is closed. No new call starts
   * after this; calls still running on the thread pool finish first, as with a FileHandle:
   * closed under them, the number could be given to the next open() and their bytes land
   * in another file. Synchronously, as it was opened: a close on a local disk costs
   * microseconds, a completion from the pool more.
   */
  close(): Promise<void> {
    if (this.closed) return this.closed;
    this.open = false;
    if (this.inflight === 0) {
      fs.closeSync(this.descriptor);
      this.closed = Promise.resolve();
      return this.closed;
    }
    this.closed = new Promise<void>((resolve, reject) => {
      this.closeNow = () => {
        this.closeNow = null;
        try { fs.closeSync(this.descriptor); resolve(); } catch (e) { reject(e); }
      };
    });
    return this.closed;
  }
}
