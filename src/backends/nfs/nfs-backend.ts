// The NFSv3 backend: a user-space NFS client (no kernel NFS module, no root needed).
//
// Identity: a file handle is the server's opaque nfs_fh3 (at most 64 bytes); the fsid the
// cache keys on is (server, port, export, fattr3.fsid) — a bare NFS fsid is not unique
// across servers. The version of an object is ctime:mtime:size (NFSv3 has no change
// attribute).
//
// What must stay true:
// - every call has a deadline (the RPC layer's), at most backendTimeoutMs (10 s);
// - data written UNSTABLE is kept (a copy, bounded) until a COMMIT with the same write
//   verifier covers it; a different verifier means the server restarted and lost it, so it
//   is written again (FILE_SYNC) before commit() returns. A copy of a whole WRITE comes from
//   a pool and goes back to it only once nothing can send it any more (covered by a COMMIT,
//   or cut off by a truncate);
// - NFS3ERR_JUKEBOX is retried until the deadline; STALE/BADHANDLE become ESTALE;
// - a non-idempotent call the RPC layer had to send twice may find its own effect
//   (EEXIST after a create, ENOENT after a remove): that counts as success.
import os from 'node:os';
import { BufferPool } from '../../core/buffer-pool.js';
import { FsError, isFsError } from '../../core/errors.js';
import { log } from '../../core/log.js';
import type { Attr, Backend, Creds, DirEntry, DirWcc, KeepBytes, LentBytes, Made, Node, Renamed, OutsideChange, SetAttr, StatFs, WatchOptions } from '../types.js';
import { DEFAULT_MOUNT_PORT, DEFAULT_NFS_PORT, MountClient, portmapGetPort } from './mount-client.js';
import {
  CreateMode, FTYPE_OF, MOUNT_PROGRAM, MOUNT_V3, NFS3_WRITEVERFSIZE, NFS_PROGRAM, NFS_V3, Proc, Stable,
  decodeDirList, decodeFattr3, decodeFsInfo, decodeFsStat, decodeHandle, decodePathConf, decodePostOpAttr,
  decodePostOpFh, decodeWcc, dirWcc, encodeDirop, encodeSattr3, splitdev, type Fattr3, type FsInfo, type PathConf,
} from './nfs3-xdr.js';
import { RpcClient, decodeWith, type AuthSys, type CallOptions } from './rpc.js';
import {
  NFS3ERR_BAD_COOKIE, NFS3ERR_EXIST, NFS3ERR_JUKEBOX, NFS3ERR_NOENT, NFS3ERR_NOTSUPP, NFS3ERR_TOOSMALL, NFS3_OK, nfsError,
} from './status.js';
import { formatNfsUrl, type NfsUrl } from '../../core/nfs-url.js';
import { XdrWriter, xdrPadding, type XdrReader } from './xdr.js';

export interface NfsBackendOptions {
  /** Deadline of one backend operation (including JUKEBOX retries), ms. */
  deadlineMs: number;
}

/** Largest READ/WRITE we send, whatever the server allows: bounds one reply's memory. */
const MAX_TRANSFER = 1024 * 1024;
/** Uncommitted bytes kept per file / in all, before a COMMIT is forced. */
const UNCOMMITTED_FILE_LIMIT = 32 * 1024 * 1024;
const UNCOMMITTED_TOTAL_LIMIT = 64 * 1024 * 1024;
/** Uncommitted bytes of a file at which a COMMIT starts in the background (commitAhead). */
const COMMIT_AHEAD = 16 * 1024 * 1024;
/** The pool of WRITE copies lets its free buffers go once no WRITE took one for this long. */
const COPY_POOL_IDLE_MS = 2000;
const READDIR_MAXCOUNT = 256 * 1024;
const READDIR_DIRCOUNT = 64 * 1024;
const MAX_DIR_ENTRIES_PER_REPLY = 100_000;
const ACCESS_ALL = 0x3f;
/** Directories the poller revalidates per round, most recently listed first. */
const POLL_MAX_DIRS = 2000;
const POLL_CONCURRENCY = 8;

/**
 * `auth`: the writer's, so a write sent again after a server restart is checked as the first
 * was. `release`: lets go of `data` when the write is forgotten (a pooled copy goes back to
 * `copies`, or the caller's bytes kept by its KeepBytes are unpinned); absent for a small
 * write's copy of its own.
 */
interface UncommittedWrite { offset: number; data: Buffer; verf: Buffer; auth: AuthSys | undefined; release?: () => void }
/**
 * A file's UNSTABLE writes not yet covered by a COMMIT (`writes`, `bytes` of them), and those
 * the COMMIT in flight covers (`committing`, `committingBytes`): a truncate cuts both, so a
 * server restart never makes us write bytes past the file's new end again.
 */
interface Uncommitted { fh: Buffer; bytes: number; writes: UncommittedWrite[]; committing: UncommittedWrite[]; committingBytes: number }

/** A reply's status and results; release() as RpcReply's (only READ uses it). */
interface Answer { status: number; r: XdrReader; retransmitted: boolean; release(): void }

export class NfsBackend implements Backend {
  readonly description: string;
  fsid = '';
  /** NFS needs a COMMIT at close for close-to-open durability (the cache asks for it). */
  readonly commitOnClose = true;
  readonly needsGroups = true;
  private rpc: RpcClient | null = null;
  private mount: MountClient | null = null;
  private mountedPath = '';
  private rootFh: Buffer = Buffer.alloc(0);
  private rootAttr: Attr | null = null;
  private fsInfo: FsInfo | null = null;
  private pathconf: PathConf | null = null;
  private rsize = MAX_TRANSFER;
  private wsize = MAX_TRANSFER;
  private readonly auth: AuthSys;
  private readonly uncommitted = new Map<string, Uncommitted>();
  private uncommittedTotal = 0;
  /**
   * Copies of uncommitted WRITE data (wsize each): a stream of writes makes one per WRITE
   * and frees it at the next COMMIT, and fresh 1 MiB buffers cost page faults and GC.
   */
  private copies: BufferPool | null = null;
  /** Each file's COMMIT in flight, the last of its chain (see commit()). */
  private readonly committing = new Map<string, Promise<Attr | void>>();
  private plusWorks = true;
  private nfsPort = DEFAULT_NFS_PORT;
  /** Listed directories and the version their listing had (for watch()); newest last. */
  private readonly listed = new Map<string, { fh: Buffer; version: string }>();
  private pollTimer: NodeJS.Timeout | null = null;
  /** Counters for status and tests. */
  readonly stats = { verifierChanges: 0, rewrites: 0, jukeboxRetries: 0 };

