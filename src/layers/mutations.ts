// Mutations (ARCHITECTURE §5): every change to names and attributes (create, mkdir, mknod,
// symlink, link, unlink, rmdir, rename, setattr and the path forms built on it) goes through
// the journal here: append a record, wait for the replayer to apply it to the backend, then
// record the result in the cache. The cache layer's entry points of the same names delegate
// here; writes of data go through write-back.ts instead.
//
// What must stay true:
// - a refused record reaches the caller as the backend's errno and leaves the cache as it was
//   (a provisional object made for a create is removed again);
// - not connected, the record is durable in the journal when the call returns (JOURNALED),
//   and the cache changes as a POSIX file system would (times, link counts, sizes);
// - before the first change made offline to an object the backend has, what it was is kept
//   (captureBase), so replay can tell whose change is whose;
// - our own change never looks like someone else's: cached data and names current before it
//   are current after it (adoptOwnChange, afterDirChange);
// - a file removed (unlinked or renamed over) while open here keeps its object on the backend
//   until its last close: its name is moved aside (hide), and the layer's release() removes
//   that name at the last close (removeName).
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { FsError, isFsError } from '../core/errors.js';
import { log } from '../core/log.js';
import { nameTooLong } from '../core/names.js';
import type { Attr, Backend, Creds, DirWcc } from '../backends/types.js';
import type { CachedObject, ObjectIndex } from '../index/objects.js';
import type { DataStore } from '../store/data-store.js';
import { isConnectionError, type Replayer } from '../journal/replayer.js';
import { byOf, type JournalRecord, type SetAttrRecord } from '../journal/records.js';
import { BASE_COPY_MAX, type OfflineBases } from '../conflict/bases.js';
import { fullyCached } from '../conflict/variants.js';
import { PROVISIONAL_TAG, type AppliedOutcome, type BackendCall } from './backend-target.js';
import type { ChunkFetcher } from './chunk-fetcher.js';
import { SELF, now, nowNs, type Freshness } from './freshness.js';
import type { WriteBack } from './write-back.js';

/** What a mutation produced: the backend's answer, or (not connected) "kept in the journal". */
export type MutationOutcome = AppliedOutcome | { kind: 'journaled' };
export const JOURNALED: MutationOutcome = { kind: 'journaled' };

/**
 * A provisional handle's 16 bytes: 8 random ones drawn once per process, then a counter.
 * Unique across every run that ever used this cache (they outlive the process in the index
 * and the journal) without 16 random bytes per create (profiled: 6-30 µs each).
 */
const PROVISIONAL_RUN = randomBytes(8);
let provisionalCount = 0n;
/** Records marked as made offline: replay reconciles them with the server (see records.ts). */
const OFFLINE_CHECKED = new Set(['write', 'setattr', 'link', 'unlink', 'rmdir', 'rename', 'create', 'mkdir', 'symlink', 'mknod']);

const S_IFMT_OF: Record<Attr['type'], number> = {
  file: 0o100000, dir: 0o040000, symlink: 0o120000, fifo: 0o010000, socket: 0o140000, chardev: 0o020000, blockdev: 0o060000,
};

export type TimeArg = bigint | 'now' | 'omit';

