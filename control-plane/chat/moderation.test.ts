/**
 * Moderation through ChatService over gRPC: automatic blocking, reports, the moderator
 * queue and the moderator actions with their audit rows.
 */
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STREAM_ENDED } from '../../common/contracts/index.js';
import { grpcError } from '../test-harness.js';
import {
  type ChatHarness,
  chatCalls,
  notificationCalls,
  startChatHarness,
  startStream,
  type TestUser,
  waitUntil,
} from './test-support.js';

let h: ChatHarness;
let alice: TestUser;
let bob: TestUser;
let mod: TestUser;
let admin: TestUser;

beforeAll(async () => {
  h = await startChatHarness();
  alice = await h.user('alice');
  bob = await h.user('bob');
  mod = await h.user('mod', ['moderator']);
  admin = await h.user('admin', ['admin']);
});

afterAll(async () => {
  await h?.close();
});

const as = (user: TestUser) => chatCalls(h.chat, user.md);
const inbox = (user: TestUser) => notificationCalls(h.notifications, user.md);

async function room(owner: TestUser, ...members: TestUser[]): Promise<number> {
  const created = await as(owner).createRoom({ name: 'moderated room' });
  const roomId = created.room?.roomId ?? 0;
  for (const member of members) await as(member).join(roomId);
  return roomId;
}

/** A StreamMessages reader of `roomId` known to be live: it caught up on a message sent for it. */
async function liveReader(reader: TestUser, sender: TestUser, roomId: number) {
  const before = await as(sender).send({ roomId, content: 'welcome' });
  await as(sender).send({ roomId, content: 'primer' });
  const stream = as(reader).streamMessages(roomId, before.message?.messageId);
  await stream.waitFor(1);
  return stream;
}

async function audit(action: string, targetId: number | string) {
  return h.sql<{ actor_id: number; details: Record<string, unknown>; created_at: Date }[]>`
    select actor_id, details, created_at from audit_log where action = ${action} and target_id = ${String(targetId)}`;
}

