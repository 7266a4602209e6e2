/**
 * Test support (imported by *.test.ts only): the real platform for chat over the WebSocket,
 * in-process on ephemeral ports (a migrated PostgreSQL database, the standalone ports, the
 * control plane over gRPC, a media node and the edge with `/ws`), plus users with roles and
 * client-library connections in Node.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Config, loadConfig, type UserRole } from '../../../common/config.js';
import type { Sql } from '../../../common/db/client.js';
import { createLogger, type Logger } from '../../../common/log.js';
import { createPorts, type Ports } from '../../../common/ports/index.js';
import { createTestDatabase } from '../../../common/testing/databases.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../../../control-plane/client/index.js';
import { setUserRole, startControlPlane } from '../../../control-plane/index.js';
import { startMediaNode } from '../../../media-server/index.js';
import { ChatClient, SignalingConnection } from '../../client/index.js';
import { nodeWebSocket } from '../../client/testing/node.js';
import { type Edge, startEdge } from '../../index.js';
import { directMediaGateway } from '../media-gateway.js';
import { type SignalingLimits, signalingExtension } from '../server.js';

export interface ChatTestUser {
  userId: number;
  email: string;
  username: string;
  token: string;
}

export interface Connected {
  connection: SignalingConnection;
  chat: ChatClient;
}

export interface ChatStack {
  config: Config;
  log: Logger;
  sql: Sql;
  ports: Ports;
  /** The control plane's gRPC client, as the edge uses it (pass `{ token }` to act for a user). */
  client: ControlPlaneClient;
  edge: Edge;
  /** `ws://127.0.0.1:<port>/ws` (no query). */
  wsUrl: string;
  createUser(roles?: readonly UserRole[]): Promise<ChatTestUser>;
  /** A live public stream of `owner` (which gets the broadcaster role); returns its id and chat room. */
  startStream(owner: ChatTestUser): Promise<{ streamId: number; roomId: number }>;
  /** A client-library connection and ChatClient for `user`, closed with the stack. */
  connect(user: ChatTestUser | string, options?: { token?: () => Promise<string> }): Promise<Connected>;
  close(): Promise<void>;
}

export async function startChatStack(
  options: { limits?: Partial<SignalingLimits>; env?: Record<string, string> } = {},
): Promise<ChatStack> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'veza-chat-'));
  const config = loadConfig({
    VEZA_DATA_DIR: dataDir,
    VEZA_NODE_ID: `edge-${randomBytes(4).toString('hex')}`,
    LOG_LEVEL: 'silent',
    GRPC_HOST: '127.0.0.1',
    GRPC_PORT: '0',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    MEDIA_WORKERS: '1',
    MEDIA_LISTEN_IP: '127.0.0.1',
    LOGIN_LIMIT_PER_IP: '1000',
    REGISTER_LIMIT_PER_IP: '1000',
    ...options.env,
  });
  const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: 'chat-test' });
  const closers: Array<() => Promise<void> | void> = [() => rm(dataDir, { recursive: true, force: true })];
  const close = async () => {
    for (const closer of closers.splice(0).reverse()) {
      try {
        await closer();
      } catch (error) {
        log.error({ err: error }, 'chat test stack close failed');
      }
    }
  };
  try {
    const db = await createTestDatabase('embedded');
    closers.push(() => db.drop());
    const ports = await createPorts(config, { sql: db.sql, log });
    closers.push(() => ports.close());
    const apiKey = randomBytes(24).toString('base64url');
    const controlPlane = await startControlPlane({ config, sql: db.sql, ports, log, apiKey });
    closers.push(() => controlPlane.close());
    const media = await startMediaNode({ config, log });
    closers.push(() => media.close());
    const client = createControlPlaneClient({ address: `127.0.0.1:${controlPlane.port}`, apiKey, log });
    closers.push(() => client.close());
    const edge = await startEdge({
      config,
      log,
      controlPlane: client,
      blobs: ports.blobs,
      extensions: [
        signalingExtension({
          bus: ports.bus,
          media: directMediaGateway(media),
          ...(options.limits ? { limits: options.limits } : {}),
        }),
      ],
      shutdownGraceMs: 1000,
    });
    closers.push(() => edge.close());
    const wsUrl = `ws://127.0.0.1:${edge.port}/ws`;
    return {
      config,
      log,
      sql: db.sql,
      ports,
      client,
      edge,
      wsUrl,
      createUser: (roles = []) => createChatUser(client, db.sql, roles),
      startStream: (owner) => startChatStream(client, owner),
      async connect(user, connectOptions = {}) {
        const connected = await connectChat(
          wsUrl,
          typeof user === 'string' ? user : user.token,
          connectOptions,
        );
        closers.push(() => {
          connected.chat.close();
          connected.connection.close();
        });
        return connected;
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Registers a user, grants `roles` (before signing in, so the token carries them) and signs in. */
export async function createChatUser(
  client: ControlPlaneClient,
  sql: Sql,
  roles: readonly UserRole[] = [],
): Promise<ChatTestUser> {
  const suffix = randomUUID().slice(0, 8);
  const email = `chat-${suffix}@veza.test`;
  const username = `chat_${suffix}`;
  const password = 'Correct-Horse-42';
  await client.auth.register({ email, password, username, firstName: 'Chat', lastName: 'User' });
  for (const role of roles) await setUserRole({ sql }, { email, role, granted: true, actor: 'test' });
  const session = await client.auth.authenticate({
    email,
    password,
    deviceId: 'test',
    ipAddress: '127.0.0.1',
  });
  return { userId: session.userInfo?.userId ?? 0, email, username, token: session.accessToken };
}

export async function startChatStream(
  client: ControlPlaneClient,
  owner: ChatTestUser,
): Promise<{ streamId: number; roomId: number }> {
  const response = await client.stream.startStream(
    { title: 'Chat test stream', description: '', genre: '', isPublic: true, allowAnonymous: true },
    { token: owner.token },
  );
  const stream = response.stream;
  if (!stream?.streamId || !stream.chatRoomId) throw new Error('StartStream returned no stream or chat room');
  return { streamId: stream.streamId, roomId: stream.chatRoomId };
}

export async function connectChat(
  wsUrl: string,
  token: string,
  options: { token?: () => Promise<string> } = {},
): Promise<Connected> {
  const connection = new SignalingConnection({
    url: wsUrl,
    token: options.token ?? token,
    WebSocket: nodeWebSocket(),
    reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
  });
  await connection.connect();
  const chat = new ChatClient({ connection, token });
  return { connection, chat };
}
