/**
 * Media nodes as separate processes (`node app/main.ts`, VEZA_ROLES=media) for the cluster tests
 * that kill one for real (SIGKILL to its process group, its mediasoup worker with it, as a
 * machine's death would), each on its own loopback address (127.0.0.2, .3, ...), and the nodes'
 * own heartbeats on the bus, which tell the test where the streams and listeners are and when
 * a node has announced itself (conditions to wait on, not sleeps).
 *
 * Each process logs into `<dataDir>/<name>.log` at TEST_LOG_LEVEL (warn by default).
 */
import { type ChildProcess, spawn } from 'node:child_process';
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

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface MediaProcess {
  nodeId: string;
  ip: string;
  child: ChildProcess;
  logFile: string;
  /** SIGKILL to its process group; resolves once it exited. */
  kill(): Promise<void>;
}

export interface MediaProcesses {
  /** The latest heartbeat of each media node of the cluster. */
  readonly heartbeats: ReadonlyMap<string, MediaNodeHeartbeat>;
  /** Resolves once the nodes' heartbeats satisfy `check`. */
  untilHeartbeats(what: string, check: () => boolean, timeoutMs?: number): Promise<void>;
  /** The node's entry for the stream in its latest heartbeat. */
  carried(nodeId: string, streamId: number): MediaNodeHeartbeat['streams'][number] | undefined;
  /** Starts a media node named `<label>-<name>-<run>`; resolves once it announced itself. */
  start(name: string, env?: Record<string, string>): Promise<MediaProcess>;
  /** Kills every node still running and stops watching. */
  close(): Promise<void>;
}

export interface MediaProcessesOptions {
  /** Names the nodes (with `run`). */
  label: string;
  /** This test run's id: node ids and the cluster name are its own. */
  run: string;
  /** The environment every process of the cluster shares (clusterTestEnv and more; MEDIA_CLUSTER set). */
  shared: Record<string, string>;
  /** Each node's data directory and log go under it. */
  dataDir: string;
  log: Logger;
}

/** Watches the cluster's heartbeats; call start() for each node. */
export async function watchMediaProcesses(options: MediaProcessesOptions): Promise<MediaProcesses> {
  const { label, run, shared, dataDir, log } = options;
  const cluster = shared.MEDIA_CLUSTER;
  if (!cluster) throw new Error('the shared environment names no MEDIA_CLUSTER');
  const heartbeats = new Map<string, MediaNodeHeartbeat>();
  const waiters = new Set<() => void>();
  const bus: EventBus = await NatsEventBus.connect(clusterServices.natsUrl, {
    log,
    namespace: shared.VEZA_NAMESPACE,
  });
  const watching = bus.subscribe(mediaPresenceSubject(cluster, 'heartbeat'), (payload) => {
    const parsed = mediaNodeHeartbeatSchema.safeParse(payload);
    if (!parsed.success) return;
    heartbeats.set(parsed.data.nodeId, parsed.data);
    for (const wake of [...waiters]) wake();
  });
  await watching.ready;
  const kills: Array<() => Promise<void>> = [];
  let nextIp = 2;

  const summary = (beat: MediaNodeHeartbeat) => ({
    nodeId: beat.nodeId,
    listeners: beat.listeners,
    streams: beat.streams,
  });

  function untilHeartbeats(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(wake);
        reject(
          new Error(
            `timed out waiting for ${what}: ${JSON.stringify([...heartbeats.values()].map(summary))}`,
          ),
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
  }

  async function start(name: string, env: Record<string, string> = {}): Promise<MediaProcess> {
    const nodeId = `${label}-${name}-${run}`;
    const ip = `127.0.0.${nextIp++}`;
    const logFile = path.join(dataDir, `${name}.log`);
    const output = createWriteStream(logFile);
    const child = spawn(process.execPath, ['--import', 'tsx', 'app/main.ts'], {
      cwd: root,
      // Its own process group: a kill takes its mediasoup worker with it, as a machine's death would.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        ...shared,
        VEZA_ROLES: 'media',
        VEZA_NODE_ID: nodeId,
        VEZA_DATA_DIR: path.join(dataDir, name),
        MEDIA_WORKERS: '1',
        MEDIA_LISTEN_IP: ip,
        MEDIA_ANNOUNCED_ADDRESS: ip,
        LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
        ...env,
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
    kills.push(kill);
    const early = exited.then(() => {
      throw new Error(`media process ${name} exited before announcing itself (see ${logFile})`);
    });
    await Promise.race([
      untilHeartbeats(`${name} to announce itself`, () => heartbeats.has(nodeId), 60_000),
      early,
    ]);
    return { nodeId, ip, child, logFile, kill };
  }

  return {
    heartbeats,
    untilHeartbeats,
    carried: (nodeId, streamId) =>
      heartbeats.get(nodeId)?.streams.find((stream) => stream.streamId === String(streamId)),
    start,
    async close() {
      for (const kill of kills.splice(0).reverse()) await kill();
      await bus.close();
    },
  };
}