describe('automatic moderation', () => {
  it('blocks a toxic message: stored flagged, not delivered, moderators notified', async () => {
    const roomId = await room(alice, bob);
    const reader = await liveReader(bob, alice, roomId);

    const error = await grpcError(
      as(alice).send({ roomId, content: 'you are a fucking idiot', clientMessageId: 'tox-1' }),
    );
    expect(error.code).toBe(status.FAILED_PRECONDITION);
    expect(error.details).toBe('message not sent: offensive language');

    const [stored] = await h.sql<{ id: number; flagged: boolean; moderation_reasons: string[] }[]>`
      select id, flagged, moderation_reasons from chat_messages where room_id = ${roomId} and client_message_id = 'tox-1'`;
    expect(stored).toMatchObject({ flagged: true, moderation_reasons: ['offensive language'] });

    // A retry gets the same answer and stores nothing more.
    const retry = await grpcError(
      as(alice).send({ roomId, content: 'you are a fucking idiot', clientMessageId: 'tox-1' }),
    );
    expect(retry.details).toBe(error.details);

    // Not delivered: the next event bob sees is the next clean message; history hides it.
    const clean = await as(alice).send({ roomId, content: 'sorry, all good' });
    const events = await reader.waitFor(2);
    expect(events[1]?.messageId).toBe(clean.message?.messageId);
    const history = await as(bob).history({ roomId });
    expect(history.messages.map((m) => m.messageId)).not.toContain(stored?.id);

    for (const staff of [mod, admin]) {
      const list = await inbox(staff).list({ unreadOnly: true });
      const flagged = list.notifications.find((n) => n.notificationType === 'moderation.flagged');
      expect(flagged, staff.username).toBeDefined();
      expect(JSON.parse(flagged?.data.toString('utf8') ?? '{}')).toMatchObject({
        message_id: stored?.id,
        room_id: roomId,
      });
    }
    expect((await inbox(bob).list()).notifications).toHaveLength(0);

    const queue = await as(mod).queue();
    const item = queue.items.find((i) => i.targetId === stored?.id);
    expect(item).toMatchObject({ source: 'automatic', targetType: 'message', status: 'open', roomId });
    expect(item?.message?.content).toBe('you are a fucking idiot');
    expect(item?.score).toBeGreaterThanOrEqual(0.7);
    reader.stream.cancel();
  });

  it('also blocks obfuscated variants', async () => {
    const variants = [
      'f.u.c.k you', // separators
      'f u c k you', // spaced out
      'fuuuuuuck off', // repeated letters
      'sh1t stream', // leetspeak
      'you @$$hole', // symbols
      'ｆｕｃｋ', // full-width
      'what a сunt', // Cyrillic с
      'espèce de connard', // French
      'ferme ta gueule', // French phrase
      'p.u.t.a.i.n', // French, separated
      'enculé', // diacritics
      'b1tch please', // leet
    ];
    const senders = await Promise.all([1, 2, 3, 4].map((n) => h.user(`sender${n}`)));
    const roomId = await room(alice, ...senders);
    for (const [index, content] of variants.entries()) {
      const sender = senders[index % senders.length] as TestUser;
      const error = await grpcError(as(sender).send({ roomId, content }));
      expect(error.code, content).toBe(status.FAILED_PRECONDITION);
      expect(error.details, content).toContain('message not sent');
    }
    const [row] = await h.sql<{ flagged: number; visible: number }[]>`
      select count(*) filter (where flagged)::int as flagged, count(*) filter (where not flagged)::int as visible
      from chat_messages where room_id = ${roomId}`;
    expect(row).toEqual({ flagged: variants.length, visible: 0 });
  });

  it('blocks link spam and repeated messages', async () => {
    const roomId = await room(alice, bob);
    const spam = await grpcError(as(bob).send({ roomId, content: 'free stuff at bit.ly/xyz' }));
    expect(spam.details).toBe('message not sent: link spam');
    await as(alice).send({ roomId, content: 'follow me' });
    await as(alice).send({ roomId, content: 'follow me' });
    const third = await grpcError(as(alice).send({ roomId, content: 'follow me' }));
    expect(third.details).toBe('message not sent: repeated message');
  });
});

