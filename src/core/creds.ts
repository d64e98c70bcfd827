// Who a change is made for: the identity FUSE reports for a request, kept with journal
// records and handed to the backends (which check it, or send it as AUTH_SYS).

/**
 * Credentials the backend should act as (the caller of the FUSE request, or the process
 * whose change a journal record replays). On the calls that change an existing object or
 * name they are optional: given, the backend applies the change only if that user may
 * (NFS: AUTH_SYS as that user, the server decides; local: the same checks the kernel makes),
 * else it refuses with EACCES or EPERM. Absent, it acts as the mount.
 */
export interface Creds {
  uid: number;
  gid: number;
  /** Supplementary groups, for backends that check permissions themselves (NFS AUTH_SYS). */
  groups?: number[];
}
