#!/usr/bin/env node
// Rebuilds fuse-native from its (patched) C source so the binding we load carries the
// cachefs fixes in patches/fuse-native+*.patch (nanosecond times, utimens passing mtime,
// flag_utime_omit_ok). node-gyp-build loads build/Release before the shipped prebuilds, so
// once this has run the prebuilt (unpatched) binary is never used.
// Runs from `npm ci` (postinstall); needs g++, make, python3 and Node's headers.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const pkgDir = path.dirname(require.resolve('fuse-native/package.json'));

function findNodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) {
    return process.env.npm_config_node_gyp;
  }
  const bundled = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm',
    'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(bundled)) return bundled;
  return null;
}

// Node's headers: node-gyp would otherwise try to download them, and this machine reaches
// no host but the package registries. Prefer npm's configured nodedir, then the headers of
// the running node's own prefix (Debian and the official tarballs put them in include/node).
function findNodeDir() {
  const configured = process.env.npm_config_nodedir;
  if (configured && existsSync(path.join(configured, 'include', 'node', 'node_api.h'))) return configured;
  for (const dir of [path.resolve(path.dirname(process.execPath), '..'), '/usr', '/usr/local']) {
    if (existsSync(path.join(dir, 'include', 'node', 'node_api.h'))) return dir;
  }
  return null;
}

const gyp = findNodeGyp();
const nodeDir = findNodeDir();
const gypArgs = ['rebuild', '--release', ...(nodeDir ? [`--nodedir=${nodeDir}`] : [])];
const args = gyp ? [gyp, ...gypArgs] : null;
const res = args
  ? spawnSync(process.execPath, args, { cwd: pkgDir, stdio: 'inherit' })
  : spawnSync('node-gyp', gypArgs, { cwd: pkgDir, stdio: 'inherit' });
if (res.status !== 0) {
  console.error('cachefs: rebuilding fuse-native failed; install g++, make and python3 ' +
    '(apt-get install build-essential python3) and run `npm rebuild` again.');
  process.exit(1);
}
const built = path.join(pkgDir, 'build', 'Release', 'fuse.node');
if (!existsSync(built)) {
  console.error(`cachefs: node-gyp finished but ${built} is missing`);
  process.exit(1);
}
console.log('cachefs: fuse-native rebuilt with the cachefs patch');
