// Connected write records (write-back.ts): a record of an acknowledged write is volatile (no
// journal row, no CRC) while the backend applies it at once; one the backend has not
// applied within DURABLE_AFTER_MS gets its row, and so does every one when the connection
// goes. What must stay true: such a row carries the CRC of the very bytes written, and a
// mount killed after that point loses none of them: the next start replays them whole.
// A child process (helpers/write-records-child.ts) writes with the backend's writes held
// and is killed with SIGKILL; this process then opens the same cache and backend again.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { layerHere, reopenLayer, type LayerHere } from './helpers/layer.js';
import { waitUntil } from './helpers/wait.js';
import { MIBS, TAIL, mibOf } from './helpers/write-records-data.js';

const CHILD = fileURLToPath(new URL('./helpers/write-records-child.js', import.meta.url));

function runChild(dir: string, mode: 'late' | 'offline' | 'partial'): Promise<{ signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CHILD, dir, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('error', reject);
    p.on('exit', (_code, signal) => resolve({ signal, stdout, stderr }));
  });
}

describe('connected write records: durable once the backend is slow, or the connection goes', () => {
  const opened: LayerHere[] = [];
  after(async () => { for (const h of opened) await h.dispose().catch(() => undefined); });

  for (const mode of ['late', 'offline', 'partial'] as const) {
    const what = {
      late: 'records the backend has not applied within DURABLE_AFTER_MS get their rows, with the CRC of their bytes',
      offline: 'going offline gives every record its row at once',
      partial: 'going offline journals a dirty run that is not a record yet (README: every acknowledged byte under its journal record)',
    }[mode];
    it(`${what}; after kill -9 the next start replays every byte`, async () => {
      const made = await layerHere(`write-records-${mode}`);
      await made.close();
      const r = await runChild(made.dir, mode);
      assert.equal(r.signal, 'SIGKILL', `the child: ${r.stderr}`);
      if (mode === 'late') {
        assert.deepEqual(r.stdout.trim().split('\n'), Array.from({ length: MIBS }, (_, i) => `crc ${i} ok`), r.stdout);
      } else {
        const rows = mode === 'partial' ? 1 : MIBS;
        assert.equal(r.stdout.trim(), `rows ${rows}`, 'every write had its journal row as the mount went offline');
      }
      // The next start: the records left are replayed (the backend now answers).
      const again = await reopenLayer(made.dir);
      opened.push(again);
      if (mode !== 'late') await again.layer.goOnline();
      await waitUntil('the journal to be replayed', () => again.journal.pending() === 0, 30_000);
      const want = mode === 'partial' ? TAIL : Buffer.concat(Array.from({ length: MIBS }, (_, i) => mibOf(i)));
      const got = await fsp.readFile(path.join(again.backend, 'f'));
      assert.equal(got.length, want.length, 'the backend file has every byte');
      assert.ok(got.equals(want), 'the backend file has the bytes written');
      assert.deepEqual(again.conflicts.list(), [], 'no conflict: the CRCs matched the cache file');
    });
  }
});
