// Seeded fuzzing of the NFS client's decoders: the bytes a server sends are untrusted, so
// whatever arrives, decoding must end in a value or an XdrError/FsError — never a TypeError,
// a RangeError, a hang or an allocation larger than the input could justify.
//
// Each case builds a VALID reply record for one procedure (random field values), mutates it
// (truncation, bit flips, extreme u32s, inserted/deleted bytes, garbage) and decodes it the
// way the client does: decodeReply, then the procedure's result decoder inside decodeWith
// (the blocks below mirror nfs-backend.ts and mount-client.ts, which keep theirs in private
// methods). Separately, the record is framed with record marking (random fragment splits),
// the stream is sometimes damaged, and it is fed to RecordParser in random-sized chunks.
//
//   CACHEFS_FUZZ_SEED=<n>    replay a run (the seed is printed)
//   CACHEFS_FUZZ_CASES=<n>   number of cases (default 100000)
//   CACHEFS_FUZZ_ONLY=<i>    run only case i of the seed (each case has its own generator)
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FsError } from '../src/core/errors.js';
import {
  Proc, decodeDirList, decodeExports, decodeFattr3, decodeFsInfo, decodeFsStat, decodeHandle, decodePathConf,
  decodePostOpAttr, decodePostOpFh, decodeWcc, type Fattr3,
} from '../src/backends/nfs/nfs3-xdr.js';
import { RecordParser, decodeReply, decodeWith } from '../src/backends/nfs/rpc.js';
import { mountError, nfsError } from '../src/backends/nfs/status.js';
import { XdrError, XdrWriter, type XdrReader } from '../src/backends/nfs/xdr.js';
import type { Attr, ObjType } from '../src/backends/types.js';

// ---------------------------------------------------------------- PRNG

/** sfc32: small, fast, good enough; seeded from two words so every case has its own stream. */
class Rng {
  private a: number; private b: number; private c: number; private d = 1;
  constructor(seed: number, stream: number) {
    this.a = seed >>> 0; this.b = stream >>> 0; this.c = 0x9e3779b9;
    for (let i = 0; i < 12; i++) this.u32();
  }
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  /** 0 <= n < max */
  int(max: number): number { return max <= 1 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * max); }
  range(lo: number, hi: number): number { return lo + this.int(hi - lo + 1); }
  chance(p: number): boolean { return this.u32() / 0x1_0000_0000 < p; }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]!; }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
  u64(): bigint { return (BigInt(this.u32()) << 32n) | BigInt(this.u32()); }
  /** A size that fits a JS number exactly: small mostly, sometimes near 2^53. */
  safeSize(): number {
    switch (this.int(4)) {
      case 0: return this.int(4096);
      case 1: return this.u32();
      case 2: return Number.MAX_SAFE_INTEGER - this.int(1000);
      default: return this.u32() * 0x1000 + this.int(0x1000);
    }
  }
}

const SEED = process.env.CACHEFS_FUZZ_SEED !== undefined ? Number(process.env.CACHEFS_FUZZ_SEED) >>> 0 : (Math.random() * 0x1_0000_0000) >>> 0;
const CASES = Number(process.env.CACHEFS_FUZZ_CASES ?? 100_000);
const ONLY = process.env.CACHEFS_FUZZ_ONLY !== undefined ? Number(process.env.CACHEFS_FUZZ_ONLY) : undefined;

// ---------------------------------------------------------------- generators of valid replies

const FTYPES: ObjType[] = ['file', 'dir', 'blockdev', 'chardev', 'symlink', 'socket', 'fifo'];
const FTYPE_NUM: Record<ObjType, number> = { file: 1, dir: 2, blockdev: 3, chardev: 4, symlink: 5, socket: 6, fifo: 7 };
const S_IFMT: Record<ObjType, number> = {
  file: 0o100000, dir: 0o040000, blockdev: 0o060000, chardev: 0o020000, symlink: 0o120000, socket: 0o140000, fifo: 0o010000,
};
const NAME_ALPHABET = ['a', 'b', 'z', '0', '9', '.', '-', '_', ' ', 'é', 'ß', '日', '本', '😀', 'Ω', '\u00a0'];

function randName(g: Rng, maxChars = 40): string {
  let s = '';
  const n = g.range(1, maxChars);
  for (let i = 0; i < n; i++) s += g.pick(NAME_ALPHABET);
  return s;
}

function randHandle(g: Rng): Buffer { return g.bytes(g.range(1, 64)); }

interface Time { sec: number; nsec: number }
const randTime = (g: Rng): Time => ({ sec: g.u32(), nsec: g.int(1_000_000_000) });
const timeNs = (t: Time): bigint => BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
const putTime = (w: XdrWriter, t: Time): void => { w.u32(t.sec).u32(t.nsec); };

