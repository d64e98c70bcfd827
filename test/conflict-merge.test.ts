// src/conflict/merge.ts and content.ts: text detection, three-way merge (examples and a seeded property test),
// two-way markers, unified diffs, hashes, and that pathological inputs stay fast.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { threeWayMerge, twoWayMarkers, unifiedDiff } from '../src/conflict/merge.js';
import { isText, sha256, sha256File } from '../src/conflict/content.js';
import { mulberry32 } from './helpers/rng.js';

const MARKER = /^(<<<<<<<|\|\|\|\|\|\|\||=======|>>>>>>>)/m;

// --- threeWayMerge: examples ---------------------------------------------------------------

test('disjoint edits merge cleanly, both present, in order', () => {
  const base = 'one\ntwo\nthree\nfour\nfive\n';
  const r = threeWayMerge(base, 'ONE\ntwo\nthree\nfour\nfive\n', 'one\ntwo\nthree\nfour\nFIVE\n');
  assert.deepEqual(r, { clean: true, merged: 'ONE\ntwo\nthree\nfour\nFIVE\n', conflicts: 0 });
});

test('overlapping edits are not clean: git-style markers with both sides and the base', () => {
  const r = threeWayMerge('a\nb\nc\n', 'a\nclient\nc\n', 'a\nserver\nc\n');
  assert.equal(r.clean, false);
  assert.equal(r.conflicts, 1);
  assert.equal(r.merged, [
    'a', '<<<<<<< client', 'client', '||||||| base', 'b', '=======', 'server', '>>>>>>> server', 'c', '',
  ].join('\n'));
});

test('markers carry the given labels', () => {
  const r = threeWayMerge('x\n', 'y\n', 'z\n', { client: 'mine (offline)', base: 'v7', server: 'nfs' });
  assert.equal(r.merged, '<<<<<<< mine (offline)\ny\n||||||| v7\nx\n=======\nz\n>>>>>>> nfs\n');
  // Missing labels fall back to the defaults; a line break cannot split a marker line.
  const r2 = threeWayMerge('x\n', 'y\n', 'z\n', { client: undefined, base: '', server: 'two\nlines' });
  assert.equal(r2.merged, '<<<<<<< client\ny\n|||||||\nx\n=======\nz\n>>>>>>> two lines\n');
});

test('two separate conflicts are counted as two', () => {
  const r = threeWayMerge('a\nb\nc\nd\ne\n', 'A1\nb\nc\nd\nE1\n', 'A2\nb\nc\nd\nE2\n');
  assert.equal(r.clean, false);
  assert.equal(r.conflicts, 2);
  assert.match(r.merged, /A1[\s\S]*A2[\s\S]*\nb\nc\nd\n[\s\S]*E1[\s\S]*E2/);
});

test('identical edits on both sides are clean', () => {
  const r = threeWayMerge('a\nb\nc\n', 'a\nB\nc\nd\n', 'a\nB\nc\nd\n');
  assert.deepEqual(r, { clean: true, merged: 'a\nB\nc\nd\n', conflicts: 0 });
  // The same edit in one place and different edits elsewhere: only the identical one merges.
  const r2 = threeWayMerge('a\nb\nc\nd\ne\n', 'a\nB\nc\nd\ne\n', 'a\nB\nc\nd\nE\n');
  assert.deepEqual(r2, { clean: true, merged: 'a\nB\nc\nd\nE\n', conflicts: 0 });
});

test('insertion at the start on one side and at the end on the other', () => {
  const r = threeWayMerge('a\nb\nc\n', 'first\na\nb\nc\n', 'a\nb\nc\nlast\n');
  assert.deepEqual(r, { clean: true, merged: 'first\na\nb\nc\nlast\n', conflicts: 0 });
});

test('both inserting at the same place is a conflict (order unknown)', () => {
  const r = threeWayMerge('a\nb\n', 'a\nX\nb\n', 'a\nY\nb\n');
  assert.equal(r.clean, false);
  assert.match(r.merged, /<<<<<<< client\nX\n\|\|\|\|\|\|\| base\n=======\nY\n>>>>>>> server\n/);
});

