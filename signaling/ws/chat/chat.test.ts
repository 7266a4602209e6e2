/**
 * Chat over the signaling WebSocket, end to end through the real edge and the real control
 * plane (standalone, in-process), with the client library in Node and raw sockets for the
 * wire-level checks and the misbehaving clients. Every wait is on an event or a condition.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type ChatStack, type ChatTestUser, startChatStack } from '../../../app/testing/index.js';
import { CHAT_MAX_LENGTH, trackProgressSubject } from '../../../common/contracts/index.js';
import { metricsRegistry } from '../../../common/index.js';
import { type ChatClient, type ChatMessage, SignalingError } from '../../client/index.js';
import { CHAT_MAX_LENGTH as PROTOCOL_MAX_LENGTH, PROTOCOL_VERSION } from '../../protocol/index.js';
import { RawClient } from '../test-clients.js';

type Frame = Record<string, unknown>;

let stack: ChatStack;
let owner: ChatTestUser;
let fan: ChatTestUser;
let moderator: ChatTestUser;
let streamId: number;
let roomId: number;

const query = (token: string) => `v=${PROTOCOL_VERSION}&token=${encodeURIComponent(token)}`;

async function raw(token: string): Promise<RawClient> {
  const client = await RawClient.open(stack.wsUrl, query(token));
  return client;
}

/** The `created` messages a ChatClient emits for a room, in emission order. */
function recorder(chat: ChatClient, room: () => number) {
  const created: ChatMessage[] = [];
  const changed: Array<{ eventType: string; message: ChatMessage }> = [];
  chat.on('message', (message, info) => {
    if (info.roomId !== room()) return;
    if (info.eventType === 'created') created.push(message);
    else changed.push({ eventType: info.eventType, message });
  });
  return { created, changed, ids: () => created.map((m) => m.messageId) };
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const values = (await metricsRegistry().getSingleMetric(name)?.get())?.values ?? [];
  return values
    .filter((value) => Object.entries(labels).every(([key, wanted]) => value.labels[key] === wanted))
    .reduce((sum, value) => sum + value.value, 0);
}

async function storedCount(room: number, userId: number): Promise<number> {
  const [row] = await stack.sql<{ count: number }[]>`
    select count(*)::int as count from chat_messages where room_id = ${room} and user_id = ${userId}`;
  return row?.count ?? 0;
}

beforeAll(async () => {
  stack = await startChatStack();
  [owner, fan, moderator] = await Promise.all([
    stack.createUser(),
    stack.createUser(),
    stack.createUser(['moderator']),
  ]);
  ({ streamId, roomId } = await stack.startStream(owner));
});

afterAll(async () => {
  await stack?.close();
});