/** A random fattr3: writes it and returns what decodeFattr3 must make of it. */
function fattr(g: Rng, w: XdrWriter): Fattr3 {
  const type = g.pick(FTYPES);
  const rawMode = g.chance(0.2) ? g.u32() : g.int(0o10000); // servers may set bits above 07777
  const nlink = g.u32(), uid = g.u32(), gid = g.u32();
  const size = g.safeSize(), used = g.safeSize();
  const major = g.int(0x1000), minor = g.int(0x100); // rdev = major * 256 + minor in this range
  const fsid = g.u64(), fileid = g.u64();
  const at = randTime(g), mt = randTime(g), ct = randTime(g);
  w.u32(FTYPE_NUM[type]).u32(rawMode).u32(nlink).u32(uid).u32(gid).u64(size).u64(used).u32(major).u32(minor).u64(fsid).u64(fileid);
  putTime(w, at); putTime(w, mt); putTime(w, ct);
  const attr: Attr = {
    type, mode: S_IFMT[type] | (rawMode & 0o7777), uid, gid, size, nlink, rdev: major * 256 + minor, used,
    atimeNs: timeNs(at), mtimeNs: timeNs(mt), ctimeNs: timeNs(ct), version: `${timeNs(ct)}:${timeNs(mt)}:${size}`,
  };
  return { attr, fsid, fileid };
}

function postOpAttr(g: Rng, w: XdrWriter, p = 0.7): Fattr3 | undefined {
  if (!g.chance(p)) { w.u32(0); return undefined; }
  w.u32(1);
  return fattr(g, w);
}

function wcc(g: Rng, w: XdrWriter): { before?: { size: number; mtimeNs: bigint; ctimeNs: bigint }; after?: Fattr3 } {
  const out: { before?: { size: number; mtimeNs: bigint; ctimeNs: bigint }; after?: Fattr3 } = {};
  if (g.chance(0.6)) {
    const size = g.safeSize(), mt = randTime(g), ct = randTime(g);
    w.u32(1).u64(size); putTime(w, mt); putTime(w, ct);
    out.before = { size, mtimeNs: timeNs(mt), ctimeNs: timeNs(ct) };
  } else w.u32(0);
  const after = postOpAttr(g, w);
  if (after) out.after = after;
  return out;
}

const NFS_ERRORS: [number, string][] = [[1, 'EPERM'], [2, 'ENOENT'], [13, 'EACCES'], [70, 'ESTALE'], [10001, 'ESTALE'], [28, 'ENOSPC'], [10006, 'EIO'], [99999, 'EIO']];

/** The outcome a generator promises for its unmutated record. */
type Expected = { ok: unknown } | { err: string } | { failure: unknown };

interface Gen {
  name: string;
  /** Writes the procedure's results (after the RPC header) and returns the expected outcome and the decoder's parameters. */
  build(g: Rng, w: XdrWriter): { expected: Expected; decode: (body: XdrReader) => unknown };
}

const NAME = 'NFS fuzz';
/**
 * The backend's `decode` helper: decodeWith around a block. decodeWith also turns a RangeError
 * into EIO (a last line of defence); here one is a finding all the same: a read the XdrReader
 * did not bounds-check. It is noted, and the case fails.
 */
let rangeError: RangeError | null = null;
const dec = <T>(what: string, fn: () => T): T => decodeWith(NAME, what, () => {
  try {
    return fn();
  } catch (e) {
    if (e instanceof RangeError) rangeError = e;
    throw e;
  }
});
/** The backend's `call`: the status is read inside decodeWith too. */
const status = (body: XdrReader, what: string): number => dec(what, () => body.u32('nfsstat3'));

function errStatus(g: Rng, w: XdrWriter): { code: string } {
  const [st, code] = g.pick(NFS_ERRORS);
  w.u32(st);
  return { code };
}

