/**
 * StreamService end to end: a real control plane on port 0 over a fresh database and the
 * standalone ports, called with the generated client; events are awaited on the real bus.
 */
import { credentials, type Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { createLocalJWKSet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STREAM_ENDED, STREAM_STARTED } from '../../common/contracts/index.js';
import { verifyAccessToken } from '../../common/index.js';
import {
  type DeepPartial,
  GetStreamInfoRequest,
  IssueListenerTokenRequest,
  ListStreamsRequest,
  ReportListenerCountRequest,
  StartStreamRequest,
  StopStreamRequest,
  StreamServiceClient,
} from '../../proto/gen/veza/stream/stream.js';
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
let api: ReturnType<typeof authCalls>;
let client: StreamServiceClient;
let seq = 0;

function streamCalls(c: StreamServiceClient) {
  return {
    start: (request: DeepPartial<StartStreamRequest>, md?: Metadata) =>
      unary(c.startStream.bind(c), StartStreamRequest.fromPartial({ isPublic: true, ...request }), md),
    stop: (request: DeepPartial<StopStreamRequest>, md?: Metadata) =>
      unary(c.stopStream.bind(c), StopStreamRequest.fromPartial(request), md),
    info: (streamId: number, md?: Metadata) =>
      unary(c.getStreamInfo.bind(c), GetStreamInfoRequest.fromPartial({ streamId }), md),
    list: (limit = 0, md?: Metadata) =>
      unary(c.listStreams.bind(c), ListStreamsRequest.fromPartial({ limit }), md),
    page: (request: DeepPartial<ListStreamsRequest>, md?: Metadata) =>
      unary(c.listStreams.bind(c), ListStreamsRequest.fromPartial(request), md),
    listenerToken: (streamId: number, md?: Metadata) =>
      unary(c.issueListenerToken.bind(c), IssueListenerTokenRequest.fromPartial({ streamId }), md),
    report: (streamId: number, listenerCount: number, md?: Metadata) =>
      unary(
        c.reportListenerCount.bind(c),
        ReportListenerCountRequest.fromPartial({ streamId, listenerCount }),
        md,
      ),
  };
}
let streams: ReturnType<typeof streamCalls>;

interface Account {
  userId: number;
  username: string;
  token: string;
  md: Metadata;
}

/** A fresh account; `roles` replaces the default roles (in SQL) before the login that issues its token. */
async function account(prefix: string, roles?: string[]): Promise<Account> {
  seq += 1;
  const email = `${prefix}${seq}@example.com`;
  const username = `${prefix}_${seq}`;
  const registered = await api.register({ email, username, password: STRONG_PASSWORD });
  const userId = registered.userInfo?.userId ?? 0;
  if (roles) await h.sql`update users set roles = ${roles} where id = ${userId}`;
  const { accessToken } = await api.authenticate({ email, password: STRONG_PASSWORD });
  return { userId, username, token: accessToken, md: bearer(accessToken) };
}

/** Resolves with the next payload on `subject` that `match` accepts; subscribe before acting. */
function nextEvent(subject: string, match: (payload: Record<string, unknown>) => boolean) {
  return new Promise<Record<string, unknown>>((resolve) => {
    const subscription = h.ports.bus.subscribe(subject, (payload) => {
      const event = payload as Record<string, unknown>;
      if (!match(event)) return;
      subscription.unsubscribe();
      resolve(event);
    });
  });
}

const service = () => metadata({ 'x-api-key': h.apiKey });
const field = (error: ServiceError) => error.metadata.get('veza-error-field')[0];

async function rowCounts() {
  const [row] = await h.sql<{ streams: number; rooms: number }[]>`
    select (select count(*)::int from streams) as streams, (select count(*)::int from chat_rooms) as rooms`;
  return row;
}

beforeAll(async () => {
  h = await startHarness();
  api = authCalls(h.auth);
  client = new StreamServiceClient(h.address, credentials.createInsecure());
  streams = streamCalls(client);
});
afterAll(async () => {
  client?.close();
  await h?.close();
});

describe('StartStream', () => {
  it('starts a live stream with its chat room, lists it and publishes stream.started', async () => {
    const owner = await account('dj');
    const startedEvent = nextEvent(STREAM_STARTED, (event) => event.owner_id === owner.userId);
    const { stream } = await streams.start(
      { title: '  Night shift  ', description: 'deep cuts', genre: 'techno', allowAnonymous: true },
      owner.md,
    );
    expect(stream).toMatchObject({
      ownerId: owner.userId,
      ownerUsername: owner.username,
      title: 'Night shift',
      description: 'deep cuts',
      genre: 'techno',
      status: 'live',
      listenerCount: 0,
      peakListeners: 0,
      isPublic: true,
      allowAnonymous: true,
      endReason: '',
    });
    expect(stream?.startedAt).toBeInstanceOf(Date);
    expect(stream?.endedAt).toBeUndefined();
    const streamId = stream?.streamId ?? 0;

    const [room] = await h.sql<{ stream_id: number; owner_id: number; name: string; is_private: boolean }[]>`
      select stream_id, owner_id, name, is_private from chat_rooms where id = ${stream?.chatRoomId ?? 0}`;
    expect(room).toEqual({
      stream_id: streamId,
      owner_id: owner.userId,
      name: 'Night shift',
      is_private: false,
    });

    expect(await startedEvent).toMatchObject({
      stream_id: streamId,
      owner_username: owner.username,
      chat_room_id: stream?.chatRoomId,
      title: 'Night shift',
    });

    const listed = await streams.list();
    expect(listed.streams.find((s) => s.streamId === streamId)).toMatchObject({
      ownerId: owner.userId,
      ownerUsername: owner.username,
      chatRoomId: stream?.chatRoomId,
      status: 'live',
    });
  });

  it('refuses a user without the broadcaster role and stores nothing', async () => {
    const listener = await account('ear', ['listener']);
    const before = await rowCounts();
    const error = await grpcError(streams.start({ title: 'not allowed' }, listener.md));
    expect(error).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: 'starting a stream needs the broadcaster role',
    });
    expect(await rowCounts()).toEqual(before);
  });

  it('needs a user token, not just the API key', async () => {
    const error = await grpcError(streams.start({ title: 'service' }, service()));
    expect(error.code).toBe(status.UNAUTHENTICATED);
  });

  it('names the bad field and stores nothing', async () => {
    const owner = await account('bad');
    const before = await rowCounts();
    const cases: Array<[DeepPartial<StartStreamRequest>, string, string]> = [
      [{ title: '' }, 'title', 'title is required'],
      [{ title: '   ' }, 'title', 'title is required'],
      [{ title: 'x'.repeat(121) }, 'title', 'title must be at most 120 characters'],
      [
        { title: 'ok', description: 'd'.repeat(2001) },
        'description',
        'description must be at most 2000 characters',
      ],
      [{ title: 'ok', genre: 'g'.repeat(51) }, 'genre', 'genre must be at most 50 characters'],
      [
        { title: 'ok', isPublic: false, allowAnonymous: true },
        'allow_anonymous',
        'allow_anonymous needs a public stream (is_public true)',
      ],
    ];
    for (const [request, name, message] of cases) {
      const error = await grpcError(streams.start(request, owner.md));
      expect(error, name).toMatchObject({ code: status.INVALID_ARGUMENT, details: message });
      expect(field(error)).toBe(name);
    }
    expect(await rowCounts()).toEqual(before);
    // A title of exactly 120 characters is fine.
    const { stream } = await streams.start({ title: 't'.repeat(120) }, owner.md);
    expect(stream?.title).toHaveLength(120);
  });

  it('replaces the owner\'s previous live stream, ending it with reason "replaced"', async () => {
    const owner = await account('again');
    const first = (await streams.start({ title: 'first' }, owner.md)).stream;
    const endedEvent = nextEvent(STREAM_ENDED, (event) => event.stream_id === first?.streamId);
    const second = (await streams.start({ title: 'second' }, owner.md)).stream;
    expect(second?.streamId).not.toBe(first?.streamId);
    expect(await endedEvent).toMatchObject({ reason: 'replaced', owner_id: owner.userId });
    expect((await streams.info(first?.streamId ?? 0, owner.md)).stream).toMatchObject({
      status: 'ended',
      endReason: 'replaced',
    });
    const [live] = await h.sql<{ n: number }[]>`
      select count(*)::int as n from streams where owner_id = ${owner.userId} and status = 'live'`;
    expect(live?.n).toBe(1);
  });
});