/** What the mutations need of the rest of the layer; the cache layer wires it. */
export interface MutationDeps {
  index: Pick<ObjectIndex, 'batch' | 'get' | 'setAttr' | 'invalidateNames' | 'namesOf' | 'setName' | 'upsert' | 'remove' | 'patchAttr' | 'replaceListing'
    | 'setDataVersion' | 'setNamesVersion' | 'setSymlink' | 'setLocalSize' | 'dropChunksFrom' | 'chunksOf'>;
  store: Pick<DataStore, 'copyOut' | 'truncate'>;
  replayer: Pick<Replayer<AppliedOutcome>, 'append' | 'waitFor' | 'makeDurable'>;
  writeBack: Pick<WriteBack, 'commitAllDirty'>;
  fetcher: Pick<ChunkFetcher, 'quiesce' | 'knownZerosFrom'>;
  freshness: Pick<Freshness, 'adopt' | 'applyAttr'>;
  /** Asked through `call` (after an unlink of one of several links). */
  backend: Pick<Backend, 'getattr'>;
  /** The gated backend call (gated-backend.ts). */
  call: BackendCall;
  chunkSize: number;
  /** What objects changed offline were before (null without a conflict store). */
  bases: Pick<OfflineBases, 'has' | 'capture'> | null;
  connected(): boolean;
  /** `p`'s outcome, or JOURNALED as soon as the mount stops being connected (reconnect.ts). */
  untilOffline<T>(p: Promise<T>): Promise<T | typeof JOURNALED>;
  /** The layer's resolution of paths and names (through the name cache). */
  resolve(p: string): Promise<CachedObject>;
  resolveParent(p: string): Promise<{ dir: CachedObject; name: string }>;
  lookup(dir: CachedObject, name: string): Promise<CachedObject>;
  revalidate(obj: CachedObject, force: boolean): Promise<void>;
  /** Disconnected, a directory's last listing with what changed here since. */
  staleListing(dir: CachedObject): { name: string; obj: CachedObject }[];
  /** The layer's open files: a created file is opened; a truncate through one acts as its opener. */
  addOpen(obj: CachedObject, flags: number, by: Creds | undefined): number;
  fileOf(fd: number): { readonly obj: CachedObject; readonly by: Creds | undefined };
  isOpen(id: number): boolean;
  hasOpenWriters(obj: CachedObject): boolean;
  /** The object lost its last name: unlinks it from the cache (or keeps it while open). */
  forgetObject(obj: CachedObject): void;
}

export class Mutations {
  private readonly chunk: number;
  /**
   * Files unlinked (or renamed over) while open here, silly-renamed as NFS clients do: the
   * backend must keep the object until its last close, or the writes still to come through
   * the open descriptors would find it gone. Removed at that close (the layer's release()).
   */
  readonly hidden = new Map<number, { dir: CachedObject; name: string; by: Creds | undefined }>();
  private readonly baseCaptures = new Map<number, Promise<void>>();

  constructor(private readonly d: MutationDeps) {
    this.chunk = d.chunkSize;
  }

  /** What the object was before its first offline change is being kept right now. */
  capturingBase(id: number): boolean {
    return this.baseCaptures.has(id);
  }

  /**
   * Before the first change made offline to an object that exists on the backend: keep what
   * it was (attributes, and a small file's bytes) so replay can tell whose change is whose.
   */
  captureBase(obj: CachedObject | null | undefined): Promise<void> | void {
    const b = this.d.bases;
    if (!b || !obj || this.d.connected() || obj.attr.version.startsWith('provisional:')) return;
    const busy = this.baseCaptures.get(obj.id);
    if (busy) return busy;
    if (b.has(obj.id)) return;
    const copy = obj.attr.type === 'file' && obj.attr.size <= BASE_COPY_MAX && obj.dataVersion === obj.attr.version
      && fullyCached(obj, this.d.index, this.chunk)
      ? async (dest: string) => { await this.d.store.copyOut(obj.id, dest); await fsp.truncate(dest, obj.attr.size); }
      : undefined;
    const p = b.capture(obj.id, obj.attr.version, obj.attr, copy).finally(() => this.baseCaptures.delete(obj.id));
    this.baseCaptures.set(obj.id, p);
    return p;
  }

  /**
   * Appends a record. Connected, it waits for the backend to apply it and returns what that
   * produced; otherwise, or if the connection goes while it waits, the record stays in the
   * journal for reintegration and the answer is JOURNALED: durable by then (invariant 1).
   * Connected, the record is volatile while this waits (no row: see replayer.ts), and made
   * durable before JOURNALED is returned; if it cannot be (a full cache disk), the storage
   * error is the answer.
   */
  async mutate(record: JournalRecord, hint?: { data: Buffer }): Promise<MutationOutcome> {
    this.d.writeBack.commitAllDirty();
    const connected = this.d.connected();
    if (!connected && OFFLINE_CHECKED.has(record.op)) (record as { offline?: true }).offline = true;
    const seq = this.d.replayer.append(record, hint, { volatile: connected });
    if (!connected) return JOURNALED;
    const applied = this.d.replayer.waitFor(seq);
    let outcome: Awaited<typeof applied> | typeof JOURNALED;
    try {
      outcome = await this.d.untilOffline(applied);
    } catch (e) {
      if (!isConnectionError(e)) throw e;
      this.d.replayer.makeDurable(seq);
      return JOURNALED; // the record waits in the journal
    }
    if (outcome.kind === 'journaled') {
      applied.catch(() => undefined);
      this.d.replayer.makeDurable(seq);
    }
    if (outcome.kind === 'refused') throw outcome.error;
    return outcome;
  }