// Each decode function below mirrors the corresponding block of nfs-backend.ts / mount-client.ts.
const GENS: Gen[] = [
  {
    name: 'GETATTR',
    build(g, w) {
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'GETATTR');
        if (st !== 0) throw nfsError(st, 'GETATTR');
        return dec('GETATTR', () => decodeFattr3(r));
      };
      if (g.chance(0.15)) return { expected: { err: errStatus(g, w).code }, decode };
      w.u32(0);
      return { expected: { ok: fattr(g, w) }, decode };
    },
  },
  {
    name: 'LOOKUP',
    build(g, w) {
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'LOOKUP');
        return dec('LOOKUP', () => {
          if (st !== 0) throw nfsError(st, 'LOOKUP x');
          const fh = decodeHandle(r);
          const attr = decodePostOpAttr(r);
          decodePostOpAttr(r);
          return { fh, attr };
        });
      };
      if (g.chance(0.2)) {
        const { code } = errStatus(g, w);
        postOpAttr(g, w);
        return { expected: { err: code }, decode };
      }
      w.u32(0);
      const fh = randHandle(g);
      w.opaque(fh);
      const attr = postOpAttr(g, w);
      postOpAttr(g, w);
      return { expected: { ok: { fh, attr } }, decode };
    },
  },
  {
    name: 'READ',
    build(g, w) {
      const n = g.chance(0.02) ? g.range(4096, 70_000) : g.int(3000);
      const count = g.chance(0.5) ? n : n + g.int(10_000); // what the call asked for
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'READ');
        return dec('READ', () => {
          decodePostOpAttr(r);
          if (st !== 0) throw nfsError(st, 'READ');
          const m = r.u32('count');
          const eof = r.bool('eof');
          const data = r.opaque(count, 'data');
          if (data.length !== m) throw new FsError('EIO', `READ: count ${m} but ${data.length} bytes of data`);
          return { data, eof };
        });
      };
      if (g.chance(0.1)) {
        const { code } = errStatus(g, w);
        postOpAttr(g, w);
        return { expected: { err: code }, decode };
      }
      w.u32(0);
      postOpAttr(g, w);
      const data = g.bytes(n);
      const eof = g.chance(0.3);
      w.u32(n).bool(eof).opaque(data);
      return { expected: { ok: { data, eof } }, decode };
    },
  },
  {
    name: 'WRITE',
    build(g, w) {
      const len = g.int(1 << 20);
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'WRITE');
        return dec('WRITE', () => {
          decodeWcc(r);
          if (st !== 0) throw nfsError(st, 'WRITE');
          const count = r.u32('count');
          const committed = r.u32('committed');
          const verf = Buffer.from(r.fixed(8, 'writeverf3'));
          if (count !== len) throw new FsError('EIO', `WRITE: the server took ${count} of ${len} bytes`);
          if (committed > 2) throw new FsError('EIO', `WRITE: unknown stable_how ${committed}`);
          return { committed, verf };
        });
      };
      if (g.chance(0.1)) {
        const { code } = errStatus(g, w);
        wcc(g, w);
        return { expected: { err: code }, decode };
      }
      w.u32(0);
      wcc(g, w);
      const committed = g.int(3);
      const verf = g.bytes(8);
      w.u32(len).u32(committed).fixed(verf);
      return { expected: { ok: { committed, verf } }, decode };
    },
  },
  {
    name: 'COMMIT',
    build(g, w) {
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'COMMIT');
        return dec('COMMIT', () => {
          decodeWcc(r);
          if (st !== 0) throw nfsError(st, 'COMMIT');
          return Buffer.from(r.fixed(8, 'writeverf3'));
        });
      };
      w.u32(0);
      wcc(g, w);
      const verf = g.bytes(8);
      w.fixed(verf);
      return { expected: { ok: verf }, decode };
    },
  },
  ...[true, false].map((plus): Gen => ({
    name: plus ? 'READDIRPLUS' : 'READDIR',
    build(g, w) {
      const what = plus ? 'READDIRPLUS' : 'READDIR';
      const decode = (r: XdrReader): unknown => {
        const st = status(r, what);
        return dec(what, () => {
          decodePostOpAttr(r);
          if (st !== 0) throw nfsError(st, what);
          const v = Buffer.from(r.fixed(8, 'cookieverf3'));
          return { verf: v, ...decodeDirList(r, plus, 100_000) };
        });
      };
      w.u32(0);
      postOpAttr(g, w, 0.5);
      const verf = g.bytes(8);
      w.fixed(verf);
      const entries: { fileid: bigint; name: string; cookie: bigint; attr?: Fattr3; fh?: Buffer }[] = [];
      const n = g.int(9);
      for (let i = 0; i < n; i++) {
        const e: (typeof entries)[number] = { fileid: g.u64(), name: randName(g), cookie: g.u64() };
        w.u32(1).u64(e.fileid).string(e.name).u64(e.cookie);
        if (plus) {
          const a = postOpAttr(g, w, 0.8);
          if (a) e.attr = a;
          if (g.chance(0.8)) { e.fh = randHandle(g); w.u32(1).opaque(e.fh); } else w.u32(0);
        }
        entries.push(e);
      }
      const eof = g.chance(0.5);
      w.u32(0).bool(eof);
      return { expected: { ok: { verf, entries, eof } }, decode };
    },
  })),
  {
    name: 'FSINFO',
    build(g, w) {
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'FSINFO');
        return dec('FSINFO', () => {
          decodePostOpAttr(r);
          if (st !== 0) throw nfsError(st, 'FSINFO');
          return decodeFsInfo(r);
        });
      };
      w.u32(0);
      postOpAttr(g, w);
      const [rtmax, rtpref, rtmult, wtmax, wtpref, wtmult, dtpref] = [g.u32(), g.u32(), g.u32(), g.u32(), g.u32(), g.u32(), g.u32()];
      const max = g.chance(0.5) ? g.u64() : BigInt(g.safeSize());
      const td = randTime(g);
      const properties = g.u32();
      w.u32(rtmax).u32(rtpref).u32(rtmult).u32(wtmax).u32(wtpref).u32(wtmult).u32(dtpref).u64(max);
      putTime(w, td);
      w.u32(properties);
      const maxFileSize = max > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(max);
      return { expected: { ok: { rtmax, rtpref, wtmax, wtpref, dtpref, timeDeltaNs: timeNs(td), properties, maxFileSize } }, decode };
    },
  },
  {
    name: 'FSSTAT',
    build(g, w) {
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'FSSTAT');
        return dec('FSSTAT', () => {
          decodePostOpAttr(r);
          if (st !== 0) throw nfsError(st, 'FSSTAT');
          return decodeFsStat(r);
        });
      };
      w.u32(0);
      postOpAttr(g, w);
      const v = [0, 1, 2, 3, 4, 5].map(() => (g.chance(0.3) ? g.u64() : BigInt(g.safeSize())));
      for (const x of v) w.u64(x);
      w.u32(g.u32());
      const n = v.map((x) => (x > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(x)));
      return { expected: { ok: { tbytes: n[0], fbytes: n[1], abytes: n[2], tfiles: n[3], ffiles: n[4], afiles: n[5] } }, decode };
    },
  },
  {
    name: 'PATHCONF',
    build(g, w) {
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'PATHCONF');
        return dec('PATHCONF', () => {
          decodePostOpAttr(r);
          if (st !== 0) throw nfsError(st, 'PATHCONF');
          return decodePathConf(r);
        });
      };
      w.u32(0);
      postOpAttr(g, w);
      const pc = { linkmax: g.u32(), nameMax: g.u32(), noTrunc: g.chance(0.5), chownRestricted: g.chance(0.5), caseInsensitive: g.chance(0.5), casePreserving: g.chance(0.5) };
      w.u32(pc.linkmax).u32(pc.nameMax).bool(pc.noTrunc).bool(pc.chownRestricted).bool(pc.caseInsensitive).bool(pc.casePreserving);
      return { expected: { ok: pc }, decode };
    },
  },
  {
    name: 'ACCESS',
    build(g, w) {
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'ACCESS');
        return dec('ACCESS', () => {
          decodePostOpAttr(r);
          if (st !== 0) throw nfsError(st, 'ACCESS');
          return r.u32('access');
        });
      };
      w.u32(0);
      postOpAttr(g, w);
      const bits = g.int(0x40);
      w.u32(bits);
      return { expected: { ok: bits }, decode };
    },
  },
  {
    name: 'READLINK',
    build(g, w) {
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'READLINK');
        return dec('READLINK', () => {
          decodePostOpAttr(r);
          if (st !== 0) throw nfsError(st, 'READLINK');
          return r.string(4096, 'nfspath3');
        });
      };
      w.u32(0);
      postOpAttr(g, w);
      const target = Array.from({ length: g.range(1, 6) }, () => randName(g, 12)).join('/');
      w.string(target);
      return { expected: { ok: target }, decode };
    },
  },
  {
    name: 'CREATE',
    build(g, w) {
      // nfs-backend.ts made(): post_op_fh, post_op_attr, wcc of the directory
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'CREATE');
        return dec('CREATE', () => {
          if (st !== 0) { decodeWcc(r); throw nfsError(st, 'CREATE x'); }
          const fh = decodePostOpFh(r);
          const attr = decodePostOpAttr(r);
          decodeWcc(r);
          return { fh, attr };
        });
      };
      if (g.chance(0.2)) {
        const { code } = errStatus(g, w);
        wcc(g, w);
        return { expected: { err: code }, decode };
      }
      w.u32(0);
      let fh: Buffer | undefined;
      if (g.chance(0.8)) { fh = randHandle(g); w.u32(1).opaque(fh); } else w.u32(0);
      const attr = postOpAttr(g, w);
      wcc(g, w);
      return { expected: { ok: { fh, attr } }, decode };
    },
  },
  {
    name: 'RENAME',
    build(g, w) {
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'RENAME');
        const both = dec('RENAME', () => [decodeWcc(r), decodeWcc(r)]);
        if (st !== 0) throw nfsError(st, 'RENAME');
        return both;
      };
      w.u32(0);
      const a = wcc(g, w), b = wcc(g, w);
      return { expected: { ok: [a, b] }, decode };
    },
  },
  {
    name: 'SETATTR',
    build(g, w) {
      const decode = (r: XdrReader): unknown => {
        const st = status(r, 'SETATTR');
        const after = dec('SETATTR', () => decodeWcc(r).after);
        if (st !== 0) throw nfsError(st, 'SETATTR');
        return after;
      };
      if (g.chance(0.2)) {
        w.u32(10002); // NOT_SYNC
        wcc(g, w);
        return { expected: { err: 'EAGAIN' }, decode };
      }
      w.u32(0);
      return { expected: { ok: wcc(g, w).after }, decode };
    },
  },
  {
    name: 'MNT',
    build(g, w) {
      // mount-client.ts mnt()
      const decode = (r: XdrReader): unknown => dec('MNT', () => {
        const st = r.u32('mountstat3');
        if (st !== 0) throw mountError(st, 'MNT /x');
        const fh = Buffer.from(r.opaque(64, 'fhandle3'));
        if (fh.length === 0) throw new FsError('EIO', 'MNT /x: the server sent an empty handle');
        const flavors = r.array(64, 'auth_flavors', (x) => x.u32());
        return { fh, flavors };
      });
      if (g.chance(0.15)) {
        const [st, code] = g.pick([[13, 'EACCES'], [2, 'ENOENT'], [20, 'ENOTDIR'], [12345, 'EIO']] as const);
        w.u32(st);
        return { expected: { err: code }, decode };
      }
      const fh = randHandle(g);
      const flavors = Array.from({ length: g.int(6) }, () => g.pick([0, 1, 6, 390003, g.u32()]));
      w.u32(0).opaque(fh).u32(flavors.length);
      for (const f of flavors) w.u32(f);
      return { expected: { ok: { fh, flavors } }, decode };
    },
  },
  {
    name: 'EXPORT',
    build(g, w) {
      const decode = (r: XdrReader): unknown => dec('EXPORT', () => decodeExports(r));
      const list = Array.from({ length: g.int(5) }, () => ({
        dir: '/' + randName(g, 20), groups: Array.from({ length: g.int(4) }, () => randName(g, 15)),
      }));
      for (const e of list) {
        w.u32(1).string(e.dir);
        for (const gr of e.groups) w.u32(1).string(gr);
        w.u32(0);
      }
      w.u32(0);
      return { expected: { ok: list }, decode };
    },
  },
  {
    name: 'GETPORT',
    build(g, w) {
      const decode = (r: XdrReader): unknown => dec('GETPORT', () => r.u32('port'));
      const port = g.int(65536);
      w.u32(port);
      return { expected: { ok: port }, decode };
    },
  },
];