describe('StopStream', () => {
  it('lets only the owner stop, publishes stream.ended once and is idempotent', async () => {
    const owner = await account('host');
    const other = await account('other');
    const { stream } = await streams.start({ title: 'to stop' }, owner.md);
    const streamId = stream?.streamId ?? 0;

    const denied = await grpcError(streams.stop({ streamId }, other.md));
    expect(denied).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: `only the owner or a moderator may stop stream ${streamId}`,
    });
    expect((await streams.info(streamId, owner.md)).stream?.status).toBe('live');

    const endedEvent = nextEvent(STREAM_ENDED, (event) => event.stream_id === streamId);
    const stopped = await streams.stop({ streamId }, owner.md);
    expect(stopped.stream).toMatchObject({ status: 'ended', endReason: 'stopped', listenerCount: 0 });
    expect(stopped.stream?.endedAt).toBeInstanceOf(Date);
    expect(await endedEvent).toMatchObject({
      stream_id: streamId,
      reason: 'stopped',
      owner_id: owner.userId,
    });

    // A second stop succeeds without a second event: the next stream.ended seen for this
    // owner is the one of a later stream, not a repeat of this one.
    const nextEnded = nextEvent(STREAM_ENDED, (event) => event.owner_id === owner.userId);
    const again = await streams.stop({ streamId }, owner.md);
    expect(again.stream).toMatchObject({ status: 'ended', endReason: 'stopped' });
    const later = (await streams.start({ title: 'later' }, owner.md)).stream;
    await streams.stop({ streamId: later?.streamId ?? 0 }, owner.md);
    expect((await nextEnded).stream_id).toBe(later?.streamId);

    const missing = await grpcError(streams.stop({ streamId: 987_654 }, owner.md));
    expect(missing).toMatchObject({ code: status.NOT_FOUND, details: 'stream 987654 not found' });
  });

  it('lets a moderator stop any stream, and the edge (API key) end one after the grace period', async () => {
    const owner = await account('mod_target');
    const moderator = await account('mod', ['listener', 'moderator']);
    const first = (await streams.start({ title: 'moderated' }, owner.md)).stream;
    const byModerator = await streams.stop({ streamId: first?.streamId ?? 0 }, moderator.md);
    expect(byModerator.stream?.endReason).toBe('stopped_by_moderator');

    const second = (await streams.start({ title: 'dropped' }, owner.md)).stream;
    const endedEvent = nextEvent(STREAM_ENDED, (event) => event.stream_id === second?.streamId);
    const byService = await streams.stop(
      { streamId: second?.streamId ?? 0, reason: 'broadcaster_disconnected' },
      service(),
    );
    expect(byService.stream).toMatchObject({ status: 'ended', endReason: 'broadcaster_disconnected' });
    expect(await endedEvent).toMatchObject({ reason: 'broadcaster_disconnected' });

    const badReason = await grpcError(streams.stop({ streamId: 1, reason: 'Because!' }, service()));
    expect(badReason.code).toBe(status.INVALID_ARGUMENT);
    expect(field(badReason)).toBe('reason');
  });

  it('needs a caller: no token and no API key is UNAUTHENTICATED', async () => {
    const error = await grpcError(streams.stop({ streamId: 1 }));
    expect(error.code).toBe(status.UNAUTHENTICATED);
  });
});