  /**
   * A new object in the index before its create goes to the backend: it has a provisional
   * handle (mapped to the backend's when the create is applied) and attributes made here.
   */
  private provisional(type: Attr['type'], mode: number, creds: Creds, extra: { size?: number; rdev?: number } = {}): CachedObject {
    const t = BigInt(Date.now()) * 1_000_000n;
    const fh = Buffer.allocUnsafe(PROVISIONAL_TAG.length + 16);
    PROVISIONAL_TAG.copy(fh, 0);
    PROVISIONAL_RUN.copy(fh, PROVISIONAL_TAG.length);
    fh.writeBigUInt64BE(++provisionalCount, PROVISIONAL_TAG.length + 8);
    const attr: Attr = {
      type, mode: S_IFMT_OF[type] | (mode & 0o7777), uid: creds.uid, gid: creds.gid,
      size: extra.size ?? (type === 'dir' ? 4096 : 0), nlink: type === 'dir' ? 2 : 1, rdev: extra.rdev ?? 0, used: 0,
      atimeNs: t, mtimeNs: t, ctimeNs: t, version: `provisional:${fh.subarray(PROVISIONAL_TAG.length).toString('hex')}`,
    };
    return this.d.index.upsert({ fh, attr }, now());
  }

  /** Creates through the journal; a refusal removes the provisional object again. */
  private async createVia(dir: CachedObject, name: string, prov: CachedObject, record: JournalRecord): Promise<CachedObject> {
    let out: MutationOutcome;
    try {
      out = await this.mutate(record);
    } catch (e) {
      this.d.index.remove(prov);
      throw e;
    }
    const made = out.kind === 'created' ? out : { kind: 'created' as const, fh: prov.fh, attr: prov.attr };
    return this.d.index.batch(() => this.recordNewObject(dir, name, made));
  }

  /**
   * A name in `dir` was made or removed; `subdirs` is how many subdirectories it gained (a
   * directory's st_nlink counts its subdirectories' "..").
   *
   * `wcc`: the directory just before and just after the change, as the backend reported it.
   * It counts only for attributes held as checked (attrAt not 0; a watcher's report, or a
   * change of ours without wcc data such as a link, zeroes it):
   * - "before" is the version held: the change was the only one. The new attributes are
   *   adopted and the names stay current, with no revalidation (a backend call and two index
   *   writes, for the kernel's GETATTR of the directory after each change: one per file of
   *   `tar x`). Someone else's change between the backend's "before" and "after"
   *   (microseconds apart) would be taken for ours, as NFS clients take wcc data.
   * - it is not: someone else changed the directory since we last looked, and its names are
   *   dropped.
   * Without it (or held unchecked), the next version the backend reports is adopted as ours
   * (SELF), and the next use revalidates.
   */
  private afterDirChange(dir: CachedObject, subdirs = 0, wcc?: DirWcc): void {
    if (wcc && wcc.after.type === 'dir' && dir.attrAt !== 0 && this.d.connected()) {
      if (wcc.before !== dir.attr.version) {
        this.d.index.invalidateNames(dir);
        dir.attrAt = 0;
        return;
      }
      if (dir.namesVersion !== null && dir.namesVersion === dir.attr.version) this.d.index.setNamesVersion(dir, wcc.after.version);
      this.d.index.setAttr(dir, wcc.after, now());
      return;
    }
    // Our own change moves the directory's version: adopt the next one instead of
    // throwing the name cache away, if the names were current before the change.
    if (dir.namesVersion !== null && dir.namesVersion === dir.attr.version) this.d.index.setNamesVersion(dir, SELF);
    dir.attrAt = 0;
    // Not connected, nobody else keeps the directory's attributes: they move here as a
    // POSIX file system moves them (mtime and ctime, and the link count).
    if (!this.d.connected()) {
      const t = nowNs();
      this.d.index.patchAttr(dir, { mtimeNs: t, ctimeNs: t, ...(subdirs !== 0 ? { nlink: Math.max(2, dir.attr.nlink + subdirs) } : {}) });
    }
  }