  constructor(private readonly url: NfsUrl, private readonly o: NfsBackendOptions) {
    this.description = formatNfsUrl(url);
    const uid = url.uid ?? process.getuid?.() ?? 0;
    const gid = url.gid ?? process.getgid?.() ?? 0;
    const gids = url.uid === undefined ? (process.getgroups?.() ?? []).filter((g) => g !== gid).slice(0, 15) : [];
    this.auth = { uid, gid, gids, machine: os.hostname() };
  }

  /** The RPC deadline leaves the layer above a margin to report a clear error first. */
  private get rpcDeadline(): number { return Math.max(100, this.o.deadlineMs - 250); }

  /** Finds the ports, mounts the export and learns the server's limits. */
  async open(): Promise<void> {
    const { host } = this.url;
    const probe = Math.min(2000, this.rpcDeadline);
    const nfsPort = this.url.port ?? (await portmapGetPort(host, NFS_PROGRAM, NFS_V3, probe)) ?? DEFAULT_NFS_PORT;
    const mountPort = this.url.mountPort ?? (await portmapGetPort(host, MOUNT_PROGRAM, MOUNT_V3, probe)) ?? DEFAULT_MOUNT_PORT;
    this.nfsPort = nfsPort;
    this.mount = new MountClient(host, mountPort, this.auth, this.rpcDeadline);
    this.rpc = new RpcClient({
      host, port: nfsPort, prog: NFS_PROGRAM, vers: NFS_V3, deadlineMs: this.rpcDeadline,
      // a READ reply of MAX_TRANSFER plus headers, or a READDIRPLUS reply of READDIR_MAXCOUNT
      maxRecord: MAX_TRANSFER + 64 * 1024, auth: this.auth, name: `NFS ${host}:${nfsPort}`,
      // READ replies, given back once their data is copied out (read() with a buffer to
      // fill) or by readLent's release(): a fresh 1 MiB record per READ was page-faulted in
      // and then garbage. As many as the chunk fetcher may hold at once (what lands in the
      // cache files, plus read-ahead); the pool lets them go after a second idle.
      pooledRecords: 32,
    });
    const { fh, inside } = await this.mountPath(this.url.path);
    this.rootFh = fh;
    for (const name of inside) {
      const n = await this.lookup(this.rootFh, name).catch((e) => {
        throw isFsError(e) ? new FsError(e.code, `${this.url.path}: no directory "${name}" inside the export ${this.mountedPath} (${e.message})`) : e;
      });
      if (n.attr.type !== 'dir') throw new FsError('ENOTDIR', `${this.url.path}: ${name} is not a directory`);
      this.rootFh = n.fh;
    }
    const info = await this.fsinfo(this.rootFh);
    this.fsInfo = info;
    this.rsize = clampTransfer(info.rtpref || info.rtmax, info.rtmax);
    this.wsize = clampTransfer(info.wtpref || info.wtmax, info.wtmax);
    // enough for one file's uncommitted limit: a sequential writer then allocates none; an
    // idle mount does not keep them
    this.copies = new BufferPool(this.wsize, Math.ceil(UNCOMMITTED_FILE_LIMIT / this.wsize) + 1, COPY_POOL_IDLE_MS);
    this.pathconf = await this.pathconfOf(this.rootFh).catch(() => null);
    const root = await this.getattrFull(this.rootFh);
    if (root.attr.type !== 'dir') throw new FsError('ENOTDIR', `${this.url.path} is not a directory`);
    this.rootAttr = root.attr;
    // The export (not the directory mounted inside it) names the handles' namespace.
    const exportRoot = await this.exportOf(this.mountedPath);
    this.fsid = `nfs://${host.includes(':') ? `[${host}]` : host}:${nfsPort}${exportRoot}#${root.fsid.toString(16)}`;
    log.info(`NFS ${host}:${nfsPort} ${this.url.path}: rsize ${this.rsize}, wsize ${this.wsize}, fsid ${root.fsid.toString(16)}`);
  }

  /** The export a mounted path belongs to: the longest exported prefix (the path itself if unknown). */
  private async exportOf(mounted: string): Promise<string> {
    const exports = await this.mount!.exports().catch(() => []);
    let best = '';
    for (const x of exports) {
      const dir = x.dir.replace(/\/+$/, '') || '/';
      if ((mounted === dir || mounted.startsWith(dir === '/' ? '/' : `${dir}/`)) && dir.length > best.length) best = dir;
    }
    return best || mounted;
  }

  /** MNT the path; when it is a directory inside an export, MNT the export and walk the rest. */
  private async mountPath(path: string): Promise<{ fh: Buffer; inside: string[] }> {
    const m = this.mount!;
    try {
      const { fh } = await m.mnt(path);
      this.mountedPath = path;
      return { fh, inside: [] };
    } catch (e) {
      if (!isFsError(e) || !['ENOENT', 'EACCES', 'EPERM', 'ENOTDIR'].includes(e.code)) throw e;
      const exports = await m.exports().catch(() => []);
      const parts = path.split('/').filter(Boolean);
      for (let n = parts.length - 1; n >= 1; n--) {
        const prefix = '/' + parts.slice(0, n).join('/');
        if (!exports.some((x) => x.dir.replace(/\/+$/, '') === prefix)) continue;
        const { fh } = await m.mnt(prefix);
        this.mountedPath = prefix;
        return { fh, inside: parts.slice(n) };
      }
      const known = exports.map((x) => x.dir).join(', ');
      throw new FsError(e.code, `${e.message}${known ? ` (the server exports: ${known})` : ''}`);
    }
  }

