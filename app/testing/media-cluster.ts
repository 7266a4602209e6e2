/**
 * Test support for cascaded fan-out end to end: a control plane and an edge in cluster mode (in
 * this process, on the machine's PostgreSQL, Redis and NATS), media nodes as separate processes
 * (`node app/main.ts`, VEZA_ROLES=media) each on its own address, and clients on the client
 * library over @roamhq/wrtc. It watches the nodes' own heartbeats on the bus, so a test waits on
 * where the listeners and pipes really are, not on time.
 *
 * Each media process logs into the run's temporary folder; KEEP_CASCADE=1 keeps it after the run
 * (TEST_LOG_LEVEL sets their level).
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { MediaNodeHeartbeat } from '../../common/contracts/index.js';
import { createLogger, loadConfig } from '../../common/index.js';
import { type EventBus, NatsEventBus } from '../../common/ports/index.js';
import {
  clusterServices,
  clusterTestEnv,
  createTestDatabase,
  type TestDatabase,
} from '../../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../../control-plane/client/index.js';
import { Broadcaster, Listener, SignalingConnection } from '../../signaling/client/index.js';
import {
  type AudioTap,
  installWrtcGlobals,
  listenerTap,
  NODE_HANDLER_NAME,
  nodeWebSocket,
  type SineSource,
  sineSource,
} from '../../signaling/client/testing/index.js';
import { type Platform, startPlatform } from '../platform.js';
import { signUpAndIn, type TestAccount } from './accounts.js';
import {
  type MediaHeartbeats,
  type MediaProcess,
  startMediaProcess,
  watchMediaHeartbeats,
} from './media-processes.js';

const SERVICE_KEY = 'media-cluster-test-service-key-0123456789';

export interface StartMediaProcessOptions {
  /** Where it listens and what it announces to listeners (MEDIA_LISTEN_IP, MEDIA_ANNOUNCED_ADDRESS). */
  ip: string;
  /** More of its environment (over the cluster's shared one). */
  env?: Record<string, string>;
  /**
   * How to start it (default: a child process of this one); it must start the command in a
   * process group of its own (`detached`), e.g. NetnsLab.spawn for a node in a namespace.
   */
  spawn?: (command: string, args: string[], options: SpawnOptions) => ChildProcess;
}

export interface Fan {
  connection: SignalingConnection;
  listener: Listener;
  tap: AudioTap;
  /** Consumers the listener has created so far: 1 while it never had to consume again. */
  consumes(): number;
}

export interface MediaCluster {
  /** The environment every process of the cluster shares (cluster mode, namespace, services). */
  readonly shared: Record<string, string>;
  readonly cluster: string;
  readonly client: ControlPlaneClient;
  readonly db: TestDatabase;
  /** The latest heartbeat of each media node of this run. */
  readonly heartbeats: ReadonlyMap<string, MediaNodeHeartbeat>;
  /** Resolves once the nodes' heartbeats satisfy `check` (a condition, not a sleep). */
  untilHeartbeats(what: string, check: () => boolean, timeoutMs?: number): Promise<void>;
  /** The node's entry for the stream in its latest heartbeat. */
  carried(nodeId: string, streamId: number): MediaNodeHeartbeat['streams'][number] | undefined;
  /** A media node as its own process; resolves once it announces itself. */
  startMediaProcess(name: string, options: StartMediaProcessOptions): Promise<MediaProcess>;
  createUser(): Promise<TestAccount>;
  /** Starts a stream as `owner`; the control plane places it on a media node. */
  startStream(owner: TestAccount): Promise<{ streamId: number; mediaNodeId: string }>;
  /** The broadcaster, sending a 440 Hz sine. */
  goLive(
    owner: TestAccount,
    streamId: number,
  ): Promise<{ connection: SignalingConnection; broadcaster: Broadcaster; source: SineSource }>;
  listen(fan: TestAccount, streamId: number): Promise<Fan>;
  close(): Promise<void>;
}

/**
 * Starts the cluster's control plane and edge (`env` adds to their environment and the media
 * processes', e.g. PRESENCE_HEARTBEAT_MS, MEDIA_RELAY_FANOUT). `label` names its namespace.
 */