  private recordNewObject(dir: CachedObject, name: string, outcome: AppliedOutcome & { kind: 'created' }): CachedObject {
    const obj = this.d.freshness.adopt({ fh: outcome.fh, attr: outcome.attr });
    this.d.index.setName(dir, name, obj.id);
    this.afterDirChange(dir, outcome.attr.type === 'dir' ? 1 : 0, outcome.dir);
    if (outcome.attr.type === 'dir') this.d.index.replaceListing(obj, [], outcome.attr.version);
    if (outcome.attr.type === 'file' && outcome.attr.size === 0 && obj.dataVersion === null) {
      this.d.index.setDataVersion(obj, outcome.attr.version); // an empty file is fully cached
    }
    return obj;
  }

  async create(p: string, mode: number, flags: number, creds: Creds): Promise<number> {
    const { dir, name } = await this.d.resolveParent(p);
    return (await this.createAt(dir, name, mode, flags, creds)).fd;
  }

  async createAt(dir: CachedObject, name: string, mode: number, flags: number, creds: Creds): Promise<{ fd: number; obj: CachedObject }> {
    checkName(dir, name);
    const prov = this.provisional('file', mode, creds);
    const obj = await this.createVia(dir, name, prov, { op: 'create', parent: dir.id, name, mode, uid: creds.uid, gid: creds.gid, ...(creds.groups ? { groups: creds.groups } : {}), obj: prov.id, base: dir.attr.version });
    return { fd: this.d.addOpen(obj, flags, creds), obj };
  }

  async mkdir(p: string, mode: number, creds: Creds): Promise<void> {
    const { dir, name } = await this.d.resolveParent(p);
    await this.mkdirAt(dir, name, mode, creds);
  }

  async mkdirAt(dir: CachedObject, name: string, mode: number, creds: Creds): Promise<CachedObject> {
    checkName(dir, name);
    await this.ensureAbsent(dir, name);
    const prov = this.provisional('dir', mode, creds);
    return this.createVia(dir, name, prov, { op: 'mkdir', parent: dir.id, name, mode, uid: creds.uid, gid: creds.gid, ...(creds.groups ? { groups: creds.groups } : {}), obj: prov.id, base: dir.attr.version });
  }

  async mknod(p: string, mode: number, rdev: number, creds: Creds): Promise<void> {
    const { dir, name } = await this.d.resolveParent(p);
    await this.mknodAt(dir, name, mode, rdev, creds);
  }

  async mknodAt(dir: CachedObject, name: string, mode: number, rdev: number, creds: Creds): Promise<CachedObject> {
    checkName(dir, name);
    await this.ensureAbsent(dir, name);
    const type = typeOfMode(mode);
    const prov = this.provisional(type, mode, creds, { rdev });
    return this.createVia(dir, name, prov, { op: 'mknod', parent: dir.id, name, mode, rdev, uid: creds.uid, gid: creds.gid, ...(creds.groups ? { groups: creds.groups } : {}), obj: prov.id, base: dir.attr.version });
  }

  async symlink(target: string, p: string, creds: Creds): Promise<void> {
    const { dir, name } = await this.d.resolveParent(p);
    await this.symlinkAt(dir, name, target, creds);
  }

  async symlinkAt(dir: CachedObject, name: string, target: string, creds: Creds): Promise<CachedObject> {
    checkName(dir, name);
    await this.ensureAbsent(dir, name);
    const prov = this.provisional('symlink', 0o777, creds, { size: Buffer.byteLength(target) });
    const obj = await this.createVia(dir, name, prov, { op: 'symlink', parent: dir.id, name, target, uid: creds.uid, gid: creds.gid, ...(creds.groups ? { groups: creds.groups } : {}), obj: prov.id, base: dir.attr.version });
    this.d.index.setSymlink(obj, target);
    this.d.index.setDataVersion(obj, obj.attr.version);
    return obj;
  }

  private async ensureAbsent(dir: CachedObject, name: string): Promise<void> {
    try {
      await this.d.lookup(dir, name);
    } catch (e) {
      if (isFsError(e, 'ENOENT')) return;
      throw e;
    }
    throw new FsError('EEXIST');
  }