  /**
   * NFS has no change notifications: every `pollIntervalMs` the directories listed lately
   * are asked for their attributes, and those whose version moved (or that are gone) are
   * reported, so listings follow other clients' changes within a poll interval.
   */
  async watch(onChange: (change: OutsideChange) => void, opts: WatchOptions = { mode: 'poll', pollIntervalMs: 5000 }): Promise<void> {
    if (this.pollTimer) return;
    let running = false;
    this.pollTimer = setInterval(() => {
      if (running) return; // a slow round is never overlapped by the next
      running = true;
      this.pollOnce(onChange).catch((e) => log.debug('NFS directory poll failed', e)).finally(() => { running = false; });
    }, Math.max(100, opts.pollIntervalMs));
    this.pollTimer.unref();
  }

  /**
   * Remembers a directory for the poller. A listing updates the version (the cache above has
   * just seen it); any other sighting only adds a directory not yet known, so a change the
   * poller has not reported yet is never hidden by it.
   */
  private noteListed(dir: Buffer, version: string, listing = true): void {
    const key = dir.toString('hex');
    if (!listing && this.listed.has(key)) return;
    this.listed.delete(key); // re-inserted: newest last
    this.listed.set(key, { fh: Buffer.from(dir), version });
    if (this.listed.size > POLL_MAX_DIRS) this.listed.delete(this.listed.keys().next().value!);
  }

  private async pollOnce(onChange: (change: OutsideChange) => void): Promise<void> {
    const dirs = [...this.listed.entries()].reverse();
    for (let i = 0; i < dirs.length; i += POLL_CONCURRENCY) {
      await Promise.all(dirs.slice(i, i + POLL_CONCURRENCY).map(async ([key, d]) => {
        try {
          const v = (await this.getattrFull(d.fh)).attr.version;
          if (v === d.version) return;
          d.version = v;
        } catch (e) {
          if (!isFsError(e, 'ESTALE')) throw e;
          this.listed.delete(key);
        }
        onChange({ dir: d.fh });
      }));
    }
  }

  async close(): Promise<void> {
    if (this.pollTimer) clearInterval(this.pollTimer);
    try {
      for (const u of [...this.uncommitted.values()]) await this.commit(u.fh).catch((e) => log.warn('COMMIT at close failed', e));
      if (this.mount && this.mountedPath) await this.mount.umnt(this.mountedPath);
    } finally {
      this.rpc?.close();
    }
  }

  /** The server's limits, for status and tests. */
  get limits(): { rsize: number; wsize: number; info: FsInfo | null; pathconf: PathConf | null; port: number } {
    return { rsize: this.rsize, wsize: this.wsize, info: this.fsInfo, pathconf: this.pathconf, port: this.nfsPort };
  }

  get rpcStats(): RpcClient['stats'] | undefined { return this.rpc?.stats; }

  info(): Record<string, unknown> {
    return {
      protocol: 'NFSv3/TCP', rsize: this.rsize, wsize: this.wsize, export: this.mountedPath,
      rpc: { ...this.rpc?.stats }, ...this.stats,
      uncommittedBytes: this.uncommittedTotal, polledDirectories: this.listed.size,
    };
  }

  // ---------------------------------------------------------------- calls

  private authFor(creds: Creds | undefined): AuthSys | undefined {
    if (!creds || (creds.uid === this.auth.uid && creds.gid === this.auth.gid && !creds.groups)) return undefined;
    // AUTH_SYS carries at most 16 supplementary groups
    const gids = (creds.groups ?? []).filter((g) => g !== creds.gid).slice(0, 16);
    return { uid: creds.uid, gid: creds.gid, gids, machine: this.auth.machine };
  }

  /** Call options that make the server check the call as `creds` (AUTH_SYS), if given. */
  private callAs(creds: Creds | undefined): CallOptions {
    const auth = this.authFor(creds);
    return auth ? { auth } : {};
  }

  /** One NFS call: reads the status, retries JUKEBOX until the deadline. */
  private async call(proc: Proc, args: Buffer | null, what: string, opts: CallOptions = {}): Promise<Answer> {
    const rpc = this.rpc;
    if (!rpc) throw new FsError('ENOTCONN', 'the NFS backend is not open');
    const until = Date.now() + this.rpcDeadline;
    let delay = 50;
    for (;;) {
      const left = until - Date.now();
      if (left <= 0) throw new FsError('ETIMEDOUT', `${what}: the server stayed busy (NFS3ERR_JUKEBOX) past the deadline`);
      const { body, retransmitted, release } = await rpc.call(proc, args, { ...opts, deadlineMs: left });
      let status: number;
      try {
        status = decodeWith(rpc.name, what, () => body.u32('nfsstat3'));
      } catch (e) { release(); throw e; }
      if (status !== NFS3ERR_JUKEBOX) return { status, r: body, retransmitted, release };
      release();
      this.stats.jukeboxRetries++;
      await new Promise((res) => setTimeout(res, Math.min(delay, Math.max(1, until - Date.now()))));
      delay = Math.min(delay * 2, 1000);
    }
  }

  private decode<T>(what: string, fn: () => T): T {
    return decodeWith(this.rpc?.name ?? 'NFS', what, fn);
  }

  private async getattrFull(fh: Buffer): Promise<Fattr3> {
    const a = await this.call(Proc.GETATTR, new XdrWriter(80).opaque(fh).done(), 'GETATTR');
    if (a.status !== NFS3_OK) throw nfsError(a.status, `GETATTR ${fh.toString('hex')}`);
    const f = this.decode('GETATTR', () => decodeFattr3(a.r));
    // A server that still holds the file open (ganesha's FSAL keeps descriptors) answers
    // for an object unlinked behind its back, with no links left: to us it is gone.
    if (f.attr.nlink === 0) throw new FsError('ESTALE', 'GETATTR: the object has no links left on the server');
    return f;
  }

