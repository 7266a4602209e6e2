/**
 * Test support (imported by *.test.ts only): the real thing, in-process, on ephemeral
 * ports: a migrated PostgreSQL database, the standalone ports, the control plane over
 * gRPC, a media node with real mediasoup workers, and the edge with `/ws` wired in.
 * Users are made through the control plane's own rpcs.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Sql } from '../../common/db/index.js';
import { type Config, createLogger, type Logger, loadConfig, type UserRole } from '../../common/index.js';
import { createPorts, type Ports } from '../../common/ports/index.js';
import { createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../../control-plane/client/index.js';
import { type ControlPlane, startControlPlane } from '../../control-plane/index.js';
import { type MediaNode, serveMediaNodeOverBus, startMediaNode } from '../../media-server/index.js';
import {
  busMediaGateway,
  directMediaGateway,
  type Edge,
  type MediaGateway,
  routerCapabilitiesProvider,
  type SignalingLimits,
  startEdge,
} from '../../signaling/index.js';
import { signUpAndIn, TEST_PASSWORD, type TestAccount } from './accounts.js';

export type TestUser = TestAccount;

/** One login session of a user: its current access token, and a provider that refreshes it. */
export interface TestLogin {
  /** The newest access token of the session. */
  readonly token: string;
  /** Rotates the session's refresh token and returns the new access token (a client's token provider). */
  fresh(): Promise<string>;
}

/** Another edge of the stack: its own HTTP port and hub, the stack's control plane, bus and media node. */
export interface TestEdge {
  edge: Edge;
  /** `http://127.0.0.1:<port>` of this edge. */
  baseUrl: string;
  /** `ws://127.0.0.1:<port>/ws` (no query). */
  wsUrl: string;
}

export interface EdgeOptions {
  /** Names the edge in peer ids and bus messages (default: a new one, as a restarted process gets). */
  edgeId?: string;
  /** The edge's control-plane client (default the stack's). */
  controlPlane?: ControlPlaneClient;
  log?: Logger;
}

export interface SignalingStack {
  config: Config;
  log: Logger;
  /** The stack's migrated test database. */
  sql: Sql;
  ports: Ports;
  controlPlane: ControlPlane;
  client: ControlPlaneClient;
  media: MediaNode;
  gateway: MediaGateway;
  edge: Edge;
  /** `http://127.0.0.1:<port>` of the edge. */
  baseUrl: string;
  /** `ws://127.0.0.1:<port>/ws` (no query). */
  wsUrl: string;
  /** A new account with `roles` on top of the default ones, signed in. */
  createUser(roles?: readonly UserRole[]): Promise<TestUser>;
  /** A new login session of `user` (own refresh-token family, revocable on its own). */
  signIn(user: TestUser): Promise<TestLogin>;
  startStream(owner: TestUser, options?: { isPublic?: boolean; allowAnonymous?: boolean }): Promise<number>;
  stopStream(owner: TestUser, streamId: number): Promise<void>;
  /**
   * Starts one more edge against the same control plane, bus and media node (a second edge
   * of a cluster, or the edge restarted after `edge.close()`); the stack closes it.
   */
  startEdge(options?: EdgeOptions): Promise<TestEdge>;
  close(): Promise<void>;
}

export interface StackOptions {
  env?: Record<string, string>;
  limits?: Partial<SignalingLimits>;
  /** How the edge reaches the media node: in-process, or through the event bus as in cluster mode. */
  gateway?: 'direct' | 'bus';
}

