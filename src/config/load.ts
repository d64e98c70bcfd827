// Reads cache.config.json once, merges CLI overrides over it, validates the result with the
// strict schema and resolves relative paths. On any problem it throws a UserError naming the
// field, the bad value and the fix; it never writes anything.
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ZodIssue } from 'zod';
import { UserError } from '../core/errors.js';
import { NfsUrlError, formatNfsUrl, parseNfsUrl } from '../core/nfs-url.js';
import { ConfigSchema, DEFAULTS, FIELD_HINTS, type Config } from './schema.js';

export const DEFAULT_CONFIG_NAME = 'cache.config.json';

/** Values given on the command line; each overrides the file. Paths are relative to cwd. */
export interface ConfigOverrides {
  backend?: string;
  mountpoint?: string;
  cacheDir?: string;
  allowOther?: boolean;
  log?: Config['log'];
}

export interface LoadedConfig {
  config: Config;
  /** The file it came from, or null when only defaults and flags were used. */
  file: string | null;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function deepMerge(base: Json, over: Json): Json {
  if (over && typeof over === 'object' && !Array.isArray(over) && base && typeof base === 'object' && !Array.isArray(base)) {
    const out: { [k: string]: Json } = { ...base };
    for (const [k, v] of Object.entries(over)) out[k] = k in out ? deepMerge(out[k]!, v) : v;
    return out;
  }
  return over;
}

function describeIssue(source: string, issue: ZodIssue, input: unknown): string {
  const field = issue.path.join('.');
  if (issue.code === 'unrecognized_keys') {
    const where = field ? `${field}.` : '';
    return `${source}: unknown field ${issue.keys.map((k) => `"${where}${k}"`).join(', ')}. ` +
      `Fix: remove it (known fields: ${knownFields(issue.path).join(', ')}).`;
  }
  let value: unknown = input;
  for (const p of issue.path) value = (value as Record<string | number, unknown> | undefined)?.[p];
  const hint = FIELD_HINTS[field];
  const got = value === undefined ? 'nothing' : JSON.stringify(value);
  return `${source}: field "${field}" is invalid: ${issue.message} (got ${got}).` +
    (hint ? ` Fix: set it to ${hint}.` : '');
}

function knownFields(at: (string | number)[]): string[] {
  let v: unknown = DEFAULTS;
  for (const p of at) v = (v as Record<string | number, unknown>)[p];
  return v && typeof v === 'object' ? Object.keys(v) : [];
}

function validate(source: string, candidate: unknown): Config {
  const r = ConfigSchema.safeParse(candidate);
  if (!r.success) {
    const lines = r.error.issues.map((i) => describeIssue(source, i, candidate));
    throw new UserError(lines.join('\n'), { hint: 'nothing was mounted and nothing was written' });
  }
  const c = r.data;
  const pairs: [keyof Config['consistency'], keyof Config['consistency']][] = [['acregmin', 'acregmax'], ['acdirmin', 'acdirmax']];
  for (const [lo, hi] of pairs) {
    if ((c.consistency[lo] as number) > (c.consistency[hi] as number)) {
      throw new UserError(`${source}: field "consistency.${lo}" (${c.consistency[lo]}) is larger than "consistency.${hi}" (${c.consistency[hi]}).` +
        ` Fix: make ${lo} ≤ ${hi}.`, { hint: 'nothing was mounted and nothing was written' });
    }
  }
  return c;
}

/** A URL's scheme (`nfs://`, `file://`, or one cachefs does not know). */
const URL_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

/** Turns a backend argument (path, file:// or nfs:// URL) into an absolute path or a URL string. */
export function normalizeBackend(spec: string, relativeTo: string): string {
  if (spec.startsWith('file://')) {
    try { return fileURLToPath(spec); } catch {
      throw new UserError(`backend "${spec}" is not a valid file:// URL`, { hint: 'use file:///absolute/path or a plain path' });
    }
  }
  if (/^nfs:\/\//i.test(spec)) {
    try { return formatNfsUrl(parseNfsUrl(spec)); } catch (e) {
      if (!(e instanceof NfsUrlError)) throw e;
      throw new UserError(`backend ${e.message}`, { hint: 'use nfs://host[:port]/export[/dir][?mountport=N&uid=N&gid=N]' });
    }
  }
  if (URL_SCHEME.test(spec)) {
    const scheme = spec.slice(0, spec.indexOf(':'));
    throw new UserError(`backend "${spec}": the ${scheme}:// scheme is not supported`, {
      hint: 'give a directory path, a file:// URL or an nfs://host/export URL',
    });
  }
  return path.resolve(relativeTo, spec);
}

export function loadConfig(opts: { configFile?: string; overrides?: ConfigOverrides; cwd?: string }): LoadedConfig {
  // Read only when a path is relative or ./cache.config.json is looked for: a current
  // directory inside a dead mount cannot be read, and absolute paths must work from there
  // (the CLI's exit point explains the error otherwise).
  const cwdOf = (): string => opts.cwd ?? process.cwd();
  const o = opts.overrides ?? {};
  const absolute = (p: string): boolean => path.isAbsolute(p) || URL_SCHEME.test(p);
  const given = [o.backend, o.mountpoint, o.cacheDir];
  const needsCwd = (opts.configFile !== undefined && !path.isAbsolute(opts.configFile))
    || given.some((p) => p !== undefined && !absolute(p))
    || (opts.configFile === undefined && given.some((p) => p === undefined)); // defaults are relative
  let cwd: string | null = null;
  if (needsCwd) cwd = cwdOf();
  else if (opts.configFile === undefined) {
    try { cwd = cwdOf(); } catch { /* then there is no ./cache.config.json to read, and nothing else needs it */ }
  }
  // What relative paths are resolved against; without a cwd every path used is absolute.
  const here = cwd ?? '/';
  let file: string | null = null;
  if (opts.configFile) {
    file = path.resolve(here, opts.configFile);
    if (!existsSync(file)) {
      throw new UserError(`config file ${file} does not exist`, { hint: 'check the --config path' });
    }
  } else if (cwd !== null && existsSync(path.join(cwd, DEFAULT_CONFIG_NAME))) {
    file = path.join(cwd, DEFAULT_CONFIG_NAME);
  }

  let fromFile: Json = {};
  if (file) {
    let text: string;
    try { text = readFileSync(file, 'utf8'); } catch (e) {
      throw new UserError(`cannot read config file ${file}: ${(e as Error).message}`, { hint: 'check its permissions' });
    }
    try { fromFile = JSON.parse(text) as Json; } catch (e) {
      throw new UserError(`${file} is not valid JSON: ${(e as Error).message}`, {
        hint: 'fix the syntax (a trailing comma or a missing quote?); nothing was mounted and nothing was written',
      });
    }
    if (!fromFile || typeof fromFile !== 'object' || Array.isArray(fromFile)) {
      throw new UserError(`${file} must hold a JSON object`, { hint: `see ${DEFAULT_CONFIG_NAME} in the repository` });
    }
  }
  const source = file ?? 'configuration';
  const merged = validate(source, deepMerge(DEFAULTS as unknown as Json, fromFile));
  const base = file ? path.dirname(file) : here;
  const fromFileResolved: Config = {
    ...merged,
    backend: normalizeBackend(merged.backend, base),
    mountpoint: path.resolve(base, merged.mountpoint),
    cacheDir: path.resolve(base, merged.cacheDir),
  };

  const withFlags: Config = {
    ...fromFileResolved,
    ...(o.backend !== undefined ? { backend: normalizeBackend(o.backend, here) } : {}),
    ...(o.mountpoint !== undefined ? { mountpoint: path.resolve(here, o.mountpoint) } : {}),
    ...(o.cacheDir !== undefined ? { cacheDir: path.resolve(here, o.cacheDir) } : {}),
    ...(o.log !== undefined ? { log: o.log } : {}),
    fuse: { ...fromFileResolved.fuse, ...(o.allowOther !== undefined ? { allowOther: o.allowOther } : {}) },
  };
  return { config: validate('command line', withFlags), file };
}