  private async fsinfo(fh: Buffer): Promise<FsInfo> {
    const a = await this.call(Proc.FSINFO, new XdrWriter(80).opaque(fh).done(), 'FSINFO');
    return this.decode('FSINFO', () => {
      decodePostOpAttr(a.r);
      if (a.status !== NFS3_OK) throw nfsError(a.status, 'FSINFO');
      return decodeFsInfo(a.r);
    });
  }

  private async pathconfOf(fh: Buffer): Promise<PathConf> {
    const a = await this.call(Proc.PATHCONF, new XdrWriter(80).opaque(fh).done(), 'PATHCONF');
    return this.decode('PATHCONF', () => {
      decodePostOpAttr(a.r);
      if (a.status !== NFS3_OK) throw nfsError(a.status, 'PATHCONF');
      return decodePathConf(a.r);
    });
  }

  // ---------------------------------------------------------------- Backend

  async root(): Promise<Node> {
    if (!this.rootAttr) throw new FsError('ENOTCONN', 'the NFS backend is not open');
    return { fh: this.rootFh, attr: await this.getattr(this.rootFh) };
  }

  async getattr(fh: Buffer): Promise<Attr> {
    const { attr } = await this.getattrFull(fh);
    if (attr.type === 'dir') this.noteListed(fh, attr.version, false);
    return attr;
  }

  async lookup(dir: Buffer, name: string): Promise<Node> {
    const a = await this.call(Proc.LOOKUP, dirop(dir, name), 'LOOKUP');
    const { fh, attr } = this.decode('LOOKUP', () => {
      if (a.status !== NFS3_OK) throw nfsError(a.status, `LOOKUP ${name}`);
      const fh = decodeHandle(a.r);
      const attr = decodePostOpAttr(a.r);
      const dirAttr = decodePostOpAttr(a.r);
      if (dirAttr) this.noteListed(dir, dirAttr.attr.version, false);
      if (attr?.attr.type === 'dir') this.noteListed(fh, attr.attr.version, false);
      return { fh, attr };
    });
    return { fh, attr: attr ? attr.attr : await this.getattr(fh) };
  }

  /** ACCESS: which of the asked rights (ACCESS3_* bits) the server grants the caller. */
  async access(fh: Buffer, mask = ACCESS_ALL, creds?: Creds): Promise<number> {
    const a = await this.call(Proc.ACCESS, new XdrWriter(84).opaque(fh).u32(mask).done(), 'ACCESS', this.callAs(creds));
    return this.decode('ACCESS', () => {
      decodePostOpAttr(a.r);
      if (a.status !== NFS3_OK) throw nfsError(a.status, 'ACCESS');
      return a.r.u32('access');
    });
  }

  async readdir(dir: Buffer): Promise<DirEntry[]> {
    if (this.plusWorks) {
      try {
        return await this.readdirPlus(dir);
      } catch (e) {
        if (!isFsError(e, 'EOPNOTSUPP')) throw e;
        log.info('the server has no READDIRPLUS: using READDIR and LOOKUP');
        this.plusWorks = false;
      }
    }
    return this.readdirPlain(dir);
  }

  private async readdirPlus(dir: Buffer): Promise<DirEntry[]> {
    const out: DirEntry[] = [];
    let cookie = 0n;
    let verf = Buffer.alloc(8);
    let restarts = 0;
    let maxcount = READDIR_MAXCOUNT;
    for (;;) {
      const w = new XdrWriter(112).opaque(dir).u64(cookie).fixed(verf).u32(READDIR_DIRCOUNT).u32(maxcount);
      const a = await this.call(Proc.READDIRPLUS, w.done(), 'READDIRPLUS');
      if (a.status === NFS3ERR_NOTSUPP) throw nfsError(a.status, 'READDIRPLUS');
      if (a.status === NFS3ERR_BAD_COOKIE && restarts++ < 2) { cookie = 0n; verf = Buffer.alloc(8); out.length = 0; continue; }
      if (a.status === NFS3ERR_TOOSMALL && maxcount < 4 * READDIR_MAXCOUNT) { maxcount *= 2; continue; }
      const page = this.decode('READDIRPLUS', () => {
        const dirAttr = decodePostOpAttr(a.r);
        if (dirAttr && cookie === 0n) this.noteListed(dir, dirAttr.attr.version);
        if (a.status !== NFS3_OK) throw nfsError(a.status, 'READDIRPLUS');
        const v = Buffer.from(a.r.fixed(8, 'cookieverf3'));
        return { verf: v, ...decodeDirList(a.r, true, MAX_DIR_ENTRIES_PER_REPLY) };
      });
      verf = page.verf;
      for (const e of page.entries) {
        cookie = e.cookie;
        if (e.name === '.' || e.name === '..') continue;
        if (e.fh && e.attr) out.push({ name: e.name, fh: e.fh, attr: e.attr.attr });
        else {
          // the server left this entry's handle or attributes out: ask for them
          try { out.push({ name: e.name, ...(await this.lookup(dir, e.name)) }); } catch (err) {
            if (!isFsError(err, 'ENOENT') && !isFsError(err, 'ESTALE')) throw err;
          }
        }
      }
      if (page.eof) return out;
      if (page.entries.length === 0) throw new FsError('EIO', 'READDIRPLUS: the server sent an empty page without eof');
    }
  }