describe('chat over the WebSocket', () => {
  it('keeps the protocol limit equal to the control plane one', () => {
    expect(PROTOCOL_MAX_LENGTH).toBe(CHAT_MAX_LENGTH);
  });

  it('joins a stream chat, delivers every acknowledged message once to every member, in order', async () => {
    const a = await stack.connect(owner);
    const b = await stack.connect(fan);
    const seenA = recorder(a.chat, () => roomId);
    const seenB = recorder(b.chat, () => roomId);
    const joinedA = await a.chat.join({ streamId });
    expect(joinedA.roomId).toBe(roomId);
    expect(joinedA.room).toMatchObject({ roomId, streamId });
    await b.chat.join({ roomId });
    // A raw socket in the room sees what goes over the wire, without the library's dedupe.
    const wire = await raw(owner.token);
    const joinFrame = await wire.request('chat.join', { roomId });
    expect(joinFrame).toMatchObject({ ok: true, result: { room: { roomId }, readOnly: false } });

    const acked: ChatMessage[] = [];
    for (let i = 0; i < 5; i++) {
      acked.push(await a.chat.send(roomId, `from a ${i}`));
      acked.push(await b.chat.send(roomId, `from b ${i}`, { metadata: { n: i } }));
    }
    const ids = acked.map((m) => m.messageId);
    expect([...ids].sort((x, y) => x - y)).toEqual(ids);
    expect(acked[1]).toMatchObject({ content: 'from b 0', metadata: { n: 0 }, username: fan.username });
    expect(acked[0]?.createdAt).toMatch(/^\d{4}-\d\d-\d\dT/);

    for (const seen of [seenA, seenB]) {
      await vi.waitFor(() => expect(seen.ids().filter((id) => ids.includes(id))).toEqual(ids));
      expect(new Set(seen.ids()).size).toBe(seen.ids().length);
    }
    expect(a.chat.room(roomId)?.messages.map((m) => m.messageId)).toEqual(expect.arrayContaining(ids));

    // On the wire: each message once per socket, as a `chat.message` notification, in id order.
    const messageIdOf = (frame: Frame) =>
      frame.notification === 'chat.message'
        ? (frame.data as { message: ChatMessage }).message.messageId
        : null;
    await wire.next((frame) => messageIdOf(frame) === ids.at(-1));
    const earlier = wire.frames.map(messageIdOf).filter((id): id is number => id !== null);
    expect([...earlier, ids.at(-1)]).toEqual(ids);
    wire.close();
  });

  it("sends the sender its message's broadcast before the ack, and a retried client id stores nothing new", async () => {
    const wire = await raw(fan.token);
    expect(await wire.request('chat.join', { roomId })).toMatchObject({ ok: true });
    wire.frames.length = 0;
    wire.send(
      JSON.stringify({
        id: 'send-1',
        method: 'chat.send',
        params: { roomId, content: 'ordered', clientMessageId: 'fan-1' },
      }),
    );
    const ack = (await wire.next((frame) => frame.id === 'send-1')) as { result: { message: ChatMessage } };
    const before = wire.frames.length;
    const messageId = ack.result.message.messageId;
    // The broadcast had already arrived (it was taken out of `frames` by nobody): it precedes the ack.
    const broadcast = wire.frames.findIndex(
      (frame) =>
        frame.notification === 'chat.message' &&
        (frame.data as { message: ChatMessage }).message.messageId === messageId,
    );
    expect(broadcast).toBeGreaterThanOrEqual(0);
    expect(broadcast).toBeLessThan(before);

    const stored = await storedCount(roomId, fan.userId);
    const retry = await wire.request('chat.send', { roomId, content: 'ordered', clientMessageId: 'fan-1' });
    expect(retry).toMatchObject({ ok: true, result: { message: { messageId, clientMessageId: 'fan-1' } } });
    expect(await storedCount(roomId, fan.userId)).toBe(stored);
    wire.close();
  });

  it('loads history on join and pages older messages', async () => {
    const late = await stack.createUser();
    const c = await stack.connect(late);
    const { chat } = c;
    const pageSize = 3;
    const paged = new (chat.constructor as typeof import('../../client/index.js').ChatClient)({
      connection: c.connection,
      historyLimit: pageSize,
    });
    const view = await paged.join({ roomId });
    expect(view.messages).toHaveLength(pageSize);
    expect(view.hasOlder).toBe(true);
    const history = await stack.client.chat.getMessages(
      { roomId, limit: 100, beforeMessageId: 0, afterMessageId: 0 },
      { token: late.token },
    );
    expect(view.messages.map((m) => m.messageId)).toEqual(
      history.messages.slice(-pageSize).map((m) => m.messageId),
    );
    await paged.loadOlder(roomId);
    expect(paged.room(roomId)?.messages).toHaveLength(pageSize * 2);
    const ids = paged.room(roomId)?.messages.map((m) => m.messageId) ?? [];
    expect([...ids].sort((x, y) => x - y)).toEqual(ids);
    paged.close();
  });

  it('shows typing, edits and deletes; only moderators delete what others wrote', async () => {
    const [first, second] = await Promise.all([stack.createUser(), stack.createUser()]);
    const a = await stack.connect(first);
    const b = await stack.connect(second);
    const mod = await stack.connect(moderator);
    const changesA = recorder(a.chat, () => roomId);
    await a.chat.join({ roomId });
    await b.chat.join({ roomId });
    await mod.chat.join({ roomId });

    const typing = a.chat.next('typing');
    b.chat.typing(roomId);
    expect((await typing)[0]).toEqual({ roomId, usernames: [second.username] });
    const stopped = a.chat.next('typing');
    const mine = await b.chat.send(roomId, 'typo here');
    expect((await stopped)[0]).toEqual({ roomId, usernames: [] });

    const edited = await b.chat.edit(mine.messageId, 'no typo here');
    expect(edited.content).toBe('no typo here');
    await vi.waitFor(() =>
      expect(changesA.changed).toContainEqual({
        eventType: 'edited',
        message: expect.objectContaining({ messageId: mine.messageId, content: 'no typo here' }),
      }),
    );

    // A plain user: someone else's message stays.
    const error = await a.chat.delete(mine.messageId).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SignalingError);
    expect(error).toMatchObject({ code: 'permission_denied', message: expect.stringMatching(/moderator/) });
    expect(a.connection.state).toBe('open');

    await mod.chat.moderation.deleteMessage(mine.messageId, 'spam');
    await vi.waitFor(() =>
      expect(changesA.changed).toContainEqual({
        eventType: 'deleted',
        message: expect.objectContaining({ messageId: mine.messageId, deleted: true, content: '' }),
      }),
    );
    expect(a.chat.room(roomId)?.messages.find((m) => m.messageId === mine.messageId)?.deleted).toBe(true);

    const own = await b.chat.send(roomId, 'mine to delete');
    await b.chat.delete(own.messageId);
  });

  it('refuses a toxic message with "message not sent", stores it flagged, delivers nothing, tells moderators', async () => {
    const author = await stack.createUser();
    const a = await stack.connect(author);
    const watcher = await stack.connect(owner);
    const mod = await stack.connect(moderator);
    await a.chat.join({ roomId });
    const seen = recorder(watcher.chat, () => roomId);
    await watcher.chat.join({ roomId });
    await mod.chat.loadNotifications();
    const flaggedNotice = new Promise((resolve) =>
      mod.chat.on('notification', (n) => n.type === 'moderation.flagged' && resolve(n)),
    );

    const error = await a.chat.send(roomId, 'you are a fucking idiot').catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'failed_precondition',
      message: 'message not sent: offensive language',
    });
    expect(await flaggedNotice).toMatchObject({
      type: 'moderation.flagged',
      data: expect.objectContaining({ room_id: roomId }),
    });
    const clean = await a.chat.send(roomId, 'sorry, all good');
    await vi.waitFor(() => expect(seen.ids()).toContain(clean.messageId));
    expect(seen.created.map((m) => m.content)).not.toContain('you are a fucking idiot');

    const queue = await mod.chat.moderation.queue();
    const item = queue.items.find((i) => i.message?.content === 'you are a fucking idiot');
    expect(item).toMatchObject({ source: 'automatic', targetType: 'message', status: 'open', roomId });
    // A plain user does not see the queue.
    await expect(a.chat.moderation.queue()).rejects.toMatchObject({ code: 'permission_denied' });
  });

  it('takes reports and notifies moderators; notifications are listed and marked read', async () => {
    const reporter = await stack.connect(await stack.createUser());
    const mod = await stack.connect(moderator);
    await reporter.chat.join({ roomId });
    const target = await reporter.chat.send(roomId, 'a message someone will report');
    const before = await mod.chat.loadNotifications({ unreadOnly: true });
    const reported = mod.chat.next('notification');
    const reportId = await reporter.chat.report(
      { targetType: 'message', targetId: target.messageId },
      'spam',
    );
    expect(reportId).toBeGreaterThan(0);
    const [notice] = await reported;
    expect(notice).toMatchObject({ type: 'moderation.report', read: false });
    const after = await mod.chat.loadNotifications({ unreadOnly: true });
    expect(after.unreadCount).toBe(before.unreadCount + 1);
    expect(await mod.chat.markRead({ notificationIds: [notice.notificationId] })).toBe(1);
    expect((await mod.chat.loadNotifications({ unreadOnly: true })).unreadCount).toBe(before.unreadCount);
    const queue = await mod.chat.moderation.queue();
    expect(queue.items.find((i) => i.reportId === reportId)).toMatchObject({
      source: 'user',
      targetId: target.messageId,
    });
    const resolved = await mod.chat.moderation.resolve(reportId, 'dismissed', 'fine');
    expect(resolved).toMatchObject({ reportId, status: 'dismissed' });
  });

  it('lets an anonymous listener read the stream chat, not write it', async () => {
    const { token } = await stack.client.stream.issueListenerToken({ streamId }, {});
    const anon = await stack.connect(token);
    const seen = recorder(anon.chat, () => roomId);
    const view = await anon.chat.join({ streamId });
    expect(view.readOnly).toBe(true);
    expect(view.messages.length).toBeGreaterThan(0);
    const writer = await stack.connect(await stack.createUser());
    await writer.chat.join({ roomId });
    const sent = await writer.chat.send(roomId, 'hello, quiet listener');
    await vi.waitFor(() => expect(seen.ids()).toContain(sent.messageId));
    await expect(anon.chat.send(roomId, 'can I talk?')).rejects.toMatchObject({ code: 'permission_denied' });
    const wire = await raw(token);
    expect(await wire.request('chat.join', { roomId: roomId + 1000 })).toMatchObject({
      ok: false,
      error: { code: 'permission_denied' },
    });
    wire.close();
  });

  it('hands the connection a fresh token with auth.refresh, for the same user only', async () => {
    const wire = await raw(fan.token);
    const fresh = await stack.client.auth.authenticate({
      email: fan.email,
      password: 'Correct-Horse-42',
      deviceId: 'test',
      ipAddress: '127.0.0.1',
    });
    expect(await wire.request('auth.refresh', { token: fresh.accessToken })).toMatchObject({
      ok: true,
      result: { expiresAt: expect.stringMatching(/^\d{4}-/) },
    });
    expect(await wire.request('auth.refresh', { token: owner.token })).toMatchObject({
      ok: false,
      error: { code: 'permission_denied' },
    });
    expect(await wire.request('auth.refresh', { token: 'nope' })).toMatchObject({
      ok: false,
      error: { code: 'unauthenticated' },
    });
    expect(await wire.request('chat.join', { roomId })).toMatchObject({ ok: true });
    wire.close();
  });
});

