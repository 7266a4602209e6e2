/**
 * Chat across two edges and two control planes in cluster mode, on the machine's PostgreSQL,
 * Redis and NATS: edge A calls control plane 1, edge B control plane 2 (startPlatform with one
 * role each), with a media node for the stream.
 *
 * - A burst from clients on both edges: every member (client library and raw wire) gets every
 *   message exactly once; each control plane's messages arrive in id order; every ack is the
 *   message that was delivered under its id.
 * - A ban or a mute decided through one control plane refuses the user's next send at once
 *   everywhere: on both edges and on the other control plane directly.
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
import { toVezaError } from '../../../common/contracts/index.js';
import { createLogger, loadConfig } from '../../../common/index.js';
import { clusterTestEnv, createTestDatabase, type TestDatabase } from '../../../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../../../control-plane/client/index.js';
import type { ChatMessage } from '../../client/index.js';
import { PROTOCOL_VERSION } from '../../protocol/index.js';
import { RawClient } from '../test-clients.js';

type Frame = Record<string, unknown>;

const SERVICE_KEY = 'chat-two-cp-test-service-key-0123456789';
const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: 'chat-two-cp-test' });

let db: TestDatabase;
const platforms: Platform[] = [];
const connections: Connected[] = [];
const raws: RawClient[] = [];
/** The control planes' clients, as their edges use them: index 0 behind edge A, 1 behind edge B. */
const planes: ControlPlaneClient[] = [];
const edges: string[] = [];

const query = (token: string) => `v=${PROTOCOL_VERSION}&token=${encodeURIComponent(token)}`;

async function user(roles: ('moderator' | 'broadcaster')[] = []): Promise<ChatTestUser> {
  return signUpAndIn(planes[0] as ControlPlaneClient, 'chat2', { sql: db.sql, roles });
}

async function connect(edge: number, who: ChatTestUser): Promise<Connected> {
  const connected = await connectChat(edges[edge] ?? '', who.token);
  connections.push(connected);
  return connected;
}

async function raw(edge: number, who: ChatTestUser): Promise<RawClient> {
  const client = await RawClient.open(edges[edge] ?? '', query(who.token));
  raws.push(client);
  return client;
}

/** The `chat.message` "created" frames a raw socket got, in arrival order. */
function wireMessages(socket: RawClient, roomId: number): ChatMessage[] {
  return socket.frames
    .filter((frame) => frame.notification === 'chat.message')
    .map((frame) => frame.data as { roomId: number; eventType: string; message: ChatMessage })
    .filter((data) => data.roomId === roomId && data.eventType === 'created')
    .map((data) => data.message);
}

const increasing = (ids: readonly number[]) => ids.every((id, i) => i === 0 || id > (ids[i - 1] ?? 0));

beforeAll(async () => {
  db = await createTestDatabase('cluster');
  // Ids nobody else on this machine's NATS uses, whatever the namespace.
  await db.sql`select setval('chat_rooms_id_seq', ${randomInt(1_000_000, 2 ** 40)})`;
  await db.sql`select setval('users_id_seq', ${randomInt(1_000_000, 2 ** 40)})`;
  const shared = {
    ...clusterTestEnv('chat-2cp', db.url, SERVICE_KEY),
    // Bursts of ten per sender: the per-user limits are not what this test is about.
    CHAT_BURST_PER_5S: '1000',
    CHAT_MESSAGES_PER_MIN: '1000',
  };
  for (const name of ['cp-1', 'cp-2']) {
    const plane = await startPlatform(
      loadConfig({ ...shared, VEZA_ROLES: 'control-plane', VEZA_NODE_ID: `${name}-${randomInt(1_000_000)}` }),
      log,
    );
    platforms.push(plane);
    planes.push(
      createControlPlaneClient({ address: `127.0.0.1:${plane.grpcPort}`, apiKey: SERVICE_KEY, log }),
    );
  }
  // StartStream places every stream on a live media node in cluster mode.
  platforms.push(
    await startPlatform(
      loadConfig({
        ...shared,
        VEZA_ROLES: 'media',
        VEZA_NODE_ID: `chat2-media-${randomInt(1_000_000)}`,
        MEDIA_WORKERS: '1',
        MEDIA_LISTEN_IP: '127.0.0.1',
      }),
      log,
    ),
  );
  for (const [index, name] of ['edge-a', 'edge-b'].entries()) {
    const edge = await startPlatform(
      loadConfig({
        ...shared,
        VEZA_ROLES: 'signaling',
        VEZA_NODE_ID: `${name}-${randomInt(1_000_000)}`,
        CONTROL_PLANE_ADDRESS: `127.0.0.1:${platforms[index]?.grpcPort}`,
      }),
      log,
    );
    platforms.push(edge);
    edges.push(`ws://127.0.0.1:${edge.httpPort}/ws`);
  }
});

afterAll(async () => {
  for (const socket of raws) socket.close();
  for (const { chat, connection } of connections) {
    chat.close();
    connection.close();
  }
  for (const plane of planes) plane.close();
  for (const platform of platforms.reverse()) await platform.close();
  await db?.drop();
});