  private async readdirPlain(dir: Buffer): Promise<DirEntry[]> {
    const names: string[] = [];
    let cookie = 0n;
    let verf = Buffer.alloc(8);
    for (;;) {
      const w = new XdrWriter(104).opaque(dir).u64(cookie).fixed(verf).u32(READDIR_MAXCOUNT);
      const a = await this.call(Proc.READDIR, w.done(), 'READDIR');
      const page = this.decode('READDIR', () => {
        const dirAttr = decodePostOpAttr(a.r);
        if (dirAttr && cookie === 0n) this.noteListed(dir, dirAttr.attr.version);
        if (a.status !== NFS3_OK) throw nfsError(a.status, 'READDIR');
        const v = Buffer.from(a.r.fixed(8, 'cookieverf3'));
        return { verf: v, ...decodeDirList(a.r, false, MAX_DIR_ENTRIES_PER_REPLY) };
      });
      verf = page.verf;
      for (const e of page.entries) {
        cookie = e.cookie;
        if (e.name !== '.' && e.name !== '..') names.push(e.name);
      }
      if (page.eof) break;
      if (page.entries.length === 0) throw new FsError('EIO', 'READDIR: the server sent an empty page without eof');
    }
    const out: DirEntry[] = [];
    for (const name of names) {
      try { out.push({ name, ...(await this.lookup(dir, name)) }); } catch (e) {
        if (!isFsError(e, 'ENOENT')) throw e; // removed meanwhile
      }
    }
    return out;
  }

  async readlink(fh: Buffer): Promise<string> {
    const a = await this.call(Proc.READLINK, new XdrWriter(80).opaque(fh).done(), 'READLINK');
    return this.decode('READLINK', () => {
      decodePostOpAttr(a.r);
      if (a.status !== NFS3_OK) throw nfsError(a.status, 'READLINK');
      return a.r.string(4096, 'nfspath3');
    });
  }

  async read(fh: Buffer, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    if (length <= this.rsize) return this.readOnce(fh, offset, length, into).then((x) => x.data);
    // Larger than one READ: the pieces go out together; a short piece ends the file.
    const pieces: Promise<{ data: Buffer; eof: boolean }>[] = [];
    for (let o = 0; o < length; o += this.rsize) pieces.push(this.readOnce(fh, offset + o, Math.min(this.rsize, length - o)));
    const got = await Promise.all(pieces);
    const parts: Buffer[] = [];
    for (const g of got) {
      parts.push(g.data);
      if (g.eof || g.data.length === 0) break;
    }
    return Buffer.concat(parts);
  }

  /**
   * The data is a view of the READ reply's record, which goes back to the RPC client's pool
   * at release(): no copy of it is made here (a cold read of 256 MiB spent 76 ms of the mount
   * thread's 330 copying every reply into the fetcher's buffer).
   */
  async readLent(fh: Buffer, offset: number, length: number): Promise<LentBytes> {
    if (length > this.rsize) return { data: await this.read(fh, offset, length), release: () => undefined };
    const a = await this.call(Proc.READ, new XdrWriter(96).opaque(fh).u64(offset).u32(length).done(), 'READ');
    let data: Buffer;
    try {
      data = this.decodeRead(a, length).data;
    } catch (e) {
      a.release();
      throw e;
    }
    let released = false;
    return { data, release: () => { if (!released) { released = true; a.release(); } } };
  }

  /**
   * One READ. With `into` (at least `count` bytes), the data is copied there and the reply's
   * record goes back to the RPC client's pool; without, the data is a view of the record.
   */
  private async readOnce(fh: Buffer, offset: number, count: number, into?: Buffer): Promise<{ data: Buffer; eof: boolean }> {
    const a = await this.call(Proc.READ, new XdrWriter(96).opaque(fh).u64(offset).u32(count).done(), 'READ');
    const copy = into !== undefined && into.length >= count;
    try {
      const got = this.decodeRead(a, count);
      if (!copy) return got;
      got.data.copy(into);
      return { data: into.subarray(0, got.data.length), eof: got.eof };
    } finally {
      // Nothing refers to the record any more unless the data is a view of it.
      if (copy) a.release();
    }
  }
  /** A READ reply's data (a view of its record) and EOF flag. */
  private decodeRead(a: Answer, count: number): { data: Buffer; eof: boolean } {
    return this.decode('READ', () => {
      decodePostOpAttr(a.r);
      if (a.status !== NFS3_OK) throw nfsError(a.status, 'READ');
      const n = a.r.u32('count');
      const eof = a.r.bool('eof');
      const data = a.r.opaque(count, 'data');
      if (data.length !== n) throw new FsError('EIO', `READ: count ${n} but ${data.length} bytes of data`);
      return { data, eof };
    });
  }


  async write(fh: Buffer, offset: number, data: Buffer, creds?: Creds, keep?: KeepBytes): Promise<Attr | void> {
    const auth = this.authFor(creds);
    let after: Attr | undefined;
    const key = fh.toString('hex');
    for (let o = 0; o < data.length; o += this.wsize) {
      const piece = data.subarray(o, Math.min(data.length, o + this.wsize));
      const { committed, verf, attr } = await this.writeOnce(fh, offset + o, piece, Stable.UNSTABLE, auth);
      after = attr;
      if (committed !== Stable.UNSTABLE) continue;
      let u = this.uncommitted.get(key);
      if (!u) { u = { fh: Buffer.from(fh), bytes: 0, writes: [], committing: [], committingBytes: 0 }; this.uncommitted.set(key, u); }
      u.writes.push({ offset: offset + o, verf, auth, ...(keep ? { data: piece, release: keep() } : this.copyOf(piece)) });
      u.bytes += piece.length;
      this.uncommittedTotal += piece.length;
    }
    const u = this.uncommitted.get(key);
    // Past the limits, a COMMIT inside this write() (waiting for one in flight first): only
    // a COMMIT made inside a write() or at close may write pieces again after a server
    // restart, since the record that caused it notes the version it leaves. (A rewrite from
    // a background COMMIT moved the file's version between two journal records, and a replay
    // took our own rewrite for another client's change: offline.test.ts, a backend vanishing
    // in the middle of a write.)
    if ((u && u.bytes > UNCOMMITTED_FILE_LIMIT) || this.uncommittedTotal > UNCOMMITTED_TOTAL_LIMIT) {
      const c = await this.commit(u && u.bytes > UNCOMMITTED_FILE_LIMIT ? fh : this.largestUncommitted());
      if (c && u && u.bytes > UNCOMMITTED_FILE_LIMIT) after = c;
    } else if (u && u.bytes >= COMMIT_AHEAD && !this.committing.has(key)) {
      this.commitAhead(fh, key);
    }
    return after;
  }

