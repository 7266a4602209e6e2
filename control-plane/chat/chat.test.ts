/**
 * ChatService over a real gRPC server, the real standalone ports and a fresh PostgreSQL:
 * sending, delivery, catch-up, idempotency, validation, limits and room rules.
 */
import { type Metadata, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHAT_MAX_LENGTH, CHAT_METADATA_MAX_BYTES } from '../../common/contracts/index.js';
import { StopStreamRequest } from '../../proto/gen/veza/stream/stream.js';
import { grpcError, unary } from '../test-harness.js';
import {
  type ChatHarness,
  chatCalls,
  chatStream,
  startChatHarness,
  startStream,
  type TestUser,
  waitUntil,
} from './test-support.js';

let h: ChatHarness;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  h = await startChatHarness();
  alice = await h.user('alice');
  bob = await h.user('bob');
});

afterAll(async () => {
  await h?.close();
});

const as = (user: TestUser | Metadata) => chatCalls(h.chat, 'md' in user ? user.md : user);

/** A fresh room owned by `owner` with `members` joined. */
async function room(owner: TestUser, ...members: TestUser[]): Promise<number> {
  const created = await as(owner).createRoom({ name: 'test room' });
  const roomId = created.room?.roomId ?? 0;
  for (const member of members) await as(member).join(roomId);
  return roomId;
}

const countMessages = async (roomId: number) => {
  const [row] = await h.sql<
    { n: number }[]
  >`select count(*)::int as n from chat_messages where room_id = ${roomId}`;
  return row?.n ?? -1;
};

const ids = (messages: readonly { messageId: number }[]) => messages.map((m) => m.messageId);