test('deletion on one side and an edit elsewhere on the other', () => {
  const r = threeWayMerge('a\nb\nc\nd\ne\n', 'a\nd\ne\n', 'a\nb\nc\nd\nE\n');
  assert.deepEqual(r, { clean: true, merged: 'a\nd\nE\n', conflicts: 0 });
});

test('deleting a line the other side edited is a conflict', () => {
  const r = threeWayMerge('a\nb\nc\n', 'a\nc\n', 'a\nB\nc\n');
  assert.equal(r.clean, false);
  assert.match(r.merged, /<<<<<<< client\n\|\|\|\|\|\|\| base\nb\n=======\nB\n>>>>>>> server\n/);
});

test('files without a trailing newline', () => {
  // Neither side adds one: the result has none either.
  assert.deepEqual(threeWayMerge('a\nb\nc', 'A\nb\nc', 'a\nb\nC'), { clean: true, merged: 'A\nb\nC', conflicts: 0 });
  // Appending to a file without a final newline is not a change to its last line.
  assert.deepEqual(threeWayMerge('a\nb\nc', 'A\nb\nc', 'a\nb\nc\nd'), { clean: true, merged: 'A\nb\nc\nd', conflicts: 0 });
  // One side adds the final newline, the other edits the last line: both kept.
  assert.deepEqual(threeWayMerge('a\nb\nc', 'a\nb\nc\n', 'a\nb\nC'), { clean: true, merged: 'a\nb\nC\n', conflicts: 0 });
  // One side drops the final newline, the other edits the first line.
  assert.deepEqual(threeWayMerge('a\nb\nc\n', 'a\nb\nc', 'A\nb\nc\n'), { clean: true, merged: 'A\nb\nc', conflicts: 0 });
  // A single unterminated line, edited on one side only.
  assert.deepEqual(threeWayMerge('x', 'x', 'y'), { clean: true, merged: 'y', conflicts: 0 });
  // A last line ending in a lone CR keeps its CR.
  assert.deepEqual(threeWayMerge('x\ny\nz\r', 'X\ny\nz\r', 'x\ny\nZ\r'), { clean: true, merged: 'X\ny\nZ\r', conflicts: 0 });
  assert.deepEqual(threeWayMerge('x\ny\nz\r', 'X\ny\nz\r', 'x\ny\nz\r\n'), { clean: true, merged: 'X\ny\nz\r\n', conflicts: 0 });
  assert.deepEqual(threeWayMerge('x\ny\nz\r', 'x\ny\nz\r\n', 'X\ny\nz\r'), { clean: true, merged: 'X\ny\nz\r\n', conflicts: 0 });
  // Mixed line endings: nothing is guessed, the final newline is part of the last line (as in
  // git), so adding it conflicts with an edit of the last line but not with one further away.
  assert.equal(threeWayMerge('a\r\nb\nc', 'a\r\nb\nc\n', 'a\r\nb\nC').clean, false);
  assert.deepEqual(threeWayMerge('a\r\nb\nc\nd', 'a\r\nb\nc\nd\r\n', 'A\r\nb\nc\nd'), { clean: true, merged: 'A\r\nb\nc\nd\r\n', conflicts: 0 });
  // A conflict on the unterminated last line: marker lines still start lines.
  const r = threeWayMerge('a\nb', 'a\nB1', 'a\nB2');
  assert.equal(r.clean, false);
  assert.equal(r.merged, 'a\n<<<<<<< client\nB1\n||||||| base\nb\n=======\nB2\n>>>>>>> server\n');
});

test('CRLF files keep CRLF, markers included', () => {
  const base = 'a\r\nb\r\nc\r\nd\r\ne\r\n';
  const r = threeWayMerge(base, 'A\r\nb\r\nc\r\nd\r\ne\r\n', 'a\r\nb\r\nc\r\nd\r\nE\r\n');
  assert.deepEqual(r, { clean: true, merged: 'A\r\nb\r\nc\r\nd\r\nE\r\n', conflicts: 0 });
  const c = threeWayMerge('a\r\nb\r\nc\r\n', 'a\r\nX\r\nc\r\n', 'a\r\nY\r\nc\r\n');
  assert.equal(c.clean, false);
  assert.equal(c.merged, 'a\r\n<<<<<<< client\r\nX\r\n||||||| base\r\nb\r\n=======\r\nY\r\n>>>>>>> server\r\nc\r\n');
  assert.equal(c.merged.replace(/\r\n/g, '').includes('\n'), false, 'no bare LF in a CRLF merge');
  // CRLF without a final newline.
  const n = threeWayMerge('a\r\nb\r\nc', 'A\r\nb\r\nc', 'a\r\nb\r\nC');
  assert.deepEqual(n, { clean: true, merged: 'A\r\nb\r\nC', conflicts: 0 });
  // Converting line endings is a change to every line: a conflict with any other edit.
  assert.equal(threeWayMerge('a\nb\n', 'a\r\nb\r\n', 'a\nB\n').clean, false);
});

