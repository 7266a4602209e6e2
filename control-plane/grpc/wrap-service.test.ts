/**
 * The call wrapper with handlers of all four shapes on a real server (port 0), real
 * token verification (signing keys and sessions in PostgreSQL) and generated clients.
 */
import { randomBytes } from 'node:crypto';
import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../common/contracts/index.js';
import { metricsRegistry } from '../../common/index.js';
import { FsBlobStorage, MemoryEventBus, PgSessionStore } from '../../common/ports/index.js';
import { createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import {
  ChatMessage,
  ChatServiceClient,
  ChatServiceService,
  Message,
  RoomActivity,
  SendMessageRequest,
} from '../../proto/gen/veza/chat/chat.js';
import {
  AudioChunk,
  StreamServiceClient,
  StreamServiceService,
  UploadAudioResponse,
} from '../../proto/gen/veza/stream/stream.js';
import {
  createUser,
  keyEncryptionKey,
  loadSigningKeys,
  openSession,
  startTokenCaching,
  type TokenCaching,
} from '../auth/index.js';
import { captureLogs, grpcError, metadata, StreamReader, unary } from '../test-harness.js';
import { bindService, type RunningGrpcServer, startGrpcServer } from './index.js';
import { peerIpOf } from './wrap-service.js';

const API_KEY = 'service-key-for-the-wrapper-test';

let db: TestDatabase;
let server: RunningGrpcServer;
let caching: TokenCaching;
let chat: ChatServiceClient;
let streams: StreamServiceClient;
let userToken: string;
let userId: number;
const logs = captureLogs();
/** Resolved when the long-lived stream handler sees its signal abort (client cancel). */
let activityAborted: Promise<void>;
let markActivityAborted: () => void;

beforeAll(async () => {
  db = await createTestDatabase('embedded');
  const keys = await loadSigningKeys(db.sql, logs.log, keyEncryptionKey(randomBytes(32), 'a test secret'));
  const sessions = new PgSessionStore(db.sql);
  const bus = new MemoryEventBus({ log: logs.log });
  caching = await startTokenCaching({
    sql: db.sql,
    sessions,
    keys,
    blobs: new FsBlobStorage({ root: '/nonexistent', baseUrl: 'http://127.0.0.1' }),
    bus,
    log: logs.log,
    nodeId: 'wrapper-test',
    intervalMs: 50,
  });
  const user = await createUser(db.sql, {
    email: 'wrapper@example.com',
    username: 'wrapper',
    passwordHash: 'not-used',
    roles: ['listener'],
  });
  userId = user.id;
  const opened = await openSession(
    {
      config: { ACCESS_TOKEN_TTL_S: 300, REFRESH_TOKEN_TTL_S: 3600 },
      sql: db.sql,
      sessions,
      bus,
      keys,
      log: logs.log,
      invalidations: caching.invalidations,
    },
    user,
    { deviceId: 'test', ipAddress: '127.0.0.1' },
  );
  userToken = opened.access.token;
  activityAborted = new Promise((resolve) => {
    markActivityAborted = resolve;
  });

  server = await startGrpcServer({
    host: '127.0.0.1',
    port: 0,
    log: logs.log,
    apiKeys: [API_KEY],
    verifyToken: caching.checks.verifier,
    services: [
      bindService(ChatServiceService, {
        sendMessage: {
          policy: 'jwt',
          handler: async (request, ctx) => ({
            success: true,
            message: ChatMessage.fromPartial({ content: request.content, userId: ctx.user?.userId ?? 0 }),
            errorMessage: `${ctx.peerIp}|${ctx.requestId}`,
          }),
        },
        getMessages: {
          policy: 'api-key',
          handler: async (request, ctx) => ({
            messages: [],
            hasMore: ctx.service,
            lastMessageId: request.roomId,
          }),
        },
        createRoom: {
          policy: 'public',
          handler: async () => {
            throw new Error('connect ECONNREFUSED postgres://admin:hunter2@db:5432');
          },
        },
        streamMessages: {
          policy: 'public',
          handler: async (request, stream) => {
            for (let i = 1; i <= 3; i++) {
              stream.write(
                Message.fromPartial({
                  eventType: 'created',
                  messageId: i,
                  roomId: request.roomId,
                }),
              );
            }
          },
        },
        streamRoomActivity: {
          policy: 'public',
          handler: async (request, stream, ctx) => {
            stream.write(RoomActivity.fromPartial({ roomId: request.roomId, activityType: 'joined' }));
            await new Promise<void>((resolve) =>
              ctx.signal.addEventListener('abort', () => resolve(), { once: true }),
            );
            markActivityAborted();
          },
        },
        chatStream: {
          policy: 'jwt-or-api-key',
          handler: async (requests, stream, ctx) => {
            for await (const message of requests) {
              stream.write({
                ...message,
                content: message.content.toUpperCase(),
                userId: ctx.user?.userId ?? -1,
              });
            }
          },
        },
      }),
      bindService(StreamServiceService, {
        uploadAudioChunks: {
          policy: 'api-key',
          handler: async (chunks) => {
            let bytes = 0;
            let count = 0;
            for await (const chunk of chunks) {
              bytes += chunk.audioData.length;
              count += 1;
            }
            return UploadAudioResponse.fromPartial({
              success: true,
              trackId: count,
              audioUrl: `bytes:${bytes}`,
            });
          },
        },
        streamAudio: {
          policy: 'public',
          handler: async (request, stream) => {
            stream.write(AudioChunk.fromPartial({ streamId: request.trackId, chunkIndex: 0 }));
            throw new NotFoundError(`track ${request.trackId} not found`);
          },
        },
        streamAnalytics: {
          policy: 'public',
          handler: async () => {
            throw new TypeError('cannot read properties of undefined (reading "secretField")');
          },
        },
      }),
    ],
  });
  chat = new ChatServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  streams = new StreamServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
});

afterAll(async () => {
  chat?.close();
  streams?.close();
  await server?.close();
  await caching?.close();
  await db?.drop();
});

const send = (md: Metadata) =>
  unary(chat.sendMessage.bind(chat), SendMessageRequest.fromPartial({ content: 'hello' }), md);

describe('unary calls', () => {
  it('gives a jwt handler the verified user, the peer ip and the request id', async () => {
    const md = metadata({ authorization: `Bearer ${userToken}`, 'x-request-id': 'wrapper-req-0001' });
    const response = await send(md);
    expect(response.message).toMatchObject({ content: 'hello', userId });
    expect(response.errorMessage).toBe('127.0.0.1|wrapper-req-0001');
  });

  it('enforces the api-key policy with the seed messages', async () => {
    const get = (md: Metadata) =>
      unary(chat.getMessages.bind(chat), { roomId: 7, limit: 0, beforeMessageId: 0, afterMessageId: 0 }, md);
    expect(await grpcError(get(new Metadata()))).toMatchObject({
      code: status.UNAUTHENTICATED,
      details: 'missing API key',
    });
    // A user token is not a service identity.
    expect(await grpcError(get(metadata({ authorization: `Bearer ${userToken}` })))).toMatchObject({
      details: 'missing API key',
    });
    expect(await grpcError(get(metadata({ 'x-api-key': `${API_KEY}x` })))).toMatchObject({
      details: 'invalid API key',
    });
    expect(await get(metadata({ 'x-api-key': API_KEY }))).toMatchObject({ hasMore: true, lastMessageId: 7 });
  });

  it('hides an unexpected error from the client and logs it with its stack', async () => {
    const error = await grpcError(
      unary(
        chat.createRoom.bind(chat),
        { name: 'x', description: '', isPrivate: false },
        metadata({ 'x-request-id': 'wrapper-req-boom' }),
      ),
    );
    expect(error).toMatchObject({ code: status.INTERNAL, details: 'internal server error' });
    expect(JSON.stringify(error.metadata.getMap())).not.toContain('hunter2');
    expect(error.metadata.get('x-request-id')).toEqual(['wrapper-req-boom']);
    const line = logs.lines.find(
      (entry) => entry.requestId === 'wrapper-req-boom' && entry.msg === 'grpc call failed',
    );
    expect(line).toMatchObject({ level: 50, code: 'INTERNAL', method: 'veza.chat.ChatService/CreateRoom' });
    expect((line?.err as { stack?: string } | undefined)?.stack).toContain('ECONNREFUSED');
  });
});

describe('streaming calls', () => {
  it('server streaming: delivers the messages, then OK', async () => {
    const reader = new StreamReader(chat.streamMessages({ roomId: 5, lastMessageId: 0 }));
    await reader.finished();
    expect(reader.error).toBeNull();
    expect(reader.messages.map((message) => message.messageId)).toEqual([1, 2, 3]);
    expect(reader.messages.every((message) => message.roomId === 5)).toBe(true);
  });

  it('server streaming: a thrown VezaError ends the stream with its status after what was sent', async () => {
    const reader = new StreamReader(streams.streamAudio({ trackId: 9, quality: 0, format: '' }));
    await reader.finished();
    expect(reader.messages).toHaveLength(1);
    expect(reader.error).toMatchObject({ code: status.NOT_FOUND, details: 'track 9 not found' });
  });

  it('server streaming: an unexpected error is INTERNAL without details', async () => {
    const reader = new StreamReader(streams.streamAnalytics({ streamId: 1, intervalSeconds: 1 }));
    await reader.finished();
    expect(reader.error).toMatchObject({ code: status.INTERNAL, details: 'internal server error' });
  });

  it('server streaming: a client cancel aborts the handler signal and counts as CANCELLED', async () => {
    const call = chat.streamRoomActivity({ roomId: 3 });
    const reader = new StreamReader(call);
    await reader.waitFor(1);
    call.cancel();
    await activityAborted;
    await reader.finished();
    expect(reader.error?.code).toBe(status.CANCELLED);
    const method = 'veza.chat.ChatService/StreamRoomActivity';
    await logs.waitForLine((line) => line.method === method && line.code === 'CANCELLED');
    const metric = await metricsRegistry().getSingleMetric('veza_grpc_requests_total')?.get();
    const counted = metric?.values.find(
      (value) => value.labels.method === method && value.labels.code === 'CANCELLED',
    );
    expect(counted?.value).toBe(1);
  });

  it('client streaming: reads every message, then answers once', async () => {
    const response = await new Promise<UploadAudioResponse>((resolve, reject) => {
      const call = streams.uploadAudioChunks(metadata({ 'x-api-key': API_KEY }), (error, value) =>
        error ? reject(error) : resolve(value),
      );
      for (const size of [10, 20, 30]) call.write(AudioChunk.fromPartial({ audioData: Buffer.alloc(size) }));
      call.end();
    });
    expect(response).toMatchObject({ success: true, trackId: 3, audioUrl: 'bytes:60' });
  });

  it('client streaming: the policy applies before any message is read', async () => {
    const error = await new Promise<ServiceError>((resolve) => {
      const call = streams.uploadAudioChunks((failure) => failure && resolve(failure));
      call.write(AudioChunk.fromPartial({ audioData: Buffer.alloc(5) }));
      call.end();
    });
    expect(error).toMatchObject({ code: status.UNAUTHENTICATED, details: 'missing API key' });
  });

  it('bidi streaming: answers each message with the caller identity, and OK when the client ends', async () => {
    const call = chat.chatStream(metadata({ authorization: `Bearer ${userToken}` }));
    const reader = new StreamReader(call);
    call.write(ChatMessage.fromPartial({ content: 'one' }));
    expect((await reader.waitFor(1))[0]).toMatchObject({ content: 'ONE', userId });
    call.write(ChatMessage.fromPartial({ content: 'two' }));
    expect((await reader.waitFor(2))[1]?.content).toBe('TWO');
    call.end();
    await reader.finished();
    expect(reader.error).toBeNull();
  });

  it('bidi streaming: a missing token fails the call with the seed message', async () => {
    const reader = new StreamReader(chat.chatStream());
    await reader.finished();
    expect(reader.error).toMatchObject({
      code: status.UNAUTHENTICATED,
      details: 'missing authorization header',
    });
  });
});

describe('peerIpOf', () => {
  it('strips the port and the IPv4-mapped prefix', () => {
    expect(peerIpOf('127.0.0.1:5000')).toBe('127.0.0.1');
    expect(peerIpOf('::1:5000')).toBe('::1');
    expect(peerIpOf('[2001:db8::1]:443')).toBe('2001:db8::1');
    expect(peerIpOf('::ffff:10.1.2.3:80')).toBe('10.1.2.3');
    expect(peerIpOf('ipv4:192.0.2.1:1234')).toBe('192.0.2.1');
  });
});
