/**
 * Test support for the chat, moderation and notification tests (imported by *.test.ts only):
 * a real control plane on port 0 with chat options the shared harness does not take, signed-in
 * users with roles, and promise versions of the rpcs.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { credentials, type Metadata } from '@grpc/grpc-js';
import type { Sql } from '../../common/db/index.js';
import type { UserRole } from '../../common/index.js';
import { createPorts, type Ports } from '../../common/ports/index.js';
import { createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import { AuthServiceClient } from '../../proto/gen/veza/auth/auth.js';
import {
  BanUserRequest,
  type ChatMessage,
  ChatServiceClient,
  CreateRoomRequest,
  type DeepPartial,
  DeleteMessageRequest,
  EditMessageRequest,
  EndStreamRequest,
  GetMessagesRequest,
  JoinRoomRequest,
  LeaveRoomRequest,
  ListModerationQueueRequest,
  type Message,
  MuteUserRequest,
  ReportContentRequest,
  ResolveReportRequest,
  type RoomActivity,
  SendMessageRequest,
  SendRoomActivityRequest,
  UnbanUserRequest,
  UnmuteUserRequest,
} from '../../proto/gen/veza/chat/chat.js';
import {
  FollowRequest,
  GetNotificationsRequest,
  ListFollowingRequest,
  MarkAsReadRequest,
  type Notification,
  NotificationServiceClient,
  SendNotificationRequest,
  UnfollowRequest,
} from '../../proto/gen/veza/notification/notification.js';
import { StartStreamRequest, StreamServiceClient } from '../../proto/gen/veza/stream/stream.js';
import { type ControlPlane, setUserRole, startControlPlane } from '../index.js';
import {
  authCalls,
  bearer,
  captureLogs,
  type LogCapture,
  metadata,
  STRONG_PASSWORD,
  StreamReader,
  testConfig,
  unary,
} from '../test-harness.js';
import type { ChatModuleOptions } from './module.js';

export interface TestUser {
  userId: number;
  username: string;
  email: string;
  token: string;
  md: Metadata;
}

export interface ChatHarness {
  sql: Sql;
  db: TestDatabase;
  ports: Ports;
  controlPlane: ControlPlane;
  address: string;
  apiKey: string;
  logs: LogCapture;
  chat: ChatServiceClient;
  notifications: NotificationServiceClient;
  streams: StreamServiceClient;
  /** Registers and signs in a user; extra roles are granted before signing in. */
  user(name: string, roles?: readonly UserRole[]): Promise<TestUser>;
  /** The API key metadata of the edge (a service caller). */
  service(): Metadata;
  close(): Promise<void>;
}

export interface ChatHarnessOptions {
  chat?: ChatModuleOptions;
  env?: Record<string, string>;
  /** Shares a database between two control planes (the cluster test). */
  db?: TestDatabase;
}