interface Built { gen: string; rec: Buffer; expected: Expected; decode: (body: XdrReader) => unknown; xid: number }

/** A whole reply record (no record mark): RPC header, then an accepted body or an RPC-level failure. */
function buildRecord(g: Rng): Built {
  const w = new XdrWriter(256);
  const xid = g.u32();
  // The procedure the call was for: an RPC-level failure has no results, but once mutated it
  // may read as a success, and then the client decodes its results like any other reply.
  const decodeNothing = g.pick(GENS).build(g, new XdrWriter(256)).decode;
  w.u32(xid).u32(1); // REPLY
  const rpcFailure = g.chance(0.08);
  if (rpcFailure && g.chance(0.4)) {
    // MSG_DENIED
    w.u32(1);
    if (g.chance(0.5)) {
      const low = g.u32(), high = g.u32();
      w.u32(0).u32(low).u32(high);
      return { gen: 'DENIED rpc_mismatch', rec: w.done(), expected: { failure: { kind: 'rpc_mismatch', low, high } }, decode: decodeNothing, xid };
    }
    const stat = g.range(0, 7);
    w.u32(1).u32(stat);
    return { gen: 'DENIED auth_error', rec: w.done(), expected: { failure: { kind: 'auth_error', stat } }, decode: decodeNothing, xid };
  }
  w.u32(0); // MSG_ACCEPTED
  if (g.chance(0.7)) w.u32(0).u32(0); // AUTH_NONE verifier
  else w.u32(g.pick([1, 2, 6])).opaque(g.bytes(g.int(401)));
  if (rpcFailure) {
    const accept = g.range(1, 5);
    w.u32(accept);
    let failure: unknown;
    if (accept === 2) {
      const low = g.u32(), high = g.u32();
      w.u32(low).u32(high);
      failure = { kind: 'prog_mismatch', low, high };
    } else failure = { kind: ({ 1: 'prog_unavail', 3: 'proc_unavail', 4: 'garbage_args', 5: 'system_err' } as Record<number, string>)[accept] };
    return { gen: `ACCEPTED ${(failure as { kind: string }).kind}`, rec: w.done(), expected: { failure }, decode: decodeNothing, xid };
  }
  w.u32(0); // SUCCESS
  const gen = g.pick(GENS);
  const { expected, decode } = gen.build(g, w);
  return { gen: gen.name, rec: w.done(), expected, decode, xid };
}