  async link(src: string, dst: string, by?: Creds): Promise<void> {
    const obj = await this.d.resolve(src);
    if (obj.attr.type === 'dir') throw new FsError('EPERM');
    const { dir, name } = await this.d.resolveParent(dst);
    await this.linkAt(obj, dir, name, by);
  }

  async linkAt(obj: CachedObject, dir: CachedObject, name: string, by?: Creds): Promise<CachedObject> {
    if (obj.attr.type === 'dir') throw new FsError('EPERM');
    checkName(dir, name);
    await this.ensureAbsent(dir, name);
    await this.captureBase(obj);
    const out = await this.mutate({ op: 'link', obj: obj.id, parent: dir.id, name, ...byOf(by), base: obj.attr.version });
    this.d.index.setName(dir, name, obj.id);
    this.afterDirChange(dir);
    if (out.kind === 'attr') this.adoptOwnChange(obj, out.attr);
    else if (out.kind === 'journaled') this.d.index.patchAttr(obj, { nlink: obj.attr.nlink + 1, ctimeNs: nowNs() });
    else obj.attrAt = 0;
    return obj;
  }

  /** Our own metadata change: the new attributes must not drop our cached data. */
  private adoptOwnChange(obj: CachedObject, attr: Attr): void {
    this.d.index.batch(() => {
      // Cached data and names that were current before our change are current after it.
      if (obj.dataVersion !== null && obj.dataVersion === obj.attr.version && !this.d.hasOpenWriters(obj)) {
        this.d.index.setDataVersion(obj, attr.version);
      } else if (obj.dataVersion !== null && !this.d.hasOpenWriters(obj)) {
        this.d.index.setDataVersion(obj, SELF);
      }
      if (obj.attr.type === 'dir' && obj.namesVersion !== null && obj.namesVersion === obj.attr.version) {
        this.d.index.setNamesVersion(obj, attr.version);
      }
      this.d.freshness.applyAttr(obj, attr);
    });
  }

  async unlink(p: string, by?: Creds): Promise<void> {
    const { dir, name } = await this.d.resolveParent(p);
    await this.unlinkAt(dir, name, by);
  }

  async unlinkAt(dir: CachedObject, name: string, by?: Creds): Promise<void> {
    checkName(dir, name);
    const obj = await this.d.lookup(dir, name);
    if (obj.attr.type === 'dir') throw new FsError('EISDIR');
    if (this.mustHide(obj)) { await this.hide(dir, name, obj, by); return; }
    await this.removeName(dir, name, obj, by);
  }

  /**
   * Whether removing this name would drop an object that is still open here (see `hidden`).
   * Connected only: disconnected, the unlink is journaled, the cache keeps the object for
   * its open descriptors (an orphan), and their later writes are not journaled (write-back.ts).
   */
  private mustHide(obj: CachedObject): boolean {
    return this.d.connected() && obj.attr.type === 'file' && obj.attr.nlink <= 1 && this.d.isOpen(obj.id) && !this.hidden.has(obj.id);
  }

  /**
   * Moves `name` (an open file's last name) aside until its last close. The last close may
   * come while the rename is on its way (the kernel sends RELEASE after close() has returned:
   * sqlite closes its journal and unlinks it at once): then the name goes at once, or nothing
   * would ever remove it.
   */
  private async hide(dir: CachedObject, name: string, obj: CachedObject, by: Creds | undefined): Promise<void> {
    const hiddenName = `${HIDDEN_PREFIX}${obj.id}-${Date.now().toString(36)}`;
    await this.renameAt(dir, name, dir, hiddenName, by);
    if (!this.d.isOpen(obj.id)) {
      log.debug(`${name} (object ${obj.id}) was closed while it was being hidden: removing ${hiddenName} now`);
      await this.removeName(this.d.index.get(dir.id) ?? dir, hiddenName, this.d.index.get(obj.id) ?? obj, by);
      return;
    }
    this.hidden.set(obj.id, { dir, name: hiddenName, by });
    log.debug(`${name} (object ${obj.id}) unlinked while open: ${hiddenName} until its last close`);
    // Unlinked, as far as anyone here can tell: fstat() of an open descriptor says nlink 0.
    this.d.index.patchAttr(obj, { nlink: 0 });
  }

