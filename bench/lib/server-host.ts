/**
 * The benchmark's server process: the platform in standalone mode, or one of the bare
 * baselines, started in its own process so its CPU and memory are measured apart from the
 * load generators and the orchestrator. Forked by target.ts with the kind as argument.
 *
 * The platform starts as `npm start` starts it (launchPlatform): its roles on their own threads
 * unless the run sets VEZA_THREADS=false (`--platform-env`). Threads or not, it is this one
 * process, and the mediasoup workers are its children.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launchPlatform } from '../../app/index.js';
import { createLogger, loadConfig } from '../../common/index.js';
import { freePort } from '../../common/testing/index.js';
import { type BareMediasoup, startBareMediasoup } from '../baselines/bare-mediasoup.js';
import { startBareUws } from '../baselines/bare-uws.js';
import { type EchoResponses, startGrpcEcho } from '../baselines/grpc-echo.js';
import { serveParent } from './ipc.js';
import { childPids, cpuSeconds } from './proc.js';

/** Dying mediasoup workers must not burn CPU in whatever the benchmark measures next. */
async function waitForExit(pids: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && pids.some((pid) => cpuSeconds(pid) !== null)) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

type Closer = () => Promise<void>;
let closer: Closer = async () => {};
let bare: BareMediasoup | undefined;

async function startPlatformHost(params: { env: Record<string, string> }) {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'veza-bench-'));
  const config = loadConfig({
    VEZA_DATA_DIR: dataDir,
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    GRPC_HOST: '127.0.0.1',
    GRPC_PORT: '0',
    CONTROL_HTTP_PORT: '0',
    EMBEDDED_PG_PORT: String(await freePort()),
    MEDIA_LISTEN_IP: '127.0.0.1',
    LOG_LEVEL: 'warn',
    ...params.env,
  });
  const log = createLogger({ level: config.LOG_LEVEL, name: 'veza-bench-platform' });
  const platform = await launchPlatform(config, log);
  closer = async () => {
    const workers = childPids(process.pid, 'mediasoup-worker');
    await platform.close();
    await waitForExit(workers, 10_000);
    await rm(dataDir, { recursive: true, force: true });
  };
  return {
    pid: process.pid,
    httpPort: platform.httpPort,
    grpcPort: platform.grpcPort,
    config: {
      VEZA_THREADS: config.VEZA_THREADS,
      loops: platform.loops,
      MEDIA_WORKERS: config.MEDIA_WORKERS,
      MEDIA_CONSUMER_BUDGET: config.MEDIA_CONSUMER_BUDGET,
      WORKER_CONCURRENCY: config.WORKER_CONCURRENCY,
    },
  };
}

async function startBareMediasoupHost(params: { workers: number; consumerBudget: number }) {
  const sfu = await startBareMediasoup({
    workers: params.workers,
    consumerBudget: params.consumerBudget,
    listenIp: '127.0.0.1',
    rtcMinPort: 40000,
    rtcMaxPort: 49999,
  });
  bare = sfu;
  closer = () => sfu.close();
  return { pid: process.pid, url: sfu.url, workerPids: sfu.workerPids };
}

async function startGrpcEchoHost(params: EchoResponses) {
  const echo = await startGrpcEcho(params);
  closer = () => echo.close();
  return { pid: process.pid, port: echo.port };
}

async function startBareUwsHost() {
  const server = await startBareUws();
  closer = () => server.close();
  return { pid: process.pid, port: server.port };
}

serveParent(
  {
    bareUws: () => startBareUwsHost(),
    grpcEcho: (params) => startGrpcEchoHost(params as EchoResponses),
    platform: (params) => startPlatformHost(params as { env: Record<string, string> }),
    bareMediasoup: (params) => startBareMediasoupHost(params as { workers: number; consumerBudget: number }),
    bareWorkersUsed: () => ({ used: bare?.workersUsed() ?? 0 }),
  },
  () => closer(),
);