// ---------------------------------------------------------------- decoding as the client does

type Outcome = { kind: 'value'; xid: number; value: unknown } | { kind: 'failure'; xid: number; failure: unknown };

function decodeRecord(rec: Buffer, decode: (body: XdrReader) => unknown): Outcome {
  rangeError = null;
  try {
    return decodeRecordInner(rec, decode);
  } finally {
    if (rangeError) assert.fail(`a RangeError escaped the XdrReader's checks: ${(rangeError as Error).stack}`);
  }
}

function decodeRecordInner(rec: Buffer, decode: (body: XdrReader) => unknown): Outcome {
  const d = decodeReply(rec);
  if ('failure' in d) return { kind: 'failure', xid: d.xid, failure: d.failure };
  const value = decode(d.body);
  assert.ok(d.body.offset <= rec.length, `reader offset ${d.body.offset} past the end ${rec.length}`);
  return { kind: 'value', xid: d.xid, value };
}

/**
 * What a decoded value holds must have come out of the input: its Buffers' bytes plus its
 * strings' UTF-16 units (one byte of UTF-8 never makes more than one unit, U+FFFD included)
 * cannot together exceed the input's length, no array can have more elements than the input
 * has 4-byte slots, and every number is an exact integer.
 */
function checkBounded(v: unknown, inputLen: number, where: string): void {
  let units = 0;
  const walk = (x: unknown, depth: number): void => {
    assert.ok(depth < 32, `${where}: decoded value nested absurdly deep`);
    if (x === null || x === undefined) return;
    if (Buffer.isBuffer(x)) { units += x.length; return; }
    if (typeof x === 'string') { units += x.length; return; }
    if (typeof x === 'number') { assert.ok(Number.isSafeInteger(x), `${where}: decoded number ${x}`); return; }
    if (Array.isArray(x)) {
      assert.ok(x.length * 4 <= inputLen, `${where}: an array of ${x.length} elements from ${inputLen} bytes`);
      for (const e of x) walk(e, depth + 1);
      return;
    }
    if (typeof x === 'object') for (const e of Object.values(x as object)) walk(e, depth + 1);
  };
  walk(v, 0);
  assert.ok(units <= inputLen, `${where}: ${units} bytes/characters decoded from ${inputLen} bytes of input`);
}

