// Messages on the control socket (one JSON object per line, each way). Both ends validate
// with these schemas: the socket is a boundary, and a malformed request must get an error
// answer, never crash the mount process.
//
// Every op is one request, one answer (ControlResponse), except `watch`: its connection stays
// open and the answer is a stream of event lines (MountEventSchema), until either side closes.
import { z } from 'zod';
import { ConflictDetailSchema, ConflictKindSchema, ResolutionSchema } from '../conflict/store.js';
import type { StampedEvent } from '../core/events.js';

export const ControlRequestSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('status') }).strict(),
  z.object({ op: z.literal('flush') }).strict(),
  // force: unmount even with files open (their users get ENOTCONN); whenIdle: the mount was
  // detached lazily, shut down once the last open file is closed.
  z.object({ op: z.literal('shutdown'), force: z.boolean().optional(), whenIdle: z.boolean().optional() }).strict(),
  z.object({ op: z.literal('offline') }).strict(),
  z.object({ op: z.literal('online') }).strict(),
  z.object({ op: z.literal('journal') }).strict(),
  z.object({ op: z.literal('watch') }).strict(),
  z.object({ op: z.literal('conflicts'), all: z.boolean().optional() }).strict(),
  // Pins and hoard walks: paths from the mount root (or glob patterns).
  z.object({ op: z.literal('pin'), paths: z.array(z.string().min(1).max(4096)).min(1).max(100_000),
    recursive: z.boolean(), priority: z.number().int().min(-1_000_000).max(1_000_000) }).strict(),
  z.object({ op: z.literal('unpin'), paths: z.array(z.string().min(1).max(4096)).min(1).max(100_000), recursive: z.boolean() }).strict(),
  z.object({ op: z.literal('pins') }).strict(),
  /** start: begin a walk (or join the one under way); false: just its progress. */
  z.object({ op: z.literal('hoard'), start: z.boolean() }).strict(),
  /** Drop the clean cached data of files (recursive: everything under a directory); force: pinned ones too. */
  z.object({ op: z.literal('evict'), paths: z.array(z.string().min(1).max(4096)).min(1).max(100_000),
    recursive: z.boolean().optional(), force: z.boolean().optional() }).strict(),
  z.object({
    op: z.literal('resolve'),
    /** Which conflict: by id, or by a path from the mount root (its name, or a rename's source). */
    id: z.number().int().positive().optional(),
    path: z.string().min(1).max(4096).optional(),
    keep: z.enum(['client', 'server', 'both', 'resolved']),
  }).strict(),
]);

/** One pending journal record, as `cachefs journal` shows it. */
export const JournalItemSchema = z.object({
  seq: z.number(),
  op: z.string(),
  /** Where in the mount, as far as the cache knows (null: no name reaches it any more). */
  path: z.string().nullable(),
  /** For renames and links: the other name. */
  to: z.string().nullable(),
  /** Data bytes the record carries (writes). */
  bytes: z.number(),
  /** ISO time the change was made. */
  at: z.string(),
  attempts: z.number(),
  lastError: z.string().nullable(),
});
export type JournalItem = z.infer<typeof JournalItemSchema>;
export type ControlRequest = z.infer<typeof ControlRequestSchema>;
/** The ops answered with one response line (every op but the `watch` stream). */
export type OneShotRequest = Exclude<ControlRequest, { op: 'watch' }>;

