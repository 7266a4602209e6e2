/**
 * Chat across two signaling processes in cluster mode, on the machine's PostgreSQL, Redis
 * and NATS: a control-plane process and two edge processes (startPlatform with
 * VEZA_ROLES=signaling each), one client on each edge in the same room.
 *
 * - Every acknowledged message, from either side, reaches every member on both nodes exactly
 *   once and in the room's order, on the wire (raw sockets) and in the client library.
 * - A client that drops and comes back receives what it missed, without duplicates, and a
 *   send it made while away is stored once.
 */
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Platform, startPlatform } from '../../../app/index.js';
import {
  type ChatTestUser,
  type Connected,
  connectChat,
  signUpAndIn,
  startChatStream,
} from '../../../app/testing/index.js';
import { createLogger, loadConfig } from '../../../common/index.js';
import { clusterTestEnv, createTestDatabase, type TestDatabase } from '../../../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../../../control-plane/client/index.js';
import type { ChatClient, ChatMessage } from '../../client/index.js';
import { PROTOCOL_VERSION } from '../../protocol/index.js';
import { RawClient } from '../test-clients.js';

type Frame = Record<string, unknown>;

const SERVICE_KEY = 'chat-cluster-test-service-key-0123456789';
const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: 'chat-cluster-test' });

let db: TestDatabase;
const platforms: Platform[] = [];
const connections: Connected[] = [];
let client: ControlPlaneClient;
let wsA: string;
let wsB: string;

function recorder(chat: ChatClient, roomId: number) {
  const created: number[] = [];
  chat.on('message', (message, info) => {
    if (info.roomId === roomId && info.eventType === 'created') created.push(message.messageId);
  });
  return created;
}

/** The message ids of the `chat.message` frames a raw socket got, in arrival order. */
function wireIds(socket: RawClient): number[] {
  return socket.frames
    .filter((frame) => frame.notification === 'chat.message' && (frame.data as Frame).eventType === 'created')
    .map((frame) => (frame.data as { message: ChatMessage }).message.messageId);
}

async function connect(url: string, user: ChatTestUser, token?: () => Promise<string>): Promise<Connected> {
  const connected = await connectChat(url, user.token, token ? { token } : {});
  connections.push(connected);
  return connected;
}

beforeAll(async () => {
  db = await createTestDatabase('cluster');
  // Ids nobody else uses: messages carry them, and the assertions should not depend on the
  // namespace alone.
  await db.sql`select setval('chat_rooms_id_seq', ${randomInt(1_000_000, 2 ** 40)})`;
  await db.sql`select setval('users_id_seq', ${randomInt(1_000_000, 2 ** 40)})`;
  const shared = clusterTestEnv('chat-ws', db.url, SERVICE_KEY);
  const control = await startPlatform(loadConfig({ ...shared, VEZA_ROLES: 'control-plane' }), log);
  platforms.push(control);
  // StartStream places every stream on a live media node in cluster mode.
  const media = await startPlatform(
    loadConfig({
      ...shared,
      VEZA_ROLES: 'media',
      VEZA_NODE_ID: `chat-media-${randomInt(1_000_000)}`,
      MEDIA_WORKERS: '1',
      MEDIA_LISTEN_IP: '127.0.0.1',
    }),
    log,
  );
  platforms.push(media);
  const address = `127.0.0.1:${control.grpcPort}`;
  for (const nodeId of ['edge-a', 'edge-b']) {
    const edge = await startPlatform(
      loadConfig({
        ...shared,
        VEZA_ROLES: 'signaling',
        VEZA_NODE_ID: `${nodeId}-${randomInt(1_000_000)}`,
        CONTROL_PLANE_ADDRESS: address,
      }),
      log,
    );
    platforms.push(edge);
  }
  wsA = `ws://127.0.0.1:${platforms[2]?.httpPort}/ws`;
  wsB = `ws://127.0.0.1:${platforms[3]?.httpPort}/ws`;
  client = createControlPlaneClient({ address, apiKey: SERVICE_KEY, log });
});

afterAll(async () => {
  for (const { chat, connection } of connections) {
    chat.close();
    connection.close();
  }
  client?.close();
  for (const platform of platforms.reverse()) await platform.close();
  await db?.drop();
});

