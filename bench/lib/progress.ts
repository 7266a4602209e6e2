/** Progress lines on stderr (stdout is kept for --json), with the time since the run started. */
import { performance } from 'node:perf_hooks';

export interface Progress {
  note(message: string): void;
  /** A line a child process wrote on stderr: shown only when it looks like a problem. */
  child(name: string, line: string): void;
}

export function stderrProgress(options: { quiet?: boolean } = {}): Progress {
  const started = performance.now();
  const stamp = () => `[${((performance.now() - started) / 1000).toFixed(1).padStart(6)}s]`;
  return {
    note(message) {
      if (!options.quiet) process.stderr.write(`${stamp()} ${message}\n`);
    },
    child(name, line) {
      if (/"level":(30|20|10)\b/.test(line)) return; // info and below from pino
      process.stderr.write(`${stamp()} ${name}: ${line}\n`);
    },
  };
}
