/**
 * AnalyticsService TrackEvent and GetAnalytics end to end: a real control plane on port 0
 * over a fresh database, called with the generated client as users, an admin and a service.
 */
import { credentials, type Metadata, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AnalyticsServiceClient,
  type DeepPartial,
  GetAnalyticsRequest,
  TrackEventRequest,
} from '../../proto/gen/veza/analytics/analytics.js';
import {
  authCalls,
  bearer,
  grpcError,
  type Harness,
  metadata,
  STRONG_PASSWORD,
  startHarness,
  unary,
} from '../test-harness.js';

let h: Harness;
let client: AnalyticsServiceClient;
let api: ReturnType<typeof authCalls>;
let seq = 0;

async function account(prefix: string, roles?: string[]): Promise<{ userId: number; md: Metadata }> {
  seq += 1;
  const email = `${prefix}${seq}@example.com`;
  const registered = await api.register({ email, username: `${prefix}_${seq}`, password: STRONG_PASSWORD });
  const userId = registered.userInfo?.userId ?? 0;
  if (roles) await h.sql`update users set roles = ${roles} where id = ${userId}`;
  const { accessToken } = await api.authenticate({ email, password: STRONG_PASSWORD });
  return { userId, md: bearer(accessToken) };
}

const track = (request: DeepPartial<TrackEventRequest>, md: Metadata) =>
  unary(client.trackEvent.bind(client), TrackEventRequest.fromPartial(request), md);
const query = (request: DeepPartial<GetAnalyticsRequest>, md: Metadata) =>
  unary(client.getAnalytics.bind(client), GetAnalyticsRequest.fromPartial(request), md);
const service = () => metadata({ 'x-api-key': h.apiKey });

beforeAll(async () => {
  h = await startHarness();
  api = authCalls(h.auth);
  client = new AnalyticsServiceClient(h.address, credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await h?.close();
});

describe('TrackEvent', () => {
  it('records a user’s own events, and any user’s or anonymous ones for a service', async () => {
    const fan = await account('fan');
    const own = await track({ eventType: 'player.play', properties: { track_id: '7' } }, fan.md);
    expect(own).toMatchObject({ success: true });
    expect(own.eventId).toBeGreaterThan(0);
    await track({ eventType: 'player.play', userId: fan.userId }, fan.md);
    const when = new Date(Date.now() - 60_000);
    await track({ eventType: 'stream.started', userId: fan.userId, timestamp: when }, service());
    await track({ eventType: 'page.view' }, service());

    const rows = await h.sql<
      { event_type: string; user_id: number | null; properties: unknown; occurred_at: Date }[]
    >`
      select event_type, user_id, properties, occurred_at from analytics_events order by id`;
    expect(rows.map((row) => [row.event_type, row.user_id])).toEqual([
      ['player.play', fan.userId],
      ['player.play', fan.userId],
      ['stream.started', fan.userId],
      ['page.view', null],
    ]);
    expect(rows[0]?.properties).toEqual({ track_id: '7' });
    expect(rows[2]?.occurred_at.getTime()).toBe(when.getTime());
  });

  it('refuses other users’ events and bad input, naming the field', async () => {
    const fan = await account('fan');
    const other = await grpcError(track({ eventType: 'player.play', userId: fan.userId + 1 }, fan.md));
    expect(other.code).toBe(status.PERMISSION_DENIED);
    const anonymous = await grpcError(track({ eventType: 'player.play' }, metadata({})));
    expect(anonymous.code).toBe(status.UNAUTHENTICATED);

    const badType = await grpcError(track({ eventType: 'Track Uploaded' }, fan.md));
    expect([badType.code, badType.metadata.get('veza-error-field')[0]]).toEqual([
      status.INVALID_ARGUMENT,
      'event_type',
    ]);
    const future = await grpcError(
      track({ eventType: 'player.play', timestamp: new Date(Date.now() + 3_600_000) }, fan.md),
    );
    expect(future.details).toBe('timestamp is in the future');
    const unknown = await grpcError(track({ eventType: 'player.rewind' }, fan.md));
    expect([unknown.code, unknown.metadata.get('veza-error-field')[0]]).toEqual([
      status.INVALID_ARGUMENT,
      'event_type',
    ]);
    expect(unknown.details).toContain('is not one of the known event types');
    const platformOnly = await grpcError(track({ eventType: 'listener.joined' }, fan.md));
    expect(platformOnly.code).toBe(status.PERMISSION_DENIED);
    const [stored] = await h.sql<{ n: number }[]>`
      select count(*)::int as n from analytics_events where user_id = ${fan.userId}`;
    expect(stored?.n).toBe(0);
    const properties = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v']));
    const tooMany = await grpcError(track({ eventType: 'player.play', properties }, fan.md));
    expect(tooMany.details).toBe('at most 50 properties');
  });
});

describe('GetAnalytics', () => {
  it('gives users their own events, admins and services everyone’s, filtered by type and time', async () => {
    const a = await account('a');
    const b = await account('b');
    const admin = await account('admin', ['listener', 'admin']);
    const start = new Date();
    // Uploads are recorded by the platform (a service), clients record their player's events.
    await track({ eventType: 'track.uploaded', userId: a.userId }, service());
    await track({ eventType: 'track.uploaded', userId: a.userId }, service());
    await track({ eventType: 'player.play' }, a.md);
    await track({ eventType: 'track.uploaded', userId: b.userId }, service());
    await track(
      { eventType: 'track.uploaded', userId: a.userId, timestamp: new Date(start.getTime() - 86_400_000) },
      service(),
    );

    const mine = await query({ from: start }, a.md);
    expect(mine.total).toBe(3);
    expect(mine.countsByType).toEqual({ 'track.uploaded': 2, 'player.play': 1 });
    expect(mine.events.map((event) => event.eventType)).toEqual([
      'player.play',
      'track.uploaded',
      'track.uploaded',
    ]);
    expect(mine.events.every((event) => event.userId === a.userId)).toBe(true);

    const allOfMine = await query({ eventType: 'track.uploaded' }, a.md);
    expect(allOfMine.total).toBe(3);
    const before = await query({ eventType: 'track.uploaded', to: start }, a.md);
    expect(before.total).toBe(1);

    const denied = await grpcError(query({ userId: b.userId }, a.md));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    const everyone = await query({ eventType: 'track.uploaded', from: start }, admin.md);
    expect(everyone.total).toBe(3);
    expect((await query({ userId: b.userId, from: start }, service())).countsByType).toEqual({
      'track.uploaded': 1,
    });

    const backwards = await grpcError(query({ from: start, to: new Date(start.getTime() - 1000) }, a.md));
    expect([backwards.code, backwards.details]).toEqual([status.INVALID_ARGUMENT, 'from must be before to']);
  });
});
