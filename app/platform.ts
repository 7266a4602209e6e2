/**
 * The composition root: wires the roles a process runs (VEZA_ROLES) to their adapters.
 * Nothing imports this module except the process entry (main.ts), the CLI, tests and
 * benchmarks, so the roles themselves never depend on each other through it.
 *
 * startPlatform runs its roles on the caller's one event loop: a cluster process, each role
 * thread of threaded standalone mode (supervisor.ts, role-thread.ts), and the tests that start a
 * whole standalone platform in their own process and reach into it (`platform.media`). Standalone
 * (the default): embedded PostgreSQL, in-process bus, sessions, rate limits and queue. Cluster:
 * DATABASE_URL, REDIS_URL and NATS_URL, each role in its own process if wanted. Both go through
 * the same code below. Which of the two `npm start` runs standalone mode with (VEZA_THREADS) is
 * launch.ts's choice.
 */
import { randomBytes } from 'node:crypto';
import {
  connectDatabase,
  MIGRATIONS_DIR,
  migrate,
  type Sql,
  startEmbeddedPostgres,
} from '../common/db/index.js';
import {
  type Config,
  createBreaker,
  type DependencyMonitor,
  type DependencyProbe,
  dependencyReadiness,
  type Logger,
  type OpsServer,
  startDependencyMonitor,
  startOpsServer,
} from '../common/index.js';
import {
  type BlobStorage,
  createPorts,
  type EventBus,
  GuardedBlobStorage,
  isBlobStoreFailure,
  PgJobQueue,
  PgSessionStore,
  type Ports,
} from '../common/ports/index.js';
import { createControlPlaneClient } from '../control-plane/client/index.js';
import { startControlPlane, startRetention } from '../control-plane/index.js';
import {
  type MediaNode,
  type MediaNodeService,
  mediaNodePeersOverBus,
  serveMediaNodeOverBus,
  startMediaNode,
} from '../media-server/index.js';
import {
  busMediaGateway,
  directMediaGateway,
  type MediaGateway,
  routerCapabilitiesProvider,
  startEdge,
} from '../signaling/index.js';
import { startWorkers } from '../workers/index.js';

export interface Platform {
  config: Config;
  sql: Sql;
  ports: Ports;
  /** Bound ports, useful when 0 (ephemeral) was configured. */
  httpPort: number | null;
  grpcPort: number | null;
  opsPort: number | null;
  /** The media node when this process has the media role (tests kill its workers through it). */
  media: MediaNode | null;
  close(): Promise<void>;
}

/** What a supervisor hands the roles it runs in one of its threads (supervisor.ts). */
export interface PlatformOptions {
  /** The bus to the other threads of this process, instead of a bus of this loop's own (standalone only). */
  bus?: EventBus;
  /** The service key every thread of the process shares (default: SERVICE_API_KEYS[0], or a fresh one). */
  apiKey?: string;
  /**
   * Serve /metrics, /healthz and /readyz on CONTROL_HTTP_PORT (default: when this loop runs no edge).
   * A supervisor serves them for the whole process instead.
   */
  opsServer?: boolean;
  /** Labels PostgreSQL's metrics (default: embedded when DATABASE_URL is unset). */
  database?: 'embedded' | 'external';
}