// ---------------------------------------------------------------- mutations

const EXTREMES = [0xffffffff, 0x7fffffff, 0x80000000, 0x80000001, 0, 1, 2, 3, 4, 0xfffffffe, 64, 65, 400, 401, 1024, 4096, 0x10000, 0x100000, 1_000_000_000];

function mutate(g: Rng, rec: Buffer): { out: Buffer; how: string } {
  let b: Buffer = Buffer.from(rec);
  const steps: string[] = [];
  const n = g.chance(0.7) ? 1 : g.range(2, 4);
  for (let s = 0; s < n; s++) {
    const k = g.int(9);
    switch (k) {
      case 0: { // truncate
        const at = g.int(b.length + 1);
        b = b.subarray(0, at); steps.push(`truncate@${at}`); break;
      }
      case 1: { // flip bits
        const flips = g.range(1, 4);
        for (let i = 0; i < flips && b.length; i++) { const at = g.int(b.length); b[at]! ^= 1 << g.int(8); }
        steps.push(`flip${flips}`); break;
      }
      case 2: { // overwrite bytes
        const m = g.range(1, 8);
        for (let i = 0; i < m && b.length; i++) b[g.int(b.length)] = g.u32() & 0xff;
        steps.push(`bytes${m}`); break;
      }
      case 3: case 4: { // an aligned u32 (a length, count, discriminant or enum) set to an extreme
        if (b.length < 4) break;
        const at = 4 * g.int(b.length >> 2);
        const v = g.chance(0.8) ? g.pick(EXTREMES) : (b.readUInt32BE(at) + g.range(-3, 3)) >>> 0;
        b.writeUInt32BE(v >>> 0, at); steps.push(`u32@${at}=${v >>> 0}`); break;
      }
      case 5: { // insert bytes (aligned or not)
        const at = g.int(b.length + 1);
        const ins = g.bytes(g.chance(0.5) ? 4 : g.range(1, 12));
        b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]); steps.push(`insert${ins.length}@${at}`); break;
      }
      case 6: { // delete bytes
        if (!b.length) break;
        const at = g.int(b.length);
        const m = Math.min(b.length - at, g.chance(0.5) ? 4 : g.range(1, 12));
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m)]); steps.push(`delete${m}@${at}`); break;
      }
      case 7: { // garbage tail
        const at = g.int(b.length + 1);
        b = Buffer.concat([b.subarray(0, at), g.bytes(g.int(64))]); steps.push(`garbage@${at}`); break;
      }
      default: { // all garbage, sometimes behind a plausible reply header
        const head = g.chance(0.5) ? b.subarray(0, Math.min(b.length, 24)) : Buffer.alloc(0);
        b = Buffer.concat([head, g.bytes(g.int(200))]); steps.push('random'); break;
      }
    }
  }
  return { out: b, how: steps.join(',') };
}

// ---------------------------------------------------------------- record marking

/** Frames a record as 1..4 fragments (some possibly empty). */
function frame(g: Rng, rec: Buffer): Buffer[] {
  const cuts = [0, rec.length];
  const extra = g.int(4);
  for (let i = 0; i < extra; i++) cuts.push(g.int(rec.length + 1));
  cuts.sort((a, b) => a - b);
  const out: Buffer[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) {
    const piece = rec.subarray(cuts[i]!, cuts[i + 1]!);
    const h = Buffer.alloc(4);
    h.writeUInt32BE(((i + 2 === cuts.length ? 0x80000000 : 0) | piece.length) >>> 0);
    out.push(h, piece);
  }
  return out;
}

/** Feeds `stream` in random-sized chunks; returns the records seen, or the error that stopped it. */
function feed(g: Rng, stream: Buffer, maxRecord: number): { recs: Buffer[]; error?: unknown } {
  const recs: Buffer[] = [];
  const p = new RecordParser(maxRecord, (r) => recs.push(r));
  const small = g.chance(0.3);
  let off = 0;
  try {
    while (off < stream.length) {
      const n = small ? g.range(1, 7) : g.range(1, Math.max(1, stream.length >> g.int(4)));
      // the socket hands out views of its own buffers: so do we (a slice of a bigger buffer)
      p.push(stream.subarray(off, Math.min(stream.length, off + n)));
      off += n;
    }
  } catch (e) {
    return { recs, error: e };
  }
  return { recs };
}

// ---------------------------------------------------------------- the tests

function replay(i: number): string {
  return `seed ${SEED} case ${i} (CACHEFS_FUZZ_SEED=${SEED} CACHEFS_FUZZ_ONLY=${i})`;
}