  /** unlink of `name` in `dir`, known to lead to `obj` (a file, symlink or special). */
  async removeName(dir: CachedObject, name: string, obj: CachedObject, by: Creds | undefined): Promise<void> {
    await this.captureBase(obj);
    const survives = obj.attr.nlink > 1;
    const out = await this.mutate({ op: 'unlink', parent: dir.id, name, obj: obj.id, ...byOf(by), base: dir.attr.version, objBase: obj.attr.version });
    this.d.index.batch(() => {
      this.d.index.setName(dir, name, null);
      this.afterDirChange(dir, 0, out.kind === 'done' ? out.dir : undefined);
      this.dropLink(obj);
    });
    // Applied, and the object keeps another name: the unlink moved its ctime (so its version)
    // on the backend. Learn it now, while connected, as rename does: git links each loose
    // object to its name and unlinks the temporary one, and a `git gc` offline removing the
    // object must be based on the version the backend really has (invariant 9).
    if (survives && out.kind !== 'journaled') {
      try {
        this.adoptOwnChange(obj, await this.d.call('getattr', () => this.d.backend.getattr(obj.fh)));
      } catch (e) {
        log.debug(`revalidation after an unlink of a link of object ${obj.id} failed`, e);
      }
    }
  }

  /** One name less for `obj`: forget it when it was the last one. */
  private dropLink(obj: CachedObject): void {
    if (obj.attr.nlink <= 1 || obj.attr.type === 'dir') {
      this.d.forgetObject(obj);
      // Still open here (an orphan, or kept for its journal records): fstat() says no name.
      if (this.d.isOpen(obj.id) && this.d.index.get(obj.id) === obj) this.d.index.patchAttr(obj, { nlink: 0 });
    }
    else {
      this.d.index.patchAttr(obj, { nlink: obj.attr.nlink - 1, ctimeNs: nowNs() });
      obj.attrAt = 0;
    }
  }

  async rmdir(p: string, by?: Creds): Promise<void> {
    const { dir, name } = await this.d.resolveParent(p);
    await this.rmdirAt(dir, name, by);
  }

  async rmdirAt(dir: CachedObject, name: string, by?: Creds): Promise<void> {
    checkName(dir, name);
    const obj = await this.d.lookup(dir, name);
    if (obj.attr.type !== 'dir') throw new FsError('ENOTDIR');
    // Connected, the backend says whether it is empty; otherwise the cached names do (a
    // directory never listed may hold more: replay then keeps it, remove against update).
    if (!this.d.connected()) {
      if (obj.stale && this.d.staleListing(obj).length > 0) throw new FsError('ENOTEMPTY');
      for (const child of this.d.index.namesOf(obj).values()) if (child !== null) throw new FsError('ENOTEMPTY');
    }
    const out = await this.mutate({ op: 'rmdir', parent: dir.id, name, obj: obj.id, ...byOf(by), base: dir.attr.version, objBase: obj.attr.version });
    this.d.index.batch(() => {
      this.d.index.setName(dir, name, null);
      this.afterDirChange(dir, -1, out.kind === 'done' ? out.dir : undefined);
      this.d.forgetObject(obj);
    });
  }

  async rename(src: string, dst: string, by?: Creds): Promise<void> {
    const from = await this.d.resolveParent(src);
    const to = await this.d.resolveParent(dst);
    // A directory into itself: the kernel checks this before a FUSE rename; a path caller here.
    if ((dst + '/').startsWith(src + '/') && (await this.d.lookup(from.dir, from.name)).attr.type === 'dir') throw new FsError('EINVAL');
    await this.renameAt(from.dir, from.name, to.dir, to.name, by);
  }