export const StatusSchema = z.object({
  state: z.enum(['connected', 'disconnected', 'reintegrating']),
  since: z.string(),
  reason: z.string(),
  backend: z.string(),
  fsid: z.string(),
  mountpoint: z.string(),
  cacheDir: z.string(),
  pid: z.number().int(),
  /**
   * bytes: file data the cache holds (counted from its chunks); objects: objects it knows.
   * pinned + dirty + clean = bytes (dirty: not yet replayed, counted dirty even if pinned);
   * limit: culling.maxBytes (0: none); diskFreePercent / filesFreePercent: of the cache
   * directory's file system (null: unknown); storing: false while nothing new is kept (full).
   * The optional fields are absent from a mount process older than culling.
   * storageError: the last failure of the cache's own storage (index, journal) that was not
   * handled where it happened (null: none; absent from older mount processes).
   */
  cache: z.object({
    bytes: z.number(), objects: z.number(),
    pinned: z.number().optional(), dirty: z.number().optional(), clean: z.number().optional(),
    limit: z.number().optional(), diskFreePercent: z.number().nullable().optional(),
    filesFreePercent: z.number().nullable().optional(), storing: z.boolean().optional(),
    storageError: z.object({ message: z.string(), at: z.string() }).nullable().optional(),
  }),
  /**
   * pending: records waiting for the backend; bytes: the data they carry (writes); stalled:
   * why replay is held up on the cache's side (its disk is full), and since when (ISO time),
   * or null; absent from older mount processes.
   */
  journal: z.object({
    pending: z.number(), bytes: z.number().optional(),
    stalled: z.object({ reason: z.string(), since: z.string() }).nullable().optional(),
  }),
  conflicts: z.number(),
  counters: z.object({
    hits: z.number(), misses: z.number(), bytesFromCache: z.number(), bytesFromBackend: z.number(),
    backendCalls: z.number(),
  }),
  openFiles: z.number(),
  rssBytes: z.number(),
  memory: z.object({ heapUsed: z.number(), heapTotal: z.number(), external: z.number(), arrayBuffers: z.number() }),
  /** FUSE requests by operation: how many, total time in the handler (ms), how many failed. */
  ops: z.record(z.object({ count: z.number(), ms: z.number(), errors: z.number() })),
  /** What the backend adapter reports of itself (NFS: transfer sizes, RPC counters). */
  backendInfo: z.record(z.unknown()).optional(),
  /** Connections following `cachefs watch` right now. */
  watchers: z.number().optional(),
  /**
   * What the kernel may keep (src/fuse/kernel-caching.ts): the timeouts replies carry now,
   * whether it keeps listings, and whether the backend's changes are reported to it;
   * `polledRequests`: requests found by polling right after a reply (src/fuse/session.ts).
   */
  kernel: z.object({
    entryTimeoutS: z.number(), attrTimeoutS: z.number(), negativeTimeoutS: z.number(),
    listings: z.boolean(), told: z.boolean(), polledRequests: z.number().optional(),
  }).optional(),
});
export type Status = z.infer<typeof StatusSchema>;

const ConnStateSchema = z.enum(['connected', 'disconnected', 'reintegrating']);
/** ISO time the event happened (or, for `state`, was taken). */
const at = z.string().datetime();
const conflictFields = { id: z.number().int(), kind: z.string(), path: z.string() };

/**
 * One line of a `watch` stream: the mount's events (src/core/events.ts, stamped with `at`) and
 * three lines of the stream itself: `state` first (where the watcher starts), `missed` when
 * events were dropped for a watcher that read too slowly, `unmounted` last.
 */
export const MountEventSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('state'), state: ConnStateSchema, since: z.string(), reason: z.string(),
    /** Journal records waiting for the backend, and the data bytes they carry. */
    pending: z.number(), bytes: z.number(),
    /** Conflicts waiting for the user. */
    conflicts: z.number(), at,
  }),
  z.object({ type: z.literal('offline'), reason: z.string(), at }),
  z.object({ type: z.literal('reintegrating'), reason: z.string(), pending: z.number(), at }),
  /** pending/bytes: still to send; total: records at the start of the reintegration. */
  z.object({ type: z.literal('progress'), pending: z.number(), bytes: z.number(), total: z.number(), at }),
  z.object({ type: z.literal('online'), reason: z.string(), at }),
  z.object({ type: z.literal('conflict'), ...conflictFields, needsYou: z.boolean(), resolution: z.string().nullable(), at }),
  z.object({ type: z.literal('resolved'), ...conflictFields, resolution: z.string(), by: z.enum(['auto', 'user']), at }),
  /** cause: the limit met (src/core/events.ts CacheLimit); absent when the mount did not say. */
  z.object({ type: z.literal('cache-full'), path: z.string().nullable(), message: z.string(), cause: z.enum(['maxBytes', 'disk']).optional(), at }),
  z.object({ type: z.literal('missed'), count: z.number().int().positive(), at }),
  z.object({ type: z.literal('unmounted'), reason: z.string(), at }),
]);
export type WatchEvent = z.infer<typeof MountEventSchema>;
// Must stay true: every event the mount emits has a schema here (a new MountEvent type that
// this union lacks fails the build right here, instead of being dropped by the validator).
export const asWatchEvent = (e: StampedEvent): WatchEvent => e;

