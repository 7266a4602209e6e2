/**
 * NotificationService over a real gRPC server and PostgreSQL: sending, paging, marking as
 * read, the live stream with resume, follows and the "stream.live" notification.
 */
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { notificationSubject } from '../../common/contracts/index.js';
import {
  type ChatHarness,
  notificationCalls,
  startChatHarness,
  startStream,
  type TestUser,
  waitUntil,
} from '../chat/test-support.js';
import { grpcError } from '../test-harness.js';

let h: ChatHarness;
let alice: TestUser;
let bob: TestUser;
let admin: TestUser;

beforeAll(async () => {
  h = await startChatHarness();
  alice = await h.user('alice');
  bob = await h.user('bob');
  admin = await h.user('admin', ['admin']);
});

afterAll(async () => {
  await h?.close();
});

const as = (user: TestUser) => notificationCalls(h.notifications, user.md);
const service = () => notificationCalls(h.notifications, h.service());
const json = (value: object) => Buffer.from(JSON.stringify(value), 'utf8');

describe('SendNotification', () => {
  it('accepts a service or an admin, stores the notification and publishes it', async () => {
    const published = new Promise<unknown>((resolve) => {
      const sub = h.ports.bus.subscribe(notificationSubject(alice.userId), (payload) => {
        sub.unsubscribe();
        resolve(payload);
      });
    });
    const sent = await service().send({
      userId: alice.userId,
      notificationType: 'upload.ready',
      title: 'Your track is ready',
      body: 'Listen now',
      data: json({ track_id: 7 }),
    });
    expect(sent.notification).toMatchObject({
      userId: alice.userId,
      notificationType: 'upload.ready',
      read: false,
    });
    expect(JSON.parse(sent.notification?.data.toString('utf8') ?? '')).toEqual({ track_id: 7 });
    expect(await published).toMatchObject({
      notification_id: sent.notification?.notificationId,
      user_id: alice.userId,
      title: 'Your track is ready',
      data: json({ track_id: 7 }).toString('base64'),
    });
    const byAdmin = await as(admin).send({
      userId: alice.userId,
      notificationType: 'system.notice',
      title: 'Hi',
    });
    expect(byAdmin.success).toBe(true);
  });

  it('refuses other users and bad input, naming the field', async () => {
    expect(
      (await grpcError(as(bob).send({ userId: alice.userId, notificationType: 'x.y', title: 'spoof' }))).code,
    ).toBe(status.PERMISSION_DENIED);
    const cases: Array<[Parameters<ReturnType<typeof service>['send']>[0], string]> = [
      [{ userId: 0, notificationType: 'a.b', title: 't' }, 'user_id'],
      [{ userId: alice.userId, notificationType: 'Not A Type', title: 't' }, 'notification_type'],
      [{ userId: alice.userId, notificationType: 'a.b', title: '' }, 'title'],
      [{ userId: alice.userId, notificationType: 'a.b', title: 't', data: Buffer.from('not json') }, 'data'],
    ];
    for (const [request, field] of cases) {
      const error = await grpcError(service().send(request));
      expect(error.code, field).toBe(status.INVALID_ARGUMENT);
      expect(error.metadata.get('veza-error-field')[0]).toBe(field);
    }
    expect(
      (await grpcError(service().send({ userId: 999_999, notificationType: 'a.b', title: 't' }))).code,
    ).toBe(status.NOT_FOUND);
  });
});

