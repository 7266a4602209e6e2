/**
 * Media nodes of a cluster as separate processes (`node app/main.ts`, VEZA_ROLES=media), each
 * listening on and announcing its own loopback address (127.0.0.2, .3, ...), and a watcher of
 * their heartbeats on the bus: what the cascade tests (through ./media-cluster.ts) and the fanout
 * benchmark's `--nodes` run start their nodes with, and how they learn where listeners and streams are.
 */
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type MediaNodeHeartbeat,
  mediaNodeHeartbeatSchema,
  mediaPresenceSubject,
} from '../../common/contracts/index.js';
import type { Logger } from '../../common/index.js';
import { type EventBus, NatsEventBus } from '../../common/ports/index.js';
import { clusterServices } from '../../common/testing/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The latest heartbeat of each media node of a cluster, with a wait on a condition over them. */
export interface MediaHeartbeats {
  readonly latest: ReadonlyMap<string, MediaNodeHeartbeat>;
  /** Resolves once the heartbeats satisfy `check` (a condition, not a sleep); rejects after `timeoutMs`. */
  until(what: string, check: () => boolean, timeoutMs?: number): Promise<void>;
  /** The node's entry for the stream in its latest heartbeat. */
  carried(nodeId: string, streamId: number | string): MediaNodeHeartbeat['streams'][number] | undefined;
  /** How many pipes from the origin the node is (0: the origin); null when the chain is not known (yet). */
  tier(nodeId: string, streamId: number | string): number | null;
  /** Resolves once the bus subscription is in place. */
  readonly ready: Promise<void>;
  close(): void;
}

const summary = (beat: MediaNodeHeartbeat) => ({
  nodeId: beat.nodeId,
  listeners: beat.listeners,
  streams: beat.streams,
});

export function watchMediaHeartbeats(bus: EventBus, cluster: string): MediaHeartbeats {
  const latest = new Map<string, MediaNodeHeartbeat>();
  const waiters = new Set<() => void>();
  const subscription = bus.subscribe(mediaPresenceSubject(cluster, 'heartbeat'), (payload) => {
    const parsed = mediaNodeHeartbeatSchema.safeParse(payload);
    if (!parsed.success) return;
    latest.set(parsed.data.nodeId, parsed.data);
    for (const wake of [...waiters]) wake();
  });
  const carried = (nodeId: string, streamId: number | string) =>
    latest.get(nodeId)?.streams.find((stream) => stream.streamId === String(streamId));
  return {
    latest,
    ready: subscription.ready,
    carried,
    tier(nodeId, streamId) {
      let depth = 0;
      let current: string | null | undefined = nodeId;
      // A chain longer than the nodes known has a loop in it (heartbeats mid-change): not known yet.
      while (depth <= latest.size) {
        const upstream: string | null | undefined = carried(current, streamId)?.upstream;
        if (upstream === undefined) return null;
        if (upstream === null) return depth;
        current = upstream;
        depth++;
      }
      return null;
    },
    until(what, check, timeoutMs = 15_000) {
      if (check()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(
            new Error(`timed out waiting for ${what}: ${JSON.stringify([...latest.values()].map(summary))}`),
          );
        }, timeoutMs);
        const wake = () => {
          if (!check()) return;
          clearTimeout(timer);
          waiters.delete(wake);
          resolve();
        };
        waiters.add(wake);
      });
    },
    close: () => subscription.unsubscribe(),
  };
}

export interface MediaProcess {
  name: string;
  nodeId: string;
  /** The loopback address it listens on and announces (its listeners' ICE candidates carry it). */
  ip: string;
  child: ChildProcess;
  logFile: string;
  /** SIGKILL to its process group (its mediasoup workers with it, as a machine's death would). */
  kill(): Promise<void>;
}

export interface MediaProcessOptions {
  name: string;
  nodeId: string;
  /** A loopback address of its own, e.g. 127.0.0.2. */
  ip: string;
  /** The environment every process of the cluster shares (clusterTestEnv, MEDIA_CLUSTER, ...). */
  env: Record<string, string>;
  /** Where its log file and its data folder go. */
  dataDir: string;
  heartbeats: MediaHeartbeats;
  /** Default 1. */
  workers?: number;
  /** MEDIA_NODE_MAX_LISTENERS (default: the node's own, from its capacity model). */
  maxListeners?: number;
  logLevel?: string;
  /** How long it may take to announce itself (default 60 s). */
  timeoutMs?: number;
  /** Its own settings, over everything above (e.g. MEDIA_PIPE_ANNOUNCED_ADDRESS). */
  overrides?: Record<string, string>;
  /**
   * How to start it (default: a child process of this one); it must start the command in a
   * process group of its own (`detached`), e.g. NetnsLab.spawn for a node in a namespace.
   */
  spawn?: (command: string, args: string[], options: SpawnOptions) => ChildProcess;
}