describe('moderator actions and rooms over the WebSocket', () => {
  it('mutes, unmutes, unbans and ends a stream for moderators only', async () => {
    const host = await stack.createUser();
    const { streamId: ownStream, roomId: ownRoom } = await stack.startStream(host);
    const talker = await stack.createUser();
    const t = await stack.connect(talker);
    const mod = await stack.connect(moderator);
    await t.chat.join({ roomId: ownRoom });
    await expect(t.chat.moderation.mute(ownRoom, host.userId, 60)).rejects.toMatchObject({
      code: 'permission_denied',
    });

    const muted = t.chat.next('activity');
    const until = await mod.chat.moderation.mute(ownRoom, talker.userId, 600, 'cool down');
    expect(Date.parse(until ?? '')).toBeGreaterThan(Date.now());
    expect((await muted)[0]).toMatchObject({ activityType: 'muted', userId: talker.userId });
    await expect(t.chat.send(ownRoom, 'am I muted?')).rejects.toMatchObject({
      code: 'permission_denied',
      message: expect.stringMatching(/you are muted in room/),
    });
    await mod.chat.moderation.unmute(ownRoom, talker.userId);
    expect((await t.chat.send(ownRoom, 'back again')).content).toBe('back again');

    await mod.chat.moderation.ban(ownRoom, talker.userId, 60, 'short ban');
    await mod.chat.moderation.unban(ownRoom, talker.userId);
    const rejoined = await stack.connect(talker);
    expect((await rejoined.chat.join({ roomId: ownRoom })).roomId).toBe(ownRoom);

    expect(await mod.chat.moderation.endStream(ownStream, 'terms_violation')).toBe('live');
    await expect(rejoined.chat.send(ownRoom, 'still on?')).rejects.toMatchObject({
      code: 'failed_precondition',
      message: expect.stringMatching(/has ended/),
    });
  });

  it('creates, joins and leaves other rooms', async () => {
    const maker = await stack.createUser();
    const guest = await stack.createUser();
    const m = await stack.connect(maker);
    const g = await stack.connect(guest);
    const room = await m.chat.createRoom('After party', { description: 'open to all' });
    expect(room).toMatchObject({
      name: 'After party',
      ownerId: maker.userId,
      streamId: null,
      isPrivate: false,
    });
    await m.chat.join({ roomId: room.roomId });
    const seen = recorder(m.chat, () => room.roomId);
    await g.chat.join({ roomId: room.roomId });
    const hello = await g.chat.send(room.roomId, 'hi there');
    await vi.waitFor(() => expect(seen.ids()).toEqual([hello.messageId]));
    await g.chat.leave(room.roomId);
    await expect(g.chat.send(room.roomId, 'gone')).rejects.toMatchObject({ code: 'unavailable' });
    const wire = await raw(guest.token);
    expect(
      await wire.request('chat.send', { roomId: room.roomId, content: 'x', clientMessageId: 'x1' }),
    ).toMatchObject({
      ok: false,
      error: { reason: 'not_joined' },
    });
    // Membership is gone too: reading needs a new join.
    expect(await wire.request('chat.history', { roomId: room.roomId })).toMatchObject({
      ok: false,
      error: { code: 'failed_precondition' },
    });
    wire.close();
  });
});

