// CPU accounting for the benchmarks, from /proc: the cachefs mount daemon, nfs-ganesha, the
// client processes (children of the bench), the bench itself, and the rest of the machine.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const TICK = (() => { try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { return 100; } })();

/** [utime+stime, cutime+cstime] of a process, in seconds (0 when it is gone). */
function procCpu(pid: number | null): [number, number] {
  if (!pid) return [0, 0];
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return [(Number(f[11]) + Number(f[12])) / TICK, (Number(f[13]) + Number(f[14])) / TICK];
  } catch { return [0, 0]; }
}

/** Busy CPU seconds of the whole machine (all cores). */
function machineBusy(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - f[3]! - f[4]!) / TICK; // minus idle and iowait
}

export interface CpuSnap { daemon: number; ganesha: number; children: number; self: number; busy: number }
export interface Cpu { daemon: number; ganesha: number; client: number; bench: number; other: number }

let ganeshaPid: () => number = () => 0;

/** Tells the accounting which process is the NFS server (its pid may change on restart). */
export function watchGanesha(pid: () => number): void {
  ganeshaPid = pid;
}

export function cpuSnap(daemonPid: number | null): CpuSnap {
  const self = procCpu(process.pid);
  return { daemon: procCpu(daemonPid)[0], ganesha: procCpu(ganeshaPid())[0], children: self[1], self: self[0], busy: machineBusy() };
}

export function cpuDelta(a: CpuSnap, b: CpuSnap): Cpu {
  const daemon = b.daemon - a.daemon, ganesha = b.ganesha - a.ganesha, client = b.children - a.children, bench = b.self - a.self;
  return { daemon, ganesha, client, bench, other: Math.max(0, b.busy - a.busy - daemon - ganesha - client - bench) };
}
