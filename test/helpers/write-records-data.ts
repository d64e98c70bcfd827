// What write-records-child.ts writes and write-records.test.ts expects back.

/** MiB written, one write() each. */
export const MIBS = 3;
const MiB = 1 << 20;
/** The bytes of MiB `i` of the file (each MiB its own). */
export const mibOf = (i: number): Buffer => Buffer.alloc(MiB, (i * 7 + 1) & 255);
/** A write that does not fill a run (written after the MiBs in `partial` mode). */
export const TAIL = Buffer.alloc(100 * 1024, 0x5a);
