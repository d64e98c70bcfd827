// Comparing and merging the variants of a conflicted file (ARCHITECTURE §7): a clean three-way
// merge of text when the base is known, markers when it is not, and a unified diff for
// people (whether a variant is text, and its hash: content.ts). Pure functions over strings,
// no I/O; nothing here prints, exits or decides what to keep. Loaded only when text is
// merged or shown: it brings node-diff3 and jsdiff.
//
// Libraries, and why:
//   node-diff3 (3.x)  the three-way merge (Khanna/Kunal/Pierce diff3 regions): maintained, ESM
//                     with its own types, works on arrays of tokens, so we hand it whole lines
//                     with their terminators and line endings survive untouched. Its LCS is
//                     Hunt-McIlroy and degrades badly on many repeated lines (upstream issue
//                     #84: 1,000 identical lines take ~1.5 s, 4,000 lines with every third one
//                     blank ~7 s), so we trim what all three share at both ends first and refuse
//                     (clean: false, the whole differing middle as one conflict) when the rest
//                     is still too costly: a merge never blocks the daemon for long.
//   diff (jsdiff 9)   unified diffs and the two-way markers: maintained, ESM with its own
//                     types, Myers O(ND) with a timeout; past the timeout we fall back to a
//                     whole-file replacement, which is still correct, just not minimal.
//
// What must stay true:
//   - `clean` is false whenever any hunk conflicts (or the merge was refused as too costly).
//     Callers apply a merge automatically only when clean; a merge that is not clean is shown
//     to the user, never applied.
//   - A clean merge contains every change of either side; changes identical on both sides
//     are not a conflict.
//   - Line endings are preserved byte for byte (a line is compared with its terminator, so an
//     LF/CRLF conversion on one side is a change like any other), and nothing is guessed:
//     when all three versions use one line ending (the usual case), whether the file ends with
//     a newline merges as its own yes/no, so adding or dropping the final newline on one side
//     and editing the last line on the other is not a conflict, and the newline is that one
//     ending. When they mix endings the final newline is part of the last line (as in git):
//     changing it conflicts with an edit of, or next to, the last line.
//   - Inside conflict blocks every line ends with a newline (as git does): marker lines must
//     start a line. Such output is for people, never applied automatically.
//   - isText checks UTF-8 validity over the whole buffer (not just a sample): callers decode
//     with buf.toString('utf8'), and a lossy decode would silently corrupt a merge.
import { diff3Merge } from 'node-diff3';
import { createTwoFilesPatch, diffArrays, formatPatch, FILE_HEADERS_ONLY } from 'diff';
import type { StructuredPatch } from 'diff';

type Labels = { client?: string; base?: string; server?: string };

/**
 * Upper bound on node-diff3's LCS work for both base/side pairs together, in its inner-loop
 * steps as estimated by diff3Work. Measured at 0.4-0.9 ns a step (2 cores), so a merge takes
 * at most about a third of a second; 4e8 still admits a 10,000-line differing middle of
 * distinct lines, or about 600 lines that are all the same.
 */
const DIFF3_WORK_BUDGET = 4e8;
/** jsdiff's time limit for one two-way diff, after which we use a whole-file replacement. */
const DIFF_TIMEOUT_MS = 500;
const DEFAULT_LABELS = { client: 'client', base: 'base', server: 'server' };

