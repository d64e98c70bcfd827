// The CLI contract: help on every command, clear errors for bad configuration and bad
// flags (naming the field, the value and the fix), and nothing mounted or written then.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { cli, tempRoot, fuseMounted, REPO } from './helpers/cachefs.js';

describe('cli', () => {
  const root = tempRoot('cli');
  const backend = path.join(root, 'backend');
  const mnt = path.join(root, 'mnt');
  const cache = path.join(root, 'cache');
  mkdirSync(backend);
  mkdirSync(mnt);
  after(() => rmSync(root, { recursive: true, force: true }));

  for (const cmd of [[], ['mount'], ['umount'], ['status']]) {
    it(`--help works for "cachefs ${cmd.join(' ')}"`, async () => {
      const r = await cli([...cmd, '--help']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Usage: cachefs/);
    });
  }

  it('--help describes what cachefs does today (NFS included), and --version prints package.json\'s version', async () => {
    let r = await cli(['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /later/);
    assert.match(r.stdout, /a directory or an NFS export/);
    assert.match(r.stdout, /--version/);
    r = await cli(['mount', '--help']);
    assert.match(r.stdout, /nfs:\/\//);
    const { version } = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      r = await cli([flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${version}\n`);
    }
  });

  async function expectRejected(config: unknown, field: RegExp, extra: string[] = []): Promise<string> {
    const file = path.join(root, 'bad.json');
    writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config));
    const r = await cli(['mount', backend, mnt, '--cache-dir', cache, '--config', file, ...extra]);
    assert.notEqual(r.code, 0, 'a bad configuration must not mount');
    assert.match(r.stderr, field);
    assert.equal(existsSync(cache), false, 'nothing may be written');
    assert.equal(await fuseMounted(mnt), false, 'nothing may be mounted');
    return r.stderr;
  }

  it('a wrong type names the field, the bad value and the fix', async () => {
    const err = await expectRejected({ consistency: { acregmin: 'soon' } }, /consistency\.acregmin/);
    assert.match(err, /"soon"/);
    assert.match(err, /Fix: set it to seconds/);
  });

  it('an unknown field is named with the known ones', async () => {
    const err = await expectRejected({ cache: { chunksize: 4096 } }, /unknown field "cache\.chunksize"/);
    assert.match(err, /chunkSize/);
  });

  it('a chunk size that is not a power of two is refused', async () => {
    await expectRejected({ cache: { chunkSize: 100000 } }, /cache\.chunkSize.*power of two/s);
  });

  it('a backend deadline above 10 s is refused', async () => {
    await expectRejected({ backendTimeoutMs: 20000 }, /backendTimeoutMs/);
  });

  it('acregmin above acregmax is refused', async () => {
    await expectRejected({ consistency: { acregmin: 100, acregmax: 10 } }, /acregmin.*acregmax/s);
  });

  it('a file that is not JSON says so', async () => {
    await expectRejected('{ "log": "info", }', /not valid JSON/);
  });

  it('an unknown flag and a bad flag value are refused', async () => {
    let r = await cli(['mount', backend, mnt, '--cache-dir', cache, '--bogus']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option '--bogus'/);
    r = await cli(['mount', backend, mnt, '--cache-dir', cache, '--log-level', 'loud']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /loud/);
    assert.equal(existsSync(cache), false);
  });

  it('a missing backend is a clear error and mounts nothing', async () => {
    const r = await cli(['mount', path.join(root, 'no-such-dir'), mnt, '--cache-dir', cache]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /does not exist/);
    assert.match(r.stderr, /hint:/);
    assert.equal(await fuseMounted(mnt), false);
  });

  it('an unsupported URL scheme is named', async () => {
    const r = await cli(['mount', 'ftp://example.invalid/x', mnt, '--cache-dir', cache]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ftp:\/\/ scheme is not supported/);
  });

  it('malformed nfs:// URLs name the problem and the form, and mount nothing', async () => {
    const cases: [string, RegExp][] = [
      ['nfs://127.0.0.1', /names no export/],
      ['nfs://127.0.0.1/export?uid=abc', /uid=abc is not valid/],
      ['nfs://127.0.0.1/export?mountport=70000', /mountport=70000 is not valid/],
      ['nfs://127.0.0.1/export?colour=blue', /unknown option colour/],
      ['nfs://user:pw@127.0.0.1/export', /user names and passwords/],
    ];
    for (const [url, re] of cases) {
      const r = await cli(['mount', url, mnt, '--cache-dir', cache]);
      assert.equal(r.code, 2, url);
      assert.match(r.stderr, re, url);
      assert.match(r.stderr, /hint: use nfs:\/\/host/, url);
    }
    assert.equal(await fuseMounted(mnt), false);
  });

  it('an NFS server that is not there is a clear error at once, not after a deadline', async () => {
    // Port 9 (discard) on loopback: nothing listens there, the connection is refused.
    const t0 = Date.now();
    const r = await cli(['mount', 'nfs://127.0.0.1:9/export?mountport=9', mnt, '--cache-dir', cache]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ECONNREFUSED/);
    assert.match(r.stderr, /hint: is the NFS server running/);
    assert.ok(Date.now() - t0 < 4000, `took ${Date.now() - t0} ms`);
    assert.equal(await fuseMounted(mnt), false);
  });

  it('every command given something that is not a cachefs mount says so, with exit status 1', async () => {
    const profile = path.join(root, 'profile.txt');
    writeFileSync(profile, '/docs -r\n');
    const inside = path.join(mnt, 'file.txt');
    const commands = [
      ['status', mnt], ['umount', mnt], ['offline', mnt], ['online', mnt], ['sync', mnt], ['journal', mnt],
      ['watch', mnt], ['conflicts', mnt], ['resolve', mnt, '--id', '1', '--keep', 'client'], ['resolve', inside, '--keep', 'server'],
      ['pin', inside], ['pin', '--from', profile, mnt], ['unpin', inside], ['pins', mnt], ['hoard', mnt], ['evict', inside],
      ['lost-found', mnt], ['lost-found', mnt, '--empty'],
    ];
    for (const args of commands) {
      const r = await cli(args);
      assert.equal(r.code, 1, `cachefs ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /is not (in )?a cachefs mount/, args.join(' '));
      assert.match(r.stderr, /hint: /, args.join(' '));
    }
  });

  it('the embedded default configuration is valid', async () => {
    const { loadConfig } = await import('../src/config/load.js');
    const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
    const { config, file } = loadConfig({ cwd: repo });
    assert.equal(file, path.join(repo, 'cache.config.json'));
    assert.equal(config.backend, path.join(repo, 'demo'));
    assert.equal(config.mountpoint, path.join(repo, 'mnt'));
  });
});
