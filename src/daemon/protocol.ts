// Messages on the control socket (one JSON object per line, each way). Both ends validate
// with these schemas: the socket is a boundary, and a malformed request must get an error
// answer, never crash the mount process.
import { z } from 'zod';

export const ControlRequestSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('status') }).strict(),
  z.object({ op: z.literal('flush') }).strict(),
  z.object({ op: z.literal('shutdown') }).strict(),
  z.object({ op: z.literal('offline') }).strict(),
  z.object({ op: z.literal('online') }).strict(),
  z.object({ op: z.literal('journal') }).strict(),
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

export const StatusSchema = z.object({
  state: z.enum(['connected', 'disconnected', 'reintegrating']),
  since: z.string(),
  reason: z.string(),
  backend: z.string(),
  fsid: z.string(),
  mountpoint: z.string(),
  cacheDir: z.string(),
  pid: z.number().int(),
  cache: z.object({ bytes: z.number(), objects: z.number() }),
  /** pending: records waiting for the backend; bytes: the data they carry (writes). */
  journal: z.object({ pending: z.number(), bytes: z.number().optional() }),
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
});
export type Status = z.infer<typeof StatusSchema>;

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
