// File names and their length limit. NAME_MAX is counted in bytes of the name's encoding
// (UTF-8 here), as the kernel and every file system counts it, never in JavaScript string
// units: 'é'.repeat(128) is 128 characters but 256 bytes, one too many.
//
// What must stay true: every check of a name's length goes through nameTooLong, and every
// name cachefs makes up (a conflict's marked name, a lost+found entry) through fitName, so
// none is refused by one part and let through by another.

/** The most bytes a name may have (Linux's NAME_MAX; the backends cachefs serves have the same). */
export const NAME_MAX = 255;

/** Bytes of `name` in UTF-8. */
export function nameBytes(name: string): number {
  return Buffer.byteLength(name, 'utf8');
}

/** Whether `name` is longer than NAME_MAX bytes (the ENAMETOOLONG test). */
export function nameTooLong(name: string): boolean {
  // A string of at most NAME_MAX / 3 UTF-16 units cannot exceed NAME_MAX bytes (3 bytes at
  // most per unit): the common short name is answered without encoding it.
  return name.length > NAME_MAX / 3 && nameBytes(name) > NAME_MAX;
}

/** The longest start of `s` that is at most `max` bytes of UTF-8, cut between characters. */
export function truncateBytes(s: string, max: number): string {
  if (nameBytes(s) <= max) return s;
  let out = '';
  let used = 0;
  for (const ch of s) {
    const n = nameBytes(ch);
    if (used + n > max) break;
    out += ch;
    used += n;
  }
  return out;
}

/**
 * `head + stem + tail` within NAME_MAX bytes: the stem is shortened (by whole characters) as
 * much as needed, head and tail never. They must leave room for at least one byte of stem.
 */
export function fitName(head: string, stem: string, tail = ''): string {
  const room = NAME_MAX - nameBytes(head) - nameBytes(tail);
  if (room < 1) throw new RangeError(`no room for a name between "${head}" and "${tail}"`);
  return head + truncateBytes(stem, room) + tail;
}

/** The control directory's name at the mount's root (conflicts, lost+found): shadows a backend entry. */
export const CONTROL_DIR_NAME = '.cachefs';
