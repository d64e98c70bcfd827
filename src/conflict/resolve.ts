// Resolving a conflict the user's way: keep the client's variant, the server's, both, or a
// resolved variant (a file the user wrote or chose). A resolution is an ordinary change
// made through the mount's own mutation path (ResolveFs is the cache layer), so it is
// journaled and replayed like any other, connected or not.
//
// What must stay true: the variant a choice discards is moved to the cache's lost+found,
// never deleted; a choice that would destroy something not in either variant (a non-empty
// directory in the way) is refused with a hint, before anything changes.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError, isFsError } from '../core/errors.js';
import { log } from '../core/log.js';
import { NAME_MAX, fitName, nameBytes } from '../core/names.js';
import { lostFoundDir, lostFoundName } from './lost-found.js';
import type { Conflict, ConflictStore, Resolution } from './store.js';

export type Choice = 'client' | 'server' | 'both' | 'resolved';

export interface FsStat { type: string; mode: number; uid: number; gid: number; size: number }

/** The mount's own operations, by path from the mount root (the consumer's view of the layer). */
export interface ResolveFs {
  stat(p: string): Promise<FsStat | null>;
  /** Makes `p` a regular file holding the bytes of local file `src` (in place if it is one). */
  writeFile(p: string, src: string, mode: number): Promise<void>;
  symlink(target: string, p: string): Promise<void>;
  mkdir(p: string, mode: number): Promise<void>;
  unlink(p: string): Promise<void>;
  rmdir(p: string): Promise<void>;
  chmod(p: string, mode: number): Promise<void>;
  chown(p: string, uid: number | undefined, gid: number | undefined): Promise<void>;
}

export interface Resolved { id: number; path: string; choice: Choice; placed: string[]; lostFound: string[] }

/**
 * Where `both` puts the client's variant: beside the server's, under a marked name
 * (`NAME.client-conflict-ID.EXT`), within NAME_MAX bytes: a long name's stem is shortened to
 * make room for the mark (an extension too long to keep goes into the stem).
 */
export function markedName(p: string, id: number): string {
  const dir = path.posix.dirname(p);
  const base = path.posix.basename(p);
  const mark = `.client-conflict-${id}`;
  const dot = base.lastIndexOf('.');
  const ext = dot > 0 && nameBytes(mark + base.slice(dot)) <= NAME_MAX / 2 ? base.slice(dot) : '';
  return path.posix.join(dir, fitName('', ext ? base.slice(0, dot) : base, mark + ext));
}

export class Resolver {
  constructor(
    private readonly fsFor: (c: Conflict) => ResolveFs,
    private readonly store: ConflictStore,
    private readonly cacheDir: string,
    /** Drops objects that only existed in the client's variant (made offline, never replayed). */
    private readonly forget: (c: Conflict, records: unknown[]) => void,
  ) {}

  /** The open conflict at a path of the mount (its name, or for renames the source). */
  find(p: string): Conflict {
    const norm = path.posix.normalize('/' + p).replace(/\/+$/, '') || '/';
    const open = this.store.list();
    const hit = open.find((c) => c.path === norm) ?? open.find((c) => c.detail.from === norm);
    if (!hit) {
      throw new UserError(`no open conflict at ${norm}`, { hint: 'cachefs conflicts <mountpoint> lists the open ones' });
    }
    return hit;
  }