describe('GetStreamInfo and ListStreams', () => {
  it('answers NOT_FOUND naming the stream, and rejects a bad id', async () => {
    const error = await grpcError(streams.info(424_242, service()));
    expect(error).toMatchObject({ code: status.NOT_FOUND, details: 'stream 424242 not found' });
    const bad = await grpcError(streams.info(0, service()));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(field(bad)).toBe('stream_id');
  });

  it('shows a private stream to its owner and moderators only, and never lists it', async () => {
    const owner = await account('priv');
    const stranger = await account('stranger');
    const moderator = await account('privmod', ['moderator']);
    const { stream } = await streams.start({ title: 'secret', isPublic: false }, owner.md);
    const streamId = stream?.streamId ?? 0;
    expect((await streams.info(streamId, owner.md)).stream?.isPublic).toBe(false);
    expect((await streams.info(streamId, moderator.md)).stream?.streamId).toBe(streamId);
    for (const md of [stranger.md, service()]) {
      const error = await grpcError(streams.info(streamId, md));
      expect(error).toMatchObject({ code: status.NOT_FOUND, details: `stream ${streamId} not found` });
    }
    // A stranger cannot learn it exists by trying to stop it either.
    expect((await grpcError(streams.stop({ streamId }, stranger.md))).code).toBe(status.NOT_FOUND);
    const listed = await streams.list(100);
    expect(listed.streams.some((s) => s.streamId === streamId)).toBe(false);
    const [room] = await h.sql<
      { is_private: boolean }[]
    >`select is_private from chat_rooms where stream_id = ${streamId}`;
    expect(room?.is_private).toBe(true);
  });

  it('lists live public streams newest first, up to the limit', async () => {
    const a = await account('lista');
    const b = await account('listb');
    const older = (await streams.start({ title: 'older' }, a.md)).stream;
    const newer = (await streams.start({ title: 'newer' }, b.md)).stream;
    const { streams: live } = await streams.list(100);
    const ids = live.map((s) => s.streamId);
    expect(ids.indexOf(newer?.streamId ?? 0)).toBeLessThan(ids.indexOf(older?.streamId ?? 0));
    expect(live.every((s) => s.status === 'live' && s.isPublic)).toBe(true);
    expect((await streams.list(1)).streams).toHaveLength(1);
    const tooMany = await grpcError(streams.list(101));
    expect(field(tooMany)).toBe('limit');
  });
});