  /**
   * A COMMIT in the background, so writes go on while the server flushes (a 256 MiB dd
   * waited 8 × 28 ms for COMMITs made inside its writes). It never writes a piece again: if
   * the server restarted, the pieces go back to wait for the next COMMIT made inside a
   * write() or at close, which writes them again (see write()). Its failure is that next
   * COMMIT's to report.
   */
  private commitAhead(fh: Buffer, key: string): void {
    const mine = this.commitNow(fh, key, false).then(() => undefined, (e) => {
      log.debug(`background COMMIT failed; the next one covers its writes`, e);
    });
    this.committing.set(key, mine);
    void mine.finally(() => { if (this.committing.get(key) === mine) this.committing.delete(key); });
  }

  /**
   * A copy of a piece just written UNSTABLE, for a caller that offered no KeepBytes: it may
   * reuse its buffer once write() returns, and a COMMIT that finds the server restarted must
   * send these very bytes again. A piece of at least half a WRITE goes into a pooled buffer
   * (so the pool never holds more than twice the bytes it keeps). (A cold 256 MiB write
   * spent 127 ms of the mount thread here before write-back offered its dirty runs' keep.)
   */
  private copyOf(piece: Buffer): { data: Buffer; release?: () => void } {
    if (!this.copies || piece.length < this.wsize / 2) {
      const data = Buffer.allocUnsafe(piece.length);
      piece.copy(data);
      return { data };
    }
    const pooled = this.copies.acquire(piece.length);
    piece.copy(pooled);
    return { data: pooled.subarray(0, piece.length), release: () => this.copies?.release(pooled) };
  }

  /** Forgets uncommitted writes: nothing sends their bytes any more. */
  private forget(writes: UncommittedWrite[]): void {
    for (const w of writes) w.release?.();
  }

  private largestUncommitted(): Buffer {
    let best: Uncommitted | null = null;
    for (const u of this.uncommitted.values()) if (!best || u.bytes > best.bytes) best = u;
    return best!.fh;
  }

  private async writeOnce(fh: Buffer, offset: number, data: Buffer, stable: Stable, auth: AuthSys | undefined): Promise<{ committed: number; verf: Buffer; attr?: Attr }> {
    const args = new XdrWriter(112).opaque(fh).u64(offset).u32(data.length).u32(stable).u32(data.length).done();
    const a = await this.call(Proc.WRITE, args, 'WRITE', { tail: [data, xdrPadding(data.length)], ...(auth ? { auth } : {}) });
    return this.decode('WRITE', () => {
      const wcc = decodeWcc(a.r);
      if (a.status !== NFS3_OK) throw nfsError(a.status, 'WRITE');
      const count = a.r.u32('count');
      const committed = a.r.u32('committed');
      const verf = Buffer.from(a.r.fixed(NFS3_WRITEVERFSIZE, 'writeverf3'));
      if (count !== data.length) throw new FsError('EIO', `WRITE: the server took ${count} of ${data.length} bytes`);
      if (committed > Stable.FILE_SYNC) throw new FsError('EIO', `WRITE: unknown stable_how ${committed}`);
      return { committed, verf, ...(wcc.after?.attr ? { attr: wcc.after.attr } : {}) };
    });
  }

  /**
   * COMMITs of one file go one after the other: a COMMIT (an fsync) that answered while an
   * earlier one was still writing lost data again would report durable what is not yet.
   */
  async commit(fh: Buffer): Promise<Attr | void> {
    const key = fh.toString('hex');
    const prev = this.committing.get(key);
    const mine = prev ? prev.catch(() => undefined).then(() => this.commitNow(fh, key)) : this.commitNow(fh, key);
    this.committing.set(key, mine);
    try {
      return await mine;
    } finally {
      if (this.committing.get(key) === mine) this.committing.delete(key);
    }
  }

  /** `rewrite`: false for commitAhead(), which leaves pieces a restart lost to the next COMMIT. */
  private async commitNow(fh: Buffer, key: string, rewrite = true): Promise<Attr | void> {
    const u = this.uncommitted.get(key);
    if (!u || u.writes.length === 0) return;
    // This COMMIT covers the writes answered before it is sent, no later ones: those stay.
    // `covered` keeps every one of them to forget at the end (a truncate meanwhile cuts
    // u.committing, never what a rewrite in flight is sending from).
    const covered = u.writes;
    u.committing = covered;
    u.committingBytes = u.bytes;
    u.writes = [];
    u.bytes = 0;
    let rewrote = false;
    let after: Attr | undefined;
    /** Not known to be durable: they wait for the next COMMIT (older first). */
    const restore = (): void => {
      u.writes = u.committing.concat(u.writes);
      u.bytes += u.committingBytes;
      u.committing = [];
      u.committingBytes = 0;
      if (!this.uncommitted.has(key)) this.uncommitted.set(key, u);
    };
    try {
      const a = await this.call(Proc.COMMIT, new XdrWriter(96).opaque(fh).u64(0).u32(0).done(), 'COMMIT');
      const got = this.decode('COMMIT', () => {
        const wcc = decodeWcc(a.r);
        if (a.status !== NFS3_OK) throw nfsError(a.status, 'COMMIT');
        return { verf: Buffer.from(a.r.fixed(NFS3_WRITEVERFSIZE, 'writeverf3')), after: wcc.after?.attr };
      });
      after = got.after;
      // Writes made under another verifier were lost by a server restart: write them again,
      // durably this time. Only after that is the file's data safe to forget here. What a
      // truncate cut meanwhile (the list is looked at anew each time) is not written again.
      const lost = (): UncommittedWrite | undefined => u.committing.find((w) => !w.verf.equals(got.verf));
      if (lost()) {
        if (!rewrite) {
          restore();
          return undefined;
        }
        this.stats.verifierChanges++;
        log.warn(`NFS server restarted (write verifier changed): writing ${u.committing.filter((w) => !w.verf.equals(got.verf)).length} uncommitted pieces again`);
      }
      for (let w = lost(); w; w = lost()) {
        await this.writeOnce(fh, w.offset, w.data, Stable.FILE_SYNC, w.auth);
        w.verf = got.verf; // durable now (FILE_SYNC)
        rewrote = true;
        this.stats.rewrites++;
      }
    } catch (e) {
      restore();
      throw e;
    }
    this.uncommittedTotal -= u.committingBytes;
    u.committing = [];
    u.committingBytes = 0;
    if (u.writes.length === 0 && this.uncommitted.get(key) === u) this.uncommitted.delete(key);
    this.forget(covered);
    // Rewrites moved the attributes again: only an untouched answer is current.
    return rewrote ? undefined : after;
  }

