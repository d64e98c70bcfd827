// Journal optimization before replay, as Coda does it: records whose effect a later record
// undoes or repeats are removed (or trimmed) before they are sent to the backend.
//
// The contract: replaying `keep`, in order, from any server state from which the whole
// journal replays without error, leaves the same final state as replaying the whole journal:
// the same names, types, file contents and sizes, modes and owners, and the same times set
// explicitly by records (a time the server sets itself -- a write's mtime, a directory's
// mtime after an entry changes -- is "not set by the journal": it is the server's clock
// either way, and a directory whose only entry changes vanished keeps its earlier mtime, as
// in Coda). Every record in `keep` still succeeds. What is assumed of the server: POSIX
// rename (onto another link of the same file it does nothing), a write of some bytes and a
// size-changing truncate reset mtime (a truncate to the same size may or may not), and
// permission checks read the mode and owners at the time of each operation (so those are
// only collapsed where no operation in between could be checked against them). Each record
// is checked as the user who made it (`by`): records are only merged into one when they act
// as the same user; dropping a record is safe whoever made it, since the journal as a whole
// is assumed to replay without error.
//
// The optimizer is a pipeline of small passes. Each pass is safe on its own (it preserves the
// contract for any valid journal it is given, and its output is again a valid journal), so
// the pipeline is repeated until no pass changes anything: one pass's removals can open
// another's (a setattr dropped from between two renames lets them collapse).
//
// Objects are followed by index id (records name them so). Names are followed through a map
// (parent, name) -> object | free | unknown, built by walking the journal: a name nobody in
// the journal created or removed is "unknown" (the server may hold anything there), except in
// a directory made by the journal, where every name starts free. Records of older journals
// that do not name their object (unlink, rmdir, rename without `obj`) make every name and
// object they touch unknown: nothing is optimized through them.
import type { JournalEntry } from './journal.js';
import { sameCreds, type JournalRecord, type SetAttrRecord } from './records.js';

export interface Optimized {
  /** Records to replay, in order (kept records keep their seq; a record may be rewritten, e.g. a setattr with fewer fields or a merged rename: then it keeps the seq of the record it replaces). */
  keep: JournalEntry[];
  /** seqs of records that are no longer needed (to be removed from the journal). */
  drop: number[];
  /** For `cachefs journal`/status: how many records each rule removed. */
  stats: { supersededWrites: number; deadWrites: number; collapsedSetattrs: number; vanishedObjects: number; collapsedRenames: number };
}

type Stats = Optimized['stats'];

export function optimizeJournal(entries: readonly JournalEntry[]): Optimized {
  const stats: Stats = { supersededWrites: 0, deadWrites: 0, collapsedSetattrs: 0, vanishedObjects: 0, collapsedRenames: 0 };
  let list = entries.slice();
  // Every pass that changes something removes a record or a setattr field, so this ends;
  // the bound is only a guard (stopping early is safe: every pass leaves a valid journal).
  for (let round = 0; round <= entries.length + 1; round++) {
    let changed = false;
    for (const pass of PASSES) {
      const edit = pass.run(list);
      if (edit.isEmpty()) continue;
      stats[pass.stat] += edit.drops.size;
      list = edit.applyTo(list);
      changed = true;
    }
    if (!changed) break;
  }
  const kept = new Set(list.map((e) => e.seq));
  return { keep: list, drop: entries.filter((e) => !kept.has(e.seq)).map((e) => e.seq), stats };
}

// ---------------------------------------------------------------------------------------
// Passes

interface Pass { stat: keyof Stats; run(list: readonly JournalEntry[]): Edit }

/** What a pass decided: records (by position) to drop, and records to replace in place. */
class Edit {
  readonly drops = new Set<number>();
  readonly rewrites = new Map<number, JournalRecord>();
  isEmpty(): boolean { return this.drops.size === 0 && this.rewrites.size === 0; }
  /** A rewritten record keeps its entry's seq (and its other bookkeeping). */
  applyTo(list: readonly JournalEntry[]): JournalEntry[] {
    const out: JournalEntry[] = [];
    list.forEach((e, i) => {
      if (this.drops.has(i)) return;
      const r = this.rewrites.get(i);
      out.push(r ? { ...e, record: r } : e);
    });
    return out;
  }
}