describe('bad input over the WebSocket: a clear error, nothing stored, the connection stays healthy', () => {
  let user: ChatTestUser;
  let wire: RawClient;

  beforeAll(async () => {
    user = await stack.createUser();
    wire = await raw(user.token);
  });
  afterAll(() => wire?.close());

  /** After each refusal: nothing of this user stored, and a valid request still works. */
  async function healthy(stored: number): Promise<void> {
    expect(wire.open).toBe(true);
    expect(await storedCount(roomId, user.userId)).toBe(stored);
    expect(await wire.request('chat.history', { roomId, limit: 1 })).toMatchObject({ ok: true });
  }

  it('refuses sending to a room not joined on this connection', async () => {
    // A member (through gRPC) still has to join on this connection: that is what delivers the room here.
    await stack.client.chat.joinRoom({ roomId }, { token: user.token });
    const frame = await wire.request('chat.send', { roomId, content: 'hi', clientMessageId: 'nj-1' });
    expect(frame).toMatchObject({
      ok: false,
      error: {
        code: 'failed_precondition',
        reason: 'not_joined',
        message: expect.stringMatching(/chat\.join/),
      },
    });
    await healthy(0);
    expect(await wire.request('chat.join', { roomId })).toMatchObject({ ok: true });
  });

  it('refuses malformed frames and params, naming the field', async () => {
    wire.send('{"id": 1, "method": "chat.send", ');
    expect(await wire.next((frame) => frame.id === null)).toMatchObject({
      ok: false,
      error: { code: 'invalid_argument', message: expect.stringMatching(/malformed JSON/) },
    });
    const cases: Array<[unknown, string]> = [
      [{ roomId, content: 'x' }, 'params.clientMessageId'],
      [{ roomId: -1, content: 'x', clientMessageId: 'm-1' }, 'params.roomId'],
      [{ roomId, content: '   ', clientMessageId: 'm-2' }, 'params.content'],
      [{ roomId, content: 'x', clientMessageId: 'has space' }, 'params.clientMessageId'],
      [{ roomId, content: 'x', clientMessageId: 'm-3', messageType: 'shout' }, 'params.messageType'],
      [{ roomId, content: 'x', clientMessageId: 'm-4', extra: true }, 'params'],
      [{ roomId, content: 'bell\u0007', clientMessageId: 'm-5' }, 'params.content'],
    ];
    for (const [params, field] of cases) {
      const frame = await wire.request('chat.send', params);
      expect(frame, JSON.stringify(params)).toMatchObject({
        ok: false,
        error: { code: 'invalid_argument', field },
      });
    }
    // A reply to a message of another room is refused by the control plane, named as the protocol names it.
    const other = await stack.client.chat.createRoom(
      { name: 'elsewhere', description: '', isPrivate: false },
      { token: owner.token },
    );
    await stack.client.chat.joinRoom({ roomId: other.room?.roomId ?? 0 }, { token: owner.token });
    const elsewhere = await stack.client.chat.sendMessage(
      {
        roomId: other.room?.roomId ?? 0,
        content: 'over there',
        messageType: '',
        metadata: Buffer.alloc(0),
        replyToId: 0,
        clientMessageId: '',
      },
      { token: owner.token },
    );
    const reply = await wire.request('chat.send', {
      roomId,
      content: 'reply',
      clientMessageId: 'm-6',
      replyToId: elsewhere.message?.messageId,
    });
    expect(reply).toMatchObject({
      ok: false,
      error: { code: 'invalid_argument', field: 'params.replyToId' },
    });
    await healthy(0);
  });

  it('refuses oversize messages and frames', async () => {
    const long = await wire.request('chat.send', {
      roomId,
      content: 'a'.repeat(CHAT_MAX_LENGTH + 1),
      clientMessageId: 'big-1',
    });
    expect(long).toMatchObject({
      ok: false,
      error: {
        code: 'invalid_argument',
        field: 'params.content',
        message: expect.stringMatching(/at most 1000 characters/),
      },
    });
    const metadata = await wire.request('chat.send', {
      roomId,
      content: 'x',
      clientMessageId: 'big-2',
      metadata: { blob: 'x'.repeat(5000) },
    });
    expect(metadata).toMatchObject({
      ok: false,
      error: { code: 'invalid_argument', field: 'params.metadata' },
    });
    wire.send(
      JSON.stringify({
        id: 'huge',
        method: 'chat.send',
        params: { roomId, content: 'x'.repeat(70_000), clientMessageId: 'big-3' },
      }),
    );
    expect(
      await wire.next((frame) => frame.id === null && (frame.error as Frame)?.code === 'payload_too_large'),
    ).toBeDefined();
    await healthy(0);
  });

  it('answers a flood with resource_exhausted and a retry delay', async () => {
    const stored = await storedCount(roomId, user.userId);
    const results: Frame[] = [];
    for (let i = 0; i < 8; i++) {
      results.push(
        (await wire.request('chat.send', {
          roomId,
          content: `flood ${i}`,
          clientMessageId: `flood-${i}`,
        })) as unknown as Frame,
      );
    }
    const refused = results.filter((frame) => frame.ok === false);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]).toMatchObject({
      error: {
        code: 'resource_exhausted',
        message: expect.stringMatching(/too many messages in room/),
        retryAfterMs: expect.any(Number),
      },
    });
    const accepted = results.filter((frame) => frame.ok === true).length;
    expect(await storedCount(roomId, user.userId)).toBe(stored + accepted);
    expect(wire.open).toBe(true);
    expect(await wire.request('chat.history', { roomId, limit: 1 })).toMatchObject({ ok: true });
  });

  it("refuses deleting someone else's message without the moderator role", async () => {
    const theirs = await stack.client.chat.sendMessage(
      {
        roomId,
        content: 'not yours',
        messageType: '',
        metadata: Buffer.alloc(0),
        replyToId: 0,
        clientMessageId: '',
      },
      { token: owner.token },
    );
    const messageId = theirs.message?.messageId ?? 0;
    const frame = await wire.request('chat.delete', { messageId });
    expect(frame).toMatchObject({
      ok: false,
      error: { code: 'permission_denied', message: expect.stringMatching(/moderator or admin role/) },
    });
    const history = await stack.client.chat.getMessages(
      { roomId, limit: 5, beforeMessageId: 0, afterMessageId: 0 },
      {},
    );
    expect(history.messages.find((m) => m.messageId === messageId)?.deleted).toBe(false);
    expect(await wire.request('notifications.list', {})).toMatchObject({ ok: true });
  });

  it('drops a banned user from the room, and refuses them when they try again', async () => {
    const banned = await stack.createUser();
    const socket = await raw(banned.token);
    expect(await socket.request('chat.join', { roomId })).toMatchObject({ ok: true });
    const mod = await stack.connect(moderator);
    await mod.chat.moderation.ban(roomId, banned.userId, 0, 'abuse');
    expect(
      await socket.next(
        (frame) =>
          frame.notification === 'chat.activity' &&
          (frame.data as Frame).activityType === 'banned' &&
          (frame.data as Frame).userId === banned.userId,
      ),
    ).toMatchObject({ data: { roomId, data: { reason: 'abuse' } } });

    // Out of the room on this connection...
    expect(
      await socket.request('chat.send', { roomId, content: 'let me in', clientMessageId: 'ban-1' }),
    ).toMatchObject({
      ok: false,
      error: { code: 'failed_precondition', reason: 'not_joined' },
    });
    // ...and refused when joining again.
    expect(await socket.request('chat.join', { roomId })).toMatchObject({
      ok: false,
      error: { code: 'permission_denied', message: `you are banned from room ${roomId}` },
    });
    expect(await storedCount(roomId, banned.userId)).toBe(0);
    expect(socket.open).toBe(true);
    expect(await socket.request('notifications.list', {})).toMatchObject({ ok: true });
    socket.close();
  });
});

