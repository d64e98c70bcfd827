#!/usr/bin/env node
// The cachefs command line. Thin: it parses arguments (commander, for help texts and option
// parsing we would otherwise hand-write), calls into the library, and has one exit point
// (`main`) that prints errors with their hint. Library code never prints or exits.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { UserError } from '../core/errors.js';
import { commandMount, commandUmount, commandStatus, commandOffline, commandSync, commandJournal, commandWatch, commandEvict } from './commands.js';

// The commands of conflicts.ts, hoard.ts and lost-found.ts are loaded by their own runs only:
// each run of the CLI (and each mount process, which starts as one) waits for its imports.
const conflicts = () => import('./conflicts.js');
const hoard = () => import('./hoard.js');
const lostFound = () => import('./lost-found.js');

/**
 * The version in cachefs's package.json: the first one found going up from this module, so it
 * is the same from src/ and from dist/src/ (the build does not copy package.json).
 */
function packageVersion(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ;) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'cachefs' && typeof pkg.version === 'string') return pkg.version;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const up = path.dirname(dir);
    if (up === dir) return 'unknown';
    dir = up;
  }
}

function buildProgram(): Command {
  const program = new Command();
  program
    .name('cachefs')
    .description('A caching filesystem: mount a directory or an NFS export through a local cache\n' +
      'that keeps working offline and replays your changes when the backend is back.')
    .version(packageVersion(), '-V, --version', 'print the cachefs version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program.command('mount')
    .description('mount <backend> on <mountpoint> through the cache (both default to cache.config.json)')
    .argument('[backend]', 'a directory path, file:// URL or nfs://host/export URL to cache')
    .argument('[mountpoint]', 'an empty directory to mount on')
    .option('--cache-dir <dir>', 'cache directory (index, journal, data; created 0700)')
    .option('--config <file>', 'configuration file (default: ./cache.config.json if present)')
    .option('--foreground', 'stay in the foreground and serve the mount from this process')
    .addOption(new Option('--allow-other', 'let other users use the mount (default when mounted by root)'))
    .addOption(new Option('--no-allow-other', 'only the mounting user may use the mount'))
    .addOption(new Option('--log-level <level>', 'log detail').choices(['debug', 'info', 'warn', 'error']))
    .addHelpText('after', '\nWithout --foreground it returns once the mount answers, and the mount process keeps\n' +
      'running in the background (its log is cachefs.log in the cache directory).')
    .action(async (backend: string | undefined, mountpoint: string | undefined, opts) => {
      await commandMount(backend, mountpoint, opts);
    });

  program.command('umount')
    .alias('unmount')
    .description('write pending changes to the backend, then unmount; also cleans up a dead mount')
    .argument('<mountpoint>', 'where cachefs is mounted')
    .option('--force', 'unmount even while files are open in the mount (their users get ENOTCONN)')
    .option('--lazy', 'detach now; the mount process finishes once the files open in it are closed')
    .action(async (mountpoint: string, opts: { force?: boolean; lazy?: boolean }) => { await commandUmount(mountpoint, opts); });

  program.command('status')
    .description('show the state of a mount: connectivity, cache use, pending changes, counters')
    .argument('<mountpoint>', 'where cachefs is mounted')
    .option('--json', 'print machine-readable JSON')
    .action(async (mountpoint: string, opts: { json?: boolean }) => { await commandStatus(mountpoint, opts); });

  program.command('offline')
    .description('stop using the backend: work from the cache, journal every change')
    .argument('<mountpoint>', 'where cachefs is mounted')
    .option('--json', 'print the resulting status as JSON')
    .action(async (mountpoint: string, opts: { json?: boolean }) => { await commandOffline(mountpoint, opts); });

  program.command('online')
    .description('use the backend again: replay the journal (reintegrate), then work connected')
    .argument('<mountpoint>', 'where cachefs is mounted')
    .option('--json', 'print the resulting status as JSON')
    .action(async (mountpoint: string, opts: { json?: boolean }) => { await commandSync(mountpoint, { ...opts, progress: false }); });

  program.command('sync')
    .description('replay the journal to the backend now, with progress (goes online if it can)')
    .argument('<mountpoint>', 'where cachefs is mounted')
    .option('--json', 'print the resulting status as JSON')
    .action(async (mountpoint: string, opts: { json?: boolean }) => { await commandSync(mountpoint, { ...opts, progress: true }); });

  program.command('journal')
    .description('list the changes waiting in the journal for the backend')
    .argument('<mountpoint>', 'where cachefs is mounted')
    .option('--json', 'print machine-readable JSON')
    .action(async (mountpoint: string, opts: { json?: boolean }) => { await commandJournal(mountpoint, opts); });

  program.command('watch')
    .description('follow a mount\'s events (offline, online, replay progress, conflicts, cache full), one line each')
    .argument('<mountpoint>', 'where cachefs is mounted')
    .option('--json', 'print each event as the JSON line the mount sends')
    .addHelpText('after', '\nIt starts with the current state and runs until the mount is unmounted or Ctrl-C.\n' +
      'Example: cachefs watch ~/work | while read -r l; do notify-send cachefs "$l"; done')
    .action(async (mountpoint: string, opts: { json?: boolean }) => { await commandWatch(mountpoint, opts); });

  program.command('conflicts')
    .description('list the conflicts replay found (open ones by default), or show one')
    .argument('<mountpoint>', 'where cachefs is mounted')
    .option('--all', 'also list resolved conflicts (by you, or automatically)')
    .option('--show <id>', 'show one: versions, variants, and a unified diff for text (sizes and hashes for binary)')
    .option('--json', 'print machine-readable JSON')
    .addHelpText('after', '\nEach open conflict\'s variants are files in the mount: <mountpoint>/.cachefs/conflicts/<id>/\n' +
      '{client,server,base,resolved}. The conflicted path itself shows the server\'s variant until resolved.')
    .action(async (mountpoint: string, opts: { json?: boolean; all?: boolean; show?: string }) => { await (await conflicts()).commandConflicts(mountpoint, opts); });

  program.command('resolve')
    .description('resolve a conflict: keep the client\'s variant, the server\'s, both, or a file of yours')
    .argument('<path>', 'the conflicted path inside the mount, or the mountpoint with --id')
    .option('--id <n>', 'the conflict to resolve (see cachefs conflicts)')
    .addOption(new Option('--keep <variant>', 'which variant the path keeps (both: the client\'s goes beside it as NAME.client-conflict-ID.EXT)')
      .choices(['client', 'server', 'both']))
    .option('--use <file>', 'the path gets the bytes of this file (it becomes the resolved variant)')
    .option('--resolved', 'the path gets the resolved variant you wrote in .cachefs/conflicts/<id>/resolved')
    .option('--json', 'print what was done as JSON')
    .addHelpText('after', '\nThe resolution is an ordinary change through the journal: offline, it is replayed on reconnection.\n' +
      'The variant not kept is moved to <mountpoint>/.cachefs/lost+found/ (cachefs lost-found lists and empties it).')
    .action(async (target: string, opts: { id?: string; keep?: string; use?: string; resolved?: boolean; json?: boolean }) => {
      await (await conflicts()).commandResolve(target, opts);
    });

  program.command('lost-found')
    .description('list the variants resolutions did not keep (in <mountpoint>/.cachefs/lost+found), or remove them')
    .argument('<mountpoint>', 'where cachefs is mounted')
    .option('--empty', 'remove every entry')
    .option('--remove <names...>', 'remove these entries (names as listed)')
    .option('--json', 'print machine-readable JSON')
    .addHelpText('after', '\nEntries are named ID-VARIANT-NAME: the conflict, the variant (client, server, base, resolved)\n' +
      'and the conflicted file\'s name. They are only in the cache directory, never on the backend.')
    .action(async (mountpoint: string, opts: { json?: boolean; empty?: boolean; remove?: string[] }) => { await (await lostFound()).commandLostFound(mountpoint, opts); });

  program.command('pin')
    .description('keep paths in the cache for working offline (hoarding): fetched now, never culled')
    .argument('[paths...]', 'files or directories inside the mount (globs in quotes; with --from: the mountpoint)')
    .option('-r, --recursive', 'a directory\'s whole tree, including files made in it later')
    .option('--priority <n>', 'higher is fetched first (default 0)')
    .option('--from <file>', 'a hoard profile: one "PATH [PRIORITY] [-r]" per line, paths from the mount root')
    .option('--no-hoard', 'only record the pins; fetch later (cachefs hoard)')
    .option('--json', 'JSON progress lines and summary')
    .action(async (paths: string[], opts: { recursive?: boolean; priority?: string; from?: string; hoard?: boolean; json?: boolean }) => {
      await (await hoard()).commandPin(paths, opts);
    });

  program.command('unpin')
    .description('stop keeping paths (their data stays until culling needs the room)')
    .argument('<paths...>', 'pinned paths inside the mount')
    .option('-r, --recursive', 'also remove the pins under these directories')
    .option('--json', 'print machine-readable JSON')
    .action(async (paths: string[], opts: { recursive?: boolean; json?: boolean }) => { await (await hoard()).commandUnpin(paths, opts); });

  program.command('pins')
    .description('list the pins of a mount and the last hoard walk')
    .argument('<mountpoint>', 'where cachefs is mounted')
    .option('--json', 'print machine-readable JSON')
    .action(async (mountpoint: string, opts: { json?: boolean }) => { await (await hoard()).commandPins(mountpoint, opts); });

  program.command('hoard')
    .description('fetch everything pinned now (a hoard walk), with progress; also runs after pin and after reconnecting')
    .argument('<mountpoint>', 'where cachefs is mounted')
    .option('--json', 'JSON progress lines and a summary line')
    .action(async (mountpoint: string, opts: { json?: boolean }) => { await (await hoard()).commandHoard(mountpoint, opts); });

  program.command('evict')
    .description('drop the cached data of files now (clean data only: changes not yet on the backend are kept)')
    .argument('<paths...>', 'files (or, with -r, directories) inside the mount')
    .option('-r, --recursive', 'everything cached under these directories')
    .option('--force', 'pinned files too (their pins stay: the next hoard walk fetches them again)')
    .option('--json', 'print machine-readable JSON')
    .addHelpText('after', '\nDirty files (changes waiting for the backend) and open files are kept and named; so are\n'
      + 'pinned ones without --force. Culling does the same by itself when the cache is full.')
    .action(async (paths: string[], opts: { recursive?: boolean; force?: boolean; json?: boolean }) => { await commandEvict(paths, opts); });

  return program;
}

/**
 * The current directory cannot be read: most often the shell is still inside a mount whose
 * process died ("Transport endpoint is not connected"), where the user has just been
 * working and now runs `cachefs umount` or `cachefs mount` to recover. A relative path
 * (or ./cache.config.json) cannot be found from there; absolute paths work.
 */
function isDeadCwd(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && (e as NodeJS.ErrnoException).syscall === 'uv_cwd';
}

function deadCwdError(e: NodeJS.ErrnoException): UserError {
  const why = e.code === 'ENOTCONN' ? 'it is inside a mount whose process died' : 'it was removed, or is inside a mount that went away';
  return new UserError(`the current directory cannot be read (${e.code ?? 'error'}: ${why}), so relative paths and ./cache.config.json cannot be found from it`, {
    hint: 'cd to another directory (cd /) or give absolute paths; `cachefs umount <mountpoint>` cleans up a dead mount',
  });
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version end here too; commander has already printed what it had to say.
      return e.exitCode === 0 ? 0 : 2;
    }
    if (isDeadCwd(e)) e = deadCwdError(e);
    if (e instanceof UserError) {
      process.stderr.write(`cachefs: ${e.message}\n`);
      if (e.hint) process.stderr.write(`  hint: ${e.hint}\n`);
      return e.exitCode;
    }
    process.stderr.write(`cachefs: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
    process.stderr.write('  hint: this is a bug; the cache and journal are crash-safe, so nothing written was lost\n');
    return 1;
  }
}

// The single exit point. A foreground mount resolves main() only once it has unmounted.
main(process.argv).then((code) => process.exit(code));