test('empty base: both created', () => {
  const r = threeWayMerge('', 'client line\n', 'server line\n');
  assert.equal(r.clean, false);
  assert.equal(r.merged, '<<<<<<< client\nclient line\n||||||| base\n=======\nserver line\n>>>>>>> server\n');
  assert.deepEqual(threeWayMerge('', 'same\n', 'same\n'), { clean: true, merged: 'same\n', conflicts: 0 });
  // Created on both sides, differing only in the final newline: not guessed.
  assert.deepEqual(threeWayMerge('', 'same\n', 'same'), {
    clean: false, merged: '<<<<<<< client\nsame\n||||||| base\n=======\nsame\n>>>>>>> server\n', conflicts: 1,
  });
  assert.deepEqual(threeWayMerge('', '', ''), { clean: true, merged: '', conflicts: 0 });
});

test('one side unchanged: the result is the other side, byte for byte', () => {
  const base = 'a\nb\r\nc';
  const other = 'z\n\u00e9\u4e2d\r\nc\n\n';
  assert.deepEqual(threeWayMerge(base, base, other), { clean: true, merged: other, conflicts: 0 });
  assert.deepEqual(threeWayMerge(base, other, base), { clean: true, merged: other, conflicts: 0 });
  assert.deepEqual(threeWayMerge(base, '', base), { clean: true, merged: '', conflicts: 0 });
});

test('lines that look like Object.prototype members are ordinary lines', () => {
  const base = 'constructor\n__proto__\ntoString\nhasOwnProperty\n';
  const r = threeWayMerge(base, 'CONSTRUCTOR\n__proto__\ntoString\nhasOwnProperty\n', 'constructor\n__proto__\ntoString\nHAS\n');
  assert.deepEqual(r, { clean: true, merged: 'CONSTRUCTOR\n__proto__\ntoString\nHAS\n', conflicts: 0 });
});

// --- threeWayMerge: seeded property test -----------------------------------------------------

const rng = mulberry32;

type Owner = 'client' | 'server' | 'both';
/** Replace base lines [start, end) with `lines` (an insertion when start === end). */
type Edit = { start: number; end: number; lines: string[]; owner: Owner };

function applyEdits(base: string[], edits: Edit[]): string[] {
  const out: string[] = [];
  let at = 0;
  for (const e of edits) { // in position order, non-overlapping
    out.push(...base.slice(at, e.start), ...e.lines);
    at = e.end;
  }
  out.push(...base.slice(at));
  return out;
}

function render(ls: string[], eol: string, finalNewline: boolean): string {
  return ls.length === 0 ? '' : ls.join(eol) + (finalNewline ? eol : '');
}

/**
 * A random case: a base of distinct lines and a sequence of edits in position order, each
 * owned by the client, the server or both (the same edit on both sides). With `minGap` 1
 * every two edits are separated by at least one unchanged line; with 0 they may touch.
 * One line ending per case (LF or CRLF); either side may add or drop the final newline.
 */
