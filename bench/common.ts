// What the benchmarks share: where the CLI is, command-line flags, fixtures, and the deltas
// of a mount's status counters between two moments.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
export const REPO = path.resolve(path.dirname(CLI), '..', '..', '..');

export type OpsTable = Record<string, { count: number; ms: number }>;
export interface Counters { hits: number; misses: number; bytesFromCache: number; bytesFromBackend: number; backendCalls: number }

export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

export async function makeBigFile(file: string, mib: number): Promise<void> {
  const h = await fsp.open(file, 'w');
  const block = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  for (let i = 0; i < mib; i++) { block.writeUInt32LE(i, 0); await h.write(block); }
  await h.close();
}

export async function makeTree(root: string, files: number): Promise<void> {
  const perDir = 100;
  for (let d = 0; d < Math.ceil(files / perDir); d++) {
    const dir = path.join(root, `d${String(d).padStart(3, '0')}`);
    await fsp.mkdir(dir, { recursive: true });
    const n = Math.min(perDir, files - d * perDir);
    await Promise.all(Array.from({ length: n }, (_, i) => fsp.writeFile(path.join(dir, `f${i}.txt`), `file ${d}/${i}\n`)));
  }
}

export function deltaOps(a: OpsTable, b: OpsTable): OpsTable {
  const out: OpsTable = {};
  for (const [k, v] of Object.entries(b)) {
    const count = v.count - (a[k]?.count ?? 0);
    if (count > 0) out[k] = { count, ms: v.ms - (a[k]?.ms ?? 0) };
  }
  return out;
}

export function deltaCounters(a: Counters, b: Counters): Counters {
  return {
    hits: b.hits - a.hits, misses: b.misses - a.misses, bytesFromCache: b.bytesFromCache - a.bytesFromCache,
    bytesFromBackend: b.bytesFromBackend - a.bytesFromBackend, backendCalls: b.backendCalls - a.backendCalls,
  };
}