export async function startPlatform(
  config: Config,
  log: Logger,
  options: PlatformOptions = {},
): Promise<Platform> {
  const closers: Array<() => Promise<void>> = [];
  const close = async () => {
    // Reverse start order: the edge stops taking requests before what it calls goes away.
    for (const closer of closers.reverse()) {
      try {
        await closer();
      } catch (error) {
        log.error({ err: error }, 'error while shutting down');
      }
    }
  };
  try {
    let databaseUrl = config.DATABASE_URL;
    if (!databaseUrl) {
      const embedded = await startEmbeddedPostgres(config.dataDir, config.EMBEDDED_PG_PORT, log);
      closers.push(embedded.stop);
      databaseUrl = embedded.url;
    }
    const sql = connectDatabase(databaseUrl, {
      onNotice: (message) => log.debug({ pg: message }, 'notice'),
      database: options.database ?? (config.DATABASE_URL ? 'external' : 'embedded'),
    });
    closers.push(() => sql.end({ timeout: 5 }));
    const roles = new Set(config.VEZA_ROLES);
    if (roles.has('control-plane')) await migrate(sql, MIGRATIONS_DIR, log);

    const ports = await createPorts(config, { sql, log, ...(options.bus ? { bus: options.bus } : {}) });
    closers.push(() => ports.close());

    // What this process's roles need, probed in the background; readiness and gRPC health follow it.
    const dependencies = startDependencyMonitor({
      probes: dependencyProbes(config, roles, sql, ports),
      intervalMs: config.HEALTH_PROBE_INTERVAL_MS,
      timeoutMs: config.HEALTH_PROBE_TIMEOUT_MS,
      log,
    });
    closers.push(async () => dependencies.close());
    await dependencies.ready;

    // Service identity for calls between roles: configured keys in cluster mode, and a
    // fresh key per process in standalone mode, where every caller is in this process.
    const apiKey = options.apiKey ?? config.SERVICE_API_KEYS[0] ?? randomBytes(32).toString('base64url');

    let grpcPort: number | null = null;
    let controlPlaneAddress = config.controlPlaneAddress;
    if (roles.has('control-plane')) {
      const controlPlane = await startControlPlane({ config, sql, ports, log, apiKey, dependencies });
      closers.push(() => controlPlane.close());
      grpcPort = controlPlane.port;
      controlPlaneAddress = `${controlPlaneAddress.replace(/:\d+$/, '')}:${grpcPort}`;
      log.info({ port: grpcPort }, 'control plane (gRPC) listening');
      // Deletes what outlived its use; the standalone adapters' tables are in this database too.
      const retention = startRetention({
        config,
        sql,
        log: log.child({ role: 'control-plane' }),
        sessions: ports.sessions instanceof PgSessionStore ? ports.sessions : null,
        jobs: ports.jobs instanceof PgJobQueue ? ports.jobs : null,
      });
      closers.push(() => retention.stop());
    }

    // The media node: mediasoup workers. Edges on other event loops (other processes, or the
    // edge thread of threaded standalone mode) reach it over the bus (request/reply on its node
    // subject); an edge on this loop calls it directly. Served over the bus, it announces itself to
    // the control planes, which place streams on it.
    let media: MediaNode | null = null;
    let served: MediaNodeService | null = null;
    if (roles.has('media')) {
      // In cluster mode a node reaches the other media nodes over the bus, to pull a stream it must
      // serve from one that carries it (cascaded fan-out); standalone mode has one node.
      const node = await startMediaNode({
        config,
        log,
        blobs: ports.blobs,
        ...(config.VEZA_MODE === 'cluster' ? { peers: mediaNodePeersOverBus(ports.bus, log) } : {}),
      });
      media = node;
      closers.push(() => node.close());
      if (config.VEZA_MODE === 'cluster' || !roles.has('signaling')) {
        const service = serveMediaNodeOverBus(ports.bus, node, config.nodeId, log, {
          cluster: config.MEDIA_CLUSTER,
          heartbeatMs: config.PRESENCE_HEARTBEAT_MS,
        });
        served = service;
        closers.push(() => service.close());
        await service.ready;
      }
    }

    let httpPort: number | null = null;
    if (roles.has('signaling')) {
      const client = createControlPlaneClient({
        address: controlPlaneAddress,
        apiKey,
        log,
        breakerResetMs: config.CIRCUIT_BREAKER_RESET_MS,
      });
      closers.push(async () => client.close());
      let gateway: MediaGateway;
      if (media) {
        gateway = directMediaGateway(media);
      } else {
        const remote = busMediaGateway({
          bus: ports.bus,
          log,
          breakerResetMs: config.CIRCUIT_BREAKER_RESET_MS,
        });
        closers.push(() => remote.close());
        await remote.ready;
        gateway = remote;
      }
      const edge = await startEdge({
        config,
        log,
        dependencies,
        controlPlane: client,
        blobs: edgeBlobs(config, ports.blobs, log),
        routerRtpCapabilities: routerCapabilitiesProvider(gateway),
        signaling: { bus: ports.bus, media: gateway },
      });
      closers.push(() => edge.close());
      httpPort = edge.port;
      log.info({ port: httpPort, url: config.publicUrl }, 'edge (HTTP and WebSocket) listening');
    }

    if (roles.has('worker')) {
      const workers = await startWorkers({
        config,
        ports,
        log,
        maxDurationS: config.UPLOAD_MAX_DURATION_S,
      });
      closers.push(() => workers.close());
    }

    let ops: OpsServer | null = null;
    if (options.opsServer ?? !roles.has('signaling')) {
      ops = await startOpsServer(
        config.HTTP_HOST,
        config.CONTROL_HTTP_PORT,
        async () => dependencyReadiness(dependencies),
        { metricsToken: config.METRICS_TOKEN },
      );
      closers.push(() => ops?.close() ?? Promise.resolve());
    }

    // Last in, so first on shutdown: the media node's goodbye, so control planes stop placing
    // new streams on it while the rest of this process drains.
    const draining = served;
    // The node itself refuses new listeners from then on (edges may still send it joins).
    const drainingNode = media;
    if (draining)
      closers.push(() => {
        drainingNode?.drain();
        return draining.drain();
      });

    return {
      config,
      sql,
      ports,
      httpPort,
      grpcPort,
      opsPort: ops?.port ?? null,
      media,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * The dependencies the roles of this process need: PostgreSQL for the control plane and for the
 * standalone job queue the workers consume, Redis (sessions, rate limits) for the control plane,
 * NATS for every role in cluster mode, blob storage for whoever reads or writes media objects.
 */
function dependencyProbes(
  config: Config,
  roles: ReadonlySet<string>,
  sql: Sql,
  ports: Ports,
): DependencyProbe[] {
  const probes: DependencyProbe[] = [];
  if (roles.has('control-plane') || (roles.has('worker') && config.VEZA_MODE === 'standalone')) {
    probes.push({
      name: 'postgres',
      check: async () => {
        await sql`select 1`;
      },
    });
  }
  for (const probe of ports.probes) {
    if (probe.name === 'redis' && !roles.has('control-plane')) continue;
    probes.push(probe);
  }
  if (roles.has('signaling') || roles.has('control-plane') || roles.has('worker')) {
    probes.push({
      name: 'blob-storage',
      // A key that never exists: the answer (not found) proves the store answers.
      check: async () => {
        await ports.blobs.stat('health/probe');
      },
    });
  }
  return probes;
}

/** The edge's blob storage: an S3 store behind its circuit breaker; files need none. */
function edgeBlobs(config: Config, blobs: BlobStorage, log: Logger): BlobStorage {
  if (!config.S3_BUCKET) return blobs;
  const breaker = createBreaker({
    target: 's3',
    resetTimeoutMs: config.CIRCUIT_BREAKER_RESET_MS,
    log,
    isFailure: isBlobStoreFailure,
  });
  return new GuardedBlobStorage(blobs, breaker);
}

export type { DependencyMonitor };