export const ControlResponseSchema = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), result: z.unknown() }),
  z.object({ ok: z.literal(false), error: z.string(), hint: z.string().optional() }),
]);
export type ControlResponse = z.infer<typeof ControlResponseSchema>;

export const CONTROL_SOCKET = 'control.sock';
export const PID_FILE = 'mount.pid';
export const LOG_FILE = 'cachefs.log';
export const MOUNT_INFO = 'mount.json';

/** Where a running mount is described for the CLI (written by the mount process). */
export const MountInfoSchema = z.object({
  version: z.literal(1),
  mountpoint: z.string(),
  cacheDir: z.string(),
  backend: z.string(),
  pid: z.number().int(),
});
export type MountInfo = z.infer<typeof MountInfoSchema>;

/** A conflict as `cachefs conflicts` shows it (the store's row; `dir` holds its variants). */
export const ConflictViewSchema = z.object({
  id: z.number(),
  kind: ConflictKindSchema,
  path: z.string(),
  object: z.number().nullable(),
  baseVersion: z.string().nullable(),
  clientVersion: z.string().nullable(),
  serverVersion: z.string().nullable(),
  detectedAt: z.number(),
  dir: z.string().nullable(),
  epoch: z.number(),
  resolvedAt: z.number().nullable(),
  resolution: ResolutionSchema.nullable(),
  resolvedBy: z.enum(['auto', 'user']).nullable(),
  detail: ConflictDetailSchema,
});
export type ConflictView = z.infer<typeof ConflictViewSchema>;
export const ConflictListSchema = z.object({ conflicts: z.array(ConflictViewSchema) });

/** What `resolve` did: the paths it wrote, and where the variants not kept went. */
export const ResolvedSchema = z.object({
  id: z.number(),
  path: z.string(),
  choice: z.enum(['client', 'server', 'both', 'resolved']),
  placed: z.array(z.string()),
  lostFound: z.array(z.string()),
});

export const PinViewSchema = z.object({
  path: z.string(), recursive: z.boolean(), glob: z.boolean(), priority: z.number(), createdAt: z.number(),
});
export type PinView = z.infer<typeof PinViewSchema>;

/** A hoard walk's progress (`hoard` and `pins` answers). */
export const HoardProgressSchema = z.object({
  state: z.enum(['idle', 'scanning', 'fetching', 'done']),
  reason: z.string(),
  startedAt: z.number().nullable(),
  finishedAt: z.number().nullable(),
  pins: z.number(),
  files: z.object({ done: z.number(), total: z.number() }),
  bytes: z.object({ done: z.number(), total: z.number() }),
  fetched: z.number(),
  failed: z.array(z.object({ path: z.string(), error: z.string() })),
  failedCount: z.number(),
});
export type HoardProgressView = z.infer<typeof HoardProgressSchema>;
export const PinListSchema = z.object({ pins: z.array(PinViewSchema), hoard: HoardProgressSchema });
export const PinResultSchema = z.object({ pins: z.array(PinViewSchema), notFound: z.array(z.string()) });

/** What `evict` did, per path given: bytes and files dropped, files kept and why. */
export const EvictResultSchema = z.object({
  paths: z.array(z.object({
    path: z.string(),
    freed: z.number(),
    files: z.number(),
    kept: z.array(z.object({ path: z.string(), reason: z.enum(['dirty', 'open', 'pinned', 'busy']), bytes: z.number() })),
    error: z.string().optional(),
  })),
  freed: z.number(),
});
export type EvictResultView = z.infer<typeof EvictResultSchema>;