function expectOutcome(b: Built, where: string): void {
  let got: Outcome;
  try {
    got = decodeRecord(b.rec, b.decode);
  } catch (e) {
    if ('err' in b.expected && e instanceof FsError) {
      assert.equal(e.code, b.expected.err, `${where}: ${b.gen}: ${e.message}`);
      return;
    }
    throw new Error(`${where}: the valid ${b.gen} record did not decode: ${(e as Error).stack}`);
  }
  assert.equal(got.xid, b.xid, `${where}: xid`);
  if ('failure' in b.expected) {
    assert.equal(got.kind, 'failure', `${where}: ${b.gen}`);
    assert.deepEqual((got as { failure: unknown }).failure, b.expected.failure, `${where}: ${b.gen}`);
  } else if ('ok' in b.expected) {
    assert.equal(got.kind, 'value', `${where}: ${b.gen}`);
    assert.deepEqual((got as { value: unknown }).value, b.expected.ok, `${where}: ${b.gen}`);
  } else assert.fail(`${where}: ${b.gen} decoded, but ${b.expected.err} was expected`);
}

describe('NFS/RPC decoders under fuzzing', () => {
  it('valid records of every kind decode to the values they were built from', () => {
    const seen = new Map<string, number>();
    for (let i = 0; i < 5000; i++) {
      const g = new Rng(SEED ^ 0x5a5a5a5a, i);
      const b = buildRecord(g);
      seen.set(b.gen, (seen.get(b.gen) ?? 0) + 1);
      const where = `valid record ${i} of seed ${SEED} (CACHEFS_FUZZ_SEED=${SEED})`;
      expectOutcome(b, where);
      // and framed: RecordParser gives back the same bytes however the stream is cut
      const stream = Buffer.concat(frame(g, b.rec));
      const r = feed(g, stream, b.rec.length + g.int(2) * g.int(1 << 20));
      assert.equal(r.error, undefined, `${where}: ${String(r.error)}`);
      assert.equal(r.recs.length, 1);
      assert.ok(r.recs[0]!.equals(b.rec), `${where}: reassembled record differs`);
      // one byte under the limit drops it (when there is anything to drop)
      if (b.rec.length > 0) {
        const over = feed(g, stream, b.rec.length - 1);
        assert.ok(over.error instanceof XdrError, `${where}: a record over maxRecord was accepted`);
        assert.equal(over.recs.length, 0);
      }
    }
    for (const gen of [...GENS.map((x) => x.name), 'DENIED rpc_mismatch', 'DENIED auth_error', 'ACCEPTED prog_mismatch', 'ACCEPTED system_err']) {
      assert.ok((seen.get(gen) ?? 0) > 0, `no valid ${gen} record was generated`);
    }
  });

  it('RecordParser holds memory in proportion to the bytes received, however they are split', () => {
    // A record of ~1 MB sent as 1-byte fragments (5 bytes of stream per byte of record), then
    // the same in 1-byte socket reads: what the parser keeps must stay near the record's size.
    const size = 1 << 20;
    const payload = new Rng(SEED, 0xffffffff).bytes(size);
    const tiny = Buffer.allocUnsafe(size * 5);
    for (let i = 0; i < size; i++) {
      tiny.writeUInt32BE(((i === size - 1 ? 0x80000000 : 0) | 1) >>> 0, i * 5);
      tiny[i * 5 + 4] = payload[i]!;
    }
    const single = Buffer.concat([Buffer.from([0x80 | (size >>> 24), (size >>> 16) & 0xff, (size >>> 8) & 0xff, size & 0xff]), payload]);
    for (const [label, stream, step] of [['1-byte fragments', tiny, 4096 * 5], ['1-byte reads', single, 1]] as const) {
      let out: Buffer | undefined;
      const p = new RecordParser(size + 64, (r) => { out = r; });
      const heap0 = process.memoryUsage().heapUsed;
      let peak = 0;
      for (let off = 0; off < stream.length; off += step) {
        p.push(stream.subarray(off, off + step));
        if ((off / step) % 4096 === 0) peak = Math.max(peak, process.memoryUsage().heapUsed - heap0);
      }
      // the parser is still reachable here, so whatever it kept counts
      peak = Math.max(peak, process.memoryUsage().heapUsed - heap0);
      console.log(`rpc-fuzz: RecordParser, 1 MiB record as ${label}: heap grew by at most ${(peak / 1e6).toFixed(1)} MB`);
      assert.ok(out && out.equals(payload), `${label}: record reassembled wrong`);
      assert.ok(peak < 48e6, `${label}: the parser held ${(peak / 1e6).toFixed(0)} MB of heap for a 1 MiB record`);
    }
  });

  it('mutated records end in a value, an XdrError or an FsError, quickly', () => {
    const t0 = process.hrtime.bigint();
    let accepted = 0, rpcFailures = 0, xdrErrors = 0, fsErrors = 0;
    let parserRecords = 0, parserRejected = 0, parserClean = 0;
    let slowest = 0, slowestCase = -1;
    const byGen = new Map<string, [number, number]>();
    const first = ONLY ?? 0;
    const last = ONLY !== undefined ? ONLY + 1 : CASES;
    const rss0 = process.memoryUsage().rss;
    for (let i = first; i < last; i++) {
      const c0 = process.hrtime.bigint();
      const g = new Rng(SEED, i);
      const b = buildRecord(g);
      const { out: rec, how } = mutate(g, b.rec);
      const where = `${replay(i)}: ${b.gen} mutated ${how}`;

      // 1. the decoders
      const stat = byGen.get(b.gen) ?? [0, 0];
      byGen.set(b.gen, stat);
      try {
        const got = decodeRecord(rec, b.decode);
        if (got.kind === 'failure') rpcFailures++; else accepted++;
        stat[0]++;
        checkBounded(got, rec.length, where);
      } catch (e) {
        stat[1]++;
        if (e instanceof XdrError) xdrErrors++;
        else if (e instanceof FsError) fsErrors++;
        else assert.fail(`${where}: threw ${(e as Error)?.name}: ${(e as Error)?.stack ?? String(e)}`);
      }

      // 2. record marking: 1..3 records, framed at random, the stream sometimes damaged
      const recs = [rec];
      if (g.chance(0.3)) recs.push(b.rec);
      if (g.chance(0.1)) recs.unshift(Buffer.alloc(0));
      const parts = recs.flatMap((r) => frame(g, r));
      let stream: Buffer = Buffer.concat(parts);
      const damaged = g.chance(0.5);
      if (damaged) {
        if (g.chance(0.5)) {
          // hit a fragment header: the most sensitive four bytes
          const hdrs: number[] = [];
          for (let k = 0, off = 0; k < parts.length; off += parts[k]!.length, k++) if (k % 2 === 0) hdrs.push(off);
          const at = g.pick(hdrs);
          stream.writeUInt32BE(g.chance(0.7) ? g.pick(EXTREMES) : g.u32(), at);
        } else stream = mutate(g, stream).out;
      }
      const maxRecord = damaged ? g.pick([0, 16, 1024, 1 << 16, 1 << 20]) : 1 << 20;
      const fed = feed(g, stream, maxRecord);
      let total = 0;
      for (const r of fed.recs) {
        total += r.length;
        assert.ok(r.length <= maxRecord, `${where}: parser produced a record of ${r.length} > maxRecord ${maxRecord}`);
        // whatever came out of a damaged stream is decoded too
        if (damaged) {
          try {
            const got = decodeRecord(r, b.decode);
            checkBounded(got, r.length, where);
          } catch (e) {
            if (!(e instanceof XdrError) && !(e instanceof FsError)) assert.fail(`${where}: parser output threw ${(e as Error)?.stack ?? String(e)}`);
          }
        }
      }
      assert.ok(total <= stream.length, `${where}: ${total} record bytes out of a ${stream.length}-byte stream`);
      parserRecords += fed.recs.length;
      if (fed.error !== undefined) {
        parserRejected++;
        assert.ok(fed.error instanceof XdrError, `${where}: RecordParser threw ${(fed.error as Error)?.stack ?? String(fed.error)}`);
        assert.ok(damaged, `${where}: the undamaged stream was rejected: ${(fed.error as Error).message}`);
      }
      if (!damaged) {
        parserClean++;
        assert.equal(fed.recs.length, recs.length, `${where}: records lost in framing`);
        for (let k = 0; k < recs.length; k++) assert.ok(fed.recs[k]!.equals(recs[k]!), `${where}: record ${k} reassembled wrong`);
      }
      const dt = Number(process.hrtime.bigint() - c0) / 1e6;
      if (dt > slowest) { slowest = dt; slowestCase = i; }
    }
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const n = last - first;
    const rate = n / secs;
    const rssDelta = (process.memoryUsage().rss - rss0) / 1e6;
    const gens = [...byGen].sort().map(([k, [a, r]]) => `${k} ${a}/${r}`).join(', ');
    console.log(`rpc-fuzz: seed ${SEED}: ${n} cases in ${secs.toFixed(2)} s (${Math.round(rate)} cases/s; slowest case ${slowestCase}: ${slowest.toFixed(1)} ms; rss ${rssDelta >= 0 ? '+' : ''}${rssDelta.toFixed(0)} MB)`);
    console.log(`rpc-fuzz: decoders: ${accepted + rpcFailures} accepted (${accepted} values, ${rpcFailures} RPC-level failures), ${xdrErrors + fsErrors} rejected (${xdrErrors} XdrError, ${fsErrors} FsError)`);
    console.log(`rpc-fuzz: record marking: ${parserRecords} records out, ${parserRejected} streams rejected, ${parserClean} undamaged streams reassembled exactly`);
    console.log(`rpc-fuzz: accepted/rejected by kind: ${gens}`);
    // Each case decodes a few KB: a case taking long means a decoder loops or allocates per
    // claimed (not received) length. The bound is loose enough for a GC pause.
    assert.ok(slowest < 500, `${replay(slowestCase)} took ${slowest.toFixed(1)} ms`);
    if (n >= 10_000) assert.ok(rate > 5000, `only ${Math.round(rate)} cases/s: 100000 cases would take ${(100_000 / rate).toFixed(1)} s`);
    assert.ok(accepted + rpcFailures > 0 && xdrErrors + fsErrors > 0 || n < 100, 'the mutations should both keep some records valid and break others');
  });
});
