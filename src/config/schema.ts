// The configuration: one defaults object and one strict zod schema. Parsed once, at the
// edge (src/config/load.ts); everything below receives a typed, complete Config.
import { z } from 'zod';

const seconds = z.number().finite().nonnegative();
const kernelTimeout = z.union([seconds, z.literal('auto')]);

export const ConfigSchema = z.object({
  /** What to cache: a directory path, a file:// URL or an nfs://host/export URL. */
  backend: z.string().min(1),
  /** Where to mount it. */
  mountpoint: z.string().min(1),
  /** The cache directory (index, journal, data files, control socket); created 0700. */
  cacheDir: z.string().min(1),
  cache: z.object({
    /** Data is fetched and tracked in aligned chunks of this many bytes (a power of two). */
    chunkSize: z.number().int().min(4096).max(64 * 1024 * 1024)
      .refine((n) => (n & (n - 1)) === 0, 'must be a power of two'),
    /** Chunks fetched ahead of a sequential reader. */
    readAheadChunks: z.number().int().min(0).max(64),
    /** Backend calls in flight at once (p-queue). */
    backendConcurrency: z.number().int().min(1).max(256),
    /**
     * A file bigger than one chunk and at most this many bytes is copied whole into the cache
     * when it is opened for reading with nothing of it cached, where the backend can do it by
     * a kernel copy (a local directory on a local disk): whole-file caching, as Coda does,
     * without the bytes passing through cachefs. The open waits for the copy (about 0.1 s per
     * 256 MiB on an SSD); the file is then read from the cache file (with fuse.passthrough
     * by the kernel itself) and is all there offline. 0: never; chunks are fetched as read.
     */
    wholeFileMaxBytes: z.number().int().min(0),
  }).strict(),
  consistency: z.object({
    /** NFS-style attribute cache bounds for files and directories, in seconds. */
    acregmin: seconds, acregmax: seconds, acdirmin: seconds, acdirmax: seconds,
    /** open() revalidates with the backend (close-to-open consistency). */
    closeToOpen: z.boolean(),
    /**
     * Notice outside changes to a local backend: true (auto: inotify on a local disk,
     * polling on a network file system), "inotify", "poll", or false.
     */
    watch: z.union([z.boolean(), z.enum(['inotify', 'poll'])]),
    /** How often the polling watcher looks, in seconds. */
    pollIntervalS: z.number().finite().min(0.1).max(3600),
  }).strict(),
  fuse: z.object({
    /** "auto": allow_other when mounted by root (so other users get real permission checks). */
    allowOther: z.union([z.boolean(), z.literal('auto')]),
    /**
     * Kernel dentry / attribute / negative-lookup cache lifetimes, in seconds, or "auto":
     * 60 s while the backend reports every change (a local disk watched with inotify: the
     * kernel is told of each), 1 s otherwise (see src/fuse/kernel-caching.ts).
     */
    entryTimeout: kernelTimeout, attrTimeout: kernelTimeout, negativeTimeout: kernelTimeout,
    /** Largest read or write the kernel sends at once (the kernel allows up to 1 MiB: max_pages_limit). */
    maxWrite: z.number().int().min(4096).max(1048576),
    /** Keep the kernel page cache across opens while the file is unchanged (auto_cache). */
    autoCache: z.boolean(),
    /**
     * The kernel's writeback cache: writes would gather in its page cache and reach us at
     * close, fsync or under memory pressure. Refused (only false is accepted). Its first
     * trials failed a WRITE with EAGAIN and hung fsync(); both are fixed (a write whose chunk
     * keeps changing goes around the cache; notifications go one at a time). What is left is
     * the kernel's design: with it the kernel keeps its own size and mtime of a regular file
     * and ignores the server's (fuse_change_attributes, fuse_get_cache_mask), so a file
     * another client changed on an NFS server is read at its old size at the next open
     * (close-to-open broken); and it measured no faster (tar x, dd conv=fsync). The session
     * still negotiates it if this ever allows it.
     */
    writebackCache: z.literal(false),
    /**
     * FUSE passthrough (kernel 6.9+, root): a read-only open of a file wholly in the cache is
     * read by the kernel straight from the cache file. While such opens last, an open of that
     * file for writing fails with ETXTBSY (the kernel cannot mix the two on one inode).
     */
    passthrough: z.boolean(),
    /**
     * With passthrough: an open for writing of a file wholly in the cache (up to 64 MiB when
     * opened; new files grow freely) is written by the kernel straight into the cache file
     * too. What changed is journaled at close, fsync and the last release, by comparing the
     * file with what was journaled, 1 MiB at a time (layers/direct-writes.ts).
     */
    passthroughWrites: z.boolean(),
  }).strict().refine((f) => !f.passthroughWrites || f.passthrough,
    { message: 'needs fuse.passthrough set to true as well (writes go through passthrough only where reads do)', path: ['passthroughWrites'] }),
  /**
   * Keeping the cache within its size (ARCHITECTURE §8), like cachefilesd: culling starts
   * when the cache holds more than maxBytes, or when the cache disk's free space (blocks or
   * files) falls below bcull/fcull percent, and goes on until it is back under 90% of
   * maxBytes and above brun/frun; below bstop/fstop nothing new is cached (reads are served
   * without keeping the data; a write made offline fails with ENOSPC). Only clean,
   * unpinned data is culled, least recently used first.
   */
  culling: z.object({
    /** Most bytes of file data the cache keeps; 0: no limit but the disk's. */
    maxBytes: z.number().int().nonnegative(),
    brun: z.number().min(0).max(100), bcull: z.number().min(0).max(100), bstop: z.number().min(0).max(100),
    frun: z.number().min(0).max(100), fcull: z.number().min(0).max(100), fstop: z.number().min(0).max(100),
    /** How often usage is checked, in seconds (it is also checked as data arrives). */
    intervalS: z.number().finite().min(0.1).max(3600),
  }).strict().refine((c) => c.bstop < c.bcull && c.bcull < c.brun && c.fstop < c.fcull && c.fcull < c.frun,
    'needs bstop < bcull < brun and fstop < fcull < frun'),
  /** Hoard walks: fetching pinned data (cachefs pin / hoard). */
  hoard: z.object({
    /** Files fetched at once. */
    concurrency: z.number().int().min(1).max(256),
    /** Walk the pins again after every reconnection. */
    afterReconnect: z.boolean(),
  }).strict(),
  reintegration: z.object({
    /** Optimize the journal before replaying it (Coda's rules: see src/journal/optimize.ts). */
    optimize: z.boolean(),
  }).strict(),
  /** Deadline for one backend call, ms; must stay well under the kernel's request timeout, where one is set. */
  backendTimeoutMs: z.number().int().min(100).max(10_000),
  log: z.enum(['debug', 'info', 'warn', 'error']),
}).strict();

