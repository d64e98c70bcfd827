// Close-to-open for young files (issue 12 item 5): a file read through the mount and then
// changed on the server moments later is read fresh by the next open() about two seconds
// on, as an NFS client reads it; over both backends, with the default timeouts.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { mountFresh, sh, type Mounted, BACKEND_KINDS, skipKind } from './helpers/cachefs.js';
import { startNfsServer, type NfsServer } from './helpers/nfs-server.js';

for (const kind of BACKEND_KINDS) {
  describe(`close-to-open for a file changed just after it was read (${kind} backend)`, { skip: skipKind(kind) }, () => {
    let nfs: NfsServer | undefined;
    let m: Mounted;
    before(async () => {
      if (kind === 'nfs') nfs = await startNfsServer('c2o');
      m = await mountFresh(`c2o-${kind}`, nfs ? { nfs } : {});
    });
    after(async () => { await m?.cleanup(); await nfs?.dispose(); });

    it('echo v1 > EXPORT/k; cat MNT/k; sleep 0.3; echo "version two" > EXPORT/k; sleep 2; cat MNT/k prints the new version', async () => {
      for (let t = 0; t < 4; t++) {
        const k = `k${t}`;
        await fsp.writeFile(m.b(k), 'v1\n');
        assert.equal((await sh('cat', [m.m(k)])).stdout, 'v1\n');
        await new Promise((r) => setTimeout(r, 300));
        await fsp.writeFile(m.b(k), 'version two\n');
        await new Promise((r) => setTimeout(r, 2000));
        assert.equal((await sh('cat', [m.m(k)])).stdout, 'version two\n', `trial ${t}`);
      }
    });
  });
}
