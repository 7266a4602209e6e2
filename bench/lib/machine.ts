/** Where a result was measured: the machine and the code, recorded with every result. */
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, release, totalmem } from 'node:os';

export interface MachineInfo {
  cores: number;
  cpu_model: string;
  memory_mb: number;
  os: string;
  node: string;
  /** 1-minute load average when the run started: on a shared machine, how busy it already was. */
  load_avg_1m_at_start: number;
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cores: list.length,
    cpu_model: list[0]?.model.trim() ?? 'unknown',
    memory_mb: Math.round(totalmem() / 2 ** 20),
    os: `${process.platform} ${release()}`,
    node: process.version,
    load_avg_1m_at_start: Number((loadavg()[0] ?? 0).toFixed(2)),
  };
}

/** `git rev-parse HEAD`, and whether the working tree differs from it (what ran is then not exactly that commit). */
export function gitCommit(cwd: string): { commit: string; dirty: boolean } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, encoding: 'utf8' }).trim();
    const status = execFileSync('git', ['status', '--porcelain'], { cwd, encoding: 'utf8' });
    return { commit, dirty: status.trim().length > 0 };
  } catch {
    return { commit: 'unknown', dirty: false };
  }
}