  /** rename(2) by parent objects and names (`noReplace`: RENAME_NOREPLACE, EEXIST if taken). */
  async renameAt(fromDir: CachedObject, fromName: string, toDir: CachedObject, toName: string, by?: Creds, noReplace = false): Promise<void> {
    checkName(fromDir, fromName);
    checkName(toDir, toName);
    const from = { dir: fromDir, name: fromName };
    const to = { dir: toDir, name: toName };
    const obj = await this.d.lookup(from.dir, from.name);
    let target: CachedObject | null = null;
    try { target = await this.d.lookup(to.dir, to.name); } catch (e) { if (!isFsError(e, 'ENOENT')) throw e; }
    if (target && noReplace) throw new FsError('EEXIST');
    if (target === obj) return; // rename onto a hard link of itself: POSIX says do nothing
    if (target && this.mustHide(target)) {
      // Replacing a file that is open here: it hides first, the rename then takes a free name.
      await this.hide(to.dir, to.name, target, by);
      target = null;
    }
    if (target && !this.d.connected()) this.checkRenameTarget(obj, target);
    await this.captureBase(obj);
    await this.captureBase(target);
    const out = await this.mutate({
      op: 'rename', fromParent: from.dir.id, fromName: from.name, toParent: to.dir.id, toName: to.name, obj: obj.id, ...byOf(by), base: obj.attr.version,
      ...(target ? { target: target.id, targetBase: target.attr.version } : {}),
    });
    this.d.index.batch(() => {
      this.d.index.setName(from.dir, from.name, null);
      this.d.index.setName(to.dir, to.name, obj.id);
      const movedDir = obj.attr.type === 'dir' && to.dir !== from.dir ? 1 : 0;
      const replacedDir = target?.attr.type === 'dir' ? 1 : 0;
      const wcc: { dir?: DirWcc; toDir?: DirWcc } = out.kind === 'done' ? out : {};
      this.afterDirChange(from.dir, to.dir === from.dir ? -replacedDir : -movedDir, wcc.dir);
      if (to.dir !== from.dir) this.afterDirChange(to.dir, movedDir - replacedDir, wcc.toDir);
      obj.attrAt = 0; // ctime moves; a directory's ".." changes
      if (!this.d.connected()) this.d.index.patchAttr(obj, { ctimeNs: nowNs() });
      if (obj.dataVersion !== null && !this.d.hasOpenWriters(obj)) this.d.index.setDataVersion(obj, SELF);
      if (target) this.dropLink(target);
    });
    // Applied: the rename moved the object's ctime on the backend, so its version. Learn it
    // now, while connected: a later offline change (or a rename onto it, as git does with
    // index.lock -> index) is based on the version the backend really has (invariant 9).
    // The backend may have answered with it already.
    if (out.kind === 'done' && out.moved) this.d.freshness.applyAttr(obj, out.moved);
    else if (out.kind !== 'journaled') await this.d.revalidate(obj, true).catch((e) => log.debug(`revalidation after a rename of object ${obj.id} failed`, e));
  }

  /**
   * Disconnected, the backend cannot refuse a rename onto an existing name now and replay
   * would refuse it later: the cache answers with the errors the backend would give.
   */
  private checkRenameTarget(obj: CachedObject, target: CachedObject): void {
    if (obj.attr.type === 'dir') {
      if (target.attr.type !== 'dir') throw new FsError('ENOTDIR');
      if (target.stale ? this.d.staleListing(target).length > 0 : [...this.d.index.namesOf(target).values()].some((c) => c !== null)) {
        throw new FsError('ENOTEMPTY');
      }
      if (!target.complete && !target.stale?.complete) {
        throw new FsError('EHOSTUNREACH', 'the directory renamed over was never listed while connected: whether it is empty is unknown');
      }
    } else if (target.attr.type === 'dir') {
      throw new FsError('EISDIR');
    }
  }

  async setattr(obj: CachedObject, set: SetAttrRecord, by?: Creds): Promise<void> {
    await this.captureBase(obj);
    if (set.size !== undefined && set.size > obj.attr.size && !this.d.connected()) {
      // Disconnected, the cache file holds the file until replay, so it must be able to have
      // the new size before the change is journaled: its file system refuses a size it cannot
      // hold (EFBIG), as the backend's would have. (The file stays sparse: no space is used.)
      await this.d.store.truncate(obj.id, set.size);
    }
    const out = await this.mutate({ op: 'setattr', obj: obj.id, set, ...byOf(by), base: obj.attr.version });
    if (set.size !== undefined) {
      const before = obj.attr.size;
      await this.truncateCache(obj, set.size);
      // The size is ours from now on (the backend's answer below may be behind later writes).
      this.d.index.setLocalSize(obj, set.size);
      if (set.size > before) this.d.fetcher.knownZerosFrom(obj, before);
    }
    if (out.kind === 'attr') this.adoptOwnChange(obj, out.attr);
    else if (out.kind === 'journaled') this.d.index.patchAttr(obj, localSetattr(obj.attr, set));
    else obj.attrAt = 0;
  }