describe('gRPC and WebSocket', () => {
  it('delivers a gRPC SendMessage to WebSocket members, and streams WebSocket messages to StreamMessages', async () => {
    const grpcUser = await stack.createUser();
    await stack.client.chat.joinRoom({ roomId }, { token: grpcUser.token });
    const member = await stack.connect(await stack.createUser());
    const seen = recorder(member.chat, () => roomId);
    await member.chat.join({ roomId });

    const viaGrpc = await stack.client.chat.sendMessage(
      {
        roomId,
        content: 'sent over gRPC',
        messageType: '',
        metadata: Buffer.alloc(0),
        replyToId: 0,
        clientMessageId: 'grpc-1',
      },
      { token: grpcUser.token },
    );
    await vi.waitFor(() => expect(seen.ids()).toContain(viaGrpc.message?.messageId));
    expect(seen.created.find((m) => m.messageId === viaGrpc.message?.messageId)).toMatchObject({
      content: 'sent over gRPC',
      username: grpcUser.username,
    });

    const stream = stack.client.chat.streamMessages(
      { roomId, lastMessageId: viaGrpc.message?.messageId ?? 0 },
      { token: grpcUser.token },
    );
    const iterator = stream[Symbol.asyncIterator]();
    // The stream subscribes before it reads the stored messages: a send after a first event is surely live.
    const marker = await stack.client.chat.sendMessage(
      {
        roomId,
        content: 'marker',
        messageType: '',
        metadata: Buffer.alloc(0),
        replyToId: 0,
        clientMessageId: 'grpc-2',
      },
      { token: grpcUser.token },
    );
    const first = await iterator.next();
    expect(first.value?.messageId).toBe(marker.message?.messageId);
    const viaWs = await member.chat.send(roomId, 'sent over the WebSocket');
    const next = await iterator.next();
    expect(next.value).toMatchObject({
      eventType: 'created',
      messageId: viaWs.messageId,
      content: 'sent over the WebSocket',
    });
    stream.cancel();
  });
});

