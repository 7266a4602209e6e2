/**
 * The two systems a fanout run measures with the same load generator: the platform (through
 * its REST API and signaling WebSocket) and the bare-mediasoup baseline. Each says where the
 * publisher and listeners connect and how to read the SFU's CPU, memory and worker use.
 */
import { z } from 'zod';
import { ChildRpc } from '../lib/ipc.js';
import { childPids, processTree, totalCpuSeconds, totalRssKb } from '../lib/proc.js';
import type { Progress } from '../lib/progress.js';
import { scrape, sumOf } from '../lib/prom.js';
import { createUser, signalingWsUrl, startStream, stopStream } from '../lib/rest.js';
import { openPlatform, SERVER_HOST, type TargetOptions } from '../lib/target.js';
import { type ClusterOptions, type MediaNodesProbe, startFanoutCluster } from './cluster.js';
import type { SignalingTargetJson } from './messages.js';

export interface CpuReading {
  /** Sum of the mediasoup worker processes' user + system CPU seconds. */
  seconds: number;
  /** performance.now() of the reading (with --url: when the server last sampled it). */
  at: number;
}

export interface FanoutSystem {
  /** `platform-cluster`: `--nodes N`, the platform in cluster mode with N media node processes. */
  name: 'platform' | 'platform-cluster' | 'bare-mediasoup';
  /** Where the SFU CPU comes from, for the result. */
  cpuSource: string;
  publisher: SignalingTargetJson;
  listeners: SignalingTargetJson;
  workerCount: number | null;
  settings: Record<string, unknown>;
  sfuCpu(): Promise<CpuReading | null>;
  /**
   * Resident memory, kB: `sfu` of the mediasoup workers (grows with transports and consumers,
   * no garbage collector to blur it), `server` of the server process (edge and control plane:
   * its V8 heap grows and shrinks with garbage collection). With --url only the server's own
   * process figure from /metrics is known.
   */
  rssKb(): Promise<{ sfu: number | null; server: number | null }>;
  /** CPU seconds of everything but the SFU workers (edge, control plane, database); null with --url. */
  serverCpuSeconds(): number | null;
  /**
   * CPU seconds of the server's own Node.js process alone (the platform: edge, control plane and
   * the media node's JavaScript on one event loop; the bare baseline: its stub), beside the
   * workers'; null with --url.
   */
  serverProcessCpuSeconds(): number | null;
  workersUsed(): Promise<number | null>;
  /**
   * The server's own handling time so far, summed per signaling method and control-plane rpc
   * (from its histograms): with a delta over a ramp, it tells handling from queueing. Null when
   * the system has no metrics (the bare baseline).
   */
  handlingSeconds(): Promise<ServerMetrics | null>;
  /** The media nodes of a `--nodes` run, to split each step per node and per tier; null with one node. */
  mediaNodes: MediaNodesProbe | null;
  /** The stream the publisher sends on (the media nodes' heartbeats name it). */
  streamId: number;
  close(): Promise<void>;
}

const HANDLING_METRICS: Record<string, string> = {
  veza_ws_request_duration_seconds: 'ws',
  veza_grpc_request_duration_seconds: 'grpc',
};

/** What one scrape of the server's /metrics tells about its request handling and its event loop. */
export interface ServerMetrics {
  /** Handling time so far, summed per signaling method (`ws:<method>`) and rpc (`grpc:<method>`). */
  handling: Record<string, { sum: number; count: number }>;
  /**
   * The server's event-loop delay p99 (ms) since the previous scrape: prom-client resets its
   * histogram on every collect, so two scrapes bracket an interval.
   */
  loopDelayP99Ms: number | null;
}