export async function startChatHarness(options: ChatHarnessOptions = {}): Promise<ChatHarness> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'veza-chat-'));
  const config = testConfig(dataDir, options.env);
  const ownDb = !options.db;
  const db = options.db ?? (await createTestDatabase('embedded'));
  const logs = captureLogs();
  const ports = await createPorts(config, { sql: db.sql, log: logs.log });
  const apiKey = randomBytes(24).toString('base64url');
  const controlPlane = await startControlPlane({
    config,
    sql: db.sql,
    ports,
    log: logs.log,
    apiKey,
    chat: options.chat,
  });
  const address = `127.0.0.1:${controlPlane.port}`;
  const insecure = credentials.createInsecure();
  const auth = new AuthServiceClient(address, insecure);
  const chat = new ChatServiceClient(address, insecure);
  const notifications = new NotificationServiceClient(address, insecure);
  const streams = new StreamServiceClient(address, insecure);
  const authApi = authCalls(auth);
  return {
    sql: db.sql,
    db,
    ports,
    controlPlane,
    address,
    apiKey,
    logs,
    chat,
    notifications,
    streams,
    async user(name, roles = []) {
      const suffix = randomBytes(3).toString('hex');
      const username = `${name}_${suffix}`;
      const email = `${username}@veza.test`;
      await authApi.register({ email, username, password: STRONG_PASSWORD });
      for (const role of roles) {
        await setUserRole({ sql: db.sql }, { email, role, granted: true, actor: 'test' });
      }
      const login = await authApi.authenticate({ email, password: STRONG_PASSWORD });
      const userId = login.userInfo?.userId ?? 0;
      return { userId, username, email, token: login.accessToken, md: bearer(login.accessToken) };
    },
    service: () => metadata({ 'x-api-key': apiKey }),
    async close() {
      for (const client of [auth, chat, notifications, streams]) client.close();
      await controlPlane.close();
      await ports.close();
      if (ownDb) await db.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Promise versions of the ChatService rpcs, as `md`'s caller. */
export function chatCalls(client: ChatServiceClient, md: Metadata) {
  return {
    send: (request: DeepPartial<SendMessageRequest>) =>
      unary(client.sendMessage.bind(client), SendMessageRequest.fromPartial(request), md),
    history: (request: DeepPartial<GetMessagesRequest>) =>
      unary(client.getMessages.bind(client), GetMessagesRequest.fromPartial(request), md),
    createRoom: (request: DeepPartial<CreateRoomRequest>) =>
      unary(client.createRoom.bind(client), CreateRoomRequest.fromPartial(request), md),
    join: (roomId: number) =>
      unary(client.joinRoom.bind(client), JoinRoomRequest.fromPartial({ roomId }), md),
    leave: (roomId: number) =>
      unary(client.leaveRoom.bind(client), LeaveRoomRequest.fromPartial({ roomId }), md),
    edit: (messageId: number, content: string) =>
      unary(client.editMessage.bind(client), EditMessageRequest.fromPartial({ messageId, content }), md),
    remove: (messageId: number, reason = '') =>
      unary(client.deleteMessage.bind(client), DeleteMessageRequest.fromPartial({ messageId, reason }), md),
    activity: (roomId: number, activityType: string) =>
      unary(
        client.sendRoomActivity.bind(client),
        SendRoomActivityRequest.fromPartial({ roomId, activityType }),
        md,
      ),
    report: (request: DeepPartial<ReportContentRequest>) =>
      unary(client.reportContent.bind(client), ReportContentRequest.fromPartial(request), md),
    mute: (request: DeepPartial<MuteUserRequest>) =>
      unary(client.muteUser.bind(client), MuteUserRequest.fromPartial(request), md),
    unmute: (roomId: number, userId: number) =>
      unary(client.unmuteUser.bind(client), UnmuteUserRequest.fromPartial({ roomId, userId }), md),
    ban: (request: DeepPartial<BanUserRequest>) =>
      unary(client.banUser.bind(client), BanUserRequest.fromPartial(request), md),
    unban: (roomId: number, userId: number) =>
      unary(client.unbanUser.bind(client), UnbanUserRequest.fromPartial({ roomId, userId }), md),
    endStream: (streamId: number, reason = '') =>
      unary(client.endStream.bind(client), EndStreamRequest.fromPartial({ streamId, reason }), md),
    queue: (request: DeepPartial<ListModerationQueueRequest> = {}) =>
      unary(client.listModerationQueue.bind(client), ListModerationQueueRequest.fromPartial(request), md),
    resolve: (request: DeepPartial<ResolveReportRequest>) =>
      unary(client.resolveReport.bind(client), ResolveReportRequest.fromPartial(request), md),
    streamMessages: (roomId: number, lastMessageId = 0) =>
      new StreamReader<Message>(client.streamMessages({ roomId, lastMessageId }, md)),
    streamActivity: (roomId: number) =>
      new StreamReader<RoomActivity>(client.streamRoomActivity({ roomId }, md)),
  };
}

/** Promise versions of the NotificationService rpcs, as `md`'s caller. */
export function notificationCalls(client: NotificationServiceClient, md: Metadata) {
  return {
    send: (request: DeepPartial<SendNotificationRequest>) =>
      unary(client.sendNotification.bind(client), SendNotificationRequest.fromPartial(request), md),
    list: (request: DeepPartial<GetNotificationsRequest> = {}) =>
      unary(client.getNotifications.bind(client), GetNotificationsRequest.fromPartial(request), md),
    markRead: (request: DeepPartial<MarkAsReadRequest>) =>
      unary(client.markAsRead.bind(client), MarkAsReadRequest.fromPartial(request), md),
    follow: (broadcasterId: number) =>
      unary(client.follow.bind(client), FollowRequest.fromPartial({ broadcasterId }), md),
    unfollow: (broadcasterId: number) =>
      unary(client.unfollow.bind(client), UnfollowRequest.fromPartial({ broadcasterId }), md),
    following: () => unary(client.listFollowing.bind(client), ListFollowingRequest.fromPartial({}), md),
    stream: (afterNotificationId = 0) =>
      new StreamReader<Notification>(client.streamNotifications({ afterNotificationId }, md)),
  };
}

export function startStream(client: StreamServiceClient, md: Metadata, title = 'Test stream') {
  return unary(
    client.startStream.bind(client),
    StartStreamRequest.fromPartial({ title, isPublic: true }),
    md,
  );
}

/** A ChatStream (bidi) as a reader of its outgoing messages plus a send function. */
export function chatStream(client: ChatServiceClient, md: Metadata) {
  const call = client.chatStream(md);
  const reader = new StreamReader<ChatMessage>(call);
  return {
    reader,
    send: (message: DeepPartial<ChatMessage>) => call.write(messageOf(message)),
    end: () => call.end(),
    cancel: () => call.cancel(),
  };
}

function messageOf(partial: DeepPartial<ChatMessage>): ChatMessage {
  return {
    messageId: 0,
    roomId: 0,
    userId: 0,
    content: '',
    messageType: '',
    metadata: Buffer.alloc(0),
    replyToId: 0,
    createdAt: undefined,
    updatedAt: undefined,
    clientMessageId: '',
    username: '',
    deleted: false,
    ...(partial as object),
  };
}

/** The StreamReader waits for a count; this waits for a condition on what arrived. */
export async function waitUntil<T>(
  reader: StreamReader<T>,
  test: (messages: readonly T[]) => boolean,
): Promise<T[]> {
  let count = 1;
  for (;;) {
    await reader.waitFor(count);
    if (test(reader.messages)) return [...reader.messages];
    count = reader.messages.length + 1;
  }
}