describe('delivery under stress', () => {
  it('catches a reconnecting client up: no gap, no duplicate, and its send while offline is stored once', async () => {
    let gate: Promise<void> = Promise.resolve();
    let open: () => void = () => {};
    const roamer = await stack.createUser();
    const a = await stack.connect(roamer, {
      token: async () => {
        await gate;
        return roamer.token;
      },
    });
    const b = await stack.connect(await stack.createUser());
    const seen = recorder(a.chat, () => roomId);
    await a.chat.join({ roomId });
    await b.chat.join({ roomId });
    const before = await b.chat.send(roomId, 'before the drop');
    await vi.waitFor(() => expect(seen.ids()).toContain(before.messageId));

    gate = new Promise((resolve) => {
      open = resolve;
    });
    const dropped = a.connection.next('close');
    // A frame over the hard limit: uWS closes the connection (1006), the library reconnects.
    const oversized = a.connection.request as unknown as (
      method: string,
      params: unknown,
    ) => Promise<unknown>;
    oversized.call(a.connection, 'chat.history', { pad: 'x'.repeat(2 * 1024 * 1024) }).catch(() => undefined);
    await dropped;
    const missed: ChatMessage[] = [];
    for (let i = 0; i < 4; i++) missed.push(await b.chat.send(roomId, `while away ${i}`));
    const offline = a.chat.send(roomId, 'sent while offline');
    const synced = a.chat.next('synced');
    open();
    expect((await synced)[0]).toEqual({ roomId, reconnect: true });
    const mine = await offline;
    const after = await b.chat.send(roomId, 'after the return');

    const wanted = [before, ...missed, mine, after].map((m) => m.messageId);
    await vi.waitFor(() => expect(seen.ids().filter((id) => wanted.includes(id))).toEqual(wanted));
    expect(new Set(seen.ids()).size).toBe(seen.ids().length);
    const ids = seen.ids();
    expect([...ids].sort((x, y) => x - y)).toEqual(ids);
    expect(await storedCount(roomId, roamer.userId)).toBe(1);
    // Every ack found its broadcast already through this edge (none waited out the timeout).
    expect(await metric('veza_ws_chat_ack_waits_total', { result: 'timeout' })).toBe(0);
  });
});

