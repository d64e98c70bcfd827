// The cache store: one sparse file per object under <cache>/data/, at the object's offsets.
// Which ranges are valid is recorded in the index (chunks), not here: a hole and a cached
// run of zeros look the same in the file. Files are created 0600 inside the 0700 cache dir.
//
// Ordering (what must stay true): the operations on one object's file take effect in the
// order they were called. A write, truncate, sync or fill waits for every earlier one of the
// same object, and a read or copy waits for the writes and truncates called before it (a read
// not for a fill alone: the chunk fetcher keeps readers off the range a fill writes). Small
// writes are done synchronously (no await) only when nothing of that object is in flight.
// Without this, a 1 MiB write going through the thread pool (a fetched chunk landing) could
// reach the disk after a later 4 KiB write done synchronously and overwrite it, and a
// truncate to 0 (dropped data) could wipe bytes written after it was called.
import { promises as fsp, constants as fsc, mkdirSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { fromNodeError } from '../core/errors.js';
import { FdFile } from '../core/fd-file.js';

const MAX_OPEN = 256;
const SYNC_READ_MAX = 128 * 1024;

export class DataStore {
  private readonly open = new Map<number, FdFile>();
  private readonly dir: string;
  /** Per object, the last write/truncate/sync/fill called and not yet finished (see Ordering). */
  private readonly tail = new Map<number, Promise<void>>();
  /** The same without fills: what a read waits for (see ordered()). */
  private readonly readTail = new Map<number, Promise<void>>();

  constructor(cacheDir: string) {
    this.dir = path.join(cacheDir, 'data');
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /**
   * Where object `id`'s data lives, once every mutation of it called so far has landed (the
   * kernel reads it there under FUSE passthrough).
   */
  async settledPath(id: number): Promise<string> {
    await this.quiet(id);
    return this.fileOf(id);
  }

  /** Like settledPath, and the file exists (empty if nothing was cached). */
  async ensure(id: number): Promise<string> {
    this.handle(id);
    return this.settledPath(id);
  }

  private fileOf(id: number): string {
    return path.join(this.dir, (id % 256).toString(16).padStart(2, '0'), String(id));
  }

  /**
   * The object's file, opened (and created) if it is not: synchronously, the cache directory
   * is on a local disk (see core/fd-file.ts). Throws the store's error when it cannot be.
   */
  private handle(id: number): FdFile {
    const have = this.open.get(id);
    if (have) {
      this.open.delete(id);
      this.open.set(id, have);
      return have;
    }
    const h = this.openFile(id);
    this.open.set(id, h);
    while (this.open.size > MAX_OPEN) {
      const [oldId, old] = this.open.entries().next().value as [number, FdFile];
      this.open.delete(oldId);
      void old.close().catch(() => undefined);
    }
    return h;
  }

  private openFile(id: number): FdFile {
    const file = this.fileOf(id);
    try {
      return FdFile.openSync(file, fsc.O_RDWR | fsc.O_CREAT, 0o600);
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOENT') throw fromNodeError(e, 'cache store open');
    }
    try {
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      return FdFile.openSync(file, fsc.O_RDWR | fsc.O_CREAT, 0o600);
    } catch (e) { throw fromNodeError(e, 'cache store open'); }
  }

  /**
   * Runs `op` after every earlier mutation of `id`; later ones wait for it in turn. Reads
   * wait for it too unless `unseenByReads` (a fill: the fetcher's guards keep readers off
   * the range it writes, and a read elsewhere in the file must not wait for its copy).
   */
  private ordered(id: number, op: () => Promise<void>, unseenByReads = false): Promise<void> {
    const prev = this.tail.get(id);
    const p = prev ? prev.then(op, op) : op();
    const settled = p.then(() => undefined, () => undefined);
    for (const tails of unseenByReads ? [this.tail] : [this.tail, this.readTail]) {
      tails.set(id, settled);
      void settled.then(() => { if (tails.get(id) === settled) tails.delete(id); });
    }
    return p;
  }

  /** Resolves once every mutation of `id` called so far has finished. */
  private quiet(id: number): Promise<void> | undefined {
    return this.tail.get(id);
  }

  /** Reads what the file holds at [offset, offset+length); short at the file's end. */
  async read(id: number, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const busy = this.readTail.get(id);
    if (busy) await busy;
    const h = this.handle(id);
    const buf = into ?? Buffer.allocUnsafe(length);
    let got = 0;
    try {
      // Small reads from our own cache file are done synchronously: they are nearly always
      // served from the page cache (~20 µs), while a trip through libuv's thread pool costs
      // 50-150 µs under load, and FUSE sends reads one 128 KiB request at a time. This is
      // never the mountpoint, so it cannot deadlock; at worst it waits for one disk read.
      if (length <= SYNC_READ_MAX) {
        while (got < length) {
          const n = readSync(h.fd, buf, got, length - got, offset + got);
          if (n === 0) break;
          got += n;
        }
        if (got < length) buf.fill(0, got, length);
        return buf;
      }
      while (got < length) {
        const { bytesRead } = await h.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (e) { throw fromNodeError(e, 'cache store read'); }
    if (got < length) buf.fill(0, got, length); // a hole at the end reads as zeros
    return buf;
  }

  write(id: number, offset: number, data: Buffer): Promise<void> {
    return this.ordered(id, () => this.writeNow(id, offset, data));
  }

  private async writeNow(id: number, offset: number, data: Buffer): Promise<void> {
    const h = this.handle(id);
    let done = 0;
    try {
      // As for reads: a small write into our own cache file lands in the page cache in
      // microseconds; the thread pool round trip would cost more than the write itself.
      if (data.length <= SYNC_READ_MAX) {
        while (done < data.length) done += writeSync(h.fd, data, done, data.length - done, offset + done);
        return;
      }
      while (done < data.length) {
        const { bytesWritten } = await h.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (e) { throw fromNodeError(e, 'cache store write'); }
  }

  truncate(id: number, size: number): Promise<void> {
    return this.ordered(id, async () => {
      const h = this.handle(id);
      try { await h.truncate(size); } catch (e) { throw fromNodeError(e, 'cache store truncate'); }
    });
  }

  /**
   * Lets `copy` write into object `id`'s file through a descriptor of its own (a kernel
   * copy), in order with the other operations on the object: a truncate called meanwhile
   * waits for it, so no byte of the copy lands after one. `copy` answers how many bytes it
   * wrote once its copy has stopped writing; or, when it gave up on a copy that may still
   * write (a backend call past its deadline), `stillWriting`, which settles when it stops.
   * Then the object's file is replaced by a copy of itself made now, so that what the late
   * copy writes goes to the old file only, which no one reads or writes any more; its
   * descriptors stay open until the copy stops (a number closed earlier could be reused by
   * another open and receive the late bytes). Resolves to the bytes written.
   */
  fill(id: number, copy: (fd: number) => Promise<number | { wrote: number; stillWriting: Promise<unknown> }>): Promise<number> {
    let wrote = 0;
    return this.ordered(id, async () => {
      this.handle(id); // creates the file and its directory
      // Not the kept handle: the pool may close it while the copy runs on another thread.
      let h: fsp.FileHandle;
      try { h = await fsp.open(this.fileOf(id), fsc.O_WRONLY); } catch (e) { throw fromNodeError(e, 'cache store open'); }
      let out: Awaited<ReturnType<typeof copy>>;
      try {
        out = await copy(h.fd);
      } catch (e) {
        await h.close().catch(() => undefined);
        throw e;
      }
      if (typeof out === 'number') {
        wrote = out;
        await h.close().catch(() => undefined);
        return;
      }
      const late = out.stillWriting.then(() => undefined, () => undefined);
      void late.then(() => h.close()).catch(() => undefined);
      await this.detach(id, late);
    }, true).then(() => wrote);
  }

  /**
   * Puts a copy of object `id`'s file in its place (see fill): later operations open the
   * copy; the old file's kept handle closes once `late` settles.
   */
  private async detach(id: number, late: Promise<void>): Promise<void> {
    const file = this.fileOf(id);
    const fresh = `${file}.detached`;
    try {
      await fsp.copyFile(file, fresh);
      await fsp.chmod(fresh, 0o600);
      await fsp.rename(fresh, file);
    } catch (e) {
      await fsp.rm(fresh, { force: true }).catch(() => undefined);
      throw fromNodeError(e, 'cache store detach');
    }
    const old = this.open.get(id);
    if (old) {
      this.open.delete(id);
      void late.then(() => old.close()).catch(() => undefined);
    }
  }

  /**
   * Copies an object's cache file to `dest` (a conflict's client variant). Writes through
   * this store are awaited by their callers, so the file is complete when this runs.
   */
  async copyOut(id: number, dest: string): Promise<void> {
    const busy = this.quiet(id);
    if (busy) await busy;
    await fsp.mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
    try {
      await fsp.copyFile(this.fileOf(id), dest);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await fsp.writeFile(dest, '', { mode: 0o600 }); // nothing cached: an empty variant
    }
  }

  /** fdatasync of the object's file, after every write called before it (fsync offline). */
  sync(id: number): Promise<void> {
    return this.ordered(id, async () => {
      const h = this.handle(id);
      try { await h.datasync(); } catch (e) { throw fromNodeError(e, 'cache store sync'); }
    });
  }

  async remove(id: number): Promise<void> {
    const busy = this.quiet(id);
    if (busy) await busy;
    const have = this.open.get(id);
    if (have) {
      this.open.delete(id);
      await have.close().catch(() => undefined);
    }
    await fsp.rm(this.fileOf(id), { force: true });
  }

  async close(): Promise<void> {
    const all = [...this.open.values()];
    this.open.clear();
    await Promise.all(all.map((h) => h.close().catch(() => undefined)));
  }
}
