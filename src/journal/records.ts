// Journal records: every mutation of the mount, as a discriminated union with a zod schema
// (records are persisted as JSON and read back after a crash, so they are validated).
// Objects are named by their index id (the stable inode number), never by path: a record
// stays meaningful after renames, and provisional objects can be mapped to real handles.
import { z } from 'zod';
import { NAME_MAX, nameTooLong } from '../core/names.js';

const id = z.number().int().positive();
/** A name in a directory: NAME_MAX counts bytes of UTF-8, not characters (core/names.ts). */
const name = z.string().min(1)
  .refine((s) => !nameTooLong(s), `longer than NAME_MAX (${NAME_MAX} bytes of UTF-8)`)
  .refine((s) => !s.includes('/') && s !== '.' && s !== '..', 'not a file name');
const nsTime = z.union([
  z.object({ kind: z.literal('set'), ns: z.string().regex(/^-?\d+$/) }),
  z.object({ kind: z.literal('now') }),
]);

export const SetAttrSchema = z.object({
  mode: z.number().int().nonnegative().optional(),
  uid: z.number().int().nonnegative().optional(),
  gid: z.number().int().nonnegative().optional(),
  size: z.number().int().nonnegative().optional(),
  atime: nsTime.optional(),
  mtime: nsTime.optional(),
}).strict();

/** The creator's supplementary groups (servers that check permissions themselves need them). */
const groups = z.array(z.number().int().nonnegative()).max(64).optional();
/**
 * Who made the change: the credentials of the process (uid, gid, supplementary groups), so
 * it is replayed with that user's rights and the server can refuse it (then a conflict the
 * user sees). Absent (records of older journals, changes the mount makes itself): the
 * mount's own identity. Creates carry theirs as uid/gid/groups.
 */
const by = z.object({ uid: z.number().int().nonnegative(), gid: z.number().int().nonnegative(), groups }).strict().optional();
/** The version of the modified object as last seen from the backend (for conflict checks). */
const base = z.string().nullable();
/**
 * The object a namespace record is about, when the cache knows it: the one unlinked,
 * removed or renamed, or (for records of objects made while disconnected) the one created.
 * Lets the journal optimizer follow an object through its records.
 */
const subject = id.optional();
/**
 * Made while not connected: replay checks its base against the server (a difference is a
 * conflict). Records made connected are applied as they come, as an NFS client would.
 */
const offline = z.literal(true).optional();
/** The version the removed or renamed object itself had (remove/update conflicts). */
const objBase = z.string().nullable().optional();

export const JournalRecordSchema = z.discriminatedUnion('op', [
  // crc: CRC-32 of the bytes, checked when the bytes are read back from the cache file.
  z.object({ op: z.literal('write'), obj: id, offset: z.number().int().nonnegative(), length: z.number().int().nonnegative(),
    crc: z.number().int().nonnegative(), by, offline, base }),
  z.object({ op: z.literal('setattr'), obj: id, set: SetAttrSchema, by, offline, base }),
  z.object({ op: z.literal('create'), parent: id, name, mode: z.number().int(), uid: z.number().int(), gid: z.number().int(), groups, obj: subject, offline, base }),
  z.object({ op: z.literal('mkdir'), parent: id, name, mode: z.number().int(), uid: z.number().int(), gid: z.number().int(), groups, obj: subject, offline, base }),
  z.object({ op: z.literal('symlink'), parent: id, name, target: z.string().min(1).max(4096), uid: z.number().int(), gid: z.number().int(), groups, obj: subject, offline, base }),
  z.object({ op: z.literal('mknod'), parent: id, name, mode: z.number().int(), rdev: z.number().int(), uid: z.number().int(), gid: z.number().int(), groups, obj: subject, offline, base }),
  z.object({ op: z.literal('link'), obj: id, parent: id, name, by, offline, base }),
  z.object({ op: z.literal('unlink'), parent: id, name, obj: subject, by, offline, base, objBase }),
  z.object({ op: z.literal('rmdir'), parent: id, name, obj: subject, by, offline, base, objBase }),
  // target/targetBase: the object the rename replaced, as the cache knew it (none: the name
  // was free), so replay notices a target the server changed or created meanwhile.
  z.object({ op: z.literal('rename'), fromParent: id, fromName: name, toParent: id, toName: name, obj: subject, by, offline, base,
    target: id.optional(), targetBase: z.string().nullable().optional() }),
  z.object({ op: z.literal('commit'), obj: id, base }),
]);

export type JournalRecord = z.infer<typeof JournalRecordSchema>;
export type JournalOp = JournalRecord['op'];
export type SetAttrRecord = z.infer<typeof SetAttrSchema>;
export type RecordCreds = NonNullable<z.infer<typeof by>>;

/** The credentials a record is replayed with (undefined: the mount's own). */
export function credsOfRecord(r: JournalRecord): RecordCreds | undefined {
  switch (r.op) {
    case 'create': case 'mkdir': case 'symlink': case 'mknod': return creatorOf(r);
    case 'commit': return undefined;
    default: return r.by;
  }
}

/** The credentials a create record carries as its uid/gid/groups fields. */
export function creatorOf(r: { uid: number; gid: number; groups?: number[] | undefined }): RecordCreds {
  return { uid: r.uid, gid: r.gid, ...(r.groups ? { groups: r.groups } : {}) };
}

/** The `by` field of a record made for `by` (none for the mount's own changes). */
export function byOf(by: RecordCreds | undefined): { by?: RecordCreds } {
  return by ? { by: { uid: by.uid, gid: by.gid, ...(by.groups ? { groups: by.groups } : {}) } } : {};
}

/** Whether two records act as the same user (records may be merged only then). */
export function sameCreds(a: JournalRecord, b: JournalRecord): boolean {
  return sameUser(credsOfRecord(a), credsOfRecord(b));
}

/** Whether two sets of credentials are one user (undefined: the mount's own). */
export function sameUser(x: RecordCreds | undefined, y: RecordCreds | undefined): boolean {
  if (!x || !y) return x === y;
  return x.uid === y.uid && x.gid === y.gid && (x.groups ?? []).join(',') === (y.groups ?? []).join(',');
}

/**
 * The object whose data, attributes or ctime a record changes, when the record names it
 * (creates name their new object only as `obj`, which is not a change to an existing one).
 */
export function changedObject(r: JournalRecord): number | undefined {
  switch (r.op) {
    case 'write': case 'setattr': case 'link': case 'commit': return r.obj;
    case 'rename': case 'unlink': case 'rmdir': return r.obj;
    default: return undefined;
  }
}