describe('upload progress', () => {
  it("forwards a track's progress from the bus to its owner's sockets only, as track.progress", async () => {
    const uploader = await stack.createUser();
    const other = await stack.createUser();
    const mine = await stack.connect(uploader);
    const theirs = await stack.connect(other);
    await Promise.all([mine.chat.loadNotifications(), theirs.chat.loadNotifications()]);
    const seenMine: unknown[] = [];
    const seenTheirs: unknown[] = [];
    mine.chat.on('trackProgress', (p) => seenMine.push(p));
    theirs.chat.on('trackProgress', (p) => seenTheirs.push(p));

    const bus = stack.ports.bus;
    await bus.publish(trackProgressSubject(900001), {
      trackId: 900001,
      ownerId: uploader.userId,
      bogus: true,
    });
    await bus.publish(trackProgressSubject(900001), {
      trackId: 900001,
      ownerId: uploader.userId,
      status: 'processing',
      progress: 40,
      stage: 'loudness',
    });
    // Published after the first user's: once it arrives, anything misrouted would have too.
    await bus.publish(trackProgressSubject(900002), {
      trackId: 900002,
      ownerId: other.userId,
      status: 'processing',
      progress: 10,
    });
    await vi.waitFor(() => expect(seenTheirs).toHaveLength(1));
    await vi.waitFor(() => expect(seenMine).toHaveLength(1));
    expect(seenMine).toEqual([{ trackId: 900001, status: 'processing', progress: 40, stage: 'loudness' }]);
    expect(seenTheirs).toEqual([{ trackId: 900002, status: 'processing', progress: 10 }]);
  });
});
