// The layer order of ARCHITECTURE.md §2 is a check that fails: dependency-cruiser with the
// rules in .dependency-cruiser.cjs over src/ (type-only imports included). The second test
// shows the check can fail: a tree with a forbidden import (layers/ -> daemon/) is refused.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { REPO, sh, tempRoot } from './helpers/cachefs.js';

const DEPCRUISE = path.join(REPO, 'node_modules', '.bin', 'depcruise');
const CONFIG = path.join(REPO, '.dependency-cruiser.cjs');

/** depcruise's report, without the colours it adds where it thinks a terminal is (CI=true). */
async function cruise(cwd: string): Promise<{ code: number; out: string }> {
  const r = await sh(DEPCRUISE, ['src', '--config', CONFIG, '--output-type', 'err'], { cwd, timeoutMs: 120_000 });
  return { code: r.code, out: (r.stdout + r.stderr).replace(/\x1B\[[0-9;]*m/g, '') };
}

describe('architecture: the layer order (ARCHITECTURE.md §2)', () => {
  it('src/ has no import the layer rules forbid', async () => {
    const r = await cruise(REPO);
    assert.equal(r.code, 0, `dependency violations:\n${r.out}`);
    assert.match(r.out, /no dependency violations found \((\d+) modules/);
    const modules = Number(/\((\d+) modules/.exec(r.out)![1]);
    assert.ok(modules > 50, `the whole tree was cruised (${modules} modules)`);
  });

  it('a forbidden import is reported (the check can fail)', async () => {
    const dir = tempRoot('arch');
    await fsp.mkdir(path.join(dir, 'src', 'layers'), { recursive: true });
    await fsp.mkdir(path.join(dir, 'src', 'daemon'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'src', 'daemon', 'wiring.ts'), 'export const wired = 1;\n');
    await fsp.writeFile(path.join(dir, 'src', 'layers', 'layer.ts'), "import { wired } from '../daemon/wiring.js';\nexport const x = wired;\n");
    await fsp.copyFile(path.join(REPO, 'tsconfig.json'), path.join(dir, 'tsconfig.json'));
    const r = await cruise(dir);
    await fsp.rm(dir, { recursive: true, force: true });
    assert.notEqual(r.code, 0, 'refused');
    assert.match(r.out, /layers-not-up: src\/layers\/layer\.ts → src\/daemon\/wiring\.ts/);
  });
});
