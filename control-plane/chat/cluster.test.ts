/**
 * Two control planes in cluster mode (the machine's NATS and Redis) sharing one database:
 * a message sent through one reaches a StreamMessages subscriber on the other, and a
 * subscriber catching up on one sees what was sent through the other.
 *
 * A third control plane shares the database but not the bus (another namespace): it never
 * hears of sanctions decided elsewhere, which is the worst case of a ban racing its event. Its
 * memory says the user may send; the batch insert refuses anyway.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  clusterServices,
  createTestDatabase,
  type TestDatabase,
  testNamespace,
} from '../../common/testing/index.js';
import { AuthServiceClient } from '../../proto/gen/veza/auth/auth.js';
import { authCalls, bearer, grpcError, STRONG_PASSWORD } from '../test-harness.js';
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
let deaf: ChatHarness;

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
  deaf = await startChatHarness({ db, env: { ...env, VEZA_NAMESPACE: testNamespace('chat-deaf') } });
});

afterAll(async () => {
  await deaf?.close();
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
  expect(received[1]).toMatchObject({
    messageId: live.message?.messageId,
    content: 'live across nodes',
  });

  // And the other way, on a bidirectional stream on a.
  const bidi = chatStream(a.chat, alice.md);
  bidi.send({ roomId, messageType: 'subscribe', messageId: first.message?.messageId });
  await bidi.reader.waitFor(2);
  const fromB = await onB.send({ roomId, content: 'hello from b' });
  await waitUntil(bidi.reader, (ms) => ms.some((m) => m.messageId === fromB.message?.messageId));
  const seen = await waitUntil(reader, (ms) => ms.some((m) => m.messageId === fromB.message?.messageId));
  const ids = seen.map((m) => m.messageId);
  expect(new Set(ids).size).toBe(ids.length);
  bidi.end();
  reader.stream.cancel();
});

/** The user's calls through `harness`, signed in there (each namespace keeps its own sessions). */
async function signedInOn(harness: ChatHarness, user: TestUser) {
  const auth = new AuthServiceClient(harness.address, credentials.createInsecure());
  try {
    const login = await authCalls(auth).authenticate({ email: user.email, password: STRONG_PASSWORD });
    return chatCalls(harness.chat, bearer(login.accessToken));
  } finally {
    auth.close();
  }
}

it('refuses the next message of a banned or muted user on a control plane the sanction event never reached', async () => {
  const owner = await a.user('owner');
  const talker = await a.user('talker');
  const mod = await a.user('mod', ['moderator']);
  const onA = chatCalls(a.chat, owner.md);
  const roomId = (await onA.createRoom({ name: 'sanctions race' })).room?.roomId ?? 0;
  await chatCalls(a.chat, talker.md).join(roomId);
  const talkerOnDeaf = await signedInOn(deaf, talker);
  // The deaf control plane loads the talker as a member in good standing.
  expect((await talkerOnDeaf.send({ roomId, content: 'hello from the deaf side' })).success).toBe(true);

  await chatCalls(a.chat, mod.md).mute({
    roomId,
    userId: talker.userId,
    durationS: 600,
    reason: 'calm down',
  });
  const muted = await grpcError(talkerOnDeaf.send({ roomId, content: 'still talking' }));
  expect(muted.code).toBe(status.PERMISSION_DENIED);
  expect(muted.details).toContain(`you are muted in room ${roomId} until`);

  const other = await a.user('other');
  await chatCalls(a.chat, other.md).join(roomId);
  const otherOnDeaf = await signedInOn(deaf, other);
  expect((await otherOnDeaf.send({ roomId, content: 'hello too' })).success).toBe(true);

  await chatCalls(a.chat, mod.md).ban({ roomId, userId: other.userId, reason: 'enough' });
  const banned = await grpcError(otherOnDeaf.send({ roomId, content: 'and again' }));
  expect(banned.code).toBe(status.PERMISSION_DENIED);
  expect(banned.details).toBe(`you are banned from room ${roomId}`);
  // The refusal taught the deaf control plane: the next one is refused from its memory.
  expect((await grpcError(otherOnDeaf.send({ roomId, content: 'once more' }))).code).toBe(
    status.PERMISSION_DENIED,
  );
  const [stored] = await db.sql<{ n: number }[]>`
    select count(*)::int as n from chat_messages where room_id = ${roomId} and user_id = any(${[talker.userId, other.userId]})`;
  expect(stored?.n).toBe(2);
});

it('applies a ban on the other control plane before the ban call returns: the next send there is refused', async () => {
  const owner = await a.user('owner');
  const mod = await a.user('mod', ['moderator']);
  const roomId = (await chatCalls(a.chat, owner.md).createRoom({ name: 'ban across' })).room?.roomId ?? 0;
  for (let round = 0; round < 5; round++) {
    const talker = await a.user('talker');
    await chatCalls(a.chat, talker.md).join(roomId);
    const talkerOnB = chatCalls(b.chat, talker.md);
    expect((await talkerOnB.send({ roomId, content: `round ${round}` })).success).toBe(true);
    await chatCalls(a.chat, mod.md).ban({ roomId, userId: talker.userId, reason: 'race' });
    const [onB, onA] = await Promise.all([
      grpcError(talkerOnB.send({ roomId, content: 'right after' })),
      grpcError(chatCalls(a.chat, talker.md).send({ roomId, content: 'right after' })),
    ]);
    expect(onB.code).toBe(status.PERMISSION_DENIED);
    expect(onA.code).toBe(status.PERMISSION_DENIED);
  }
});