function randomCase(r: () => number, seed: number, minGap: number) {
  const int = (n: number): number => Math.floor(r() * n);
  const n = int(14);
  const base = Array.from({ length: n }, (_, i) => `base ${i}`);
  const eol = r() < 0.3 ? '\r\n' : '\n';
  // Whether each version ends with a newline: mostly as the base, sometimes toggled by a side.
  const baseNewline = r() < 0.7;
  // (Not for an empty base, which has no final newline to change: see 'empty base'.)
  const clientNewline = n > 0 && r() < 0.2 ? !baseNewline : baseNewline;
  const serverNewline = n > 0 && r() < 0.2 ? !baseNewline : baseNewline;
  const mergedNewline = clientNewline !== baseNewline ? clientNewline : serverNewline;
  const edits: Edit[] = [];
  let cursor = 0;
  let fresh = 0;
  for (;;) {
    const gap = (edits.length === 0 ? 0 : minGap) + int(3);
    const start = cursor + gap;
    if (start > n || edits.length >= 4) break;
    const end = Math.min(n, start + int(3));
    let count = int(3);
    if (start === end && count === 0) count = 1; // no empty edits
    const owner: Owner = (['client', 'server', 'both'] as const)[int(3)]!;
    edits.push({ start, end, owner, lines: Array.from({ length: count }, () => `${owner} ${seed}.${fresh++}`) });
    cursor = end;
  }
  const client = applyEdits(base, edits.filter((e) => e.owner !== 'server'));
  const server = applyEdits(base, edits.filter((e) => e.owner !== 'client'));
  const expected = applyEdits(base, edits);
  return {
    base: render(base, eol, baseNewline),
    client: render(client, eol, clientNewline),
    server: render(server, eol, serverNewline),
    expected: render(expected, eol, mergedNewline),
    edits, baseLines: base,
  };
}

test('property: edits separated by an unchanged line always merge cleanly to the expected text', () => {
  for (let seed = 1; seed <= 400; seed++) {
    const c = randomCase(rng(seed), seed, 1);
    const r = threeWayMerge(c.base, c.client, c.server);
    assert.equal(r.clean, true, `seed ${seed}: ${JSON.stringify(c)} -> ${JSON.stringify(r)}`);
    assert.equal(r.merged, c.expected, `seed ${seed}: ${JSON.stringify(c)}`);
    assert.equal(r.conflicts, 0);
  }
});

test('property: a clean merge has every change of both sides; an unclean one loses no line', () => {
  let clean = 0;
  let unclean = 0;
  for (let seed = 1001; seed <= 1400; seed++) {
    const c = randomCase(rng(seed), seed, 0);
    const r = threeWayMerge(c.base, c.client, c.server);
    const added = c.edits.flatMap((e) => e.lines);
    if (r.clean) {
      clean++;
      // Edits in position order, so applying all of them is the one right answer.
      assert.equal(r.merged, c.expected, `seed ${seed}: ${JSON.stringify(c)}`);
      assert.doesNotMatch(r.merged, MARKER);
    } else {
      unclean++;
      assert.ok(r.conflicts > 0);
      assert.match(r.merged, /^<<<<<<< client$/m);
      assert.match(r.merged, /^>>>>>>> server$/m);
      // Nothing lost: every added line, and every base line that neither side deleted.
      const kept = c.baseLines.filter((_, i) => !c.edits.some((e) => e.start <= i && i < e.end));
      const mergedLines = new Set(r.merged.split(/\r?\n/));
      for (const line of [...added, ...kept]) {
        assert.ok(mergedLines.has(line), `seed ${seed}: ${line} lost in ${JSON.stringify(r.merged)}`);
      }
    }
  }
  assert.ok(clean > 50 && unclean > 50, `both outcomes exercised (clean ${clean}, unclean ${unclean})`);
});

test('property: independent random edits on each side, with repeated lines; clean => nothing lost', () => {
  const words = ['{', '}', '', 'return x;', 'x++;'];
  for (let seed = 2001; seed <= 2300; seed++) {
    const r = rng(seed);
    const int = (n: number): number => Math.floor(r() * n);
    const base = Array.from({ length: int(16) }, () => words[int(words.length)]!);
    let fresh = 0;
    const side = (who: string): { text: string[]; added: string[] } => {
      const text = base.slice();
      for (let k = int(3); k > 0; k--) {
        const at = int(text.length + 1);
        const del = Math.min(int(3), text.length - at);
        const ins = Array.from({ length: int(3) }, () => `${who} ${seed}.${fresh++}`);
        text.splice(at, del, ...ins);
      }
      // Fresh lines this side still has (a later splice may delete an earlier insertion).
      return { text, added: text.filter((l) => l.startsWith(`${who} `)) };
    };
    const a = side('client');
    const b = side('server');
    const j = (ls: string[]): string => ls.map((l) => l + '\n').join('');
    const m = threeWayMerge(j(base), j(a.text), j(b.text));
    const mergedLines = m.merged.split('\n');
    for (const line of [...a.added, ...b.added]) {
      assert.ok(mergedLines.includes(line), `seed ${seed}: ${line} missing (clean ${m.clean})`);
    }
    if (m.clean) assert.doesNotMatch(m.merged, MARKER);
    else assert.ok(m.conflicts > 0);
  }
});

