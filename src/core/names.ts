// File names: their bytes, and their length limit.
//
// A name is bytes to the kernel, to a local file system and to NFS, and any bytes but '/'
// and NUL: an old tarball or zip file holds names in Latin-1 or CP437, which are not UTF-8.
// Inside cachefs a name is a string (the index, the journal, the conflicts, logs), made from
// its bytes by `nameFromBytes` and turned back by `nameToBytes`, which lose nothing: valid
// UTF-8 is decoded as such, and each byte of anything else becomes one character of
// U+EF80..U+EFFF (the byte plus 0xEF00; MirBSD's OPTU-8 uses the same range). A name that
// really holds a character of that range is read as its three bytes, each escaped, so
// that no two byte strings give the same string. Decoding with replacement characters, as
// before, made 'caf\xe9' and 'caf\xe8' one file: the second write replaced the first.
// The strings are valid Unicode, so SQLite and JSON keep them as they are.
//
// NAME_MAX is counted in bytes (nameLength), as the kernel and every file system counts it,
// never in JavaScript string units: 'é'.repeat(128) is 128 characters but 256 bytes.
//
// What must stay true: every name (and symlink target) crossing to the kernel or a backend
// goes through nameFromBytes / nameToBytes; every check of a name's length goes through
// nameTooLong, and every name cachefs makes up (a conflict's marked name, a lost+found
// entry) through fitName, so none is refused by one part and let through by another.

/** The most bytes a name may have (Linux's NAME_MAX; the backends cachefs serves have the same). */
export const NAME_MAX = 255;

/** The characters standing for single bytes that are not (part of) valid UTF-8. */
const ESC_LO = 0xef80, ESC_HI = 0xefff;
const HAS_ESC = /[\uef80-\uefff]/;

/** The name (or path) whose bytes are `b`, losslessly (see the top of this file). */
export function nameFromBytes(b: Uint8Array, start = 0, end = b.length): string {
  let ascii = true;
  for (let i = start; i < end; i++) if (b[i]! >= 0x80) { ascii = false; break; }
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (ascii) return buf.toString('latin1', start, end);
  const s = buf.toString('utf8', start, end);
  return decodedExactly(s) ? s : decodeCarefully(b, start, end);
}

/**
 * Whether `s`, decoded by Node as UTF-8, is what nameFromBytes would make of the same bytes:
 * no replacement character came out (a real U+FFFD is taken for one, and decoded the
 * careful way, rightly too) and none of our escapes' range.
 */
export function decodedExactly(s: string): boolean {
  return !s.includes('\ufffd') && !HAS_ESC.test(s);
}

function decodeCarefully(b: Uint8Array, start: number, end: number): string {
  let out = '';
  let i = start;
  while (i < end) {
    const c = b[i]!;
    if (c < 0x80) { out += String.fromCharCode(c); i++; continue; }
    const n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? (c <= 0xef ? 3 : 0) : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    let cp = -1;
    if (n > 0 && i + n <= end) {
      cp = n === 2 ? c & 0x1f : n === 3 ? c & 0x0f : c & 0x07;
      for (let k = 1; k < n; k++) {
        const cc = b[i + k]!;
        if ((cc & 0xc0) !== 0x80) { cp = -1; break; }
        cp = (cp << 6) | (cc & 0x3f);
      }
      // Overlong forms, UTF-16 surrogates, beyond U+10FFFF and our own escapes are not taken.
      const min = n === 2 ? 0x80 : n === 3 ? 0x800 : 0x10000;
      if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff || (cp >= ESC_LO && cp <= ESC_HI)) cp = -1;
    }
    if (cp < 0) { out += String.fromCharCode(0xef00 + c); i++; continue; }
    out += String.fromCodePoint(cp);
    i += n;
  }
  return out;
}

/** The bytes of a name (or path) made by nameFromBytes, or of any string (UTF-8). */
export function nameToBytes(name: string): Buffer {
  if (!HAS_ESC.test(name)) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let from = 0;
  for (let i = 0; i < name.length; i++) {
    const u = name.charCodeAt(i);
    if (u < ESC_LO || u > ESC_HI) continue;
    parts.push(Buffer.from(name.slice(from, i), 'utf8'), Buffer.of(u - 0xef00));
    from = i + 1;
  }
  parts.push(Buffer.from(name.slice(from), 'utf8'));
  return Buffer.concat(parts);
}

/**
 * A name as a path argument of Node's fs: the string itself when its UTF-8 encoding is its
 * bytes (the common case, no copy), else its bytes.
 */
export function fsName(name: string): string | Buffer {
  return HAS_ESC.test(name) ? nameToBytes(name) : name;
}

/** Bytes of `name` (what NAME_MAX counts). */
export function nameBytes(name: string): number {
  return HAS_ESC.test(name) ? nameToBytes(name).length : Buffer.byteLength(name, 'utf8');
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
