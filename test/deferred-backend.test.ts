// The stand-in for a backend that was away when the mount started (backends/deferred.ts):
// it tries to open the real one at most once a second, so that a burst of calls while the
// server is away does not become a burst of connection attempts; but `cachefs online` /
// `sync` right after the network came back must not be answered by the try of a moment ago.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DeferredBackend } from '../src/backends/deferred.js';
import { FsError } from '../src/core/errors.js';
import type { Attr, Backend } from '../src/backends/types.js';

const attr: Attr = { type: 'dir', mode: 0o40755, uid: 0, gid: 0, size: 4096, nlink: 2, rdev: 0, used: 4096, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n, version: 'v1' };

describe('DeferredBackend', () => {
  it('tries again at once after retryNow(), not only once its second is over', async () => {
    let up = false;
    let tries = 0;
    const real = { fsid: 'nfs:x', description: 'nfs://x', getattr: async () => attr, close: async () => undefined } as unknown as Backend;
    const d = new DeferredBackend({ description: 'nfs://x' } as unknown as Backend, { fsid: 'nfs:x', root: { fh: Buffer.from('r'), attr } }, 1000, async () => {
      tries++;
      if (!up) throw new FsError('ECONNREFUSED', 'connect ECONNREFUSED');
      return real;
    });
    await assert.rejects(d.getattr(Buffer.from('r')), { code: 'ECONNREFUSED' });
    up = true; // the server is back
    await assert.rejects(d.getattr(Buffer.from('r')), /still unreachable/, 'a call within the second after a try does not try again');
    assert.equal(tries, 1);
    d.retryNow();
    assert.deepEqual(await d.getattr(Buffer.from('r')), attr, 'asked for now: it tries, and the backend answers');
    assert.equal(tries, 2);
  });
});
