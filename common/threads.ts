/**
 * Worker threads that run TypeScript: the supervisor's role threads (app/supervisor.ts) and the
 * thread bus's contract test. The platform runs its .ts sources through tsx, whose loader hooks
 * belong to the thread that registered them, and a thread's `--import tsx` (inherited from the
 * process) comes too late for its own entry module on Node 20: so the thread registers tsx itself
 * first, then imports its entry. A .js entry starts directly.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

export function startThread(entry: URL, options: WorkerOptions = {}): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, options);
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}
