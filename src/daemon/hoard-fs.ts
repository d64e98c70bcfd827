// The mount by path as a hoard walk sees it (reads only: listings, attributes, whole files).
// Wired here, in daemon/, so that neither layers/ nor hoard/ knows the other: hoard/ declares
// the interface it needs (HoardFs), the cache layer offers its operations.
import type { HoardFs } from '../hoard/walk.js';
import type { CacheLayer, CachedObject } from '../layers/cache-layer.js';

export function hoardFsOf(layer: CacheLayer): HoardFs {
  const entry = (o: CachedObject) => ({ type: o.attr.type, size: o.attr.size, cachedBytes: o.cachedBytes, ref: o.id });
  return {
    stat: async (p) => entry(await layer.getattr(p)),
    list: async (p) => (await layer.readdir(p)).entries.map((e) => ({ name: e.name, ...entry(e.obj) })),
    readlink: (p) => layer.readlink(p),
    // The object the scan found (not the path again: a lookup may revalidate each file).
    fetch: async (p, onBytes, ref) => layer.hoardFile((ref !== undefined ? layer.objectById(ref) : undefined) ?? await layer.resolve(p), onBytes),
  };
}
