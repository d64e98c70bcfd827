// What a directory tree holds, to compare two trees (the mount's, the server's, a source's):
// every name below the root with its type, permission bits, size, content hash, symlink
// target and, when asked, its mtime and which names are hard links of one another.
import { promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';

export interface Entry { type: string; mode: string; size?: number; sha1?: string; target?: string; mtimeNs?: bigint; linkedTo?: string }

export interface SnapshotOpts {
  /** Record files' mtimes (and, with `dirMtimes`, directories'). */
  mtimes?: boolean;
  dirMtimes?: boolean;
  /** Record, for each file with several names, the first of them (in name order). */
  hardLinks?: boolean;
}

/** Every name below `root` -> what it is (see Entry). */
export async function snapshot(root: string, opts: SnapshotOpts = {}): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const firstName = new Map<bigint, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(path.join(root, rel))).sort()) {
      const r = path.join(rel, name);
      const p = path.join(root, r);
      const st = await fsp.lstat(p, { bigint: true });
      const e: Entry = { type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : st.isFile() ? 'file' : 'other', mode: (st.mode & 0o7777n).toString(8) };
      if (st.isFile()) {
        e.size = Number(st.size);
        e.sha1 = createHash('sha1').update(await fsp.readFile(p)).digest('hex');
        if (opts.mtimes) e.mtimeNs = st.mtimeNs;
        if (opts.hardLinks && st.nlink > 1n) {
          const first = firstName.get(st.ino);
          if (first === undefined) firstName.set(st.ino, r); else e.linkedTo = first;
        }
      }
      if (st.isSymbolicLink()) e.target = await fsp.readlink(p);
      if (st.isDirectory() && opts.dirMtimes) e.mtimeNs = st.mtimeNs;
      out.set(r, e);
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return out;
}

/** Differences between two snapshots, one line each (empty: the same). */
export function diff(want: Map<string, Entry>, got: Map<string, Entry>, names: [string, string] = ['offline mount', 'server']): string[] {
  const out: string[] = [];
  const show = (e: Entry | undefined) => (e ? JSON.stringify(e, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) : 'missing');
  for (const name of new Set([...want.keys(), ...got.keys()])) {
    const a = show(want.get(name));
    const b = show(got.get(name));
    if (a !== b) out.push(`${name}: ${names[0]} ${a}, ${names[1]} ${b}`);
  }
  return out.sort();
}