describe('ListStreams paging', () => {
  const liveIds = async (publicOnly = false) =>
    (
      await h.sql<{ id: number }[]>`
        select id from streams where status = 'live' ${publicOnly ? h.sql`and is_public` : h.sql``}`
    ).map((row) => Number(row.id));

  /** Every page of one listing; `between(pageIndex, ids so far)` runs after each page. */
  async function listAll(
    request: DeepPartial<ListStreamsRequest>,
    md: Metadata | undefined,
    between: (page: number, ids: number[]) => Promise<void> = async () => {},
  ) {
    const ids: number[] = [];
    let pageToken = '';
    for (let page = 1; page <= 200; page += 1) {
      const response = await streams.page({ ...request, pageToken }, md);
      expect(response.streams.length).toBeLessThanOrEqual(request.limit ?? 50);
      ids.push(...response.streams.map((s) => s.streamId));
      if (!response.nextPageToken) return { ids, pages: page };
      pageToken = response.nextPageToken;
      await between(page, ids);
    }
    throw new Error('the listing never ended');
  }

  it('returns every live stream exactly once across small pages, with streams starting and ending between pages', async () => {
    for (let i = 0; i < 5; i += 1) {
      const owner = await account('pg');
      await streams.start({ title: `paged ${i}`, isPublic: i % 2 === 0 }, owner.md);
    }
    const before = await liveIds();
    expect(before.length).toBeGreaterThanOrEqual(5);
    const started: number[] = [];
    let stoppedListed = 0;
    let stoppedUnlisted = 0;
    const startOne = async (isPublic: boolean) => {
      const owner = await account('pgnew');
      const { stream } = await streams.start({ title: 'started between pages', isPublic }, owner.md);
      started.push(stream?.streamId ?? 0);
    };

    const { ids, pages } = await listAll(
      { limit: 2, includePrivate: true },
      service(),
      async (page, sofar) => {
        if (page === 1) {
          await startOne(false);
          // One stream already listed, and one not yet listed, end: nothing shifts, nothing repeats.
          stoppedListed = sofar[0] ?? 0;
          stoppedUnlisted = Math.min(...before);
          await streams.stop({ streamId: stoppedListed }, service());
          await streams.stop({ streamId: stoppedUnlisted }, service());
        }
        if (page === 2) await startOne(true);
        // Once the listing reached the streams started since it began, one more starts.
        if (started.length === 2 && sofar.includes(started[0] ?? -1)) await startOne(false);
      },
    );

    expect(pages).toBeGreaterThan(3);
    expect(new Set(ids).size).toBe(ids.length);
    expect(started).toHaveLength(3);
    const expected = [...before.filter((id) => id !== stoppedUnlisted), ...started];
    expect([...ids].sort((a, b) => a - b)).toEqual(expected.sort((a, b) => a - b));
    // Newest first for the streams live when the listing began, then the newer ones oldest first.
    const older = ids.slice(0, before.length - 1);
    expect(older).toEqual([...older].sort((a, b) => b - a));
    expect(ids.slice(before.length - 1)).toEqual([...started].sort((a, b) => a - b));
  });

  it('lists public streams only without include_private, also when paging', async () => {
    const owner = await account('pgpub');
    const hidden = (await streams.start({ title: 'hidden', isPublic: false }, owner.md)).stream;
    const { ids } = await listAll({ limit: 3 }, undefined);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.sort((a, b) => a - b)).toEqual((await liveIds(true)).sort((a, b) => a - b));
    expect(ids).not.toContain(hidden?.streamId);
    // A page that is not full ends the listing.
    const all = await streams.page({ limit: 100 });
    expect(all.nextPageToken).toBe('');
  });

  it('lists private streams to service callers and moderators only', async () => {
    const owner = await account('pgpriv');
    const user = await account('pguser');
    const moderator = await account('pgmod', ['listener', 'moderator']);
    const hidden = (await streams.start({ title: 'private', isPublic: false }, owner.md)).stream;
    const withPrivate = { limit: 100, includePrivate: true };

    for (const md of [
      undefined,
      user.md,
      owner.md,
      metadata({ 'x-api-key': h.apiKey, authorization: `Bearer ${user.token}` }),
    ]) {
      const denied = await grpcError(streams.page(withPrivate, md));
      expect(denied).toMatchObject({
        code: status.PERMISSION_DENIED,
        details: 'include_private is for service callers and moderators only',
      });
      expect(field(denied)).toBe('include_private');
    }
    for (const md of [service(), moderator.md]) {
      const listed = (await listAll(withPrivate, md)).ids;
      expect(listed).toContain(hidden?.streamId);
    }
    // Without include_private a signed-in user lists as before; a bad token is refused.
    expect(
      (await streams.page({ limit: 100 }, user.md)).streams.some((s) => s.streamId === hidden?.streamId),
    ).toBe(false);
    expect((await grpcError(streams.page({ limit: 1 }, bearer('not-a-token')))).code).toBe(
      status.UNAUTHENTICATED,
    );
  });

  it('refuses a page_token it did not make, naming page_token', async () => {
    const token = (await streams.page({ limit: 1 }, service())).nextPageToken;
    expect(token).not.toBe('');
    const forged = (text: string) => Buffer.from(text).toString('base64url');
    for (const pageToken of [
      'not a token',
      `${token}=`,
      `${token}!`,
      forged('v2:1:2'),
      forged('v1:-1:2'),
      forged('v1:01:2'),
      'x'.repeat(65),
    ]) {
      const error = await grpcError(streams.page({ limit: 1, pageToken }, service()));
      expect(error, pageToken).toMatchObject({
        code: status.INVALID_ARGUMENT,
        details: 'page_token is not a next_page_token of ListStreams',
      });
      expect(field(error)).toBe('page_token');
    }
  });
});

