// A cache layer in this process over a real local directory and a real SQLite index, for
// tests that must interleave the layer's calls precisely (races a FUSE mount cannot time).
// `wrap` may put fault injection on top of the real backend.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LocalBackend } from '../../src/backends/local/local-backend.js';
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
import { DEFAULTS } from '../../src/config/schema.js';

export interface LayerHere {
  layer: CacheLayer;
  /** The backend directory. */
  backend: string;
  /** Closes everything and removes the temporary directory. */
  dispose(): Promise<void>;
}

/** `fill` prepares the backend directory before the layer first sees it. */
export async function layerHere(tag: string, opts: { fill?: (backendDir: string) => Promise<void>; wrap?: (b: Backend) => Backend } = {}): Promise<LayerHere> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `cachefs-${tag}-`));
  const be = path.join(dir, 'backend');
  await fsp.mkdir(be, { recursive: true });
  await opts.fill?.(be);
  const local = new LocalBackend(be, { workInRoot: false });
  await local.open();
  const backend = opts.wrap ? opts.wrap(local) : local;
  const db = openDb(path.join(dir, 'index.sqlite'));
  const index = new ObjectIndex(db, local.fsid);
  const store = new MeteredDataStore(path.join(dir, 'cache'));
  await store.init();
  const journal = new Journal(db);
  const config = { ...DEFAULTS, backend: be, mountpoint: path.join(dir, 'mnt'), cacheDir: path.join(dir, 'cache') };
  const layer = new CacheLayer({ backend, index, store, connectivity: new Connectivity(), config, conflicts: new ConflictStore(db), events: new EventBus() }, (t) => new Replayer(journal, t));
  await layer.init();
  return {
    layer,
    backend: be,
    dispose: async () => {
      await layer.close();
      await store.close();
      await local.close();
      db.close();
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}