  /** Creates with CREATE; exclusive uses GUARDED (EXCLUSIVE needs a second SETATTR for the mode). */
  async create(dir: Buffer, name: string, mode: number, creds: Creds, opts: { exclusive: boolean }): Promise<Made> {
    const w = new XdrWriter(128);
    encodeDirop(w, dir, name);
    w.u32(opts.exclusive ? CreateMode.GUARDED : CreateMode.UNCHECKED);
    encodeSattr3(w, { mode: mode & 0o7777 });
    return this.made(Proc.CREATE, w.done(), 'CREATE', dir, name, creds);
  }

  /**
   * CREATE EXCLUSIVE with an 8-byte verifier: sending it again (a replay after a crash)
   * finds the file it made instead of failing, while anyone else's file of that name is
   * EEXIST. The server keeps the verifier in the times, so the mode and the times are set
   * afterwards (RFC 1813, CREATE).
   */
  async createExclusive(dir: Buffer, name: string, verifier: Buffer, mode: number, creds: Creds): Promise<Node> {
    if (verifier.length !== 8) throw new FsError('EINVAL', 'an exclusive-create verifier has 8 bytes');
    const w = new XdrWriter(128);
    encodeDirop(w, dir, name);
    w.u32(CreateMode.EXCLUSIVE).fixed(verifier);
    const node = await this.made(Proc.CREATE, w.done(), 'CREATE', dir, name, creds);
    const attr = await this.setattr(node.fh, { mode: mode & 0o7777, atime: { kind: 'now' }, mtime: { kind: 'now' } });
    return { fh: node.fh, attr };
  }

  async mkdir(dir: Buffer, name: string, mode: number, creds: Creds): Promise<Made> {
    const w = new XdrWriter(128);
    encodeDirop(w, dir, name);
    encodeSattr3(w, { mode: mode & 0o7777 });
    return this.made(Proc.MKDIR, w.done(), 'MKDIR', dir, name, creds);
  }

  async symlink(dir: Buffer, name: string, target: string, creds: Creds): Promise<Made> {
    const w = new XdrWriter(160);
    encodeDirop(w, dir, name);
    encodeSattr3(w, { mode: 0o777 });
    w.string(target);
    return this.made(Proc.SYMLINK, w.done(), 'SYMLINK', dir, name, creds);
  }

  async mknod(dir: Buffer, name: string, mode: number, rdev: number, creds: Creds): Promise<Made> {
    const fmt = mode & 0o170000;
    const type = fmt === 0o020000 ? 'chardev' : fmt === 0o060000 ? 'blockdev' : fmt === 0o010000 ? 'fifo' : fmt === 0o140000 ? 'socket' : null;
    if (type === null) {
      if (fmt === 0o100000 || fmt === 0) return this.create(dir, name, mode, creds, { exclusive: true });
      throw new FsError('EINVAL', `mknod: unsupported file type ${fmt.toString(8)}`);
    }
    const w = new XdrWriter(160);
    encodeDirop(w, dir, name);
    w.u32(FTYPE_OF[type]);
    encodeSattr3(w, { mode: mode & 0o7777 });
    if (type === 'chardev' || type === 'blockdev') {
      const [major, minor] = splitdev(rdev);
      w.u32(major).u32(minor);
    }
    return this.made(Proc.MKNOD, w.done(), 'MKNOD', dir, name, creds);
  }

  /**
   * The common tail of CREATE, MKDIR, SYMLINK and MKNOD: the new handle and attributes, and
   * the directory's wcc data.
   */
  private async made(proc: Proc, args: Buffer, what: string, dir: Buffer, name: string, creds: Creds): Promise<Made> {
    const a = await this.call(proc, args, `${what} ${name}`, this.callAs(creds));
    if (a.status === NFS3ERR_EXIST && a.retransmitted) {
      // Our first transmission made it; the retransmission found it. It is ours.
      return this.lookup(dir, name);
    }
    const got = this.decode(what, () => {
      if (a.status !== NFS3_OK) { decodeWcc(a.r); throw nfsError(a.status, `${what} ${name}`); }
      const fh = decodePostOpFh(a.r);
      const attr = decodePostOpAttr(a.r);
      return { fh, attr, dir: dirWcc(decodeWcc(a.r)) };
    });
    if (!got.fh) return this.lookup(dir, name);
    const node = { fh: got.fh, attr: got.attr ? got.attr.attr : await this.getattr(got.fh) };
    if (node.attr.type === 'dir') this.noteListed(node.fh, node.attr.version, false);
    return got.dir ? { ...node, dir: got.dir } : node;
  }

  async link(fh: Buffer, dir: Buffer, name: string, creds?: Creds): Promise<Attr> {
    const w = new XdrWriter(160).opaque(fh);
    encodeDirop(w, dir, name);
    const a = await this.call(Proc.LINK, w.done(), `LINK ${name}`, this.callAs(creds));
    if (a.status === NFS3ERR_EXIST && a.retransmitted) return this.getattr(fh);
    const attr = this.decode('LINK', () => {
      const at = decodePostOpAttr(a.r);
      decodeWcc(a.r);
      if (a.status !== NFS3_OK) throw nfsError(a.status, `LINK ${name}`);
      return at;
    });
    return attr ? attr.attr : this.getattr(fh);
  }