  async resolve(id: number, choice: Choice): Promise<Resolved> {
    const c = this.store.get(id);
    if (!c) throw new UserError(`there is no conflict ${id}`, { hint: 'cachefs conflicts <mountpoint> lists them' });
    if (c.resolvedAt !== null) {
      throw new UserError(`conflict ${id} is already resolved (${c.resolution}${c.resolvedBy === 'auto' ? ', automatically' : ''})`);
    }
    const dir = c.dir;
    if (!dir) throw new UserError(`conflict ${id} keeps no variants to choose from`);
    const v = (name: string) => path.join(dir, name);
    const placed: string[] = [];
    const meta = c.kind === 'metadata';
    // The mount acting as the owner of the conflict's client variant: one per resolution
    // (two resolutions at once must never write as each other's user).
    const fs = this.fsFor(c);
    // A variant's file in the cache is private (0600); what goes back is the mode it had.
    const modeOf = (variant: 'client' | 'resolved'): number | undefined =>
      (variant === 'client' ? c.detail.client?.mode : c.detail.client?.mode ?? c.detail.server?.mode) ?? undefined;

    switch (choice) {
      case 'server':
        // The server's variant is where it is already; only an object we made offline and
        // renamed onto the server's name is left to clear away.
        if (c.detail.from && c.detail.createdOffline) await this.removeIfThere(fs, c.detail.from);
        break;
      case 'client':
        if (meta) { await this.applyMeta(fs, c); placed.push(c.path); break; }
        await this.place(fs, v('client'), c.path, true, c, modeOf('client'));
        placed.push(c.path);
        if (c.detail.from && c.detail.from !== c.path) await this.removeIfThere(fs, c.detail.from);
        break;
      case 'resolved': {
        const st = await fsp.lstat(v('resolved')).catch(() => null);
        if (!st?.isFile()) {
          throw new UserError(`conflict ${id} has no resolved variant yet`, {
            hint: `write it first (the mount's /.cachefs/conflicts/${id}/resolved), or use --use FILE`,
          });
        }
        await this.place(fs, v('resolved'), c.path, true, c, modeOf('resolved'));
        placed.push(c.path);
        if (c.detail.from && c.detail.from !== c.path) await this.removeIfThere(fs, c.detail.from);
        break;
      }
      case 'both': {
        if (meta) throw new UserError(`conflict ${id} is about metadata only: there is one file`, { hint: 'use --keep client or --keep server' });
        const marked = markedName(c.path, id);
        await this.place(fs, v('client'), marked, false, c, modeOf('client'));
        placed.push(marked);
        if (c.detail.from && c.detail.from !== c.path) await this.removeIfThere(fs, c.detail.from);
        break;
      }
    }

    const records = this.store.records(id);
    this.store.resolve(id, choice as Resolution, 'user');
    const lostFound = await this.keepDiscarded(c, choice);
    try { this.forget(c, records); } catch (e) { log.warn(`conflict ${id}: cannot drop its offline objects from the index`, e); }
    log.info(`conflict ${id} on ${c.path} resolved: ${choice}${placed.length ? ` (${placed.join(', ')})` : ''}`);
    return { id, path: c.path, choice, placed, lostFound };
  }

  /** The client's metadata (mode, owner) onto the server's object. */
  private async applyMeta(fs: ResolveFs, c: Conflict): Promise<void> {
    const cl = c.detail.client;
    const cur = await fs.stat(c.path);
    if (!cl || !cur) throw new UserError(`${c.path} is gone; nothing to set metadata on`);
    if (cl.mode !== undefined && (cur.mode & 0o7777) !== cl.mode) await fs.chmod(c.path, cl.mode);
    const uid = cl.uid !== undefined && cl.uid !== cur.uid ? cl.uid : undefined;
    const gid = cl.gid !== undefined && cl.gid !== cur.gid ? cl.gid : undefined;
    if (uid !== undefined || gid !== undefined) await fs.chown(c.path, uid, gid);
  }