const PASSES: Pass[] = [
  { stat: 'vanishedObjects', run: vanishProvisional },
  { stat: 'collapsedRenames', run: collapseRenames },
  { stat: 'collapsedSetattrs', run: collapseSetattrs },
  { stat: 'supersededWrites', run: dropSupersededWrites },
  { stat: 'deadWrites', run: dropDeadWrites },
];

/**
 * Rule 4: an object made by the journal (create/mkdir/symlink/mknod carrying its id) that
 * ends the journal with no name left never needs to exist on the server: every record about
 * it goes (its creation, writes, setattrs, commits, links, renames and the last unlink/rmdir).
 *
 * Why this is safe: such an object only ever occupied names, and its own records touch
 * nothing else, except:
 *  - records of other objects that use it as a directory (made in it, moved into or out of
 *    it): it may vanish only if all those records vanish too (a fixed point: a new directory
 *    whose new children all vanish vanishes with them);
 *  - it changes who holds names: a rename of it over a name removes that name's occupant,
 *    and without its records the names it held are free at other times. Every name its
 *    records touch is replayed symbolically with and without the vanishing records
 *    (`nameSurvivesVanishing`): each kept record must find the name as it needs it, and the
 *    name must end with the same occupant. So a rename over a name that held an older
 *    object is fine when a kept rename replaces that name later (the older object is then
 *    removed by it instead): of N "write a temporary file, rename it over the file" saves,
 *    the first N-1 temporary files vanish. Freed names make no other record fail (a create
 *    needs a free name, an rmdir an empty directory, a rename over a directory an empty
 *    one); an object left longer in its name is left in a directory that must still exist
 *    for that later rename, and (a directory) is empty and named by nothing meanwhile;
 *  - entry changes reset a directory's mtime: if dropping them would leave a directory with
 *    a different explicitly set mtime at the end (a setattr of its mtime followed only by
 *    vanishing entry changes), the objects whose records touch it stay.
 * Objects touched by a record without `obj` (pinned) never vanish.
 */
function vanishProvisional(list: readonly JournalEntry[]): Edit {
  const a = analyze(list);
  const about = new Map<number, number[]>();   // object -> positions of records about it
  const inside = new Map<number, number[]>();  // directory -> positions of records using it as a parent
  const naming = new Map<string, number[]>();  // name -> positions of records naming it
  list.forEach((e, i) => {
    const s = subjectOf(e.record);
    if (s !== undefined) push(about, s, i);
    for (const p of parentsOf(e.record)) push(inside, p, i);
    for (const n of new Set(namesOf(e.record).map((n) => keyOf(n.parent, n.name)))) push(naming, n, i);
  });
  const vanishing = new Set<number>();
  for (const x of a.created) if (!a.pinned.has(x) && (a.names.get(x)?.size ?? 0) === 0) vanishing.add(x);

  for (;;) {
    let changed = false;
    for (const x of [...vanishing]) {
      const dependentsVanish = (inside.get(x) ?? []).every((i) => {
        const s = subjectOf(list[i]!.record);
        return s !== undefined && vanishing.has(s);
      });
      if (!dependentsVanish) { vanishing.delete(x); changed = true; }
    }
    if (changed) continue;
    const drops = new Set<number>();
    for (const x of vanishing) for (const i of about.get(x) ?? []) drops.add(i);
    // Names: the kept records must find them as they need them.
    const keys = new Set<string>();
    for (const i of drops) for (const n of namesOf(list[i]!.record)) keys.add(keyOf(n.parent, n.name));
    for (const k of keys) {
      if (nameSurvivesVanishing(list, a, k, naming.get(k) ?? [], vanishing)) continue;
      for (const x of [...vanishing]) {
        if ((about.get(x) ?? []).some((i) => namesOf(list[i]!.record).some((n) => keyOf(n.parent, n.name) === k))) { vanishing.delete(x); changed = true; }
      }
    }
    if (changed) continue;
    // Directories that stay: their explicitly set mtime must end the same.
    const dirs = new Set<number>();
    for (const i of drops) for (const p of parentsOf(list[i]!.record)) if (!vanishing.has(p)) dirs.add(p);
    for (const p of dirs) {
      if (sameMtimeOutcome(a.dirEvents.get(p) ?? [], drops, [])) continue;
      for (const x of [...vanishing]) {
        if ((about.get(x) ?? []).some((i) => parentsOf(list[i]!.record).includes(p))) { vanishing.delete(x); changed = true; }
      }
    }
    if (!changed) {
      const edit = new Edit();
      for (const i of drops) edit.drops.add(i);
      return edit;
    }
  }
}