describe('IssueListenerToken', () => {
  it('issues a listener token for a public stream that allows anonymous listeners', async () => {
    const owner = await account('anon_ok');
    const { stream } = await streams.start({ title: 'open', allowAnonymous: true }, owner.md);
    const streamId = stream?.streamId ?? 0;
    const issued = await streams.listenerToken(streamId);
    expect(issued.expiresIn).toBeGreaterThan(0);
    expect(issued.expiresIn).toBeLessThanOrEqual(900);

    const jwks = createLocalJWKSet(JSON.parse((await api.getJwks()).jwksJson));
    const verified = await verifyAccessToken(issued.token, jwks);
    expect(verified.userId).toBe(0);
    expect(verified.claims).toMatchObject({
      typ: 'listener',
      stream_id: streamId,
      sub: '0',
      roles: ['listener'],
    });
    expect(verified.expiresAt.getTime()).toBe(issued.expiresAt?.getTime());

    // It is not a user token: the control plane refuses it as one.
    const asUser = await grpcError(streams.start({ title: 'sneaky' }, bearer(issued.token)));
    expect(asUser).toMatchObject({
      code: status.UNAUTHENTICATED,
      details: 'invalid token: not a user access token',
    });
  });

  it('refuses streams that do not allow anonymous listeners, private and ended ones', async () => {
    const owner = await account('anon_no');
    const closed = (await streams.start({ title: 'members only' }, owner.md)).stream;
    const noAnon = await grpcError(streams.listenerToken(closed?.streamId ?? 0));
    expect(noAnon.code).toBe(status.PERMISSION_DENIED);

    const hidden = (await streams.start({ title: 'hidden', isPublic: false }, owner.md)).stream;
    expect((await grpcError(streams.listenerToken(hidden?.streamId ?? 0))).code).toBe(status.NOT_FOUND);

    const open = (await streams.start({ title: 'over', allowAnonymous: true }, owner.md)).stream;
    await streams.stop({ streamId: open?.streamId ?? 0 }, owner.md);
    const over = await grpcError(streams.listenerToken(open?.streamId ?? 0));
    expect(over).toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: `stream ${open?.streamId} has ended`,
    });
  });
});

