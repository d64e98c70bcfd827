// Large scratch memory backed by transparent huge pages, where the kernel offers them.
//
// Why: the first touch of every 4 KiB page of a fresh buffer is a page fault. On the VMs
// these mounts were measured on (paravirtualized page tables), a fault is slow enough that
// touching a fresh 64 MiB buffer took 160 ms, against 2 ms for touching it again; with 2 MiB
// pages (madvise MADV_HUGEPAGE, so it works in the "madvise" THP mode Debian and Ubuntu
// ship) it took 5-9 ms. The pools of 1 MiB buffers (READ replies, fetched chunks, dirty
// runs, UNSTABLE copies) touched 70 MiB of fresh pages in one 256 MiB write over NFS.
//
// What must stay true: hugeRegion() always returns a usable buffer of the size asked for;
// huge pages are only advice (no THP, a kernel that says no, no koffi: plain pages).
import koffi from 'koffi';
import { log } from './log.js';

/** The size of a transparent huge page on x86-64 (and the alignment it needs). */
export const HUGE_PAGE = 2 * 1024 * 1024;
const MADV_HUGEPAGE = 14;

type Madvise = (addr: Buffer, len: number, advice: number) => number;
let madvise: Madvise | null | undefined;

function binding(): Madvise | null {
  if (madvise !== undefined) return madvise;
  try {
    madvise = koffi.load('libc.so.6').func('int madvise(void *addr, size_t len, int advice)') as Madvise;
  } catch (e) {
    log.debug('madvise is not available: buffers use plain pages', e);
    madvise = null;
  }
  return madvise;
}

/**
 * A buffer of `bytes` whose whole 2 MiB-aligned stretches are advised as huge pages. Its
 * memory is freed with the last view of it, like any Buffer's.
 */
export function hugeRegion(bytes: number): Buffer {
  const advise = binding();
  if (!advise || bytes < HUGE_PAGE) return Buffer.allocUnsafeSlow(bytes);
  // Room to start on a 2 MiB boundary: the slack before it is never touched, so it costs
  // address space only.
  const raw = Buffer.allocUnsafeSlow(bytes + HUGE_PAGE);
  try {
    const addr = koffi.address(raw);
    const skip = Number((BigInt(HUGE_PAGE) - (addr % BigInt(HUGE_PAGE))) % BigInt(HUGE_PAGE));
    const region = raw.subarray(skip, skip + bytes);
    if (advise(region, bytes - (bytes % HUGE_PAGE), MADV_HUGEPAGE) !== 0) log.debug('madvise(MADV_HUGEPAGE) refused: plain pages');
    return region;
  } catch (e) {
    log.debug('cannot advise huge pages: plain pages', e);
    return raw.subarray(0, bytes);
  }
}
