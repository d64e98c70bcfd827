// A file unlinked (or renamed over) while it is open is moved aside under a hidden name until
// its last close (connected: the backend must keep it for the writes still to come). The
// kernel sends RELEASE after close() has returned, so the last close can come while the name
// is being moved aside: sqlite closes its rollback journal and unlinks it at once. The hidden
// name must go then too; before the fix it stayed on the backend for ever (the offline-trip
// test found `.cachefs-hidden-…` files left in the server's copy).
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Backend } from '../src/backends/types.js';
import { layerHere, type LayerHere } from './helpers/layer.js';
import { waitUntil } from './helpers/wait.js';

/** The backend with its renames held at a gate the test opens (fault injection). */
function gatedRenames(inner: Backend) {
  let started = 0;
  let open!: () => void;
  const gate = new Promise<void>((r) => { open = r; });
  const backend = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'rename') {
        return async (...a: Parameters<Backend['rename']>) => { started++; await gate; return target.rename(...a); };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { backend, started: () => started, open: () => open() };
}

const hiddenIn = (dir: string) => fs.readdirSync(dir).filter((n) => n.startsWith('.cachefs-hidden-'));

describe('unlink while open: the last close during the hiding', () => {
  const heres: LayerHere[] = [];
  after(async () => { for (const h of heres) await h.dispose(); });

  for (const how of ['unlink', 'rename over it'] as const) {
    it(`${how}: the last close comes while the name is moved aside; no hidden name is left`, async () => {
      let gate!: ReturnType<typeof gatedRenames>;
      const here = await layerHere('unlink-open', {
        fill: async (be) => {
          await fsp.writeFile(path.join(be, 'journal'), 'rollback journal');
          await fsp.writeFile(path.join(be, 'new'), 'the new version');
        },
        wrap: (b) => { gate = gatedRenames(b); return gate.backend; },
      });
      heres.push(here);
      const { layer } = here;
      const fd = await layer.open('/journal', fs.constants.O_RDONLY);
      const removing = how === 'unlink' ? layer.unlink('/journal') : layer.rename('/new', '/journal');
      // The layer has decided to hide the open file: its rename is at the backend.
      await waitUntil('the hiding rename to reach the backend', () => gate.started() > 0);
      await layer.release(fd); // the kernel's RELEASE, late
      gate.open();
      await removing;
      assert.deepEqual(hiddenIn(here.backend), [], 'no hidden name on the backend');
      const names = (await layer.readdir('/')).entries.map((e) => e.name).sort();
      assert.deepEqual(names, how === 'unlink' ? ['new'] : ['journal'], 'the names the mount lists');
      if (how !== 'unlink') assert.equal(await fsp.readFile(path.join(here.backend, 'journal'), 'utf8'), 'the new version');
    });
  }

  it('the usual order (release after the hiding): the hidden name lasts until the last close, then goes', async () => {
    const here = await layerHere('unlink-open', { fill: (be) => fsp.writeFile(path.join(be, 'f'), 'data') });
    heres.push(here);
    const { layer } = here;
    const fd = await layer.open('/f', fs.constants.O_RDONLY);
    await layer.unlink('/f');
    assert.equal(hiddenIn(here.backend).length, 1, 'moved aside while open');
    assert.equal((await layer.read(fd, 0, 100)).toString(), 'data', 'still readable through its descriptor');
    await layer.release(fd);
    assert.deepEqual(hiddenIn(here.backend), [], 'gone at the last close');
  });
});