// --- threeWayMerge / diffs: bounded time on pathological input -------------------------------

test('many repeated lines: the merge stays fast (refusing rather than blocking)', () => {
  // node-diff3's LCS is superlinear in repeated lines; this input would take minutes unguarded.
  const base = Array.from({ length: 20000 }, (_, i) => (i % 3 === 0 ? '}\n' : `line ${i}\n`));
  const client = base.slice();
  const server = base.slice();
  client[5] = 'client edit\n';
  server[19990] = 'server edit\n';
  client.splice(10000, 0, 'client insert\n');
  const t0 = performance.now();
  const r = threeWayMerge(base.join(''), client.join(''), server.join(''));
  const ms = performance.now() - t0;
  assert.ok(ms < 5000, `took ${ms} ms`);
  if (r.clean) {
    const expected = base.slice();
    expected[5] = 'client edit\n';
    expected[19990] = 'server edit\n';
    expected.splice(10000, 0, 'client insert\n');
    assert.equal(r.merged, expected.join(''));
  } else {
    assert.ok(r.merged.includes('client edit\n') && r.merged.includes('server edit\n') && r.merged.includes('client insert\n'));
  }
  // Within the budget: 8,000 distinct lines edited at both ends (nothing to trim) merge cleanly.
  const distinct = Array.from({ length: 8000 }, (_, i) => `distinct ${i}\n`);
  const dc = distinct.slice();
  const ds = distinct.slice();
  dc[0] = 'client first\n';
  ds[7999] = 'server last\n';
  const expectedDistinct = dc.slice(0, 7999).concat(ds[7999]!).join('');
  assert.deepEqual(threeWayMerge(distinct.join(''), dc.join(''), ds.join('')), { clean: true, merged: expectedDistinct, conflicts: 0 });
  // A small edit in a large file is cheap: the shared ends are trimmed before merging.
  const near = base.slice();
  near[7] = 'server near\n';
  const r2 = threeWayMerge(base.join(''), client.slice(0, 9).concat(base.slice(9)).join(''), near.join(''));
  assert.equal(r2.clean, true);
});

test('unifiedDiff and twoWayMarkers of large, entirely different files return promptly', () => {
  const a = Array.from({ length: 20000 }, (_, i) => `a${i}\n`).join('');
  const b = Array.from({ length: 20000 }, (_, i) => `b${i}\n`).join('');
  let t0 = performance.now();
  const d = unifiedDiff(a, b, 'a', 'b');
  assert.ok(performance.now() - t0 < 5000);
  assert.ok(d.startsWith('--- a\n+++ b\n@@ -1,20000 +1,20000 @@\n-a0\n'));
  assert.equal(d.split('\n').filter((l) => l.startsWith('+b')).length, 20000);
  t0 = performance.now();
  const m = twoWayMarkers(a, b);
  assert.ok(performance.now() - t0 < 5000);
  assert.ok(m.startsWith('<<<<<<< client\na0\n') && m.endsWith('b19999\n>>>>>>> server\n'));
});

// --- twoWayMarkers ---------------------------------------------------------------------------

test('twoWayMarkers: equal inputs unchanged; differing hunks marked, common lines kept once', () => {
  assert.equal(twoWayMarkers('same\nfile', 'same\nfile'), 'same\nfile');
  const m = twoWayMarkers('a\nb\nc\nd\n', 'a\nB\nc\nd\nextra\n', { client: 'laptop', server: 'nfs' });
  assert.equal(m, 'a\n<<<<<<< laptop\nb\n=======\nB\n>>>>>>> nfs\nc\nd\n<<<<<<< laptop\n=======\nextra\n>>>>>>> nfs\n');
  assert.doesNotMatch(m, /\|\|\|\|\|\|\|/);
  // CRLF, and an unterminated last line inside a block gets a line end before the marker.
  assert.equal(twoWayMarkers('x\r\ny', 'x\r\nz'), 'x\r\n<<<<<<< client\r\ny\r\n=======\r\nz\r\n>>>>>>> server\r\n');
  // Created on both sides, nothing in common.
  assert.equal(twoWayMarkers('', 'new\n'), '<<<<<<< client\n=======\nnew\n>>>>>>> server\n');
});

