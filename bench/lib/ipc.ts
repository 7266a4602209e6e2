/**
 * Request/response over a forked child's IPC channel: the benchmark's servers and load
 * generators each run in their own process, so their CPU is measured apart and one busy
 * event loop does not delay another's timestamps.
 *
 * The parent validates every result with the zod schema the caller gives: a child is
 * another program, and a wrong shape should fail here, naming the field.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { z } from 'zod';

interface RequestMessage {
  id: number;
  method: string;
  params: unknown;
}

type ResponseMessage = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** Children run TypeScript through tsx, resolved from here so it works from any working directory. */
function tsxLoader(): string {
  return pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
}

export interface ForkOptions {
  env?: Record<string, string | undefined>;
  /** Called with each line the child writes on stdout or stderr (its logs and errors). */
  onOutput?: (line: string) => void;
  /** Extra Node flags, e.g. V8 heap settings for a process that allocates per packet. */
  nodeFlags?: string[];
}

export class ChildRpc {
  readonly process: ChildProcess;
  readonly #pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >();
  #nextId = 1;
  #exited: Error | undefined;
  readonly exited: Promise<void>;

  constructor(entry: URL, args: string[] = [], options: ForkOptions = {}) {
    this.process = fork(fileURLToPath(entry), args, {
      execArgv: [...(options.nodeFlags ?? []), '--import', tsxLoader()],
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    let tail = '';
    for (const stream of [this.process.stdout, this.process.stderr]) {
      let partial = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          if (!line.trim()) continue;
          tail = line;
          options.onOutput?.(line);
        }
      });
    }
    this.process.on('message', (message: ResponseMessage) => {
      const pending = this.#pending.get(message.id);
      if (!pending) return;
      this.#pending.delete(message.id);
      if (message.ok) pending.resolve(message.result);
      else pending.reject(new Error(message.error));
    });
    this.exited = new Promise((resolve) => {
      this.process.once('exit', (code, signal) => {
        this.#exited = new Error(`${path(entry)} exited (${signal ?? code})${tail ? `: ${tail}` : ''}`);
        for (const pending of this.#pending.values()) pending.reject(this.#exited);
        this.#pending.clear();
        resolve();
      });
    });
  }

  get pid(): number {
    const pid = this.process.pid;
    if (pid === undefined) throw new Error('child process has no pid (failed to start)');
    return pid;
  }

  request<S extends z.ZodType>(method: string, params: unknown, schema: S): Promise<z.infer<S>> {
    if (this.#exited) return Promise.reject(this.#exited);
    const id = this.#nextId++;
    return new Promise<unknown>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.process.send({ id, method, params } satisfies RequestMessage);
    }).then((result) => {
      const parsed = schema.safeParse(result);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new Error(
          `${method}: bad result from child at ${issue?.path.join('.') || '(root)'}: ${issue?.message}`,
        );
      }
      return parsed.data;
    });
  }

  /** Asks the child to close (method `close`), then waits for it to exit; kills it after `graceMs`. */
  async close(graceMs = 15_000): Promise<void> {
    if (this.#exited) return;
    const timer = setTimeout(() => this.process.kill('SIGKILL'), graceMs);
    try {
      this.process.send({ id: 0, method: 'close', params: {} } satisfies RequestMessage);
    } catch {
      // The channel is already gone: the exit follows.
    }
    await this.exited;
    clearTimeout(timer);
  }
}

function path(entry: URL): string {
  return fileURLToPath(entry).replace(/^.*\/bench\//, 'bench/');
}

export type Handlers = Record<string, (params: unknown) => unknown>;

/**
 * The child side: answers requests with `handlers`; `close` runs `onClose` and exits. A lost
 * parent (the IPC channel closed) also closes, so no child outlives a killed benchmark.
 */
export function serveParent(handlers: Handlers, onClose: () => Promise<void> | void): void {
  if (!process.send) throw new Error('this module runs as a forked child of the benchmark');
  let closing = false;
  const close = async () => {
    if (closing) return;
    closing = true;
    try {
      await onClose();
    } catch (error) {
      console.error('close failed:', error);
    }
    process.exit(0);
  };
  process.on('disconnect', () => void close());
  process.on('message', (message: RequestMessage) => {
    if (message.method === 'close') {
      void close();
      return;
    }
    const handler = handlers[message.method];
    void (async () => {
      let reply: ResponseMessage;
      try {
        if (!handler) throw new Error(`unknown method ${message.method}`);
        reply = { id: message.id, ok: true, result: await handler(message.params) };
      } catch (error) {
        reply = { id: message.id, ok: false, error: error instanceof Error ? error.message : String(error) };
      }
      if (process.connected) process.send?.(reply);
    })();
  });
}