export type Config = z.infer<typeof ConfigSchema>;

export const DEFAULTS: Config = {
  backend: './demo',
  mountpoint: './mnt',
  cacheDir: './.cache/cachefs',
  cache: { chunkSize: 1024 * 1024, readAheadChunks: 8, backendConcurrency: 16, wholeFileMaxBytes: 256 * 1024 * 1024 },
  consistency: { acregmin: 3, acregmax: 60, acdirmin: 30, acdirmax: 60, closeToOpen: true, watch: true, pollIntervalS: 5 },
  fuse: { allowOther: 'auto', entryTimeout: 'auto', attrTimeout: 'auto', negativeTimeout: 'auto', maxWrite: 1048576, autoCache: true, writebackCache: false, passthrough: false, passthroughWrites: false },
  culling: { maxBytes: 0, brun: 10, bcull: 7, bstop: 3, frun: 10, fcull: 7, fstop: 3, intervalS: 10 },
  hoard: { concurrency: 16, afterReconnect: true },
  reintegration: { optimize: true },
  backendTimeoutMs: 5000,
  log: 'info',
};

/** One line of advice per field, shown with a validation error. */
export const FIELD_HINTS: Record<string, string> = {
  backend: 'a directory path (relative to the config file), a file:// URL or nfs://host[:port]/export',
  mountpoint: 'an empty directory to mount on, e.g. "./mnt"',
  cacheDir: 'a directory for the cache, e.g. "./.cache/cachefs"',
  'cache.chunkSize': 'a power of two between 4096 and 67108864, e.g. 1048576',
  'cache.readAheadChunks': 'an integer 0-64, e.g. 8',
  'cache.backendConcurrency': 'an integer 1-256, e.g. 16',
  'cache.wholeFileMaxBytes': 'bytes, e.g. 268435456 (0: never copy whole files at open)',
  'consistency.acregmin': 'seconds, e.g. 3',
  'consistency.acregmax': 'seconds, e.g. 60',
  'consistency.acdirmin': 'seconds, e.g. 30',
  'consistency.acdirmax': 'seconds, e.g. 60',
  'consistency.closeToOpen': 'true or false',
  'consistency.watch': 'true (automatic), "inotify", "poll" or false',
  'consistency.pollIntervalS': 'seconds between 0.1 and 3600, e.g. 5',
  'fuse.allowOther': 'true, false or "auto"',
  'fuse.entryTimeout': '"auto" (long while the backend\'s changes are reported, else 1 s) or seconds, e.g. 1',
  'fuse.attrTimeout': '"auto" (long while the backend\'s changes are reported, else 1 s) or seconds, e.g. 1',
  'fuse.negativeTimeout': '"auto" (long while the backend\'s changes are reported, else 1 s) or seconds, e.g. 1',
  'fuse.maxWrite': 'bytes between 4096 and 1048576, e.g. 1048576',
  'fuse.autoCache': 'true or false',
  'fuse.writebackCache': 'false (the kernel\'s writeback cache is not supported: with it the kernel ignores the size and mtime another client gave a file, so it could be read stale after the next open)',
  'fuse.passthrough': 'true or false',
  'fuse.passthroughWrites': 'false, or true together with "passthrough": true in "fuse"',
  backendTimeoutMs: 'milliseconds between 100 and 10000, e.g. 5000',
  'reintegration.optimize': 'true or false',
  culling: 'percentages with bstop < bcull < brun and fstop < fcull < frun, e.g. 3, 7, 10',
  'culling.maxBytes': 'bytes, e.g. 10737418240 for 10 GiB (0: only the disk limits it)',
  'culling.brun': 'percent free space at which culling stops, e.g. 10',
  'culling.bcull': 'percent free space below which culling starts, e.g. 7',
  'culling.bstop': 'percent free space below which nothing new is cached, e.g. 3',
  'culling.frun': 'percent free files (inodes) at which culling stops, e.g. 10',
  'culling.fcull': 'percent free files below which culling starts, e.g. 7',
  'culling.fstop': 'percent free files below which nothing new is cached, e.g. 3',
  'culling.intervalS': 'seconds between usage checks, e.g. 10',
  'hoard.concurrency': 'files fetched at once by a hoard walk, 1-256, e.g. 16',
  'hoard.afterReconnect': 'true or false',
  log: 'one of "debug", "info", "warn", "error"',
};
