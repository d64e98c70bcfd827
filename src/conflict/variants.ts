// Keeping a conflict's variants on disk, inside the cache directory, so both stay readable
// whatever the server does next (it may go away again, or change the object once more).
//   client: from the cache (the object's cache file, a cached symlink target, or the tree of
//           objects made offline under a directory);
//   server: fetched from the backend (a file's bytes, a symlink's target, a directory tree),
//           within a size budget: what does not fit is marked incomplete, never invented.
import { createHash } from 'node:crypto';
import { sha256File } from './content.js';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { isFsError } from '../core/errors.js';
import type { Attr, Backend, BackendCall } from '../backends/types.js';
import type { CachedObject, ObjectIndex } from '../index/objects.js';
import type { DataStore } from '../store/data-store.js';
import type { VariantInfo } from './store.js';


/** Most bytes fetched for one server variant (the rest is marked incomplete). */
const SERVER_BUDGET = 256 * 1024 * 1024;
/** Most entries copied for a directory variant. */
const TREE_ENTRIES = 10_000;
const READ_SIZE = 1024 * 1024;

export interface VariantDeps {
  backend: Backend;
  call: BackendCall;
  index: ObjectIndex;
  store: DataStore;
  chunkSize: number;
}

/** Whether every byte of a regular file is in its cache file. */
export function fullyCached(o: CachedObject, index: Pick<ObjectIndex, 'chunksOf'>, chunkSize: number): boolean {
  if (o.attr.type !== 'file') return true;
  if (o.attr.size === 0) return true;
  const chunks = index.chunksOf(o);
  const n = Math.ceil(o.attr.size / chunkSize);
  for (let i = 0; i < n; i++) if (!chunks.has(i)) return false;
  return true;
}

function info(a: Attr, extra: Partial<VariantInfo>): VariantInfo {
  return { type: a.type, size: a.size, mode: a.mode & 0o7777, uid: a.uid, gid: a.gid, mtimeNs: String(a.mtimeNs), ...extra };
}

/** Copies the client's variant of object `o` (as the cache holds it) to `dest`. */
export async function saveClient(d: VariantDeps, o: CachedObject, dest: string, budget = { entries: TREE_ENTRIES }): Promise<VariantInfo> {
  await fsp.mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
  switch (o.attr.type) {
    case 'file': {
      await d.store.copyOut(o.id, dest);
      // The cache file may be longer or shorter than the file (sparse, or never fetched).
      await fsp.truncate(dest, o.attr.size);
      const complete = fullyCached(o, d.index, d.chunkSize);
      return info(o.attr, { sha256: await sha256File(dest), complete });
    }
    case 'symlink':
      if (o.symlink === null) return info(o.attr, { complete: false });
      await fsp.symlink(o.symlink, dest);
      return info(o.attr, { target: o.symlink });
    case 'dir': {
      await fsp.mkdir(dest, { mode: 0o700 });
      let complete = true;
      for (const [name, id] of d.index.namesOf(o)) {
        if (id === null) continue;
        const child = d.index.get(id);
        if (!child) continue;
        if (--budget.entries < 0) { complete = false; break; }
        const sub = await saveClient(d, child, path.join(dest, name), budget);
        if (sub.complete === false) complete = false;
      }
      return info(o.attr, { complete });
    }
    default:
      return info(o.attr, {}); // a device, fifo or socket: its attributes are all there is
  }
}

/** Fetches the server's variant (the object `fh`, with attributes `attr`) to `dest`. */
export async function saveServer(d: VariantDeps, fh: Buffer, attr: Attr, dest: string,
  budget = { bytes: SERVER_BUDGET, entries: TREE_ENTRIES }): Promise<VariantInfo> {
  await fsp.mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
  switch (attr.type) {
    case 'file': {
      const h = createHash('sha256');
      const out = await fsp.open(dest, 'w', 0o600);
      let pos = 0;
      let complete = true;
      try {
        while (pos < attr.size) {
          if (budget.bytes <= 0) { complete = false; break; }
          const want = Math.min(READ_SIZE, attr.size - pos, budget.bytes);
          const buf = await d.call('read', () => d.backend.read(fh, pos, want));
          if (buf.length === 0) break; // shorter than its attributes said (changed meanwhile)
          await out.write(buf, 0, buf.length, pos);
          h.update(buf);
          pos += buf.length;
          budget.bytes -= buf.length;
        }
      } finally {
        await out.close();
      }
      return info(attr, { size: pos, sha256: h.digest('hex'), complete });
    }
    case 'symlink': {
      const target = await d.call('readlink', () => d.backend.readlink(fh));
      await fsp.symlink(target, dest);
      return info(attr, { target });
    }
    case 'dir': {
      await fsp.mkdir(dest, { mode: 0o700 });
      let complete = true;
      let entries;
      try {
        entries = await d.call('readdir', () => d.backend.readdir(fh));
      } catch (e) {
        if (!isFsError(e, 'ESTALE')) throw e;
        return info(attr, { complete: false });
      }
      for (const e of entries) {
        if (--budget.entries < 0) { complete = false; break; }
        const sub = await saveServer(d, e.fh, e.attr, path.join(dest, e.name), budget).catch((err: unknown) => {
          if (isFsError(err, 'ESTALE') || isFsError(err, 'ENOENT')) return { type: 'absent', complete: false } as VariantInfo;
          throw err;
        });
        if (sub.complete === false) complete = false;
      }
      return info(attr, { complete });
    }
    default:
      return info(attr, {});
  }
}

/** Reads a saved file variant (for comparisons and merges); null if it is not a whole regular file. */
export async function readVariant(file: string, max: number): Promise<Buffer | null> {
  try {
    const st = await fsp.lstat(file);
    if (!st.isFile() || st.size > max) return null;
    return await fsp.readFile(file);
  } catch {
    return null;
  }
}
