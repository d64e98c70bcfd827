// Files opened synchronously (core/fd-file.ts): the cache store's files, and a local
// backend's files on a local disk, open without a trip through libuv's thread pool, so a
// write into a new file completes even while every pool thread is busy; and a descriptor
// is closed once only.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs, { promises as fsp, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { FdFile } from '../src/core/fd-file.js';
import { DataStore } from '../src/store/data-store.js';
import { LocalBackend } from '../src/backends/local/local-backend.js';
import { tempRoot } from './helpers/cachefs.js';

const creds = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

/**
 * Keeps every thread of libuv's pool blocked (each in a read of an empty FIFO) until the
 * returned function is called: meanwhile anything that needs the pool waits.
 */
let blockers = 0;
function occupyThreadPool(dir: string): () => Promise<void> {
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const fifo = path.join(dir, `pool-blocker-${blockers++}`);
  execFileSync('mkfifo', [fifo]);
  const fd = fs.openSync(fifo, fs.constants.O_RDWR); // never blocks, unlike O_RDONLY
  const reads = Array.from({ length: threads }, () => new Promise<void>((resolve) => {
    fs.read(fd, Buffer.alloc(1), 0, 1, null, () => resolve());
  }));
  return async () => {
    fs.writeSync(fd, Buffer.alloc(threads));
    await Promise.all(reads);
    fs.closeSync(fd);
  };
}

/** `p`, or a rejection if it is not settled within `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms} ms`)), ms); });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

describe('files opened without the thread pool', () => {
  const root = tempRoot('fdfile');
  after(() => rmSync(root, { recursive: true, force: true }));

  it('an FdFile reads, writes, truncates and syncs, and closes its descriptor once', async () => {
    const f = FdFile.openSync(path.join(root, 'plain'), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    assert.equal((await f.write(Buffer.from('hello world'), 0, 11, 0)).bytesWritten, 11);
    await f.truncate(5);
    await f.datasync();
    const buf = Buffer.alloc(16);
    assert.equal((await f.read(buf, 0, 16, 0)).bytesRead, 5);
    assert.equal(buf.subarray(0, 5).toString(), 'hello');
    const fd = f.fd;
    await f.close();
    // The number may be reused by the next open: a second close must not close that one.
    const other = fs.openSync(path.join(root, 'plain'), 'r');
    await f.close();
    assert.equal(fs.fstatSync(other).size, 5, 'a later descriptor survives a second close');
    fs.closeSync(other);
    assert.throws(() => f.fd, { code: 'EBADF' });
    await assert.rejects(f.read(buf, 0, 1, 0), { code: 'EBADF' });
    assert.ok(fd >= 0);
  });

  it('close() waits for a call still running on the thread pool: its descriptor is not closed (and reused) under it', async () => {
    const fifo = path.join(root, 'slow-read');
    execFileSync('mkfifo', [fifo]);
    const f = FdFile.openSync(fifo, fs.constants.O_RDWR);
    const fd = f.fd;
    const buf = Buffer.alloc(5);
    const reading = f.read(buf, 0, 5, -1); // read(2) at the current position: blocks on the pool until bytes come
    const closing = f.close();
    await assert.rejects(f.read(buf, 0, 1, 0), { code: 'EBADF' }, 'no call starts once close() was called');
    const ino = fs.fstatSync(fd).ino;
    assert.ok(fs.fstatSync(fd).isFIFO(), 'the descriptor is still open while the read runs');
    const writer = fs.openSync(fifo, fs.constants.O_WRONLY);
    fs.writeSync(writer, 'hello');
    fs.closeSync(writer);
    assert.equal((await reading).bytesRead, 5);
    assert.equal(buf.toString(), 'hello', 'the read got its bytes from its own file');
    await closing;
    let stillOurs = false;
    try { stillOurs = fs.fstatSync(fd).ino === ino; } catch { /* EBADF: closed */ }
    assert.ok(!stillOurs, 'closed once the read was done');
  });

  it('the cache store writes into a new file while every thread of the pool is busy', async () => {
    const store = new DataStore(path.join(root, 'cache'));
    await store.init();
    const release = occupyThreadPool(root);
    try {
      // Object 7's bucket directory does not exist yet: made synchronously too.
      await within(store.write(7, 0, Buffer.from('small write')), 2000, 'store.write');
      assert.equal((await within(store.read(7, 0, 11), 2000, 'store.read')).toString(), 'small write');
    } finally {
      await release();
      await store.close();
    }
  });

  it("a local backend on a local disk writes into a file it has not opened yet while the pool is busy", async () => {
    const dir = path.join(root, 'backend');
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, 'f.txt'), '');
    const b = new LocalBackend(dir);
    await b.open();
    const f = await b.lookup((await b.root()).fh, 'f.txt');
    const release = occupyThreadPool(root);
    try {
      const attr = await within(b.write(f.fh, 0, Buffer.from('by the backend'), creds), 2000, 'backend write');
      assert.equal(attr?.size, 14);
    } finally {
      await release();
      await b.close();
    }
    assert.equal(await fsp.readFile(path.join(dir, 'f.txt'), 'utf8'), 'by the backend');
  });
});