/**
 * Replays the records naming one name (at positions `at`, in order) twice, symbolically: as
 * the journal has them, and without the records of vanishing objects. True when every kept
 * record finds the name as it needs it and the name ends with the same occupant.
 *
 * Occupants are symbols: an object id, free, "what the server had", or "unknown since record
 * i" (records without obj). Where the two replays differ, a kept create or link needs the
 * name free, and a kept rename onto it needs it free or held by an object of the same kind
 * (file over file, directory over directory: that object was displaced by a vanishing
 * object's rename, so it is what the journal's rename replaced there; a displaced directory
 * is empty, since nothing names it after) that cannot be the renamed object itself (a
 * rename onto another link of the same file does nothing). Everything else must see the
 * same occupant.
 */
function nameSurvivesVanishing(list: readonly JournalEntry[], a: Analysis, key: string, at: readonly number[], vanishing: ReadonlySet<number>): boolean {
  interface Sym { v: number | string; kind?: 'dir' | 'nondir' | undefined }
  let journal: Sym = { v: 'initial' };
  let replay: Sym = { v: 'initial' };
  const kindOf = (o: Sym): 'dir' | 'nondir' | undefined => o.kind ?? (typeof o.v === 'number' ? a.kinds.get(o.v) : undefined);
  // Whether occupant `v` may be the renamed object itself (another link of it: the rename
  // would then do nothing). Not when it is another known object, nor when the renamed
  // object is a directory (one name) or was made by the journal (all its names are known).
  const maybeSame = (obj: number, v: number | string): boolean =>
    typeof v === 'number' ? v === obj : !(a.kinds.get(obj) === 'dir' || (a.created.has(obj) && !a.pinned.has(obj)));
  for (const i of at) {
    const r = list[i]!.record;
    const s = subjectOf(r);
    const info = a.info[i]!;
    let role: 'make' | 'remove' | 'from' | 'onto' | 'self';
    if (r.op === 'rename') {
      const from = keyOf(r.fromParent, r.fromName);
      const to = keyOf(r.toParent, r.toName);
      role = from === to ? 'self' : to === key ? 'onto' : 'from';
    } else role = r.op === 'unlink' || r.op === 'rmdir' ? 'remove' : 'make';
    // What a record tells about the name just before it (the journal is valid): a create
    // found it free, an unlink or a rename away found its object there. An unknown occupant
    // ("what the server had") learnt this way is learnt for the replay too, if it still
    // has the same one.
    const t = info.targetBefore;
    const pre = role === 'make' ? FREE : role === 'remove' || role === 'from' ? s
      : role === 'onto' && (t === FREE || typeof t === 'number') ? t : undefined;
    if (pre !== undefined && typeof journal.v === 'string' && journal.v !== FREE) {
      if (replay.v === journal.v) replay = { v: pre };
      journal = { v: pre };
    }
    // Who holds the name after this record, in the journal as it is.
    let next: Sym;
    switch (role) {
      case 'make': next = { v: s ?? `?${i}` }; break;
      case 'remove': next = { v: FREE }; break;
      case 'from': next = info.move === 'real' ? { v: FREE } : info.move === 'noop' ? journal : { v: `?${i}` }; break;
      case 'onto': next = info.move === 'noop' ? journal : { v: s ?? `?${i}` }; break;
      case 'self': next = journal; break;
    }
    const same = journal.v === replay.v;
    if (s !== undefined && vanishing.has(s)) {
      // Dropped: the replay's occupant stays. A rename over the name displaced its occupant
      // in the journal, which now stays: it is of the renamed object's kind.
      if (role === 'onto' && same && journal.v !== FREE && info.move === 'real') replay = { v: journal.v, kind: a.kinds.get(s) };
      journal = next;
      continue;
    }
    if (!same) {
      const ok = role === 'make' ? replay.v === FREE
        : role === 'onto' ? info.move === 'real' && s !== undefined
          && (replay.v === FREE || (a.kinds.get(s) !== undefined && a.kinds.get(s) === kindOf(replay) && !maybeSame(s, replay.v)))
        : false;
      if (!ok) return false;
    }
    journal = next;
    replay = next;
  }
  return journal.v === replay.v;
}