describe('sending', () => {
  it('acknowledges a message with its stored id and time', async () => {
    const roomId = await room(alice, bob);
    const before = Date.now();
    const sent = await as(alice).send({ roomId, content: '  hello there  ' });
    expect(sent.success).toBe(true);
    expect(sent.message?.messageId).toBeGreaterThan(0);
    expect(sent.message?.createdAt?.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(sent.message).toMatchObject({
      roomId,
      userId: alice.userId,
      username: alice.username,
      content: 'hello there',
    });
    expect(sent.message?.messageType).toBe('text');

    const history = await as(bob).history({ roomId });
    expect(history.messages.map((m) => m.messageId)).toEqual([sent.message?.messageId]);
    const joined = await as(bob).join(roomId);
    expect(joined.lastMessageId).toBe(sent.message?.messageId);
  });

  it('delivers messages live to StreamMessages subscribers', async () => {
    const roomId = await room(alice, bob);
    const first = await as(alice).send({ roomId, content: 'one' });
    const second = await as(alice).send({ roomId, content: 'two' });
    // Catching up from the first proves the subscription is live once "two" arrives.
    const reader = as(bob).streamMessages(roomId, first.message?.messageId);
    await reader.waitFor(1);
    const third = await as(alice).send({ roomId, content: 'three' });
    const received = await reader.waitFor(2);
    expect(ids(received)).toEqual([second.message?.messageId, third.message?.messageId]);
    expect(received[1]).toMatchObject({
      eventType: 'created',
      content: 'three',
      userId: alice.userId,
    });
    reader.stream.cancel();
  });

  it('catches up from last_message_id with no gap and no duplicate at the seam', async () => {
    const carol = await h.user('carol');
    const roomId = await room(alice, bob, carol);
    const start = await as(alice).send({ roomId, content: 'start' });
    for (const content of ['a1', 'a2']) await as(alice).send({ roomId, content });
    // Sends racing the subscription: each lands in the catch-up or in the live part, once.
    const racing = [bob, carol].flatMap((user) =>
      [1, 2, 3].map((n) => () => as(user).send({ roomId, content: `${user.username} ${n}` })),
    );
    const reader = as(alice).streamMessages(roomId, start.message?.messageId);
    const results = await Promise.all(racing.map((send) => send()));
    const last = Math.max(...results.map((r) => r.message?.messageId ?? 0));
    const received = await waitUntil(reader, (messages) => messages.some((m) => m.messageId === last));
    const got = ids(received);
    expect(new Set(got).size).toBe(got.length);
    const stored = await as(alice).history({ roomId, afterMessageId: start.message?.messageId });
    expect(got).toEqual(stored.messages.map((m) => m.messageId));
    expect(got).toHaveLength(8);
    reader.stream.cancel();
  });

  it('makes a retried send idempotent with client_message_id', async () => {
    const roomId = await room(alice, bob);
    const first = await as(alice).send({ roomId, content: 'only once', clientMessageId: 'c-123' });
    const retry = await as(alice).send({ roomId, content: 'only once', clientMessageId: 'c-123' });
    const changed = await as(alice).send({ roomId, content: 'something else', clientMessageId: 'c-123' });
    expect(retry.message?.messageId).toBe(first.message?.messageId);
    expect(changed.message).toMatchObject({ messageId: first.message?.messageId, content: 'only once' });
    expect(await countMessages(roomId)).toBe(1);
    // Concurrent retries store one message too.
    const burst = await Promise.all(
      [1, 2, 3].map(() => as(bob).send({ roomId, content: 'race', clientMessageId: 'c-9' })),
    );
    expect(new Set(burst.map((r) => r.message?.messageId)).size).toBe(1);
    expect(await countMessages(roomId)).toBe(2);
    // The id is per sender: bob may use alice's.
    const bobs = await as(bob).send({ roomId, content: 'mine', clientMessageId: 'c-123' });
    expect(bobs.message?.messageId).not.toBe(first.message?.messageId);
  });

  it('lets clean text through, including words that contain bad substrings', async () => {
    const carol = await h.user('carol');
    const roomId = await room(alice, carol);
    const texts = [
      'Greetings from Scunthorpe!',
      'This class is an assistant to the bass player',
      'I passed the glass to Dickens',
      'La technique du cocktail est bonne, merci !',
      'I scored 455 points at 5 pm',
    ];
    for (const [index, content] of texts.entries()) {
      const sender = index % 2 === 0 ? alice : carol;
      const sent = await as(sender).send({ roomId, content });
      expect(sent.message?.content).toBe(content);
    }
  });
});

describe('bad input', () => {
  it('refuses malformed and oversize messages naming the field, storing nothing', async () => {
    const roomId = await room(alice, bob);
    const other = await room(bob);
    const elsewhere = await as(bob).send({ roomId: other, content: 'in another room' });
    const cases: Array<[Parameters<ReturnType<typeof as>['send']>[0], string]> = [
      [{ roomId, content: '' }, 'content'],
      [{ roomId, content: '   ' }, 'content'],
      [{ roomId, content: 'x'.repeat(CHAT_MAX_LENGTH + 1) }, 'content'],
      [{ roomId, content: 'nul \u0000 byte' }, 'content'],
      [{ roomId, content: 'hi', messageType: 'bogus' }, 'message_type'],
      [{ roomId, content: 'hi', metadata: Buffer.alloc(CHAT_METADATA_MAX_BYTES + 1) }, 'metadata'],
      [{ roomId, content: 'hi', replyToId: elsewhere.message?.messageId }, 'reply_to_id'],
      [{ roomId, content: 'hi', replyToId: -1 }, 'reply_to_id'],
      [{ roomId: 0, content: 'hi' }, 'room_id'],
      [{ roomId, content: 'hi', clientMessageId: 'no spaces allowed' }, 'client_message_id'],
    ];
    for (const [request, field] of cases) {
      const error = await grpcError(as(alice).send(request));
      expect(error.code, field).toBe(status.INVALID_ARGUMENT);
      expect(error.details).toContain(field);
      expect(error.metadata.get('veza-error-field')[0]).toBe(field);
    }
    expect(await countMessages(roomId)).toBe(0);
    // The client is still healthy.
    const longest = Array.from({ length: CHAT_MAX_LENGTH }, (_, i) => `w${i}`)
      .join(' ')
      .slice(0, CHAT_MAX_LENGTH - 1)
      .concat('z');
    const ok = await as(alice).send({ roomId, content: longest, metadata: Buffer.from('{"a":1}') });
    expect(ok.message?.content).toHaveLength(CHAT_MAX_LENGTH);
    expect(ok.success).toBe(true);
  });

  it('refuses a flood with RESOURCE_EXHAUSTED naming the retry time', async () => {
    const dave = await h.user('dave');
    const roomId = await room(alice, dave);
    let refused: Awaited<ReturnType<typeof grpcError>> | undefined;
    let accepted = 0;
    for (let n = 0; n < 20 && !refused; n++) {
      try {
        await as(dave).send({ roomId, content: `message number ${n}` });
        accepted += 1;
      } catch (error) {
        refused = error as Awaited<ReturnType<typeof grpcError>>;
      }
    }
    expect(accepted).toBeGreaterThanOrEqual(5);
    expect(refused?.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused?.details).toMatch(/too many messages in room \d+; try again in \d+ s/);
    expect(Number(refused?.metadata.get('veza-retry-after-ms')[0])).toBeGreaterThan(0);
    expect(await countMessages(roomId)).toBe(accepted);
    // Other users in the room are not limited by dave's flood.
    expect((await as(alice).send({ roomId, content: 'still fine' })).success).toBe(true);
  });

  it('refuses sending to a room the user has not joined, with a clear message', async () => {
    const roomId = await room(alice);
    const error = await grpcError(as(bob).send({ roomId, content: 'hello?' }));
    expect(error.code).toBe(status.FAILED_PRECONDITION);
    expect(error.details).toContain(`you have not joined room ${roomId}`);
    const missing = await grpcError(as(bob).send({ roomId: 999_999, content: 'hello?' }));
    expect(missing.code).toBe(status.NOT_FOUND);
    expect(await countMessages(roomId)).toBe(0);
    // Reading needs membership too; leaving ends it.
    expect((await grpcError(as(bob).history({ roomId }))).code).toBe(status.FAILED_PRECONDITION);
    await as(bob).join(roomId);
    await as(bob).leave(roomId);
    expect((await grpcError(as(bob).send({ roomId, content: 'after leaving' }))).code).toBe(
      status.FAILED_PRECONDITION,
    );
  });

  it('needs a token', async () => {
    const error = await grpcError(
      chatCalls(h.chat, h.service()).send({ roomId: 1, content: 'as a service' }),
    );
    expect(error.code).toBe(status.UNAUTHENTICATED);
  });
});

describe('editing and deleting', () => {
  it('lets the author edit and delete, publishing edited and deleted events', async () => {
    const roomId = await room(alice, bob);
    const first = await as(alice).send({ roomId, content: 'first' });
    const target = await as(alice).send({ roomId, content: 'tpyo' });
    const reader = as(bob).streamMessages(roomId, first.message?.messageId);
    await reader.waitFor(1);
    const edited = await as(alice).edit(target.message?.messageId ?? 0, 'typo');
    expect(edited.message?.content).toBe('typo');
    await as(alice).remove(target.message?.messageId ?? 0);
    const events = await reader.waitFor(3);
    expect(events.map((e) => e.eventType)).toEqual(['created', 'edited', 'deleted']);
    expect(events[1]?.content).toBe('typo');
    expect(events[2]).toMatchObject({ deleted: true, content: '' });
    const history = await as(bob).history({ roomId });
    expect(history.messages.at(-1)).toMatchObject({
      messageId: target.message?.messageId,
      deleted: true,
      content: '',
    });
    reader.stream.cancel();
  });

  it("refuses editing or deleting someone else's message without the role", async () => {
    const roomId = await room(alice, bob);
    const sent = await as(alice).send({ roomId, content: 'mine' });
    const messageId = sent.message?.messageId ?? 0;
    const del = await grpcError(as(bob).remove(messageId));
    expect(del.code).toBe(status.PERMISSION_DENIED);
    expect(del.details).toContain('moderator');
    expect((await grpcError(as(bob).edit(messageId, 'yours now'))).code).toBe(status.PERMISSION_DENIED);
    const history = await as(alice).history({ roomId });
    expect(history.messages[0]).toMatchObject({ content: 'mine', deleted: false });
  });

  it('refuses an edit the moderation rejects, keeping the message', async () => {
    const roomId = await room(alice);
    const sent = await as(alice).send({ roomId, content: 'nice stream' });
    const error = await grpcError(as(alice).edit(sent.message?.messageId ?? 0, 'fuck this'));
    expect(error.code).toBe(status.FAILED_PRECONDITION);
    expect(error.details).toContain('message not changed');
    expect((await as(alice).history({ roomId })).messages[0]?.content).toBe('nice stream');
  });
});

describe('history', () => {
  it('pages with before/after ids and a limit, ascending, with has_more and last_message_id', async () => {
    const carol = await h.user('carol');
    const roomId = await room(alice, carol);
    const sent: number[] = [];
    for (let n = 0; n < 8; n++) {
      const sender = n % 2 === 0 ? alice : carol;
      sent.push((await as(sender).send({ roomId, content: `m${n}` })).message?.messageId ?? 0);
    }
    const latest = await as(alice).history({ roomId, limit: 3 });
    expect(latest.messages.map((m) => m.messageId)).toEqual(sent.slice(5));
    expect(latest).toMatchObject({ hasMore: true, lastMessageId: sent[7] });
    const older = await as(alice).history({ roomId, limit: 3, beforeMessageId: sent[5] });
    expect(older.messages.map((m) => m.messageId)).toEqual(sent.slice(2, 5));
    const oldest = await as(alice).history({ roomId, limit: 3, beforeMessageId: sent[2] });
    expect(oldest.messages.map((m) => m.messageId)).toEqual(sent.slice(0, 2));
    expect(oldest.hasMore).toBe(false);
    const after = await as(alice).history({ roomId, limit: 4, afterMessageId: sent[1] });
    expect(after.messages.map((m) => m.messageId)).toEqual(sent.slice(2, 6));
    expect(after).toMatchObject({ hasMore: true, lastMessageId: sent[5] });
    const none = await as(alice).history({ roomId, afterMessageId: sent[7] });
    expect(none).toMatchObject({ messages: [], hasMore: false, lastMessageId: sent[7] });
    const tooMany = await grpcError(as(alice).history({ roomId, limit: 101 }));
    expect(tooMany.code).toBe(status.INVALID_ARGUMENT);
    expect(tooMany.metadata.get('veza-error-field')[0]).toBe('limit');
    // The edge reads by API key alone.
    const asService = await chatCalls(h.chat, h.service()).history({ roomId, limit: 2 });
    expect(asService.messages.map((m) => m.messageId)).toEqual(sent.slice(6));
  });
});

describe('ChatStream', () => {
  it('sends like SendMessage, carries the room, and reports errors without ending', async () => {
    const roomId = await room(alice, bob);
    const first = await as(alice).send({ roomId, content: 'before the stream' });
    const second = await as(bob).send({ roomId, content: 'catch me up' });
    const call = chatStream(h.chat, alice.md);
    call.send({ roomId, messageType: 'subscribe', messageId: first.message?.messageId });
    const [caught] = await call.reader.waitFor(1);
    expect(caught?.messageId).toBe(second.message?.messageId);

    call.send({ roomId, content: 'from the stream', clientMessageId: 'bidi-1' });
    const [, own] = await call.reader.waitFor(2);
    expect(own).toMatchObject({
      content: 'from the stream',
      clientMessageId: 'bidi-1',
      userId: alice.userId,
    });

    const fromBob = await as(bob).send({ roomId, content: 'unary to bidi' });
    await waitUntil(call.reader, (ms) => ms.some((m) => m.messageId === fromBob.message?.messageId));

    call.send({ roomId, content: 'fuck you', clientMessageId: 'bidi-2' });
    const refused = await waitUntil(call.reader, (ms) => ms.some((m) => m.messageType === 'error'));
    const error = refused.find((m) => m.messageType === 'error');
    expect(error).toMatchObject({ roomId, clientMessageId: 'bidi-2' });
    expect(error?.content).toContain('message not sent: offensive language');
    expect(JSON.parse(error?.metadata.toString('utf8') ?? '{}')).toEqual({ code: 'failed_precondition' });

    call.send({ roomId, content: '', clientMessageId: 'bidi-3' });
    const invalid = await waitUntil(call.reader, (ms) => ms.some((m) => m.clientMessageId === 'bidi-3'));
    expect(JSON.parse(invalid.at(-1)?.metadata.toString('utf8') ?? '{}')).toMatchObject({
      code: 'invalid_argument',
      field: 'content',
    });

    call.send({ roomId, content: 'still here', clientMessageId: 'bidi-4' });
    await waitUntil(call.reader, (ms) =>
      ms.some((m) => m.clientMessageId === 'bidi-4' && m.messageType === 'text'),
    );
    const created = call.reader.messages.filter((m) => m.messageType !== 'error').map((m) => m.messageId);
    expect(new Set(created).size).toBe(created.length);
    call.end();
    await call.reader.finished();
    expect(call.reader.error).toBeNull();
  });
});

describe('rooms and activity', () => {
  it('opens a live stream chat to every signed-in user and closes it when the stream ends', async () => {
    const broadcaster = await h.user('dj');
    const started = await startStream(h.streams, broadcaster.md);
    const roomId = started.stream?.chatRoomId ?? 0;
    expect(roomId).toBeGreaterThan(0);
    const joined = await as(bob).join(roomId);
    expect(joined.room).toMatchObject({ roomId, streamId: started.stream?.streamId });
    expect((await as(bob).send({ roomId, content: 'great set' })).success).toBe(true);
    await unary(
      h.streams.stopStream.bind(h.streams),
      StopStreamRequest.fromPartial({ streamId: started.stream?.streamId ?? 0 }),
      broadcaster.md,
    );
    const closed = await grpcError(as(bob).send({ roomId, content: 'anyone?' }));
    expect(closed.code).toBe(status.FAILED_PRECONDITION);
    expect(closed.details).toContain('has ended');
  });

  it('keeps private rooms to their owner', async () => {
    const created = await as(alice).createRoom({ name: 'secret', isPrivate: true });
    const error = await grpcError(as(bob).join(created.room?.roomId ?? 0));
    expect(error.code).toBe(status.PERMISSION_DENIED);
  });

  it('delivers typing and presence on StreamRoomActivity without storing them', async () => {
    const roomId = await room(alice, bob);
    const reader = as(alice).streamActivity(roomId);
    // No catch-up exists for ephemeral events: send until the subscription is seen to work.
    for (let attempt = 0; attempt < 15 && reader.messages.length === 0; attempt++) {
      await as(bob).activity(roomId, 'typing');
    }
    await reader.waitFor(1);
    const carol = await h.user('carol');
    await as(carol).join(roomId);
    const seen = await waitUntil(reader, (ms) =>
      ms.some((m) => m.activityType === 'join' && m.userId === carol.userId),
    );
    expect(seen.find((m) => m.activityType === 'typing')).toMatchObject({
      roomId,
      userId: bob.userId,
      username: bob.username,
    });
    const bad = await grpcError(as(bob).activity(roomId, 'muted'));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    const outsider = await h.user('outsider');
    expect((await grpcError(as(outsider).activity(roomId, 'typing'))).code).toBe(status.FAILED_PRECONDITION);
    reader.stream.cancel();
  });
});