describe('chat on two signaling nodes in cluster mode', () => {
  it('delivers every acknowledged message exactly once to every member on both nodes, in order', async () => {
    const [alice, bob, carol] = await Promise.all([
      signUpAndIn(client, 'chat', { sql: db.sql }),
      signUpAndIn(client, 'chat', { sql: db.sql }),
      signUpAndIn(client, 'chat', { sql: db.sql }),
    ]);
    const { roomId } = await startChatStream(client, alice);
    const a = await connect(wsA, alice);
    const b = await connect(wsB, bob);
    const seenA = recorder(a.chat, roomId);
    const seenB = recorder(b.chat, roomId);
    await a.chat.join({ roomId });
    await b.chat.join({ roomId });
    // Raw sockets on both nodes show the wire itself, without the library's dedupe.
    const rawA = await RawClient.open(wsA, `v=${PROTOCOL_VERSION}&token=${carol.token}`);
    const rawB = await RawClient.open(wsB, `v=${PROTOCOL_VERSION}&token=${carol.token}`);
    for (const socket of [rawA, rawB]) {
      expect(await socket.request('chat.join', { roomId })).toMatchObject({ ok: true });
    }

    const acked: number[] = [];
    for (let i = 0; i < 5; i++) {
      acked.push((await a.chat.send(roomId, `a says ${i}`)).messageId);
      acked.push((await b.chat.send(roomId, `b says ${i}`)).messageId);
    }
    expect([...acked].sort((x, y) => x - y)).toEqual(acked);

    for (const seen of [seenA, seenB]) await vi.waitFor(() => expect(seen).toEqual(acked));
    for (const socket of [rawA, rawB]) await vi.waitFor(() => expect(wireIds(socket)).toEqual(acked));
    for (const chat of [a.chat, b.chat]) {
      expect(chat.room(roomId)?.messages.map((m) => m.messageId)).toEqual(acked);
    }
    rawA.close();
    rawB.close();
  });

  it('catches up a client that disconnected and reconnected: what it missed, once, in order', async () => {
    const [dana, erin] = await Promise.all([
      signUpAndIn(client, 'chat', { sql: db.sql }),
      signUpAndIn(client, 'chat', { sql: db.sql }),
    ]);
    const { roomId } = await startChatStream(client, dana);
    let gate: Promise<void> = Promise.resolve();
    let release: () => void = () => {};
    const a = await connect(wsA, dana);
    const b = await connect(wsB, erin, async () => {
      await gate;
      return erin.token;
    });
    const seenB = recorder(b.chat, roomId);
    await a.chat.join({ roomId });
    await b.chat.join({ roomId });
    const first = await a.chat.send(roomId, 'before the drop');
    await vi.waitFor(() => expect(seenB).toEqual([first.messageId]));

    gate = new Promise((resolve) => {
      release = resolve;
    });
    const dropped = b.connection.next('close');
    // A frame over the hard limit: the edge closes the connection (1006) and the library reconnects.
    const oversized = b.connection.request as unknown as (
      method: string,
      params: unknown,
    ) => Promise<unknown>;
    oversized.call(b.connection, 'chat.history', { pad: 'x'.repeat(2 * 1024 * 1024) }).catch(() => undefined);
    await dropped;
    const missed: number[] = [];
    for (let i = 0; i < 4; i++) missed.push((await a.chat.send(roomId, `missed ${i}`)).messageId);
    const whileAway = b.chat.send(roomId, 'typed while away');
    const synced = b.chat.next('synced');
    release();
    expect((await synced)[0]).toEqual({ roomId, reconnect: true });
    const own = (await whileAway).messageId;
    const last = (await a.chat.send(roomId, 'after the return')).messageId;

    const expected = [first.messageId, ...missed, own, last];
    await vi.waitFor(() => expect(seenB).toEqual(expected));
    expect(b.chat.room(roomId)?.messages.map((m) => m.messageId)).toEqual(expected);
    const [stored] = await db.sql<{ count: number }[]>`
      select count(*)::int as count from chat_messages where room_id = ${roomId} and user_id = ${erin.userId}`;
    expect(stored?.count).toBe(1);
  });
});
