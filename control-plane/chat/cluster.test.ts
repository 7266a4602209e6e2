/**
 * Two control planes in cluster mode (the machine's NATS and Redis) sharing one database:
 * a message sent through one reaches a StreamMessages subscriber on the other, and a
 * subscriber catching up on one sees what was sent through the other.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  clusterServices,
  createTestDatabase,
  type TestDatabase,
  testNamespace,
} from '../../common/testing/index.js';
import {
  type ChatHarness,
  chatCalls,
  chatStream,
  startChatHarness,
  type TestUser,
  waitUntil,
} from './test-support.js';

let db: TestDatabase;
let a: ChatHarness;
let b: ChatHarness;

beforeAll(async () => {
  db = await createTestDatabase('embedded');
  // Rooms get ids no other run on this NATS uses, so their `chat.room.<id>` subjects stay apart.
  await db.sql`select setval('chat_rooms_id_seq', ${randomInt(1_000_000, 2 ** 40)})`;
  const env = {
    VEZA_MODE: 'cluster',
    DATABASE_URL: db.url,
    REDIS_URL: clusterServices.redisUrl,
    NATS_URL: clusterServices.natsUrl,
    VEZA_NAMESPACE: testNamespace('chat-cp'),
    // Both control planes share the database, so they decrypt its signing key with one secret.
    SIGNING_KEYS_SECRET: randomBytes(32).toString('base64'),
  };
  a = await startChatHarness({ db, env });
  b = await startChatHarness({ db, env });
});

afterAll(async () => {
  await b?.close();
  await a?.close();
  await db?.drop();
});

it('delivers a message sent through one control plane to a subscriber on the other', async () => {
  const alice: TestUser = await a.user('alice');
  const bob: TestUser = await a.user('bob');
  const onA = chatCalls(a.chat, alice.md);
  const onB = chatCalls(b.chat, bob.md);
  const roomId = (await onA.createRoom({ name: 'cluster room' })).room?.roomId ?? 0;
  await onB.join(roomId);

  const first = await onA.send({ roomId, content: 'before' });
  await onA.send({ roomId, content: 'caught up on b' });
  const reader = onB.streamMessages(roomId, first.message?.messageId);
  await reader.waitFor(1);
  const live = await onA.send({ roomId, content: 'live across nodes' });
  const received = await reader.waitFor(2);
  expect(received[1]?.chatMessage).toMatchObject({
    messageId: live.message?.messageId,
    content: 'live across nodes',
  });

  // And the other way, on a bidirectional stream on a.
  const bidi = chatStream(a.chat, alice.md);
  bidi.send({ roomId, messageType: 'subscribe', messageId: first.message?.messageId });
  await bidi.reader.waitFor(2);
  const fromB = await onB.send({ roomId, content: 'hello from b' });
  await waitUntil(bidi.reader, (ms) => ms.some((m) => m.messageId === fromB.message?.messageId));
  const seen = await waitUntil(reader, (ms) =>
    ms.some((m) => m.chatMessage?.messageId === fromB.message?.messageId),
  );
  const ids = seen.map((m) => m.chatMessage?.messageId);
  expect(new Set(ids).size).toBe(ids.length);
  bidi.end();
  reader.stream.cancel();
});
