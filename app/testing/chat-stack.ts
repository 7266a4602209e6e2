/**
 * Test support (imported by *.test.ts only): the signaling stack (./../test-stack.ts: the real
 * platform in-process on ephemeral ports) as chat tests use it, plus users with roles, streams
 * with a chat room and client-library ChatClient connections in Node.
 */

import type { Sql } from '../../common/db/index.js';
import type { Config, Logger, UserRole } from '../../common/index.js';
import type { Ports } from '../../common/ports/index.js';
import type { ControlPlaneClient } from '../../control-plane/client/index.js';
import { ChatClient, SignalingConnection } from '../../signaling/client/index.js';
import { nodeWebSocket } from '../../signaling/client/testing/index.js';
import type { Edge, SignalingLimits } from '../../signaling/index.js';
import { startSignalingStack, type TestUser } from './signaling-stack.js';

export type ChatTestUser = TestUser;

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
  // Chat tests keep streams nobody broadcasts: the default grace period, not the media tests' 2 s.
  const stack = await startSignalingStack({
    env: { STREAM_GRACE_S: '30', ...options.env },
    ...(options.limits ? { limits: options.limits } : {}),
  });
  const connections: Connected[] = [];
  return {
    config: stack.config,
    log: stack.log,
    sql: stack.sql,
    ports: stack.ports,
    client: stack.client,
    edge: stack.edge,
    wsUrl: stack.wsUrl,
    createUser: (roles = []) => stack.createUser(roles),
    startStream: (owner) => startChatStream(stack.client, owner),
    async connect(user, connectOptions = {}) {
      const connected = await connectChat(
        stack.wsUrl,
        typeof user === 'string' ? user : user.token,
        connectOptions,
      );
      connections.push(connected);
      return connected;
    },
    async close() {
      for (const { chat, connection } of connections.splice(0)) {
        chat.close();
        connection.close();
      }
      await stack.close();
    },
  };
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