export async function startSignalingStack(options: StackOptions = {}): Promise<SignalingStack> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'veza-signaling-'));
  const config = loadConfig({
    VEZA_DATA_DIR: dataDir,
    VEZA_NODE_ID: `edge-${randomBytes(4).toString('hex')}`,
    LOG_LEVEL: 'silent',
    GRPC_HOST: '127.0.0.1',
    GRPC_PORT: '0',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    MEDIA_WORKERS: '1',
    // Node peers (wrtc) reach loopback; browsers would need the announced LAN address.
    MEDIA_LISTEN_IP: '127.0.0.1',
    // Long enough for a reconnect under a loaded CI machine, short enough to wait for in a test.
    STREAM_GRACE_S: '2',
    LOGIN_LIMIT_PER_IP: '1000',
    REGISTER_LIMIT_PER_IP: '1000',
    ...options.env,
  });
  const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: 'signaling-test' });
  const closers: Array<() => Promise<void>> = [async () => rm(dataDir, { recursive: true, force: true })];
  const close = async () => {
    for (const closer of closers.reverse()) {
      try {
        await closer();
      } catch (error) {
        log.error({ err: error }, 'test stack close failed');
      }
    }
  };
  try {
    const db: TestDatabase = await createTestDatabase('embedded');
    closers.push(() => db.drop());
    const ports = await createPorts(config, { sql: db.sql, log });
    closers.push(() => ports.close());
    const apiKey = randomBytes(24).toString('base64url');
    const controlPlane = await startControlPlane({ config, sql: db.sql, ports, log, apiKey });
    closers.push(() => controlPlane.close());
    const media = await startMediaNode({ config, log });
    closers.push(() => media.close());
    const client = createControlPlaneClient({ address: `127.0.0.1:${controlPlane.port}`, apiKey, log });
    closers.push(async () => client.close());
    let gateway: MediaGateway;
    if (options.gateway === 'bus') {
      const served = serveMediaNodeOverBus(ports.bus, media, config.nodeId, log);
      closers.push(async () => served.close());
      const bus = busMediaGateway({ bus: ports.bus, log });
      closers.push(() => bus.close());
      await Promise.all([served.ready, bus.ready]);
      gateway = bus;
    } else {
      gateway = directMediaGateway(media);
    }
    const launchEdge = async (edgeOptions: EdgeOptions = {}): Promise<TestEdge> => {
      const edge = await startEdge({
        config,
        log: edgeOptions.log ?? log,
        controlPlane: edgeOptions.controlPlane ?? client,
        blobs: ports.blobs,
        routerRtpCapabilities: routerCapabilitiesProvider(gateway),
        signaling: {
          bus: ports.bus,
          media: gateway,
          listenerNotifyMs: 50,
          listenerReportMs: 100,
          ...(options.limits ? { limits: options.limits } : {}),
          ...(edgeOptions.edgeId ? { edgeId: edgeOptions.edgeId } : {}),
        },
        shutdownGraceMs: 1000,
      });
      closers.push(() => edge.close());
      return { edge, baseUrl: `http://127.0.0.1:${edge.port}`, wsUrl: `ws://127.0.0.1:${edge.port}/ws` };
    };
    // The first edge is named by config.nodeId, as in a real process.
    const { edge } = await launchEdge({ edgeId: config.nodeId });

    const signIn = async (user: TestUser): Promise<TestLogin> => {
      const session = await client.auth.authenticate({
        email: user.email,
        password: TEST_PASSWORD,
        deviceId: 'test',
        ipAddress: '127.0.0.1',
      });
      let token = session.accessToken;
      let refreshToken = session.refreshToken;
      // One rotation at a time: a refresh token used twice revokes its session (reuse detection).
      let rotating: Promise<string> | null = null;
      const rotate = async () => {
        const rotated = await client.auth.refreshToken({
          refreshToken,
          deviceId: 'test',
          ipAddress: '127.0.0.1',
        });
        token = rotated.accessToken;
        refreshToken = rotated.refreshToken;
        return token;
      };
      return {
        get token() {
          return token;
        },
        fresh() {
          rotating ??= rotate().finally(() => {
            rotating = null;
          });
          return rotating;
        },
      };
    };

    return {
      config,
      log,
      sql: db.sql,
      ports,
      controlPlane,
      client,
      media,
      gateway,
      edge,
      baseUrl: `http://127.0.0.1:${edge.port}`,
      wsUrl: `ws://127.0.0.1:${edge.port}/ws`,
      createUser: (roles = []) => signUpAndIn(client, 'user', { roles, sql: db.sql }),
      signIn,
      async startStream(owner, stream = {}) {
        const response = await client.stream.startStream(
          {
            title: 'Test stream',
            description: '',
            genre: '',
            isPublic: stream.isPublic ?? true,
            allowAnonymous: stream.allowAnonymous ?? false,
          },
          { token: owner.token },
        );
        const id = response.stream?.streamId;
        if (!id) throw new Error('StartStream returned no stream');
        return id;
      },
      async stopStream(owner, streamId) {
        await client.stream.stopStream({ streamId, reason: '' }, { token: owner.token });
      },
      startEdge: (edgeOptions = {}) =>
        launchEdge({
          ...edgeOptions,
          edgeId: edgeOptions.edgeId ?? `edge-${randomBytes(4).toString('hex')}`,
        }),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