/** Clean three-way merge of text: { clean: true, merged } when no hunk conflicts; otherwise { clean: false, merged } where merged carries git-style conflict markers labelled with the given labels (<<<<<<< client / ||||||| base / ======= / >>>>>>> server). Line endings preserved; a final newline on either side handled correctly; identical changes on both sides are not a conflict. */
export function threeWayMerge(
  base: string, client: string, server: string, labels?: Labels,
): { clean: boolean; merged: string; conflicts: number } {
  // Exact shortcuts: one side unchanged (or both the same) merges to the other, byte for byte.
  if (client === server || server === base) return { clean: true, merged: client, conflicts: 0 };
  if (client === base) return { clean: true, merged: server, conflicts: 0 };

  // An empty base says nothing about a final newline: versions created on both sides are
  // merged as they are (so differing only in the final newline is a conflict).
  const uniform = base === '' ? undefined : commonEol([base, client, server]);
  const eol = uniform ?? eolOf(client) ?? eolOf(base) ?? eolOf(server) ?? '\n';
  // With one line ending throughout, every version gets a final newline for the line merge
  // (so "b" and "b\n" as a last line are the same line) and whether the result ends with one
  // merges separately: exactly `uniform` is added here and taken off below, so no byte is
  // guessed. With mixed endings the versions are merged as they are.
  const prepare = (text: string): string[] =>
    lines(uniform !== undefined && !endsWithNewline(text) ? text + uniform : text);
  const o = prepare(base);
  const a = prepare(client);
  const b = prepare(server);
  const finalNewline = uniform === undefined
    || mergeFlag(endsWithNewline(base), endsWithNewline(client), endsWithNewline(server));

  const { head, tail } = commonEnds(o, a, b);
  const om = o.slice(head, o.length - tail);
  const am = a.slice(head, a.length - tail);
  const bm = b.slice(head, b.length - tail);
  const out: string[] = o.slice(0, head);
  const m = markers(labels, eol);
  let conflicts = 0;
  let endsInConflict = false;

  if (diff3Work(om, am) + diff3Work(om, bm) > DIFF3_WORK_BUDGET) {
    // Too costly for node-diff3: one conflict over the whole differing middle (safe: not clean).
    pushConflict(out, m, eol, am, om, bm);
    conflicts = 1;
    endsInConflict = tail === 0;
  } else {
    for (const region of diff3Merge<string>(am, om, bm, { excludeFalseConflicts: true })) {
      if (region.ok) {
        out.push(...region.ok);
        endsInConflict = false;
      } else if (region.conflict) {
        pushConflict(out, m, eol, region.conflict.a, region.conflict.o, region.conflict.b);
        conflicts++;
        endsInConflict = true;
      }
    }
    if (tail > 0) endsInConflict = false;
  }
  out.push(...o.slice(o.length - tail));

  let merged = out.join('');
  // The final newline was only added for the line merge; take it off again when the merged
  // answer is "no final newline" (not after a marker line, which must end its line). Every
  // line ends with `eol` here, the added newline included.
  if (!finalNewline && !endsInConflict && merged.endsWith(eol)) merged = merged.slice(0, -eol.length);
  return { clean: conflicts === 0, merged, conflicts };
}

/** Two-way merge with markers when there is no base (always clean: false unless equal). */
export function twoWayMarkers(client: string, server: string, labels?: Labels): string {
  if (client === server) return client;
  const eol = eolOf(client) ?? eolOf(server) ?? '\n';
  const m = markers(labels, eol);
  const a = lines(client);
  const b = lines(server);
  const changes = diffArrays(a, b, { timeout: DIFF_TIMEOUT_MS });
  const out: string[] = [];
  if (!changes) {
    pushConflict(out, m, eol, a, undefined, b);
    return out.join('');
  }
  let mine: string[] = [];
  let theirs: string[] = [];
  const flush = (): void => {
    if (mine.length || theirs.length) pushConflict(out, m, eol, mine, undefined, theirs);
    mine = [];
    theirs = [];
  };
  for (const c of changes) {
    if (c.removed) mine.push(...c.value);
    else if (c.added) theirs.push(...c.value);
    else {
      flush();
      out.push(...c.value);
    }
  }
  flush();
  return out.join('');
}

/** A unified diff (like `diff -u`), with file labels and 3 lines of context; '' if equal. */
export function unifiedDiff(a: string, b: string, aLabel: string, bLabel: string): string {
  if (a === b) return '';
  const patch = createTwoFilesPatch(aLabel, bLabel, a, b, undefined, undefined, {
    context: 3, headerOptions: FILE_HEADERS_ONLY, timeout: DIFF_TIMEOUT_MS,
  });
  return patch ?? replacementPatch(a, b, aLabel, bLabel);
}

// --- helpers ---------------------------------------------------------------------------------

/** Lines with their terminators ("a\r\n", "b\n"); a last line without one is kept as is. */
function lines(text: string): string[] {
  return text === '' ? [] : text.split(/(?<=\n)/);
}

/** The terminator of the last terminated line ('\r\n' or '\n'), or undefined if there is none. */
function eolOf(text: string): string | undefined {
  const i = text.lastIndexOf('\n');
  if (i < 0) return undefined;
  return i > 0 && text[i - 1] === '\r' ? '\r\n' : '\n';
}

