/**
 * CPU and memory of processes from /proc (Linux only): how the benchmark measures the SFU's
 * mediasoup workers and the server process without asking them.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticks: number | undefined;

/** Clock ticks per second (utime and stime are counted in them); 100 on every common kernel. */
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

interface ProcStat {
  pid: number;
  comm: string;
  ppid: number;
  /** user + system CPU seconds */
  cpuSeconds: number;
}

function readStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm is in parentheses and may itself contain spaces or parentheses: split after the last ')'.
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return { pid, comm, ppid: Number(fields[1]), cpuSeconds: (utime + stime) / clockTicks() };
}

/**
 * CPU seconds of a process's threads from /proc/<pid>/task/<tid>/schedstat, in nanoseconds: stat's
 * utime and stime count 10 ms ticks, so a short window of a quiet mediasoup worker (a few ms of
 * CPU) could read as 0. Null when schedstat is not available or the process is gone.
 */
function schedCpuSeconds(pid: number): number | null {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  let nanoseconds = 0;
  for (const tid of tasks) {
    try {
      nanoseconds += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // A thread that ended between the listing and the read: its time is gone with it.
    }
  }
  return Number.isFinite(nanoseconds) ? nanoseconds / 1e9 : null;
}

/** User + system CPU seconds of a process (at nanosecond resolution where the kernel allows), or null once it is gone. */
export function cpuSeconds(pid: number): number | null {
  return schedCpuSeconds(pid) ?? readStat(pid)?.cpuSeconds ?? null;
}

/** Sum of cpuSeconds over processes (gone ones count 0). */
export function totalCpuSeconds(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + (cpuSeconds(pid) ?? 0), 0);
}

/** Resident set size in kB, or null once the process is gone. */
export function rssKb(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

export function totalRssKb(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + (rssKb(pid) ?? 0), 0);
}

/** Direct children of `parent`, optionally only those named `comm` (compared on the 15 characters the kernel keeps). */
export function childPids(parent: number, comm?: string): number[] {
  const result: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat && stat.ppid === parent && (comm === undefined || stat.comm === comm.slice(0, 15)))
      result.push(stat.pid);
  }
  return result.sort((a, b) => a - b);
}

/** Busy and total jiffies of the whole machine (/proc/stat), to tell a saturated box from a slow server. */
export function machineCpuTimes(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.reduce((sum, value) => sum + value, 0);
  // idle + iowait are not busy.
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: total - idle, total };
}

export function busyPercent(
  from: { busy: number; total: number },
  to: { busy: number; total: number },
): number {
  const total = to.total - from.total;
  return total > 0 ? (100 * (to.busy - from.busy)) / total : 0;
}

/** `root` and every process below it (the platform's mediasoup workers, embedded PostgreSQL and its backends, ffmpeg). */
export function processTree(root: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (!stat) continue;
    const siblings = parents.get(stat.ppid) ?? [];
    siblings.push(stat.pid);
    parents.set(stat.ppid, siblings);
  }
  const tree: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    tree.push(pid);
    queue.push(...(parents.get(pid) ?? []));
  }
  return tree;
}
