// The layer order of ARCHITECTURE.md §2, as a check that fails (run by test/architecture.test.ts,
// so by the test command). Dependencies point one way:
//   cli -> daemon -> fuse -> layers -> {index, store, journal, conflict, hoard, cache, backends} -> core
// Each rule names imports that must never exist; `comment` says why.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'layers-not-up', severity: 'error', comment: 'the cache layer knows neither the daemon that wires it nor the hoard walks that use it (daemon/ wires them)',
      from: { path: '^src/layers/' }, to: { path: '^src/(daemon|hoard|cli|fuse)/' } },
    { name: 'fuse-knows-the-layer', severity: 'error', comment: 'fuse/ knows the layer\'s interface and core/ only',
      from: { path: '^src/fuse/' }, to: { path: '^src/(index|store|backends|conflict|journal|cache|hoard|daemon|cli)/' } },
    { name: 'backends-know-nothing-of-caching', severity: 'error', comment: 'backends are the bottom layer: core/ only',
      from: { path: '^src/backends/' }, to: { path: '^src/', pathNot: '^src/(backends|core)/' } },
    { name: 'config-parses', severity: 'error', comment: 'config/ parses; the daemon resolves backend URLs',
      from: { path: '^src/config/' }, to: { path: '^src/(backends|layers|daemon|fuse|cli)/' } },
    { name: 'cli-talks-to-the-daemon', severity: 'error', comment: 'the CLI talks to the daemon over the control socket, or to a helper in daemon/',
      from: { path: '^src/cli/' }, to: { path: '^src/fuse/' } },
    { name: 'core-is-the-bottom', severity: 'error', comment: 'core/ imports nothing of ours',
      from: { path: '^src/core/' }, to: { path: '^src/', pathNot: '^src/core/' } },
    { name: 'nothing-imports-the-cli', severity: 'error', comment: 'the CLI is the top',
      from: { path: '^src/', pathNot: '^src/cli/' }, to: { path: '^src/cli/' } },
    { name: 'daemon-is-wired-by-the-cli-only', severity: 'error', comment: 'daemon/ is the one place that wires everything: nothing below it imports it',
      from: { path: '^src/(layers|fuse|index|store|journal|conflict|hoard|cache|backends|config|core)/' }, to: { path: '^src/daemon/' } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
