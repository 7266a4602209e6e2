/**
 * CPU seconds spent on our side of a transcode step: this bench process, and the platform's
 * processes when we started it (the server, its embedded PostgreSQL, the ffmpeg it ran). On
 * shared cores, x-realtime alone cannot tell a slower pipeline from a busier machine; the CPU
 * a job used, and what the rest of the machine used meanwhile, can.
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { cpuSeconds, processTree } from '../lib/proc.js';

/**
 * CPU seconds of the children `pid` has waited for (cutime + cstime): where an ffmpeg that ran
 * and exited during the step is counted, since it is no longer in /proc.
 */
function reapedChildrenCpu(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After "pid (comm) ": field 3 (state) is index 0, cutime (16) and cstime (17) are 13 and 14.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[13]) + Number(fields[14])) / 100;
  } catch {
    return 0;
  }
}

/**
 * Cumulative CPU seconds of this process and `serverPid`'s process tree, each with the
 * children it has reaped. A difference of two readings is the CPU used in between: a process
 * alive at the first reading and gone at the second is counted in its parent's reaped time.
 */
export function ourCpuSeconds(serverPid: number | null): number {
  const own = process.cpuUsage();
  let total = (own.user + own.system) / 1e6 + reapedChildrenCpu(process.pid);
  if (serverPid !== null) {
    for (const pid of processTree(serverPid)) total += (cpuSeconds(pid) ?? 0) + reapedChildrenCpu(pid);
  }
  return total;
}

/** The share of all cores that went to other work: the machine's busy % minus ours. */
export function othersBusyPercent(machineBusyPct: number, ourCpuS: number, wallS: number): number {
  const oursPct = wallS > 0 ? (100 * ourCpuS) / (wallS * cpus().length) : 0;
  return Math.max(0, machineBusyPct - oursPct);
}