describe('reports', () => {
  it('stores a report, notifies moderators and lists it in the queue until resolved', async () => {
    const roomId = await room(alice, bob);
    const sent = await as(alice).send({ roomId, content: 'borderline remark' });
    const messageId = sent.message?.messageId ?? 0;
    const reported = await as(bob).report({
      targetType: 'message',
      targetId: messageId,
      reason: 'harassment',
      details: 'line one\nline two',
    });
    expect(reported.reportId).toBeGreaterThan(0);
    const again = await as(bob).report({ targetType: 'message', targetId: messageId, reason: 'harassment' });
    expect(again.reportId).toBe(reported.reportId);

    const notes = (await inbox(mod).list()).notifications.filter(
      (n) => n.notificationType === 'moderation.report',
    );
    expect(
      notes.filter((n) => JSON.parse(n.data.toString('utf8')).report_id === reported.reportId),
    ).toHaveLength(1);

    const userReport = await as(bob).report({ targetType: 'user', targetId: alice.userId, reason: 'spam' });
    const queue = await as(mod).queue({ status: 'open' });
    const item = queue.items.find((i) => i.reportId === reported.reportId);
    expect(item).toMatchObject({
      source: 'user',
      reporterId: bob.userId,
      roomId,
      reason: 'harassment',
      details: 'line one\nline two',
    });
    expect(item?.message?.content).toBe('borderline remark');
    expect(queue.items.some((i) => i.reportId === userReport.reportId)).toBe(true);

    const resolved = await as(mod).resolve({
      reportId: reported.reportId,
      resolution: 'dismissed',
      note: 'fine',
    });
    expect(resolved.item).toMatchObject({
      status: 'dismissed',
      resolvedBy: mod.userId,
      resolutionNote: 'fine',
    });
    const open = await as(mod).queue();
    expect(open.items.some((i) => i.reportId === reported.reportId)).toBe(false);
    expect(
      (await grpcError(as(mod).resolve({ reportId: reported.reportId, resolution: 'actioned' }))).code,
    ).toBe(status.FAILED_PRECONDITION);
    expect(await audit('report.resolved', reported.reportId)).toHaveLength(1);
  });

  it('validates the target and keeps the queue to moderators', async () => {
    expect(
      (await grpcError(as(bob).report({ targetType: 'planet', targetId: 1, reason: 'x' }))).metadata.get(
        'veza-error-field',
      )[0],
    ).toBe('target_type');
    expect(
      (await grpcError(as(bob).report({ targetType: 'message', targetId: 987_654, reason: 'x' }))).code,
    ).toBe(status.NOT_FOUND);
    expect(
      (await grpcError(as(bob).report({ targetType: 'user', targetId: bob.userId, reason: 'x' }))).code,
    ).toBe(status.INVALID_ARGUMENT);
    expect(
      (
        await grpcError(as(bob).report({ targetType: 'user', targetId: alice.userId, reason: '' }))
      ).metadata.get('veza-error-field')[0],
    ).toBe('reason');
    expect((await grpcError(as(bob).queue())).code).toBe(status.PERMISSION_DENIED);
  });

  it('approving a wrongly flagged message delivers it', async () => {
    const roomId = await room(alice, bob);
    const reader = await liveReader(bob, alice, roomId);
    await grpcError(
      as(alice).send({ roomId, content: 'that bass drop was the shit', clientMessageId: 'fp' }),
    );
    const queue = await as(mod).queue();
    const item = queue.items.find((i) => i.message?.clientMessageId === 'fp' && i.roomId === roomId);
    await as(mod).resolve({ reportId: item?.reportId, resolution: 'approved' });
    const events = await reader.waitFor(2);
    expect(events[1]).toMatchObject({
      content: 'that bass drop was the shit',
      clientMessageId: 'fp',
    });
    expect((await as(bob).history({ roomId })).messages).toHaveLength(3);
    reader.stream.cancel();
  });
});

