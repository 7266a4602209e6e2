/**
 * The platform under test: a standalone platform in a child process started for this run,
 * or an already running one (--url). Scenarios talk to both the same way, over HTTP, the
 * WebSocket and gRPC; only how the SFU's CPU is read differs (/proc here, /metrics there).
 */
import { z } from 'zod';
import { ChildRpc } from './ipc.js';
import type { Progress } from './progress.js';

export interface PlatformTarget {
  /** http://host:port of the edge. */
  baseUrl: string;
  /** host:port of the control plane's gRPC server. */
  grpcAddress: string;
  /** The server process when we started it (its mediasoup workers are its children); null with --url. */
  serverPid: number | null;
  /** What the platform was started with, for the result's options (standalone only). */
  settings: Record<string, unknown>;
  close(): Promise<void>;
}

export interface TargetOptions {
  url?: string | undefined;
  grpc?: string | undefined;
  /** Extra environment for a standalone platform (loadConfig variables). */
  env?: Record<string, string>;
  /** Writes a V8 CPU profile of the standalone platform's process into this folder when it exits. */
  cpuProfileDir?: string | undefined;
}

/**
 * What a benchmark changes in a standalone platform: ephemeral ports, loopback media, and login
 * and registration limits high enough for the accounts a run creates from 127.0.0.1, and room
 * for its thousands of tokenless listeners, all from 127.0.0.1 too.
 */
export const BENCH_PLATFORM_ENV: Record<string, string> = {
  LOGIN_LIMIT_PER_IP: '1000000',
  LOGIN_LIMIT_PER_ACCOUNT: '1000000',
  REGISTER_LIMIT_PER_IP: '1000000',
  ANONYMOUS_CONNECTIONS_PER_IP: '1000000',
};

const platformReady = z.object({
  pid: z.number().int(),
  httpPort: z.number().int().nullable(),
  grpcPort: z.number().int().nullable(),
  config: z.record(z.string(), z.unknown()),
});

export const SERVER_HOST = new URL('./server-host.ts', import.meta.url);

export async function openPlatform(options: TargetOptions, progress: Progress): Promise<PlatformTarget> {
  if (options.url) {
    const url = new URL(options.url);
    return {
      baseUrl: url.origin,
      grpcAddress: options.grpc ?? `${url.hostname}:9090`,
      serverPid: null,
      settings: { url: url.origin },
      close: async () => {},
    };
  }
  // fanout --nodes starts its control plane and edge here too, in cluster mode (bench/fanout/cluster.ts).
  const cluster = options.env?.VEZA_MODE === 'cluster';
  progress.note(
    cluster
      ? 'starting the control plane and edge (cluster mode)'
      : 'starting the platform (standalone, embedded PostgreSQL)',
  );
  const host = new ChildRpc(SERVER_HOST, [], {
    onOutput: (line) => progress.child('platform', line),
    ...(options.cpuProfileDir
      ? { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`] }
      : {}),
  });
  try {
    const env = { ...BENCH_PLATFORM_ENV, ...options.env };
    const ready = await host.request('platform', { env }, platformReady);
    if (ready.httpPort === null || ready.grpcPort === null)
      throw new Error('the platform started without its edge or gRPC server');
    return {
      baseUrl: `http://127.0.0.1:${ready.httpPort}`,
      grpcAddress: `127.0.0.1:${ready.grpcPort}`,
      serverPid: ready.pid,
      // A cluster's environment holds its service key and signing secret: not for the result file.
      settings: cluster ? { mode: 'cluster', ...ready.config } : { mode: 'standalone', env, ...ready.config },
      close: () => host.close(),
    };
  } catch (error) {
    await host.close();
    throw error;
  }
}
