// Close-to-open for young files (issue 12 item 5): a file read through the mount and then
// changed on the server moments later is read fresh by the next open() about two seconds
// on, as an NFS client reads it; over both backends, with the default timeouts.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { mountFresh, sh, control, type Mounted, BACKEND_KINDS, skipKind } from './helpers/cachefs.js';
import { waitUntil } from './helpers/wait.js';
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
      for (let t = 0; t < 3; t++) {
        const k = `k${t}`;
        await fsp.writeFile(m.b(k), 'v1\n');
        assert.equal((await sh('cat', [m.m(k)])).stdout, 'v1\n');
        await new Promise((r) => setTimeout(r, 300));
        await fsp.writeFile(m.b(k), 'version two\n');
        await new Promise((r) => setTimeout(r, 2000));
        assert.equal((await sh('cat', [m.m(k)])).stdout, 'version two\n', `trial ${t}`);
      }
    });

    // A directory listed through the mount and then changed on the backend lists the new
    // name at a later opendir, as a changed file shows at a later open(). Over a local disk
    // (inotify reports every change, so the timeouts are long: src/fuse/kernel-caching.ts)
    // the kernel keeps the listing it read (FOPEN_CACHE_DIR) and a second listing costs no
    // READDIR; over NFS nobody would tell it of a change, so it reads the directory again.
    it('a name added on the backend shows in the next listing of a directory listed before', async () => {
      await fsp.mkdir(m.b('listed'));
      for (let i = 0; i < 20; i++) await fsp.writeFile(m.b('listed', `f${i}`), 'x');
      const ls = async () => (await sh('ls', [m.m('listed')])).stdout.split('\n').filter(Boolean);
      assert.equal((await ls()).length, 20);
      const readdirs = async () => {
        const ops = (await control(m, 'status') as unknown as { ops: Record<string, { count: number }> }).ops;
        return (ops.readdirplus?.count ?? 0) + (ops.readdir?.count ?? 0);
      };
      const before = await readdirs();
      assert.equal((await ls()).length, 20);
      if (kind === 'local') assert.equal(await readdirs(), before, 'the second listing came from the kernel\'s copy');
      else assert.ok(await readdirs() > before, 'the second listing was read from the mount again');
      await fsp.writeFile(m.b('listed', 'added-on-the-backend'), 'y');
      await waitUntil('the backend\'s new name to show in a listing', async () => (await ls()).includes('added-on-the-backend'), 10_000);
      assert.equal((await ls()).length, 21);
    });
  });
}