/**
 * Rule 5: two renames of the same object, A -> B then B -> C, with nothing in between that
 * could notice where the object was, become one rename A -> C. The merged record takes the
 * place (and seq) of the second rename: it must run after everything between the two, since
 * C's occupant and C's directory are only known to be right at that point. It keeps the
 * first rename's `base` (the object's version before the journal moved it). If C is A, both
 * records vanish.
 *
 * Why this is safe: between the two, the object sits at A instead of B. Nothing in between
 * may therefore mention the object (as subject or directory), name A or B, touch A's
 * directory as an object (it must not be removed or replaced while still holding the
 * object), or be a record without `obj`. If the object may be a directory, no directory may
 * be moved in between (a move into the object's subtree could become a cycle); if not, only
 * directory moves that could replace A's directory are excluded. B must have been known free
 * before the first rename (else the first rename removed B's occupant, an effect that would
 * be lost), and the second rename must be a known real move (a rename onto another link of
 * the same file does nothing, and would then differ). Directory mtimes are checked as in rule
 * 4 (A's and B's directories lose or move their entry changes).
 *
 * One merge per directory per pass (the event lists the check reads are the pass's input);
 * the pipeline's repetition merges the rest, and longer chains one link at a time.
 */
function collapseRenames(list: readonly JournalEntry[]): Edit {
  const a = analyze(list);
  const edit = new Edit();
  const touchedDirs = new Set<number>();
  interface Candidate { at: number; obj: number; from: NameRef; to: NameRef; mayBeDir: boolean }
  const open = new Map<number, Candidate>();

  list.forEach((e, i) => {
    const r = e.record;
    if (r.op === 'rename' && r.obj !== undefined) {
      const c = open.get(r.obj);
      if (c && r.fromParent === c.to.parent && r.fromName === c.to.name && tryMerge(c, i, r)) {
        open.delete(r.obj);
        return;
      }
    }
    for (const c of [...open.values()]) if (interferes(r, i, c)) open.delete(c.obj);
    if (r.op === 'rename' && r.obj !== undefined) {
      const info = a.info[i]!;
      if (info.move === 'real' && info.targetBefore === FREE) {
        open.set(r.obj, { at: i, obj: r.obj, from: { parent: r.fromParent, name: r.fromName }, to: { parent: r.toParent, name: r.toName },
          mayBeDir: a.kinds.get(r.obj) !== 'nondir' });
      }
    }
  });
  return edit;

  function interferes(r: JournalRecord, i: number, c: Candidate): boolean {
    if (isNamespaceOp(r) && subjectOf(r) === undefined) return true;
    if (subjectOf(r) === c.obj || parentsOf(r).includes(c.obj)) return true;
    if (namesOf(r).some((n) => sameName(n, c.from) || sameName(n, c.to))) return true;
    if (subjectOf(r) === c.from.parent) return true;
    if (r.op === 'rename' && a.kinds.get(r.obj!) !== 'nondir') {
      if (c.mayBeDir) return true;
      const t = a.info[i]!.targetBefore;
      if (t === UNKNOWN || t === c.from.parent) return true;
    }
    return false;
  }

  function tryMerge(c: Candidate, i: number, r: Extract<JournalRecord, { op: 'rename' }>): boolean {
    const info = a.info[i]!;
    if (info.move !== 'real') return false;
    // The second rename may replace an (empty) directory: it must not be A's directory,
    // which still holds the object in the merged history.
    if (info.targetBefore === c.from.parent || (info.targetBefore === UNKNOWN && c.mayBeDir)) return false;
    const first = list[c.at]!.record as Extract<JournalRecord, { op: 'rename' }>;
    // One record acts as one user: renames by two users stay two (each checked as its own).
    if (!sameCreds(first, r)) return false;
    const identity = r.toParent === c.from.parent && r.toName === c.from.name;
    const dirs = new Set([c.from.parent, c.to.parent, r.toParent]);
    for (const d of dirs) if (touchedDirs.has(d)) return false;
    // Directory mtime events after the change: the first rename's go; the second's are
    // replaced by the merged record's (or go too).
    const drops = new Set([c.at, i]);
    for (const d of dirs) {
      const added: DirEvent[] = [];
      if (!identity && (d === c.from.parent || d === r.toParent)) added.push({ at: i, kind: 'reset' });
      if (!sameMtimeOutcome(a.dirEvents.get(d) ?? [], drops, added)) return false;
    }
    for (const d of dirs) touchedDirs.add(d);
    edit.drops.add(c.at);
    if (identity) edit.drops.add(i);
    else edit.rewrites.set(i, { ...r, fromParent: first.fromParent, fromName: first.fromName, base: first.base });
    return true;
  }
}

