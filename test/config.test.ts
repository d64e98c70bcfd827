// The configuration loader on its own: defaults, overrides, relative paths, and errors that
// name the field, the value and the fix.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, rmSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/config/load.js';
import { DEFAULTS } from '../src/config/schema.js';
import { UserError } from '../src/core/errors.js';
import { tempRoot } from './helpers/cachefs.js';

describe('configuration', () => {
  const root = tempRoot('config');
  after(() => rmSync(root, { recursive: true, force: true }));

  it('without a file: the defaults, relative to the working directory', () => {
    const cwd = path.join(root, 'empty');
    mkdirSync(cwd);
    const { config, file } = loadConfig({ cwd });
    assert.equal(file, null);
    assert.equal(config.backend, path.join(cwd, 'demo'));
    assert.equal(config.cache.chunkSize, DEFAULTS.cache.chunkSize);
  });

  it('a partial file is merged over the defaults; its paths are relative to the file', () => {
    const dir = path.join(root, 'partial');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ backend: 'data', cache: { readAheadChunks: 2 } }));
    const { config } = loadConfig({ configFile: path.join(dir, 'c.json'), cwd: root });
    assert.equal(config.backend, path.join(dir, 'data'));
    assert.equal(config.cache.readAheadChunks, 2);
    assert.equal(config.cache.chunkSize, DEFAULTS.cache.chunkSize);
  });

  it('flags override the file; file:// URLs become paths', () => {
    const dir = path.join(root, 'flags');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ backend: 'data', log: 'warn' }));
    const { config } = loadConfig({
      configFile: path.join(dir, 'c.json'), cwd: root,
      overrides: { backend: 'file:///srv/share', cacheDir: 'cc', allowOther: false, log: 'debug' },
    });
    assert.equal(config.backend, '/srv/share');
    assert.equal(config.cacheDir, path.join(root, 'cc'));
    assert.equal(config.fuse.allowOther, false);
    assert.equal(config.log, 'debug');
  });

  it('every error names the field and the fix', () => {
    const cases: [unknown, RegExp][] = [
      [{ fuse: { maxWrite: 2 << 20 } }, /fuse\.maxWrite.*1048576/s],
      [{ log: 'verbose' }, /"log".*"verbose".*Fix/s],
      [{ fuse: { allowOther: 'yes' } }, /fuse\.allowOther.*true, false or "auto"/s],
      [{ fuse: { writebackCache: true } }, /fuse\.writebackCache.*not supported/s],
      [{ fuse: { passthroughWrites: true } }, /fuse\.passthroughWrites.*needs fuse\.passthrough/s],
      [{ extra: 1 }, /unknown field "extra"/],
      [[1, 2], /must hold a JSON object/],
    ];
    for (const [content, re] of cases) {
      const f = path.join(root, 'bad.json');
      writeFileSync(f, JSON.stringify(content));
      assert.throws(() => loadConfig({ configFile: f }), (e: unknown) => {
        assert.ok(e instanceof UserError);
        assert.match(e.message, re);
        return true;
      });
    }
  });

  it('a missing config file given explicitly is an error', () => {
    assert.throws(() => loadConfig({ configFile: path.join(root, 'nope.json') }), /does not exist/);
  });
});