// --- unifiedDiff -----------------------------------------------------------------------------

test('unifiedDiff: ---/+++ headers, @@ hunks with 3 lines of context, and "" for equal inputs', () => {
  assert.equal(unifiedDiff('a\nb\n', 'a\nb\n', 'x', 'y'), '');
  assert.equal(unifiedDiff('', '', 'x', 'y'), '');
  const a = Array.from({ length: 20 }, (_, i) => `line ${i}\n`).join('');
  const b = a.replace('line 10\n', 'LINE TEN\n');
  const d = unifiedDiff(a, b, 'client/notes.txt', 'server/notes.txt');
  assert.equal(d, [
    '--- client/notes.txt', '+++ server/notes.txt', '@@ -8,7 +8,7 @@',
    ' line 7', ' line 8', ' line 9', '-line 10', '+LINE TEN', ' line 11', ' line 12', ' line 13', '',
  ].join('\n'));
  // Two distant changes: two hunks.
  const d2 = unifiedDiff(a, b.replace('line 0\n', 'zero\n').replace('line 19\n', 'last\n'), 'a', 'b');
  assert.equal(d2.match(/^@@ /gm)?.length, 3);
  // A missing final newline is reported as diff -u does.
  assert.equal(unifiedDiff('a\n', 'a', 'x', 'y'), '--- x\n+++ y\n@@ -1,1 +1,1 @@\n-a\n+a\n\\ No newline at end of file\n');
  // From nothing to something.
  assert.equal(unifiedDiff('', 'new\n', 'x', 'y'), '--- x\n+++ y\n@@ -0,0 +1,1 @@\n+new\n');
});

// --- isText ----------------------------------------------------------------------------------

test('isText: UTF-8 text, including multibyte, tabs, CRLF, ANSI colours', () => {
  assert.equal(isText(Buffer.from('hello\tworld\r\n\u00e9t\u00e9 \u4e2d\u6587 \u{1f600}\n')), true);
  assert.equal(isText(Buffer.from('\x1b[31mred\x1b[0m\n\f')), true);
  assert.equal(isText(Buffer.from('\ufeffwith a BOM\n')), true);
  assert.equal(isText(Buffer.alloc(0)), true, 'an empty file is (empty) text');
});

test('isText: binary is not text', () => {
  assert.equal(isText(randomBytes(4096)), false, 'random bytes');
  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52]);
  assert.equal(isText(png), false, 'a PNG header');
  assert.equal(isText(Buffer.from('plain text\0 with one NUL\n')), false, 'a NUL byte');
  assert.equal(isText(Buffer.from('caf\xe9\n', 'latin1')), false, 'Latin-1, not UTF-8');
  assert.equal(isText(Buffer.from([1, 2, 3, 4, 5, 6, 7, 0x61, 0x62, 0x63])), false, 'mostly control bytes');
  // Invalid UTF-8 past the 64 KiB sample still counts: decoding it would corrupt a merge.
  assert.equal(isText(Buffer.concat([Buffer.alloc(70000, 'a'), Buffer.from([0xff, 0x0a])])), false);
  // A NUL past the sample is tolerated (valid UTF-8 round-trips it).
  assert.equal(isText(Buffer.concat([Buffer.alloc(70000, 'a'), Buffer.from([0, 0x0a])])), true);
});

// --- sha256 ----------------------------------------------------------------------------------

test('sha256 and sha256File agree, on small and multi-chunk files', async () => {
  assert.equal(sha256(Buffer.from('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(sha256(Buffer.alloc(0)), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  const dir = await mkdtemp(join(tmpdir(), 'cachefs-merge-'));
  try {
    for (const bytes of [Buffer.alloc(0), Buffer.from('abc'), randomBytes(3 * 1024 * 1024 + 17)]) {
      const file = join(dir, 'f');
      await writeFile(file, bytes);
      assert.equal(await sha256File(file), sha256(bytes));
    }
    await assert.rejects(sha256File(join(dir, 'missing')), { code: 'ENOENT' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