export async function startMediaCluster(
  label: string,
  env: Record<string, string> = {},
): Promise<MediaCluster> {
  installWrtcGlobals();
  const WebSocket = nodeWebSocket();
  const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: `${label}-test` });
  const run = randomBytes(3).toString('hex');
  const cluster = `${label}${run}`;
  const cleanups: Array<() => unknown> = [];
  let heartbeats: MediaHeartbeats | undefined;
  const db = await createTestDatabase('cluster');
  const dataDir = await mkdtemp(path.join(tmpdir(), `veza-${label}-`));
  let control: Platform | undefined;
  let edge: Platform | undefined;
  let client: ControlPlaneClient | undefined;
  let bus: EventBus | undefined;

  const close = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await edge?.close();
    client?.close();
    await control?.close();
    heartbeats?.close();
    await bus?.close();
    await db.drop();
    if (!process.env.KEEP_CASCADE) await rm(dataDir, { recursive: true, force: true });
  };

  try {
    // Streams and users far apart between runs: their ids name NATS subjects and media peers.
    for (const sequence of ['users_id_seq', 'streams_id_seq', 'chat_rooms_id_seq']) {
      await db.sql`select setval(${sequence}, ${randomInt(1_000_000, 2 ** 40)})`;
    }
    const shared: Record<string, string> = {
      ...clusterTestEnv(label, db.url, SERVICE_KEY),
      MEDIA_CLUSTER: cluster,
      ...env,
    };
    bus = await NatsEventBus.connect(clusterServices.natsUrl, { log, namespace: shared.VEZA_NAMESPACE });
    const watched = watchMediaHeartbeats(bus, cluster);
    heartbeats = watched;
    await watched.ready;
    control = await startPlatform(loadConfig({ ...shared, VEZA_ROLES: 'control-plane' }), log);
    const controlPlane = createControlPlaneClient({
      address: `127.0.0.1:${control.grpcPort}`,
      apiKey: SERVICE_KEY,
      log,
    });
    client = controlPlane;
    edge = await startPlatform(
      loadConfig({
        ...shared,
        VEZA_ROLES: 'signaling',
        VEZA_NODE_ID: `${label}-edge-${run}`,
        CONTROL_PLANE_ADDRESS: `127.0.0.1:${control.grpcPort}`,
      }),
      log,
    );
    const wsUrl = `ws://127.0.0.1:${edge.httpPort}/ws`;

    return {
      shared,
      cluster,
      client: controlPlane,
      db,
      heartbeats: watched.latest,
      untilHeartbeats: (what, check, timeoutMs) => watched.until(what, check, timeoutMs),
      carried: (nodeId, streamId) => watched.carried(nodeId, streamId),

      async startMediaProcess(name, options) {
        const node = await startMediaProcess({
          name,
          nodeId: `${label}-${name}-${run}`,
          ip: options.ip,
          env: shared,
          dataDir,
          heartbeats: watched,
          maxListeners: 1,
          logLevel: process.env.TEST_LOG_LEVEL ?? 'warn',
          overrides: options.env,
          spawn: options.spawn,
        });
        cleanups.push(() => node.kill());
        return node;
      },

      createUser: () => signUpAndIn(controlPlane, label),

      async startStream(owner) {
        const started = await controlPlane.stream.startStream(
          { title: label, description: '', genre: '', isPublic: true, allowAnonymous: false },
          { token: owner.token },
        );
        return { streamId: started.stream?.streamId ?? 0, mediaNodeId: started.stream?.mediaNodeId ?? '' };
      },

      async goLive(owner, streamId) {
        const source = sineSource();
        cleanups.push(() => source.stop());
        const connection = new SignalingConnection({ url: wsUrl, token: owner.token, WebSocket });
        cleanups.push(() => connection.close());
        await connection.connect();
        const broadcaster = new Broadcaster({ connection, handlerName: NODE_HANDLER_NAME });
        await broadcaster.publish(streamId, source.track);
        return { connection, broadcaster, source };
      },

      async listen(fan, streamId) {
        const connection = new SignalingConnection({ url: wsUrl, token: fan.token, WebSocket });
        cleanups.push(() => connection.close());
        await connection.connect();
        const listener = new Listener({ connection, handlerName: NODE_HANDLER_NAME });
        let consumes = 0;
        listener.on('track', () => consumes++);
        const tap = listenerTap(listener, await listener.listen(streamId));
        cleanups.push(() => tap.stop());
        return { connection, listener, tap, consumes: () => consumes };
      },

      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
