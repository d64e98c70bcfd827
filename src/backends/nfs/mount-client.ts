// Finding an export: the portmapper (RFC 1833, version 2 GETPORT) and MOUNT v3 (RFC 1813
// appendix I: MNT, UMNT, EXPORT). Each exchange uses a short-lived connection, as other
// clients do; only the NFS connection stays open.
import { FsError, isFsError } from '../../core/errors.js';
import { log } from '../../core/log.js';
import { MOUNT_PROGRAM, MOUNT_V3, NFS3_FHSIZE, PMAP_PROGRAM, PMAP_V2, decodeExports, type ExportEntry } from './nfs3-xdr.js';
import { RpcClient, decodeWith, type AuthSys } from './rpc.js';
import { mountError } from './status.js';
import { XdrWriter } from './xdr.js';

const PMAP_PORT = 111;
const IPPROTO_TCP = 6;
const MOUNTPROC_MNT = 1;
const MOUNTPROC_UMNT = 3;
const MOUNTPROC_EXPORT = 5;
const PMAPPROC_GETPORT = 3;

export const DEFAULT_NFS_PORT = 2049;
export const DEFAULT_MOUNT_PORT = 20048;

/** Asks the portmapper for a program's TCP port; undefined when it cannot tell. */
export async function portmapGetPort(host: string, prog: number, vers: number, deadlineMs: number, pmapPort = PMAP_PORT): Promise<number | undefined> {
  const c = new RpcClient({ host, port: pmapPort, prog: PMAP_PROGRAM, vers: PMAP_V2, deadlineMs, maxRecord: 4096, name: `portmapper ${host}:${pmapPort}` });
  try {
    const w = new XdrWriter(16).u32(prog).u32(vers).u32(IPPROTO_TCP).u32(0);
    const { body } = await c.call(PMAPPROC_GETPORT, w.done());
    const port = decodeWith(c.name, 'GETPORT', () => body.u32('port'));
    return port > 0 && port < 65536 ? port : undefined;
  } catch (e) {
    log.debug(`portmapper on ${host} did not answer for program ${prog}: ${(e as Error).message}`);
    return undefined;
  } finally {
    c.close();
  }
}

export class MountClient {
  constructor(private readonly host: string, private readonly port: number, private readonly auth: AuthSys, private readonly deadlineMs: number) {}

  private client(): RpcClient {
    return new RpcClient({
      host: this.host, port: this.port, prog: MOUNT_PROGRAM, vers: MOUNT_V3, deadlineMs: this.deadlineMs,
      maxRecord: 1 << 20, auth: this.auth, name: `MOUNT ${this.host}:${this.port}`,
    });
  }

  /** MNT: the root handle of an export and the auth flavors it accepts. */
  async mnt(path: string): Promise<{ fh: Buffer; flavors: number[] }> {
    const c = this.client();
    try {
      const { body } = await c.call(MOUNTPROC_MNT, new XdrWriter(64).string(path).done());
      return decodeWith(c.name, 'MNT', () => {
        const stat = body.u32('mountstat3');
        if (stat !== 0) throw mountError(stat, `MNT ${path} on ${this.host}`);
        const fh = Buffer.from(body.opaque(NFS3_FHSIZE, 'fhandle3'));
        if (fh.length === 0) throw new FsError('EIO', `MNT ${path}: the server sent an empty handle`);
        const flavors = body.array(64, 'auth_flavors', (r) => r.u32());
        return { fh, flavors };
      });
    } finally {
      c.close();
    }
  }

  async umnt(path: string): Promise<void> {
    const c = this.client();
    try {
      await c.call(MOUNTPROC_UMNT, new XdrWriter(64).string(path).done(), { deadlineMs: Math.min(this.deadlineMs, 1000) });
    } catch (e) {
      if (!isFsError(e)) throw e;
      log.debug(`UMNT ${path}: ${e.message}`); // best effort: the server keeps no state we rely on
    } finally {
      c.close();
    }
  }

  async exports(): Promise<ExportEntry[]> {
    const c = this.client();
    try {
      const { body } = await c.call(MOUNTPROC_EXPORT, null);
      return decodeWith(c.name, 'EXPORT', () => decodeExports(body));
    } finally {
      c.close();
    }
  }
}