describe('moderator actions', () => {
  it("lets a moderator delete anyone's message, audited", async () => {
    const roomId = await room(alice, bob);
    const sent = await as(alice).send({ roomId, content: 'delete me' });
    const messageId = sent.message?.messageId ?? 0;
    await as(mod).remove(messageId, 'off topic');
    const [row] = await audit('chat.message_deleted', messageId);
    expect(row).toMatchObject({
      actor_id: mod.userId,
      details: { room_id: roomId, author_id: alice.userId, reason: 'off topic' },
    });
    expect((await as(bob).history({ roomId })).messages[0]).toMatchObject({ deleted: true, content: '' });
  });

  it('mutes a user for a duration, announced on the activity stream, audited', async () => {
    const roomId = await room(alice, bob);
    const reader = as(alice).streamActivity(roomId);
    for (let attempt = 0; attempt < 15 && reader.messages.length === 0; attempt++)
      await as(alice).activity(roomId, 'typing');
    await reader.waitFor(1);

    const muted = await as(mod).mute({ roomId, userId: bob.userId, durationS: 600, reason: 'cool down' });
    const remaining = (muted.expiresAt?.getTime() ?? 0) - Date.now();
    expect(remaining).toBeGreaterThan(590_000);
    expect(remaining).toBeLessThanOrEqual(601_000);
    const error = await grpcError(as(bob).send({ roomId, content: 'let me talk' }));
    expect(error.code).toBe(status.PERMISSION_DENIED);
    expect(error.details).toContain(`you are muted in room ${roomId} until`);
    const seen = await waitUntil(reader, (ms) => ms.some((m) => m.activityType === 'muted'));
    const activity = seen.find((m) => m.activityType === 'muted');
    expect(activity).toMatchObject({ userId: bob.userId, username: bob.username });
    expect(JSON.parse(activity?.data.toString('utf8') ?? '{}')).toMatchObject({ reason: 'cool down' });
    expect(await audit('chat.user_muted', bob.userId)).toHaveLength(1);

    await as(mod).unmute(roomId, bob.userId);
    expect((await as(bob).send({ roomId, content: 'thanks' })).success).toBe(true);
    expect((await grpcError(as(alice).mute({ roomId, userId: bob.userId, durationS: 60 }))).code).toBe(
      status.PERMISSION_DENIED,
    );
    expect((await grpcError(as(mod).mute({ roomId, userId: admin.userId, durationS: 60 }))).code).toBe(
      status.PERMISSION_DENIED,
    );
    expect(
      (await grpcError(as(mod).mute({ roomId, userId: bob.userId, durationS: 0 }))).metadata.get(
        'veza-error-field',
      )[0],
    ).toBe('duration_s');
    reader.stream.cancel();
  });

  it('bans a user from a room: their stream ends and they cannot join or send again', async () => {
    const roomId = await room(alice, bob);
    const reader = await liveReader(bob, alice, roomId);

    await as(mod).ban({ roomId, userId: bob.userId, reason: 'abuse' });
    await reader.finished();
    expect(reader.error?.code).toBe(status.PERMISSION_DENIED);

    const send = await grpcError(as(bob).send({ roomId, content: 'I am back' }));
    expect(send.code).toBe(status.PERMISSION_DENIED);
    expect(send.details).toBe(`you are banned from room ${roomId}`);
    const join = await grpcError(as(bob).join(roomId));
    expect(join.code).toBe(status.PERMISSION_DENIED);
    const again = await grpcError(as(bob).send({ roomId, content: 'still banned?' }));
    expect(again.code).toBe(status.PERMISSION_DENIED);
    const [row] = await audit('chat.user_banned', bob.userId);
    expect(row).toMatchObject({
      actor_id: mod.userId,
      details: { room_id: roomId, reason: 'abuse', expires_at: null },
    });
    const [count] = await h.sql<
      { n: number }[]
    >`select count(*)::int as n from chat_messages where room_id = ${roomId} and user_id = ${bob.userId}`;
    expect(count?.n).toBe(0);

    await as(mod).unban(roomId, bob.userId);
    await as(bob).join(roomId);
    expect((await as(bob).send({ roomId, content: 'behaving now' })).success).toBe(true);
  });

  it('ends a live stream, audited, publishing stream.ended', async () => {
    const dj = await h.user('dj');
    const started = await startStream(h.streams, dj.md);
    const streamId = started.stream?.streamId ?? 0;
    const ended = new Promise<unknown>((resolve) => {
      const sub = h.ports.bus.subscribe(STREAM_ENDED, (payload) => {
        sub.unsubscribe();
        resolve(payload);
      });
    });
    expect((await grpcError(as(bob).endStream(streamId))).code).toBe(status.PERMISSION_DENIED);
    const result = await as(mod).endStream(streamId, 'terms_violation');
    expect(result.previousStatus).toBe('live');
    expect(await ended).toMatchObject({ stream_id: streamId, reason: 'terms_violation' });
    const [row] = await h.sql<
      { status: string; end_reason: string }[]
    >`select status, end_reason from streams where id = ${streamId}`;
    expect(row).toEqual({ status: 'ended', end_reason: 'terms_violation' });
    expect(await audit('stream.ended_by_moderator', streamId)).toHaveLength(1);
    expect((await as(mod).endStream(streamId)).previousStatus).toBe('ended');
    expect((await grpcError(as(mod).endStream(999_999))).code).toBe(status.NOT_FOUND);
  });
});
