// nfs://host[:port]/export[/path inside it][?mountport=N&uid=N&gid=N]
//
// port: the NFS port (default: ask the portmapper, else 2049); mountport: the MOUNT port
// (default: ask the portmapper, else 20048); uid/gid: the AUTH_SYS identity used where
// no caller is known (default: the mount process's own).
import { z } from 'zod';

export interface NfsUrl {
  host: string;
  /** NFS port; undefined = portmapper, then 2049. */
  port?: number;
  mountPort?: number;
  /** The path asked for: an export, or a directory inside one. */
  path: string;
  uid?: number;
  gid?: number;
}

const Id = z.coerce.number().int().min(0).max(0xffffffff);
const Port = z.coerce.number().int().min(1).max(65535);

const KNOWN_PARAMS = new Set(['mountport', 'uid', 'gid', 'nfsport']);

export class NfsUrlError extends Error {}

export function parseNfsUrl(spec: string): NfsUrl {
  let u: URL;
  try { u = new URL(spec); } catch {
    throw new NfsUrlError(`"${spec}" is not a valid URL`);
  }
  if (u.protocol !== 'nfs:') throw new NfsUrlError(`"${spec}" is not an nfs:// URL`);
  if (!u.hostname) throw new NfsUrlError(`"${spec}" names no server`);
  if (u.username || u.password) throw new NfsUrlError(`"${spec}": user names and passwords are not part of NFS URLs`);
  if (u.hash) throw new NfsUrlError(`"${spec}": a #fragment means nothing here`);
  const path = decodeURIComponent(u.pathname).replace(/\/+$/, '') || '/';
  if (path === '/') throw new NfsUrlError(`"${spec}" names no export (nfs://host/export)`);
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const out: NfsUrl = { host, path };
  const num = (key: string, schema: z.ZodNumber): number | undefined => {
    const v = u.searchParams.get(key);
    if (v === null) return undefined;
    const r = schema.safeParse(v);
    if (!r.success || v.trim() === '') throw new NfsUrlError(`"${spec}": ${key}=${v} is not valid (${key === 'uid' || key === 'gid' ? 'a number 0-4294967295' : 'a port 1-65535'})`);
    return r.data;
  };
  for (const k of u.searchParams.keys()) {
    if (!KNOWN_PARAMS.has(k)) throw new NfsUrlError(`"${spec}": unknown option ${k} (known: mountport, uid, gid)`);
  }
  const port = u.port ? Number(u.port) : num('nfsport', Port);
  if (port !== undefined) out.port = port;
  const mountPort = num('mountport', Port);
  if (mountPort !== undefined) out.mountPort = mountPort;
  const uid = num('uid', Id);
  if (uid !== undefined) out.uid = uid;
  const gid = num('gid', Id);
  if (gid !== undefined) out.gid = gid;
  return out;
}

export function formatNfsUrl(u: NfsUrl): string {
  const host = u.host.includes(':') ? `[${u.host}]` : u.host;
  const q = new URLSearchParams();
  if (u.mountPort !== undefined) q.set('mountport', String(u.mountPort));
  if (u.uid !== undefined) q.set('uid', String(u.uid));
  if (u.gid !== undefined) q.set('gid', String(u.gid));
  const qs = q.toString();
  return `nfs://${host}${u.port !== undefined ? `:${u.port}` : ''}${encodeURI(u.path)}${qs ? `?${qs}` : ''}`;
}

export function isNfsUrl(spec: string): boolean {
  return /^nfs:\/\//i.test(spec);
}