  unlink(dir: Buffer, name: string, creds?: Creds): Promise<DirWcc | undefined> {
    return this.removeLike(Proc.REMOVE, dir, name, 'REMOVE', creds);
  }

  rmdir(dir: Buffer, name: string, creds?: Creds): Promise<DirWcc | undefined> {
    return this.removeLike(Proc.RMDIR, dir, name, 'RMDIR', creds);
  }

  /** REMOVE or RMDIR; answers with the directory's wcc data. */
  private async removeLike(proc: Proc, dir: Buffer, name: string, what: string, creds: Creds | undefined): Promise<DirWcc | undefined> {
    const a = await this.call(proc, dirop(dir, name), `${what} ${name}`, this.callAs(creds));
    if (a.status === NFS3ERR_NOENT && a.retransmitted) return undefined; // our first transmission did it
    const wcc = this.decode(what, () => decodeWcc(a.r));
    if (a.status !== NFS3_OK) throw nfsError(a.status, `${what} ${name}`);
    return dirWcc(wcc);
  }

  /** Answers with both directories' wcc data (NFS has no attributes of the object here). */
  async rename(fromDir: Buffer, fromName: string, toDir: Buffer, toName: string, creds?: Creds): Promise<Renamed | undefined> {
    const w = new XdrWriter(192);
    encodeDirop(w, fromDir, fromName);
    encodeDirop(w, toDir, toName);
    const a = await this.call(Proc.RENAME, w.done(), `RENAME ${fromName}`, this.callAs(creds));
    if (a.status === NFS3ERR_NOENT && a.retransmitted) {
      // Done by our first transmission if the new name is there now.
      if (await this.lookup(toDir, toName).then(() => true, () => false)) return undefined;
    }
    const [from, to] = this.decode('RENAME', () => [dirWcc(decodeWcc(a.r)), dirWcc(decodeWcc(a.r))]);
    if (a.status !== NFS3_OK) throw nfsError(a.status, `RENAME ${fromName} -> ${toName}`);
    if (fromDir.equals(toDir)) return from ? { from } : {};
    return { ...(from ? { from } : {}), ...(to ? { to } : {}) };
  }

  async setattr(fh: Buffer, set: SetAttr & { guardCtimeNs?: bigint }, creds?: Creds): Promise<Attr> {
    const w = new XdrWriter(128).opaque(fh);
    encodeSattr3(w, set);
    if (set.guardCtimeNs !== undefined) {
      w.u32(1).u32(Number(set.guardCtimeNs / 1_000_000_000n)).u32(Number(set.guardCtimeNs % 1_000_000_000n));
    } else w.u32(0);
    const a = await this.call(Proc.SETATTR, w.done(), 'SETATTR', this.callAs(creds));
    const after = this.decode('SETATTR', () => decodeWcc(a.r).after);
    if (a.status !== NFS3_OK) throw nfsError(a.status, 'SETATTR');
    if (set.size !== undefined) this.dropUncommittedFrom(fh, set.size);
    return after ? after.attr : this.getattr(fh);
  }

  /**
   * A truncate makes uncommitted bytes past the new end meaningless: never write them again,
   * neither those waiting for a COMMIT nor those the COMMIT in flight covers (which that
   * COMMIT forgets at its end: a rewrite of them may be on its way).
   */
  private dropUncommittedFrom(fh: Buffer, size: number): void {
    const u = this.uncommitted.get(fh.toString('hex'));
    if (!u) return;
    const cut = (list: UncommittedWrite[]): { kept: UncommittedWrite[]; dropped: UncommittedWrite[]; removed: number } => {
      const kept: UncommittedWrite[] = [];
      const dropped: UncommittedWrite[] = [];
      let removed = 0;
      for (const w of list) {
        if (w.offset >= size) { removed += w.data.length; dropped.push(w); continue; }
        if (w.offset + w.data.length > size) {
          removed += w.offset + w.data.length - size;
          kept.push({ ...w, data: w.data.subarray(0, size - w.offset) });
        } else kept.push(w);
      }
      return { kept, dropped, removed };
    };
    const waiting = cut(u.writes);
    u.writes = waiting.kept;
    u.bytes -= waiting.removed;
    const inFlight = cut(u.committing);
    u.committing = inFlight.kept;
    u.committingBytes -= inFlight.removed;
    this.uncommittedTotal -= waiting.removed + inFlight.removed;
    this.forget(waiting.dropped);
  }

  async statfs(): Promise<StatFs> {
    const a = await this.call(Proc.FSSTAT, new XdrWriter(80).opaque(this.rootFh).done(), 'FSSTAT');
    const s = this.decode('FSSTAT', () => {
      decodePostOpAttr(a.r);
      if (a.status !== NFS3_OK) throw nfsError(a.status, 'FSSTAT');
      return decodeFsStat(a.r);
    });
    const bsize = 4096;
    return {
      bsize, frsize: bsize,
      blocks: Math.floor(s.tbytes / bsize), bfree: Math.floor(s.fbytes / bsize), bavail: Math.floor(s.abytes / bsize),
      files: s.tfiles, ffree: s.afiles, namemax: Math.min(255, this.pathconf?.nameMax || 255), // the kernel's NAME_MAX
    };
  }
}

function dirop(dir: Buffer, name: string): Buffer {
  const w = new XdrWriter(96);
  encodeDirop(w, dir, name);
  return w.done();
}

function clampTransfer(pref: number, max: number): number {
  const limit = max > 0 ? Math.min(max, MAX_TRANSFER) : MAX_TRANSFER;
  const v = pref > 0 ? Math.min(pref, limit) : limit;
  return Math.max(4096, v - (v % 4096) || 4096);
}