describe('chat on two edges and two control planes', () => {
  it('delivers a burst from both sides exactly once to every member, each control plane in id order', async () => {
    const owner = await user(['broadcaster']);
    const { roomId } = await startChatStream(planes[0] as ControlPlaneClient, owner);
    const senders = await Promise.all([0, 0, 0, 1, 1, 1].map(async (edge) => ({ edge, who: await user() })));
    const clients = await Promise.all(senders.map(({ edge, who }) => connect(edge, who)));
    for (const { chat } of clients) await chat.join({ roomId });
    const watcher = await user();
    const wire = [await raw(0, watcher), await raw(1, watcher)];
    for (const socket of wire)
      expect(await socket.request('chat.join', { roomId })).toMatchObject({ ok: true });

    // Ten messages per sender, all in flight at once.
    const acks = await Promise.all(
      clients.flatMap(({ chat }, sender) =>
        Array.from({ length: 10 }, (_, n) =>
          chat.send(roomId, `sender ${sender} message ${n}`).then((message) => ({ message, sender })),
        ),
      ),
    );
    const acked = acks.map(({ message }) => message.messageId).sort((x, y) => x - y);
    expect(new Set(acked).size).toBe(60);
    const planeOf = new Map(acks.map(({ message, sender }) => [message.messageId, senders[sender]?.edge]));

    for (const socket of wire) {
      await vi.waitFor(() => expect(wireMessages(socket, roomId)).toHaveLength(60), { timeout: 10_000 });
      const delivered = wireMessages(socket, roomId);
      // Exactly once on the wire: no duplicates, nothing missing.
      expect(delivered.map((m) => m.messageId).sort((x, y) => x - y)).toEqual(acked);
      // Each control plane publishes its batches in id order.
      for (const plane of [0, 1]) {
        const ids = delivered.map((m) => m.messageId).filter((id) => planeOf.get(id) === plane);
        expect(ids.length).toBeGreaterThan(0);
        expect(increasing(ids), `ids through control plane ${plane + 1}: ${ids.join(',')}`).toBe(true);
      }
      // Every ack is the message delivered under its id.
      const byId = new Map(delivered.map((m) => [m.messageId, m]));
      for (const { message } of acks) {
        expect(byId.get(message.messageId)).toEqual(message);
      }
    }
    for (const { chat } of clients) {
      await vi.waitFor(() => expect(chat.room(roomId)?.messages.map((m) => m.messageId)).toEqual(acked), {
        timeout: 10_000,
      });
    }
    const [stored] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from chat_messages where room_id = ${roomId}`;
    expect(stored?.n).toBe(60);
  });

  it('refuses a banned or muted user at once on both edges and both control planes', async () => {
    const owner = await user(['broadcaster']);
    const { roomId } = await startChatStream(planes[0] as ControlPlaneClient, owner);
    const moderator = await user(['moderator']);
    const mod = await connect(0, moderator);
    await mod.chat.join({ roomId });

    const refusal = async (sending: Promise<unknown>): Promise<string> => {
      try {
        await sending;
      } catch (error) {
        return toVezaError(error).code;
      }
      return 'sent';
    };
    const wireRefusal = async (socket: RawClient, content: string): Promise<string> => {
      const reply = (await socket.request('chat.send', {
        roomId,
        content,
        clientMessageId: `w-${randomInt(1e9)}`,
      })) as unknown as Frame;
      return reply.ok ? 'sent' : String((reply.error as Frame).code);
    };

    for (let round = 0; round < 4; round++) {
      const target = await user();
      const onA = await raw(0, target);
      const onB = await raw(1, target);
      for (const socket of [onA, onB])
        expect(await socket.request('chat.join', { roomId })).toMatchObject({ ok: true });
      expect(await wireRefusal(onB, `round ${round} before`)).toBe('sent');

      const mute = round % 2 === 0;
      if (mute) await mod.chat.moderation.mute(roomId, target.userId, 600, 'race');
      else await mod.chat.moderation.ban(roomId, target.userId, 0, 'race');
      // Straight after the call returned: through both edges, and the other control plane directly.
      const outcomes = await Promise.all([
        wireRefusal(onB, 'right after, edge B'),
        wireRefusal(onA, 'right after, edge A'),
        refusal(
          (planes[1] as ControlPlaneClient).chat.sendMessage(
            {
              roomId,
              content: 'right after, control plane 2',
              messageType: '',
              metadata: Buffer.alloc(0),
              replyToId: 0,
              clientMessageId: '',
            },
            { token: target.token },
          ),
        ),
      ]);
      // A banned user may already be out of the room on an edge (not_joined) or refused by the control plane.
      const refused = mute ? ['permission_denied'] : ['permission_denied', 'failed_precondition'];
      for (const outcome of outcomes.slice(0, 2)) expect(refused, `round ${round}`).toContain(outcome);
      expect(outcomes[2], `round ${round}`).toBe('permission_denied');
      const [stored] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from chat_messages where room_id = ${roomId} and user_id = ${target.userId}`;
      expect(stored?.n).toBe(1);
    }
  });
});