/**
 * Rule 3: a mode/uid/gid/atime/mtime field of a setattr that a later setattr of the same
 * object sets again is removed; a setattr left with no field goes. `size` never: where a
 * truncate falls among writes matters.
 *
 * Why this is safe: the later set decides the final value. Times: nothing on the server
 * depends on a time in between (a write in between resets mtime, but the later explicit set
 * wins anyway). Mode and owners are different: the server checks permissions against them
 * for every operation in between (chmod u+w; write; chmod u-w must keep its first chmod, or
 * the write is refused), so they are only removed when no record in between concerns the
 * object (as subject, as a directory, or as the possible occupant of a name it removes).
 */
function collapseSetattrs(list: readonly JournalEntry[]): Edit {
  const a = analyze(list);
  const edit = new Edit();
  const laterTimes = new Map<number, Set<TimeField>>();
  const laterPerms = new Map<number, Set<PermField>>();
  for (let i = list.length - 1; i >= 0; i--) {
    const r = list[i]!.record;
    if (r.op === 'setattr') {
      const times = laterTimes.get(r.obj) ?? new Set<TimeField>();
      const perms = laterPerms.get(r.obj) ?? new Set<PermField>();
      const set: SetAttrRecord = { ...r.set };
      let removed = false;
      for (const f of TIME_FIELDS) if (set[f] !== undefined && times.has(f)) { delete set[f]; removed = true; }
      for (const f of PERM_FIELDS) if (set[f] !== undefined && perms.has(f)) { delete set[f]; removed = true; }
      if (removed) {
        if (Object.keys(set).length === 0) edit.drops.add(i);
        else edit.rewrites.set(i, { ...r, set });
      }
      for (const f of TIME_FIELDS) if (r.set[f] !== undefined) times.add(f);
      laterTimes.set(r.obj, times);
      // This setattr itself is checked against the owner/mode before it: earlier perm
      // fields are only removable up to here, then its own fields take over.
      laterPerms.set(r.obj, new Set(PERM_FIELDS.filter((f) => r.set[f] !== undefined)));
      continue;
    }
    // Any other record concerning an object ends the run of setattrs its mode/owner fields
    // may be collapsed across.
    const s = subjectOf(r);
    if (s !== undefined) laterPerms.delete(s);
    for (const p of parentsOf(r)) laterPerms.delete(p);
    if (isNamespaceOp(r) && s === undefined) laterPerms.clear();
    if (r.op === 'rename') {
      const t = a.info[i]!.targetBefore;
      if (typeof t === 'number') laterPerms.delete(t);
      else if (t === UNKNOWN) laterPerms.clear();
    }
  }
  return edit;
}

/**
 * Rule 1: a write whose byte range is covered by the union of later writes to the same
 * object goes (a zero-length write goes when a later write of some bytes follows).
 *
 * Why this is safe, even with truncates in between: the dropped write's bytes are all
 * rewritten later, and the last write covering a byte decides it (a later truncate cuts it
 * the same way with or without the dropped write). Its other effects are the size it may
 * extend to and the mtime it resets (and through the size, whether a truncate in between
 * changes the size, hence whether it resets mtime): all of that is the same again after
 * the later write covering its last byte, which extends at least as far and resets mtime.
 */