describe('reading', () => {
  it('pages newest first with totals and the unread count, and marks only the caller’s as read', async () => {
    const reader = await h.user('reader');
    const ids: number[] = [];
    for (let n = 0; n < 5; n++) {
      const sent = await service().send({
        userId: reader.userId,
        notificationType: 'test.page',
        title: `n${n}`,
      });
      ids.push(sent.notification?.notificationId ?? 0);
    }
    const first = await as(reader).list({ pagination: { page: 1, pageSize: 2 } });
    expect(first.notifications.map((n) => n.title)).toEqual(['n4', 'n3']);
    expect(first.pagination).toMatchObject({ page: 1, pageSize: 2, total: 5, totalPages: 3 });
    expect(first.unreadCount).toBe(5);
    const last = await as(reader).list({ pagination: { page: 3, pageSize: 2 } });
    expect(last.notifications.map((n) => n.title)).toEqual(['n0']);

    const marked = await as(reader).markRead({ notificationIds: [ids[0] ?? 0, ids[1] ?? 0] });
    expect(marked.updated).toBe(2);
    const unread = await as(reader).list({ unreadOnly: true });
    expect(unread.notifications.map((n) => n.title)).toEqual(['n4', 'n3', 'n2']);
    expect(unread).toMatchObject({ unreadCount: 3, pagination: { total: 3 } });

    // Someone else's ids change nothing.
    expect((await as(bob).markRead({ notificationIds: [ids[2] ?? 0] })).updated).toBe(0);
    expect((await as(reader).markRead({ all: true })).updated).toBe(3);
    expect((await as(reader).list()).unreadCount).toBe(0);
    expect((await grpcError(as(reader).markRead({}))).metadata.get('veza-error-field')[0]).toBe(
      'notification_ids',
    );
    expect((await grpcError(as(reader).list({ pagination: { pageSize: 101 } }))).code).toBe(
      status.INVALID_ARGUMENT,
    );
  });

  it('streams the caller’s notifications live, resuming after an id without a gap', async () => {
    const listener = await h.user('listener');
    const send = (title: string, userId = listener.userId) =>
      service().send({ userId, notificationType: 'test.live', title });
    const n0 = await send('n0');
    await send('n1');
    const stream = as(listener).stream(n0.notification?.notificationId);
    const [caught] = await stream.waitFor(1);
    expect(caught?.title).toBe('n1');
    await send('not yours', bob.userId);
    const n2 = await send('n2');
    const got = await waitUntil(stream, (ms) =>
      ms.some((m) => m.notificationId === n2.notification?.notificationId),
    );
    expect(got.map((n) => n.title)).toEqual(['n1', 'n2']);
    stream.stream.cancel();
  });
});

describe('follows', () => {
  it('notifies followers when a followed broadcaster goes live', async () => {
    const dj = await h.user('dj');
    const fan = await h.user('fan');
    const other = await h.user('other');
    await as(fan).follow(dj.userId);
    await as(fan).follow(dj.userId);
    expect((await as(fan).following()).following).toEqual([
      expect.objectContaining({ userId: dj.userId, username: dj.username }),
    ]);
    expect((await grpcError(as(fan).follow(fan.userId))).code).toBe(status.INVALID_ARGUMENT);
    expect((await grpcError(as(fan).follow(999_999))).code).toBe(status.NOT_FOUND);

    const marker = await service().send({
      userId: fan.userId,
      notificationType: 'test.marker',
      title: 'marker',
    });
    await service().send({ userId: fan.userId, notificationType: 'test.marker', title: 'primer' });
    const stream = as(fan).stream(marker.notification?.notificationId);
    await stream.waitFor(1);

    const started = await startStream(h.streams, dj.md, 'Friday mix');
    const live = await waitUntil(stream, (ms) => ms.some((m) => m.notificationType === 'stream.live'));
    const notification = live.find((m) => m.notificationType === 'stream.live');
    expect(notification).toMatchObject({ title: `${dj.username} is live`, body: 'Friday mix' });
    expect(JSON.parse(notification?.data.toString('utf8') ?? '{}')).toMatchObject({
      stream_id: started.stream?.streamId,
      broadcaster_id: dj.userId,
      chat_room_id: started.stream?.chatRoomId,
    });
    expect((await as(other).list()).notifications).toHaveLength(0);

    await as(fan).unfollow(dj.userId);
    expect((await as(fan).following()).following).toHaveLength(0);
    stream.stream.cancel();
  });
});