async function handlingFromMetrics(metricsUrl: string): Promise<ServerMetrics> {
  const totals: Record<string, { sum: number; count: number }> = {};
  const samples = await scrape(metricsUrl);
  const lag = sumOf(samples, 'veza_nodejs_eventloop_lag_p99_seconds');
  for (const sample of samples) {
    const match = /^(.*)_(sum|count)$/.exec(sample.name);
    const prefix = match?.[1] ? HANDLING_METRICS[match[1]] : undefined;
    if (!prefix || !match) continue;
    const method = (sample.labels.method ?? '?').replace(/^veza\.[a-z]+\.\w+\//, '');
    const key = `${prefix}:${method}`;
    const entry = totals[key] ?? { sum: 0, count: 0 };
    if (match[2] === 'sum') entry.sum += sample.value;
    else entry.count += sample.value;
    totals[key] = entry;
  }
  return { handling: totals, loopDelayP99Ms: lag === null ? null : Math.round(lag * 1e5) / 100 };
}

const bareReady = z.object({ pid: z.number().int(), url: z.string(), workerPids: z.array(z.number().int()) });
const workersUsedReply = z.object({ used: z.number().int() });

/**
 * With --url the server's own sampler (every few seconds) is the only source of worker CPU.
 * Polling its /metrics twice a second finds when each new sample appeared, so a window's CPU
 * is taken between two known instants (to within the poll period), not between two reads of
 * values that may be seconds old.
 */
function remoteCpuWatcher(metricsUrl: string): { latest(): CpuReading | null; stop(): void } {
  let latest: CpuReading | null = null;
  const poll = async () => {
    try {
      const seconds = sumOf(await scrape(metricsUrl), 'veza_media_worker_cpu_seconds');
      if (seconds !== null && latest?.seconds !== seconds) latest = { seconds, at: performance.now() };
    } catch {
      // A missed scrape only widens the uncertainty of the next reading.
    }
  };
  void poll();
  const timer = setInterval(() => void poll(), 500);
  return { latest: () => latest, stop: () => clearInterval(timer) };
}

/**
 * The platform: standalone (one process, its mediasoup workers its children), an already running
 * one (--url), or with `cluster` the platform in cluster mode (bench/fanout/cluster.ts): the
 * control plane and edge in the server process, the workers under the media node processes.
 */
export async function platformSystem(
  options: TargetOptions,
  progress: Progress,
  cluster?: ClusterOptions,
): Promise<FanoutSystem> {
  const started = cluster ? await startFanoutCluster(cluster, options, progress) : null;
  const target = started?.target ?? (await openPlatform(options, progress));
  const mediaNodes = started?.nodes ?? null;
  const closeTarget = () => (started ? started.close() : target.close());
  try {
    const broadcaster = await createUser(target.baseUrl, 'caster');
    const { streamId } = await startStream(target.baseUrl, broadcaster, 'fanout benchmark');
    const url = signalingWsUrl(target.baseUrl);
    const metricsUrl = `${target.baseUrl}/metrics`;
    const serverPid = target.serverPid;
    const workers = () =>
      mediaNodes?.workerPids() ?? (serverPid === null ? [] : childPids(serverPid, 'mediasoup-worker'));
    const workerCount = serverPid === null ? null : workers().length;
    const remote = serverPid === null ? remoteCpuWatcher(metricsUrl) : null;
    return {
      name: mediaNodes ? 'platform-cluster' : 'platform',
      cpuSource:
        serverPid === null
          ? '/metrics veza_media_worker_cpu_seconds (sampled by the server every few seconds, polled twice a second)'
          : '/proc/<worker pid>/stat',
      publisher: { url, streamId, token: broadcaster.accessToken },
      listeners: { url, streamId, token: null },
      workerCount,
      settings: mediaNodes ? mediaNodes.settings : target.settings,
      mediaNodes,
      streamId,
      async sfuCpu() {
        if (serverPid !== null) return { seconds: totalCpuSeconds(workers()), at: performance.now() };
        return remote?.latest() ?? null;
      },
      async rssKb() {
        if (serverPid !== null) return { sfu: totalRssKb(workers()), server: totalRssKb([serverPid]) };
        const bytes = sumOf(await scrape(metricsUrl), 'veza_process_resident_memory_bytes');
        return { sfu: null, server: bytes === null ? null : bytes / 1024 };
      },
      // Edge, control plane and embedded PostgreSQL (a cluster: the media nodes' own processes
      // instead of PostgreSQL, which is the machine's): everything but the SFU workers.
      serverCpuSeconds: () => {
        if (serverPid === null) return null;
        const sfu = new Set(workers());
        const own = processTree(serverPid).filter((pid) => !sfu.has(pid));
        return totalCpuSeconds([...own, ...(mediaNodes?.nodePids() ?? [])]);
      },
      serverProcessCpuSeconds: () => (serverPid === null ? null : totalCpuSeconds([serverPid])),
      async workersUsed() {
        if (mediaNodes) return mediaNodes.workersUsed();
        const consumers = (await scrape(metricsUrl)).filter(
          (sample) => sample.name === 'veza_media_consumers',
        );
        return consumers.filter((sample) => sample.value > 0).length;
      },
      handlingSeconds: () => handlingFromMetrics(metricsUrl),
      async close() {
        remote?.stop();
        await stopStream(target.baseUrl, broadcaster, streamId).catch(() => undefined);
        await closeTarget();
      },
    };
  } catch (error) {
    await closeTarget();
    throw error;
  }
}

export async function bareMediasoupSystem(
  options: { workers: number; consumerBudget: number },
  progress: Progress,
): Promise<FanoutSystem> {
  progress.note(`starting the bare mediasoup baseline (${options.workers} worker(s))`);
  const host = new ChildRpc(SERVER_HOST, [], { onOutput: (line) => progress.child('bare-mediasoup', line) });
  try {
    const ready = await host.request('bareMediasoup', options, bareReady);
    const target = { url: ready.url, streamId: 1, token: 'none' };
    return {
      name: 'bare-mediasoup',
      cpuSource: '/proc/<worker pid>/stat',
      publisher: target,
      listeners: target,
      workerCount: ready.workerPids.length,
      settings: { workers: options.workers, consumerBudget: options.consumerBudget },
      sfuCpu: async () => ({ seconds: totalCpuSeconds(ready.workerPids), at: performance.now() }),
      rssKb: async () => ({ sfu: totalRssKb(ready.workerPids), server: totalRssKb([ready.pid]) }),
      serverCpuSeconds: () => totalCpuSeconds([ready.pid]),
      serverProcessCpuSeconds: () => totalCpuSeconds([ready.pid]),
      workersUsed: async () => (await host.request('bareWorkersUsed', {}, workersUsedReply)).used,
      handlingSeconds: async () => null,
      mediaNodes: null,
      streamId: target.streamId,
      close: () => host.close(),
    };
  } catch (error) {
    await host.close();
    throw error;
  }
}