function dropSupersededWrites(list: readonly JournalEntry[]): Edit {
  const edit = new Edit();
  const later = new Map<number, Ranges>();
  for (let i = list.length - 1; i >= 0; i--) {
    const r = list[i]!.record;
    if (r.op !== 'write') continue;
    const ranges = later.get(r.obj);
    if (ranges && ranges.covers(r.offset, r.offset + r.length)) edit.drops.add(i);
    if (ranges) ranges.add(r.offset, r.offset + r.length);
    else later.set(r.obj, new Ranges(r.offset, r.offset + r.length));
  }
  return edit;
}

/**
 * Rule 2: a write followed by a truncate of the same object to a size at or below the
 * write's offset goes, unless a commit of that object comes between them (the data was
 * asked to be made stable: kept conservatively), provided the object's mtime is decided
 * again at or after the truncate (the truncate sets mtime itself, or a later write of some
 * bytes or setattr of mtime follows).
 *
 * Why this is safe: the write only changes bytes at or past its offset (and the zeroes of a
 * hole it may open are zeroes either way), so until the truncate the two histories differ
 * only at or past its offset, in the size, and in mtime (the write resets it); the truncate
 * cuts exactly those bytes and sets the size outright. Whether it resets mtime depends on
 * the server when the size does not change (Linux's truncate(2) does not, ftruncate(2)
 * does), and the size may change in one history only: hence the later mtime decision.
 * Such a decider is never removed by any pass (the last write of an object is never
 * superseded, and a setattr loses its mtime only to a later one).
 */
function dropDeadWrites(list: readonly JournalEntry[]): Edit {
  const edit = new Edit();
  const minLaterSize = new Map<number, number>();
  const mtimeDecidedLater = new Set<number>();
  for (let i = list.length - 1; i >= 0; i--) {
    const r = list[i]!.record;
    if (r.op === 'commit') minLaterSize.delete(r.obj);
    else if (r.op === 'setattr') {
      if (r.set.mtime !== undefined) mtimeDecidedLater.add(r.obj);
      if (r.set.size !== undefined && mtimeDecidedLater.has(r.obj)) {
        minLaterSize.set(r.obj, Math.min(r.set.size, minLaterSize.get(r.obj) ?? Infinity));
      }
    } else if (r.op === 'write') {
      const t = minLaterSize.get(r.obj);
      if (t !== undefined && t <= r.offset) edit.drops.add(i);
      if (r.length > 0) mtimeDecidedLater.add(r.obj);
    }
  }
  return edit;
}

// ---------------------------------------------------------------------------------------
// Walking names

const FREE = 'free';
const UNKNOWN = 'unknown';
/** Who holds a name: an object, nobody, or nobody knows (the server's state before the journal). */
type Occupant = number | typeof FREE | typeof UNKNOWN;

interface NameRef { parent: number; name: string }
const sameName = (a: NameRef, b: NameRef): boolean => a.parent === b.parent && a.name === b.name;
const keyOf = (parent: number, name: string): string => `${parent}/${name}`; // names hold no '/'

interface RecordInfo {
  /** rename: it moved its object, certainly did nothing (onto itself), or may have done nothing (onto another name of the same object?). */
  move?: 'real' | 'noop' | 'maybe';
  /** rename: who held the target name just before. */
  targetBefore?: Occupant;
}

/** A directory's mtime: set by a setattr, reset by an entry change (maybe: a rename that may have been a no-op). */
interface DirEvent { at: number; kind: 'set' | 'reset' | 'maybe'; value?: TimeValue }
type TimeValue = NonNullable<SetAttrRecord['mtime']>;

interface Analysis {
  info: RecordInfo[];
  /** Objects whose creating record is in the journal (their names are all known). */
  created: Set<number>;
  /** Objects a record without `obj` may have touched. */
  pinned: Set<number>;
  /** Names of objects at the end of the journal (complete for created, unpinned objects). */
  names: Map<number, Set<string>>;
  /** What each object is known to be, from any record in the journal (types never change). */
  kinds: Map<number, 'dir' | 'nondir'>;
  /** Per object used as a directory (or setattr'ed with an mtime): its mtime events, in order. */
  dirEvents: Map<number, DirEvent[]>;
}