/** A media node as its own process; resolves once its heartbeat is on the bus. */
export async function startMediaProcess(options: MediaProcessOptions): Promise<MediaProcess> {
  const { name, nodeId, ip } = options;
  const logFile = path.join(options.dataDir, `${name}.log`);
  const output = createWriteStream(logFile);
  const start = options.spawn ?? spawn;
  const child = start(process.execPath, ['--import', 'tsx', 'app/main.ts'], {
    cwd: ROOT,
    // Its own process group: a kill takes its mediasoup worker with it, as a machine's death would.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      ...options.env,
      VEZA_ROLES: 'media',
      VEZA_NODE_ID: nodeId,
      VEZA_DATA_DIR: path.join(options.dataDir, name),
      MEDIA_WORKERS: String(options.workers ?? 1),
      MEDIA_LISTEN_IP: ip,
      MEDIA_ANNOUNCED_ADDRESS: ip,
      ...(options.maxListeners === undefined
        ? {}
        : { MEDIA_NODE_MAX_LISTENERS: String(options.maxListeners) }),
      LOG_LEVEL: options.logLevel ?? 'warn',
      ...options.overrides,
    },
  });
  child.stdout?.pipe(output);
  child.stderr?.pipe(output);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let alive = true;
  const kill = async () => {
    if (!alive) return;
    alive = false;
    if (child.pid) process.kill(-child.pid, 'SIGKILL');
    await exited;
  };
  const early = exited.then(() => {
    throw new Error(`media process ${name} exited before announcing itself (see ${logFile})`);
  });
  try {
    await Promise.race([
      options.heartbeats.until(
        `${name} to announce itself`,
        () => options.heartbeats.latest.has(nodeId),
        options.timeoutMs ?? 60_000,
      ),
      early,
    ]);
  } catch (error) {
    await kill();
    throw error;
  }
  return { name, nodeId, ip, child, logFile, kill };
}

/** A cluster's media node processes under one heartbeat watch, each on the next loopback address. */
export interface MediaProcesses {
  /** The latest heartbeat of each media node of the cluster. */
  readonly heartbeats: ReadonlyMap<string, MediaNodeHeartbeat>;
  /** Resolves once the nodes' heartbeats satisfy `check`. */
  untilHeartbeats(what: string, check: () => boolean, timeoutMs?: number): Promise<void>;
  /** The node's entry for the stream in its latest heartbeat. */
  carried(nodeId: string, streamId: number): MediaNodeHeartbeat['streams'][number] | undefined;
  /** Starts a media node named `<label>-<name>-<run>`; resolves once it announced itself. */
  start(name: string, overrides?: Record<string, string>): Promise<MediaProcess>;
  /** Kills every node still running and stops watching. */
  close(): Promise<void>;
}

export interface MediaProcessesOptions {
  /** Names the nodes (with `run`). */
  label: string;
  /** This test run's id: node ids are its own. */
  run: string;
  /** The environment every process of the cluster shares (clusterTestEnv and more; MEDIA_CLUSTER set). */
  shared: Record<string, string>;
  /** Each node's data directory and log go under it. */
  dataDir: string;
  log: Logger;
}

/** Watches the cluster's heartbeats on a bus of its own; call start() for each node. */
export async function watchMediaProcesses(options: MediaProcessesOptions): Promise<MediaProcesses> {
  const { label, run, shared, dataDir, log } = options;
  const cluster = shared.MEDIA_CLUSTER;
  if (!cluster) throw new Error('the shared environment names no MEDIA_CLUSTER');
  const bus = await NatsEventBus.connect(clusterServices.natsUrl, { log, namespace: shared.VEZA_NAMESPACE });
  const heartbeats = watchMediaHeartbeats(bus, cluster);
  await heartbeats.ready;
  const nodes: MediaProcess[] = [];
  let nextIp = 2;
  return {
    heartbeats: heartbeats.latest,
    untilHeartbeats: (what, check, timeoutMs) => heartbeats.until(what, check, timeoutMs),
    carried: (nodeId, streamId) => heartbeats.carried(nodeId, streamId),
    async start(name, overrides = {}) {
      const node = await startMediaProcess({
        name,
        nodeId: `${label}-${name}-${run}`,
        ip: `127.0.0.${nextIp++}`,
        env: shared,
        dataDir,
        heartbeats,
        logLevel: process.env.TEST_LOG_LEVEL ?? 'warn',
        overrides,
      });
      nodes.push(node);
      return node;
    },
    async close() {
      for (const node of nodes.splice(0).reverse()) await node.kill();
      heartbeats.close();
      await bus.close();
    },
  };
}