/** An empty file counts as ending with a newline: it has no unterminated last line. */
function endsWithNewline(text: string): boolean {
  return text === '' || text.endsWith('\n');
}

/**
 * The one line ending all the texts use: '\r\n' if every line break is CRLF, '\n' if none is
 * (or there are none), undefined if they mix.
 */
function commonEol(texts: string[]): '\n' | '\r\n' | undefined {
  let lf = false;
  let crlf = false;
  for (const t of texts) {
    for (let i = t.indexOf('\n'); i >= 0; i = t.indexOf('\n', i + 1)) {
      if (i > 0 && t.charCodeAt(i - 1) === 13) crlf = true;
      else lf = true;
      if (lf && crlf) return undefined;
    }
  }
  return crlf ? '\r\n' : '\n';
}

/** Three-way merge of a yes/no: a side that changed it wins (both changing it agree). */
function mergeFlag(base: boolean, client: boolean, server: boolean): boolean {
  return client !== base ? client : server;
}

/** How many leading and trailing lines all three share (not overlapping in any of them). */
function commonEnds(o: string[], a: string[], b: string[]): { head: number; tail: number } {
  const min = Math.min(o.length, a.length, b.length);
  let head = 0;
  while (head < min && o[head] === a[head] && o[head] === b[head]) head++;
  let tail = 0;
  while (tail < min - head) {
    const x = o[o.length - 1 - tail];
    if (x !== a[a.length - 1 - tail] || x !== b[b.length - 1 - tail]) break;
    tail++;
  }
  return { head, tail };
}

/**
 * An upper estimate of node-diff3's LCS steps for diffing base o against side x: for each
 * base line it scans the LCS candidates and each occurrence of that line in x.
 */
function diff3Work(o: string[], x: string[]): number {
  const counts = new Map<string, number>();
  for (const line of x) counts.set(line, (counts.get(line) ?? 0) + 1);
  let perScan = 0;
  for (const line of o) perScan += 1 + (counts.get(line) ?? 0);
  return perScan * (Math.min(o.length, x.length) + 1);
}

type Markers = { client: string; base: string; sep: string; server: string };

/** Marker lines; a label is kept on its marker's line (line breaks in it become spaces). */
function markers(labels: Labels | undefined, eol: string): Markers {
  const mark = (sign: string, label: string): string =>
    (label ? `${sign} ${label.replace(/[\r\n]+/g, ' ')}` : sign) + eol;
  return {
    client: mark('<<<<<<<', labels?.client ?? DEFAULT_LABELS.client),
    base: mark('|||||||', labels?.base ?? DEFAULT_LABELS.base),
    sep: '=======' + eol,
    server: mark('>>>>>>>', labels?.server ?? DEFAULT_LABELS.server),
  };
}

/** Appends one conflict block; the base section only when a base is given (diff3 style). */
function pushConflict(
  out: string[], m: Markers, eol: string, client: string[], base: string[] | undefined, server: string[],
): void {
  const terminated = (ls: string[]): string[] => ls.map((l) => (l.endsWith('\n') ? l : l + eol));
  out.push(m.client, ...terminated(client));
  if (base) out.push(m.base, ...terminated(base));
  out.push(m.sep, ...terminated(server), m.server);
}

/** A unified diff that replaces every line of a with every line of b (when jsdiff timed out). */
function replacementPatch(a: string, b: string, aLabel: string, bLabel: string): string {
  const hunkLines = (text: string, sign: string): string[] => {
    const ls = lines(text).map((l) => sign + l.replace(/\n$/, ''));
    if (!endsWithNewline(text)) ls.push('\\ No newline at end of file');
    return ls;
  };
  const oldLines = lines(a).length;
  const newLines = lines(b).length;
  const patch: StructuredPatch = {
    oldFileName: aLabel, newFileName: bLabel, oldHeader: undefined, newHeader: undefined,
    hunks: [{
      oldStart: oldLines ? 1 : 0, oldLines, newStart: newLines ? 1 : 0, newLines,
      lines: [...hunkLines(a, '-'), ...hunkLines(b, '+')],
    }],
  };
  return formatPatch(patch, FILE_HEADERS_ONLY);
}