  private async truncateCache(obj: CachedObject, size: number): Promise<void> {
    // A fetch that read the backend before its truncate could land after ours and put old
    // bytes back past the new end: let every fetch of this object land first.
    await this.d.fetcher.quiesce(obj);
    if (size < obj.attr.size || obj.cachedBytes > 0) {
      await this.d.store.truncate(obj.id, size);
      this.d.index.dropChunksFrom(obj, Math.ceil(size / this.chunk), this.chunk);
    }
  }

  async truncate(p: string, size: number, by?: Creds): Promise<void> {
    const obj = await this.d.resolve(p);
    if (obj.attr.type === 'dir') throw new FsError('EISDIR');
    await this.setattr(obj, { size }, by);
  }

  /** As the opener: the kernel checked the right to truncate at open, as for a write. */
  async ftruncate(fd: number, size: number): Promise<void> {
    const of = this.d.fileOf(fd);
    await this.setattr(of.obj, { size }, of.by);
  }

  async chmod(p: string, mode: number, by?: Creds): Promise<void> {
    await this.setattr(await this.d.resolve(p), { mode: mode & 0o7777 }, by);
  }

  async chown(p: string, uid: number | undefined, gid: number | undefined, by?: Creds): Promise<void> {
    const set: SetAttrRecord = {};
    if (uid !== undefined) set.uid = uid;
    if (gid !== undefined) set.gid = gid;
    const obj = await this.d.resolve(p);
    if (!('uid' in set) && !('gid' in set)) return;
    await this.setattr(obj, set, by);
  }

  async utimens(p: string, atime: TimeArg, mtime: TimeArg, by?: Creds): Promise<void> {
    const set: SetAttrRecord = {};
    const conv = (t: TimeArg) => (t === 'now' ? { kind: 'now' as const } : { kind: 'set' as const, ns: String(t) });
    if (atime !== 'omit') set.atime = conv(atime);
    if (mtime !== 'omit') set.mtime = conv(mtime);
    const obj = await this.d.resolve(p);
    if (!set.atime && !set.mtime) return;
    await this.setattr(obj, set, by);
  }
}

function typeOfMode(mode: number): Attr['type'] {
  switch (mode & 0o170000) {
    case 0o020000: return 'chardev';
    case 0o060000: return 'blockdev';
    case 0o010000: return 'fifo';
    case 0o140000: return 'socket';
    default: return 'file';
  }
}

/** The attributes a setattr leaves, worked out here while the backend cannot say. */
function localSetattr(a: Attr, set: SetAttrRecord): Partial<Attr> {
  const t = nowNs();
  const time = (x: SetAttrRecord['atime']): bigint | undefined => (x ? (x.kind === 'now' ? t : BigInt(x.ns)) : undefined);
  const out: Partial<Attr> = { ctimeNs: t };
  if (set.mode !== undefined) out.mode = (a.mode & 0o170000) | (set.mode & 0o7777);
  if (set.uid !== undefined) out.uid = set.uid;
  if (set.gid !== undefined) out.gid = set.gid;
  if (set.size !== undefined) { out.size = set.size; out.mtimeNs = t; }
  const at = time(set.atime);
  const mt = time(set.mtime);
  if (at !== undefined) out.atimeNs = at;
  if (mt !== undefined) out.mtimeNs = mt;
  return out;
}

/**
 * The names of files unlinked while open (see `hidden`). They stay listed, as NFS clients'
 * .nfsXXXX and libfuse's .fuse_hidden names do: the kernel sends RELEASE after close()
 * returns, so for a moment a listing, the journal and the backend all still have them.
 */
const HIDDEN_PREFIX = '.cachefs-hidden-';

/** A name in a directory, as every *At() method takes it: the directory must be one, the name fit NAME_MAX. */
function checkName(dir: CachedObject, name: string): void {
  if (dir.attr.type !== 'dir') throw new FsError('ENOTDIR');
  if (name === '' || name === '.' || name === '..' || name.includes('/')) throw new FsError('EINVAL', `not a name: ${JSON.stringify(name)}`);
  if (nameTooLong(name)) throw new FsError('ENAMETOOLONG');
}
