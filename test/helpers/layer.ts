// A cache layer in this process over a real local directory and a real SQLite index, for
// tests that must interleave the layer's calls precisely (races a FUSE mount cannot time).
// `wrap` may put fault injection on top of the real backend; `reopenLayer` opens the same
// backend and cache again, as the next mount would (after a clean close or a kill). With
// `nfs`, the backend is a directory of a real NFS server's export, spoken to over NFSv3.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { LocalBackend } from '../../src/backends/local/local-backend.js';
import { NfsBackend } from '../../src/backends/nfs/nfs-backend.js';
import { parseNfsUrl } from '../../src/core/nfs-url.js';
import { exportSubdir } from './nfs-server.js';
import type { Backend } from '../../src/backends/types.js';
import { openDb } from '../../src/index/db.js';
import { ObjectIndex } from '../../src/index/objects.js';
import { MeteredDataStore } from '../../src/cache/culler.js';
import { Journal } from '../../src/journal/journal.js';
import { Replayer } from '../../src/journal/replayer.js';
import { ConflictStore } from '../../src/conflict/store.js';
import { Connectivity } from '../../src/layers/connectivity.js';
import { EventBus } from '../../src/core/events.js';
import { CacheLayer } from '../../src/layers/cache-layer.js';
import { DEFAULTS, type Config } from '../../src/config/schema.js';

export interface LayerHere {
  layer: CacheLayer;
  /** The temporary directory holding backend/, cache/ and index.sqlite. */
  dir: string;
  /** The backend directory (on an NFS backend: in the server's export, as the server sees it). */
  backend: string;
  journal: Journal;
  conflicts: ConflictStore;
  /** Closes the layer and the index, keeping the directory (for reopenLayer). */
  close(): Promise<void>;
  /** Closes everything and removes the temporary directory. */
  dispose(): Promise<void>;
}

export interface LayerOptions {
  /** Prepares the backend directory before the layer first sees it. */
  fill?: (backendDir: string) => Promise<void>;
  wrap?: (b: Backend) => Backend;
  /** Replaces parts of the default configuration. */
  config?: (c: Config) => Config;
  /** Sees the journal before the layer does (fault injection at a record's removal, say). */
  journal?: (j: Journal) => void;
  /** An NFS server to use as the backend (a fresh directory of its export), not a local one. */
  nfs?: { url: string; exportDir: string };
  /** How many recently used objects the index keeps in memory by itself (ObjectIndex). */
  keepObjects?: number;
  /** Sees the cache's data store before the layer does (fault injection: a write held, say). */
  store?: (s: MeteredDataStore) => void;
}

/** Where a layerHere directory's backend is (kept in it, so a reopen finds the same one). */
interface BackendPlace { dir: string; nfsUrl?: string }

export async function layerHere(tag: string, opts: LayerOptions = {}): Promise<LayerHere> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `cachefs-${tag}-`));
  let place: BackendPlace = { dir: path.join(dir, 'backend') };
  if (opts.nfs) {
    const sub = exportSubdir(opts.nfs, path.basename(dir));
    place = { dir: sub.dir, nfsUrl: sub.url };
  }
  await fsp.mkdir(place.dir, { recursive: true, mode: 0o777 });
  writeFileSync(path.join(dir, 'backend.json'), JSON.stringify(place));
  await opts.fill?.(place.dir);
  return reopenLayer(dir, opts);
}

/** A layer over a directory layerHere made; `init()` replays what an earlier run left. */
export async function reopenLayer(dir: string, opts: Omit<LayerOptions, 'fill' | 'nfs'> = {}): Promise<LayerHere> {
  const place = JSON.parse(readFileSync(path.join(dir, 'backend.json'), 'utf8')) as BackendPlace;
  const be = place.dir;
  const local = place.nfsUrl ? new NfsBackend(parseNfsUrl(place.nfsUrl), { deadlineMs: 10_000 }) : new LocalBackend(be, { workInRoot: false });
  await local.open();
  const backend = opts.wrap ? opts.wrap(local) : local;
  const db = openDb(path.join(dir, 'index.sqlite'));
  const index = new ObjectIndex(db, local.fsid, { keepObjects: opts.keepObjects });
  const store = new MeteredDataStore(path.join(dir, 'cache'));
  await store.init();
  opts.store?.(store);
  const journal = new Journal(db);
  opts.journal?.(journal);
  const base: Config = { ...DEFAULTS, backend: be, mountpoint: path.join(dir, 'mnt'), cacheDir: path.join(dir, 'cache') };
  const config = opts.config ? opts.config(base) : base;
  const conflicts = new ConflictStore(db);
  const layer = new CacheLayer({ backend, index, store, connectivity: new Connectivity(), config, conflicts, events: new EventBus() }, (t) => new Replayer(journal, t));
  await layer.init();
  const close = async (): Promise<void> => {
    await layer.close();
    await store.close();
    await local.close();
    db.close();
  };
  return {
    layer, dir, backend: be, journal, conflicts, close,
    dispose: async () => {
      await close();
      await fsp.rm(dir, { recursive: true, force: true });
      if (place.nfsUrl) await fsp.rm(be, { recursive: true, force: true });
    },
  };
}

/** For LayerOptions.config: every record is replayed as it was made (no journal optimization). */
export const withoutJournalOptimization = (c: Config): Config => ({ ...c, reintegration: { ...c.reintegration, optimize: false } });