describe('ReportListenerCount', () => {
  it('needs the API key, updates the count and raises the peak', async () => {
    const owner = await account('counted');
    const { stream } = await streams.start({ title: 'counted' }, owner.md);
    const streamId = stream?.streamId ?? 0;

    const anonymous = await grpcError(streams.report(streamId, 3));
    expect(anonymous).toMatchObject({ code: status.UNAUTHENTICATED, details: 'missing API key' });
    const asUser = await grpcError(streams.report(streamId, 3, owner.md));
    expect(asUser.code).toBe(status.UNAUTHENTICATED);

    const five = await streams.report(streamId, 5, service());
    expect(five.stream).toMatchObject({ listenerCount: 5, peakListeners: 5 });
    const three = await streams.report(streamId, 3, service());
    expect(three.stream).toMatchObject({ listenerCount: 3, peakListeners: 5 });

    const negative = await grpcError(streams.report(streamId, -1, service()));
    expect(field(negative)).toBe('listener_count');

    // After the end a late report changes nothing; the peak stays.
    await streams.stop({ streamId }, owner.md);
    const late = await streams.report(streamId, 9, service());
    expect(late.stream).toMatchObject({ status: 'ended', listenerCount: 0, peakListeners: 5 });
    expect((await grpcError(streams.report(999_999, 1, service()))).code).toBe(status.NOT_FOUND);
  });
});
