// What a variant's bytes are: text or not (isText), and their sha256. Apart from merge.ts so
// that the mount process, which needs these for every conflict, loads the diff libraries
// (node-diff3, jsdiff: twenty modules) only when it merges text.
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** How much of a buffer isText samples for NUL and control bytes. */
const TEXT_SAMPLE_BYTES = 64 * 1024;
/** Above this share of unusual control bytes (of the sample) a buffer is not text. */
const CONTROL_MAX_SHARE = 1 / 32;
/** Control bytes ordinary text has: BS, TAB, LF, VT, FF, CR, ESC (colour codes). */
const TEXT_CONTROLS = new Set([0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1b]);

/** Heuristic: looks like text (valid UTF-8, no NUL bytes in the first 64 KiB, at most a small share of control chars). */
export function isText(buf: Buffer): boolean {
  if (!isUtf8(buf)) return false;
  const n = Math.min(buf.length, TEXT_SAMPLE_BYTES);
  let controls = 0;
  for (let i = 0; i < n; i++) {
    const c = buf[i]!;
    if (c === 0) return false;
    if ((c < 0x20 && !TEXT_CONTROLS.has(c)) || c === 0x7f) controls++;
  }
  return controls <= n * CONTROL_MAX_SHARE;
}

/** sha256 hex of a buffer, and a streaming sha256 of a file path (for large binary variants). */
export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