  /**
   * Makes mount path `dest` hold local variant `src` (a file, symlink or directory tree),
   * with mode `mode` at the top (the variant's own; its copy in the cache is 0600).
   */
  private async place(fs: ResolveFs, src: string, dest: string, replace: boolean, c: Conflict, mode?: number): Promise<void> {
    const st = await fsp.lstat(src).catch(() => null);
    if (!st) throw new UserError(`conflict ${c.id} has no such variant to keep`, { hint: `cachefs conflicts <mountpoint> --show ${c.id}` });
    const cur = await fs.stat(dest);
    if (cur && !replace) {
      throw new UserError(`${dest} exists already`, { hint: `move it away, then resolve conflict ${c.id} again` });
    }
    const want = mode ?? (st.mode & 0o7777);
    if (cur && st.isFile() && cur.type === 'file') {
      await fs.writeFile(dest, src, want);
      if ((cur.mode & 0o7777) !== want) await fs.chmod(dest, want);
      return;
    }
    if (cur) {
      if (cur.type === 'dir') {
        try {
          await fs.rmdir(dest);
        } catch (e) {
          if (isFsError(e, 'ENOTEMPTY') || isFsError(e, 'EEXIST')) {
            throw new UserError(`${dest} is a directory with entries on the server; keeping the client's variant there would remove them`, {
              hint: `use --keep both (the client's goes beside it as ${path.posix.basename(markedName(dest, c.id))}), or empty it first`,
            });
          }
          throw e;
        }
      } else {
        await fs.unlink(dest);
      }
    }
    await this.ensureParents(fs, dest);
    await this.copyIn(fs, src, dest, mode);
    if (mode !== undefined && !st.isSymbolicLink()) {
      const now = await fs.stat(dest);
      if (now && (now.mode & 0o7777) !== mode) await fs.chmod(dest, mode);
    }
  }

  private async copyIn(fs: ResolveFs, src: string, dest: string, mode?: number): Promise<void> {
    const st = await fsp.lstat(src);
    if (st.isSymbolicLink()) { await fs.symlink(await fsp.readlink(src), dest); return; }
    if (st.isDirectory()) {
      await fs.mkdir(dest, mode ?? (st.mode & 0o7777 || 0o755));
      for (const name of await fsp.readdir(src)) await this.copyIn(fs, path.join(src, name), path.posix.join(dest, name));
      return;
    }
    if (st.isFile()) { await fs.writeFile(dest, src, mode ?? (st.mode & 0o7777)); return; }
    log.warn(`conflict variant ${src} is neither file, directory nor symlink: not placed`);
  }

  /** The directories above `p`, made again if the server removed them (remove against update keeps the update). */
  private async ensureParents(fs: ResolveFs, p: string): Promise<void> {
    const parent = path.posix.dirname(p);
    if (parent === '/' || parent === '.') return;
    const st = await fs.stat(parent);
    if (st?.type === 'dir') return;
    if (st) throw new UserError(`${parent} is not a directory on the server now`, { hint: 'move it away, then resolve again' });
    await this.ensureParents(fs, parent);
    await fs.mkdir(parent, 0o755);
  }

  private async removeIfThere(fs: ResolveFs, p: string): Promise<void> {
    const st = await fs.stat(p);
    if (!st || st.type === 'dir') return;
    await fs.unlink(p);
  }

  /**
   * Moves every variant this choice did not put in place to <cache>/lost+found, then drops
   * the conflict's directory: `--resolved` and `--use FILE` keep the client's variant there
   * too (it was thrown away), and `--keep client` the seeded resolved file.
   */
  private async keepDiscarded(c: Conflict, choice: Choice): Promise<string[]> {
    if (!c.dir) return [];
    const placed: Record<Choice, string[]> = { server: [], client: ['client'], both: ['client'], resolved: ['resolved'] };
    const discard = ['client', 'server', 'base', 'resolved'].filter((v) => !placed[choice].includes(v) && !(choice === 'both' && v === 'server'));
    const lf = lostFoundDir(this.cacheDir);
    const kept: string[] = [];
    await fsp.mkdir(lf, { recursive: true, mode: 0o700 });
    for (const name of discard) {
      const from = path.join(c.dir, name);
      if (!await fsp.lstat(from).then(() => true, () => false)) continue;
      const to = path.join(lf, lostFoundName(c.id, name, path.posix.basename(c.path)));
      await fsp.rm(to, { recursive: true, force: true });
      await fsp.rename(from, to);
      kept.push(to);
    }
    await fsp.rm(c.dir, { recursive: true, force: true });
    return kept;
  }
}
