// Open descriptors of backend directories, so that the local backend names every object as
// one name below a directory descriptor, never by its path from the backend root. A path
// that fits PATH_MAX (4096) inside the mount can be longer than that below the backend root
// (the mount point's own path is not counted, the backend root's is), and the kernel answers
// ENAMETOOLONG to any path longer than PATH_MAX. Node's fs takes no directory descriptor, so
// calls use the short form /proc/self/fd/N/name (procPath): the kernel follows the magic link
// to the directory open as N, then looks up one name, as an *at() call would. This is what
// libfuse's passthrough_ll does with its per-inode O_PATH descriptors; here they are bounded.
//
// The descriptors are O_PATH (no read permission needed, nothing to flush on close), kept in
// a least-recently-used map from the directory's path below the root ('' is the root, held
// until close()). A missing directory is opened component by component from its nearest
// open ancestor, each step one name with O_NOFOLLOW: a directory replaced by a symlink from
// outside is refused (ENOTDIR), never followed out of the backend.
//
// What must stay true:
// - A descriptor is closed only once no call holds it (refs === 0). A number closed while a
//   call uses it can be reused by the next open(), and the call would reach another directory.
// - At most `max` descriptors are kept besides the ones in use (in use: one or two per call
//   in flight), so the backend never runs out of descriptors however deep or wide the tree.
// - An entry names the directory object it was opened on, wherever that is now. Our own
//   renames move the keys (moved()), our rmdirs drop them (dropped()); a directory renamed or
//   replaced by someone else is noticed by the caller, who passes the inode number it expects
//   (acquire's `expectIno`) and gets the entry reopened.
import { FsError } from '../../core/errors.js';
import { fsName } from '../../core/names.js';
import { atOrBelow, rebased } from './rel.js';

/** One open directory. `refs` counts the calls using it now. */
export interface DirFd {
  readonly fd: number;
  readonly ino: bigint;
  refs: number;
  /** Dropped from the map while in use: closed by the last release(). */
  dead: boolean;
}

/** The system calls the map needs (synchronous or not, see meta.ts). */
export interface DirFdCalls {
  /** Opens the directory at `p` (O_PATH | O_DIRECTORY | O_NOFOLLOW); resolves to the fd. */
  openDir(p: string | Buffer): Promise<number>;
  /** The inode number of the object open as `fd`. */
  inoOf(fd: number): Promise<bigint>;
  close(fd: number): void;
}

/**
 * The short path of `name` in the directory open as `fd` ('.' for the directory itself), as
 * Node's fs takes it: bytes when the name is not UTF-8 (core/names.ts).
 */
export function procPath(fd: number, name: string): string | Buffer {
  return fsName(`/proc/self/fd/${fd}/${name}`);
}

export class DirFds {
  /** In least-recently-used order (a use re-inserts). Never holds the root. */
  private readonly open = new Map<string, DirFd>();

  constructor(private readonly root: DirFd, private readonly calls: DirFdCalls, private readonly max: number) {}

  /** Directories open now, the root included (for tests and leak checks). */
  get size(): number { return this.open.size + 1; }

  /**
   * The directory at `rel` (below the root), held until release(). With `expectIno`, an open
   * entry for another object (the path was renamed or replaced from outside) is reopened, and
   * ESTALE answers if the path still does not name that object.
   */
  async acquire(rel: string, expectIno?: bigint): Promise<DirFd> {
    if (rel === '') return this.root;
    const have = this.open.get(rel);
    if (have && (expectIno === undefined || have.ino === expectIno)) {
      this.open.delete(rel);
      this.open.set(rel, have);
      have.refs++;
      return have;
    }
    if (have) this.dropped(rel); // its children are those of the object that left, too
    const parts = rel.split('/');
    // The nearest open ancestor, then one openat per missing component.
    let i = parts.length - 1;
    let base = this.root;
    for (; i > 0; i--) {
      const a = this.open.get(parts.slice(0, i).join('/'));
      if (a) { base = a; break; }
    }
    if (base !== this.root) base.refs++;
    try {
      for (; i < parts.length; i++) {
        const key = parts.slice(0, i + 1).join('/');
        const fd = await this.calls.openDir(procPath(base.fd, parts[i]!));
        let ino: bigint;
        try { ino = await this.calls.inoOf(fd); } catch (e) { this.calls.close(fd); throw e; }
        let next = this.open.get(key);
        if (next && next.ino === ino) {
          this.calls.close(fd); // another call opened it meanwhile
        } else {
          if (next) this.dropped(key);
          next = { fd, ino, refs: 0, dead: false };
          this.open.set(key, next);
        }
        next.refs++;
        this.release(base);
        base = next;
      }
    } catch (e) {
      this.release(base);
      throw e;
    }
    this.trim();
    if (expectIno !== undefined && base.ino !== expectIno) {
      this.release(base);
      throw new FsError('ESTALE', `${rel} is no longer the directory it was`);
    }
    return base;
  }

  release(d: DirFd): void {
    if (d === this.root) return;
    d.refs--;
    if (d.refs === 0) {
      if (d.dead) this.calls.close(d.fd);
      else this.trim();
    }
  }

  /** Runs `fn` with the directory at `rel` held. */
  async with<T>(rel: string, fn: (d: DirFd) => Promise<T>, expectIno?: bigint): Promise<T> {
    const d = await this.acquire(rel, expectIno);
    try { return await fn(d); } finally { this.release(d); }
  }

  /** We renamed `from` to `to`: entries at and below `from` move; whatever was at `to` is gone. */
  moved(from: string, to: string): void {
    this.dropped(to);
    const moving = [...this.open].filter(([k]) => atOrBelow(k, from));
    for (const [k, d] of moving) {
      this.open.delete(k);
      this.open.set(rebased(k, from, to), d);
    }
  }

  /** `rel` (and so everything below it) is no longer there: forget its entries. */
  dropped(rel: string): void {
    for (const [k, d] of [...this.open]) {
      if (!atOrBelow(k, rel)) continue;
      this.open.delete(k);
      if (d.refs === 0) this.calls.close(d.fd);
      else d.dead = true;
    }
  }

  /** Closes every descriptor, the root's too (ones in use as their calls end). */
  close(): void {
    this.dropped('');
    this.calls.close(this.root.fd);
  }

  /** Closes the least recently used idle entries beyond `max`. */
  private trim(): void {
    if (this.open.size <= this.max) return;
    for (const [k, d] of this.open) {
      if (this.open.size <= this.max) break;
      if (d.refs > 0) continue;
      this.open.delete(k);
      this.calls.close(d.fd);
    }
  }
}