function analyze(list: readonly JournalEntry[]): Analysis {
  const kinds = new Map<number, 'dir' | 'nondir'>();
  for (const { record: r } of list) {
    for (const p of parentsOf(r)) kinds.set(p, 'dir');
    switch (r.op) {
      case 'mkdir': case 'rmdir': if (r.obj !== undefined) kinds.set(r.obj, 'dir'); break;
      case 'create': case 'symlink': case 'mknod': case 'unlink': if (r.obj !== undefined) kinds.set(r.obj, 'nondir'); break;
      case 'link': case 'write': kinds.set(r.obj, 'nondir'); break;
      case 'setattr': if (r.set.size !== undefined) kinds.set(r.obj, 'nondir'); break;
      default: break;
    }
  }

  const map = new Map<string, Occupant>();
  const madeDirs = new Set<number>();
  const created = new Set<number>();
  const pinned = new Set<number>();
  const names = new Map<number, Set<string>>();
  const dirEvents = new Map<number, DirEvent[]>();
  const info: RecordInfo[] = [];

  const lookup = (parent: number, name: string): Occupant => map.get(keyOf(parent, name)) ?? (madeDirs.has(parent) ? FREE : UNKNOWN);
  const namesOfObj = (o: number): Set<string> => { let s = names.get(o); if (!s) names.set(o, s = new Set()); return s; };
  const pin = (o: Occupant): void => { if (typeof o === 'number') pinned.add(o); };
  const event = (dir: number, e: DirEvent): void => push(dirEvents, dir, e);

  list.forEach(({ record: r }, i) => {
    const ri: RecordInfo = {};
    info.push(ri);
    switch (r.op) {
      case 'create': case 'mkdir': case 'symlink': case 'mknod': {
        event(r.parent, { at: i, kind: 'reset' });
        const k = keyOf(r.parent, r.name);
        if (r.obj === undefined) { map.set(k, UNKNOWN); break; }
        map.set(k, r.obj);
        created.add(r.obj);
        names.set(r.obj, new Set([k]));
        if (r.op === 'mkdir') madeDirs.add(r.obj);
        break;
      }
      case 'link': {
        event(r.parent, { at: i, kind: 'reset' });
        const k = keyOf(r.parent, r.name);
        map.set(k, r.obj);
        namesOfObj(r.obj).add(k);
        break;
      }
      case 'unlink': case 'rmdir': {
        event(r.parent, { at: i, kind: 'reset' });
        const k = keyOf(r.parent, r.name);
        const held = lookup(r.parent, r.name);
        if (r.obj !== undefined) namesOfObj(r.obj).delete(k);
        else pin(held);
        if (typeof held === 'number' && held !== r.obj) { pin(held); namesOfObj(held).delete(k); }
        map.set(k, FREE);
        break;
      }
      case 'rename': {
        const from = keyOf(r.fromParent, r.fromName);
        const to = keyOf(r.toParent, r.toName);
        const target = lookup(r.toParent, r.toName);
        ri.targetBefore = target;
        if (r.obj === undefined) {
          pin(lookup(r.fromParent, r.fromName));
          pin(target);
          if (from === to) { ri.move = 'noop'; break; }
          map.set(from, UNKNOWN);
          map.set(to, UNKNOWN);
          ri.move = 'maybe';
          event(r.fromParent, { at: i, kind: 'maybe' });
          event(r.toParent, { at: i, kind: 'maybe' });
          break;
        }
        const x = r.obj;
        if (from === to) { ri.move = 'noop'; break; }
        if (target === x) { ri.move = 'noop'; break; } // onto another name of the same object: POSIX does nothing
        // A directory has one name; a created, unpinned object's names are all known.
        const notAnotherLink = kinds.get(x) === 'dir' || (created.has(x) && !pinned.has(x) && !namesOfObj(x).has(to));
        if (target === UNKNOWN && !notAnotherLink) {
          // The target may be another link of x: the rename may have done nothing.
          ri.move = 'maybe';
          map.set(from, UNKNOWN);
          map.set(to, x);
          namesOfObj(x).add(to);
          event(r.fromParent, { at: i, kind: 'maybe' });
          event(r.toParent, { at: i, kind: 'maybe' });
          break;
        }
        ri.move = 'real';
        if (typeof target === 'number') namesOfObj(target).delete(to);
        map.set(from, FREE);
        namesOfObj(x).delete(from);
        map.set(to, x);
        namesOfObj(x).add(to);
        event(r.fromParent, { at: i, kind: 'reset' });
        event(r.toParent, { at: i, kind: 'reset' });
        break;
      }
      case 'setattr':
        if (r.set.mtime !== undefined) event(r.obj, { at: i, kind: 'set', value: r.set.mtime });
        break;
      default:
        break;
    }
  });
  return { info, created, pinned, names, kinds, dirEvents };
}

/**
 * Whether a directory's explicitly set mtime ends the same after dropping the events at
 * positions `drops` and adding `added`. The final value is that of the last certain event
 * (a reset means "not set by the journal", as does no event at all); renames that may have
 * been no-ops after it must be the same ones on both sides.
 */
function sameMtimeOutcome(events: readonly DirEvent[], drops: ReadonlySet<number>, added: readonly DirEvent[]): boolean {
  const after = [...events.filter((e) => !drops.has(e.at)), ...added].sort((x, y) => x.at - y.at);
  const before = outcome(events);
  const now = outcome(after);
  return sameTime(before.value, now.value) && before.tail.join() === now.tail.join();

  function outcome(evs: readonly DirEvent[]): { value: TimeValue | undefined; tail: number[] } {
    let value: TimeValue | undefined;
    let tail: number[] = [];
    for (const e of evs) {
      if (e.kind === 'maybe') { tail.push(e.at); continue; }
      value = e.kind === 'set' ? e.value : undefined;
      tail = [];
    }
    return { value, tail };
  }
}

function sameTime(a: TimeValue | undefined, b: TimeValue | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.kind === b.kind && (a.kind === 'now' || a.ns === (b as { ns: string }).ns);
}

// ---------------------------------------------------------------------------------------
// Record helpers

type TimeField = 'atime' | 'mtime';
type PermField = 'mode' | 'uid' | 'gid';
const TIME_FIELDS: readonly TimeField[] = ['atime', 'mtime'];
const PERM_FIELDS: readonly PermField[] = ['mode', 'uid', 'gid'];

/** The object a record is about, if it names it. */
function subjectOf(r: JournalRecord): number | undefined {
  return r.obj;
}

/** Directories a record changes entries of (or, for link, adds one to). */
function parentsOf(r: JournalRecord): number[] {
  switch (r.op) {
    case 'create': case 'mkdir': case 'symlink': case 'mknod': case 'link': case 'unlink': case 'rmdir': return [r.parent];
    case 'rename': return r.fromParent === r.toParent ? [r.fromParent] : [r.fromParent, r.toParent];
    default: return [];
  }
}

/** Names a record reads or writes. */
function namesOf(r: JournalRecord): NameRef[] {
  switch (r.op) {
    case 'create': case 'mkdir': case 'symlink': case 'mknod': case 'link': case 'unlink': case 'rmdir':
      return [{ parent: r.parent, name: r.name }];
    case 'rename': return [{ parent: r.fromParent, name: r.fromName }, { parent: r.toParent, name: r.toName }];
    default: return [];
  }
}

function isNamespaceOp(r: JournalRecord): boolean {
  return r.op === 'unlink' || r.op === 'rmdir' || r.op === 'rename' || r.op === 'create' || r.op === 'mkdir' || r.op === 'symlink' || r.op === 'mknod' || r.op === 'link';
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const a = m.get(k);
  if (a) a.push(v); else m.set(k, [v]);
}

/** A set of byte ranges [start, end), kept sorted and merged. */
class Ranges {
  private readonly spans: [number, number][] = [];
  constructor(start: number, end: number) { this.add(start, end); }
  add(start: number, end: number): void {
    if (end <= start) return;
    const out: [number, number][] = [];
    let s = start;
    let e = end;
    let placed = false;
    for (const [a, b] of this.spans) {
      if (b < s) out.push([a, b]);
      else if (a > e) { if (!placed) { out.push([s, e]); placed = true; } out.push([a, b]); }
      else { s = Math.min(s, a); e = Math.max(e, b); }
    }
    if (!placed) out.push([s, e]);
    this.spans.splice(0, this.spans.length, ...out);
  }
  /** [start, end) is inside the union (an empty range when the union is not empty). */
  covers(start: number, end: number): boolean {
    if (end <= start) return this.spans.length > 0;
    return this.spans.some(([a, b]) => a <= start && end <= b);
  }
}
