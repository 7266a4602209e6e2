/**
 * The stream REST routes end to end: a real edge (uWS on port 0) calling a real control
 * plane over gRPC, over a fresh database; events are awaited on the control plane's bus.
 */
import { createLocalJWKSet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STREAM_ENDED } from '../../../common/contracts/index.js';
import { createLogger, verifyAccessToken } from '../../../common/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../../../control-plane/client/index.js';
import { type Harness, STRONG_PASSWORD, startHarness } from '../../../control-plane/test-harness.js';
import { type Edge, type RouterCapabilitiesProvider, startEdge } from '../../index.js';

let h: Harness;
let client: ControlPlaneClient;
let edge: Edge;
let base: string;
let seq = 0;

const CAPABILITIES = { codecs: [], headerExtensions: [] };
const capabilityCalls: Array<{ streamId: number; mediaNodeId: string | null }> = [];
const provider: RouterCapabilitiesProvider = async ({ streamId, mediaNodeId }) => {
  capabilityCalls.push({ streamId, mediaNodeId });
  return CAPABILITIES;
};

interface Reply {
  status: number;
  body: Record<string, unknown> & { error?: { code: string; message: string; field?: string } };
}

async function call(
  method: string,
  path: string,
  options: { token?: string; body?: unknown; at?: string } = {},
) {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${options.at ?? base}${path}`, {
    method,
    headers,
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  return { status: response.status, body: (await response.json()) as Reply['body'] };
}

/** Signs up and signs in over REST; `roles` replaces the default roles (in SQL) before the sign-in. */
async function account(prefix: string, roles?: string[]) {
  seq += 1;
  const email = `${prefix}${seq}@example.com`;
  const username = `${prefix}_${seq}`;
  const registered = await call('POST', '/auth/register', {
    body: { email, username, password: STRONG_PASSWORD },
  });
  expect(registered.status).toBe(201);
  const userId = (registered.body.user as { id: number }).id;
  if (roles) await h.sql`update users set roles = ${roles} where id = ${userId}`;
  const login = await call('POST', '/auth/login', { body: { email, password: STRONG_PASSWORD } });
  expect(login.status).toBe(200);
  return { userId, username, token: login.body.access_token as string };
}

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

async function storedRows() {
  const [row] = await h.sql<{ streams: number; rooms: number }[]>`
    select (select count(*)::int from streams) as streams, (select count(*)::int from chat_rooms) as rooms`;
  return row;
}

beforeAll(async () => {
  h = await startHarness({
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    PUBLIC_URL: 'https://live.veza.test',
    TURN_URLS: 'turn:turn.veza.test:3478?transport=udp,turns:turn.veza.test:5349',
    TURN_USERNAME: 'veza',
    TURN_CREDENTIAL: 'turn-secret',
  });
  const log = createLogger({ level: 'silent' });
  client = createControlPlaneClient({ address: h.address, apiKey: h.apiKey, log });
  edge = await startEdge({
    config: h.config,
    log,
    controlPlane: client,
    blobs: h.ports.blobs,
    routerRtpCapabilities: provider,
  });
  base = `http://127.0.0.1:${edge.port}`;
});

afterAll(async () => {
  await edge?.close();
  client?.close();
  await h?.close();
});

describe('POST /stream/start', () => {
  it('goes live and answers with the stream, chat room, signaling URL, ICE servers and router capabilities', async () => {
    const dj = await account('dj');
    const started = await call('POST', '/stream/start', {
      token: dj.token,
      body: { title: 'Morning set', genre: 'house', allow_anonymous: true },
    });
    expect(started.status).toBe(201);
    const stream = started.body.stream as Record<string, unknown>;
    expect(stream).toMatchObject({
      title: 'Morning set',
      description: '',
      genre: 'house',
      status: 'live',
      is_public: true,
      allow_anonymous: true,
      listener_count: 0,
      peak_listeners: 0,
      ended_at: null,
      end_reason: null,
      owner_id: dj.userId,
      owner_username: dj.username,
    });
    expect(typeof stream.started_at).toBe('string');
    expect(started.body).toMatchObject({
      stream_id: stream.id,
      chat_room_id: stream.chat_room_id,
      signaling_url: 'wss://live.veza.test/ws',
      ice_servers: [
        {
          urls: ['turn:turn.veza.test:3478?transport=udp', 'turns:turn.veza.test:5349'],
          username: 'veza',
          credential: 'turn-secret',
        },
      ],
      router_rtp_capabilities: CAPABILITIES,
    });
    expect(capabilityCalls).toContainEqual({ streamId: stream.id, mediaNodeId: h.config.nodeId });

    const live = await call('GET', '/streams');
    expect(live.status).toBe(200);
    const listed = (live.body.streams as Array<Record<string, unknown>>).find((s) => s.id === stream.id);
    expect(listed).toMatchObject({
      owner_id: dj.userId,
      owner_username: dj.username,
      chat_room_id: stream.chat_room_id,
      status: 'live',
    });

    const one = await call('GET', `/stream/${stream.id}`);
    expect(one).toMatchObject({ status: 200, body: { stream: { id: stream.id, title: 'Morning set' } } });
  });

  it('answers router_rtp_capabilities: null on an edge without a media node', async () => {
    const bare = await startEdge({
      config: h.config,
      log: createLogger({ level: 'silent' }),
      controlPlane: client,
      blobs: h.ports.blobs,
    });
    try {
      const dj = await account('bare');
      const started = await call('POST', '/stream/start', {
        token: dj.token,
        body: { title: 'No media node here' },
        at: `http://127.0.0.1:${bare.port}`,
      });
      expect(started.status).toBe(201);
      expect(started.body.router_rtp_capabilities).toBeNull();
    } finally {
      await bare.close();
    }
  });

  it('is 403 for a listener-only user and 401 without a token, storing nothing', async () => {
    const listener = await account('ear', ['listener']);
    const before = await storedRows();
    const denied = await call('POST', '/stream/start', { token: listener.token, body: { title: 'nope' } });
    expect(denied).toMatchObject({
      status: 403,
      body: { error: { code: 'permission_denied', message: 'starting a stream needs the broadcaster role' } },
    });
    const anonymous = await call('POST', '/stream/start', { body: { title: 'nope' } });
    expect(anonymous.status).toBe(401);
    expect(await storedRows()).toEqual(before);
  });

  it('is 400 naming the field for bad input, storing nothing', async () => {
    const dj = await account('typo');
    const before = await storedRows();
    const cases: Array<[unknown, string]> = [
      [{}, 'title'],
      [{ description: 'no title' }, 'title'],
      [{ title: '' }, 'title'],
      [{ title: 'x'.repeat(121) }, 'title'],
      [{ title: 'ok', genre: 'g'.repeat(51) }, 'genre'],
      [{ title: 'ok', is_public: 'yes' }, 'is_public'],
      [{ title: 'ok', is_public: false, allow_anonymous: true }, 'allow_anonymous'],
      [{ title: 'ok', colour: 'blue' }, 'colour'],
    ];
    for (const [body, field] of cases) {
      const reply = await call('POST', '/stream/start', { token: dj.token, body });
      expect(reply.status, JSON.stringify(body)).toBe(400);
      expect(reply.body.error, JSON.stringify(body)).toMatchObject({ code: 'invalid_argument', field });
      expect(reply.body.error?.message).toContain(field);
    }
    expect(await storedRows()).toEqual(before);
  });
});

describe('POST /stream/:id/stop', () => {
  it('refuses a non-owner, ends the stream for its owner and publishes stream.ended', async () => {
    const dj = await account('stopper');
    const other = await account('intruder');
    const started = await call('POST', '/stream/start', { token: dj.token, body: { title: 'Short set' } });
    const id = started.body.stream_id as number;

    const byOther = await call('POST', `/stream/${id}/stop`, { token: other.token });
    expect(byOther).toMatchObject({ status: 403, body: { error: { code: 'permission_denied' } } });
    // The edge's own API key must never stand in for a missing user token.
    const anonymous = await call('POST', `/stream/${id}/stop`);
    expect(anonymous.status).toBe(401);
    expect((await call('GET', `/stream/${id}`)).body.stream).toMatchObject({ status: 'live' });

    const ended = nextEvent(STREAM_ENDED, (event) => event.stream_id === id);
    const stopped = await call('POST', `/stream/${id}/stop`, { token: dj.token, body: {} });
    expect(stopped).toMatchObject({
      status: 200,
      body: { stream: { id, status: 'ended', end_reason: 'stopped' } },
    });
    expect(typeof (stopped.body.stream as { ended_at: unknown }).ended_at).toBe('string');
    expect(await ended).toMatchObject({ stream_id: id, reason: 'stopped', owner_id: dj.userId });

    const again = await call('POST', `/stream/${id}/stop`, { token: dj.token });
    expect(again).toMatchObject({ status: 200, body: { stream: { status: 'ended' } } });
    const live = await call('GET', '/streams');
    expect((live.body.streams as Array<{ id: number }>).some((s) => s.id === id)).toBe(false);
  });

  it('is 400 for a non-numeric id and 404 for an unknown one', async () => {
    const dj = await account('ids');
    const bad = await call('POST', '/stream/abc/stop', { token: dj.token });
    expect(bad).toMatchObject({ status: 400, body: { error: { code: 'invalid_argument', field: 'id' } } });
    const unknown = await call('POST', '/stream/987654/stop', { token: dj.token });
    expect(unknown).toMatchObject({ status: 404, body: { error: { message: 'stream 987654 not found' } } });
  });
});

describe('GET /stream/:id and GET /streams', () => {
  it('answers 404 naming an unknown stream and 400 for a bad id', async () => {
    expect(await call('GET', '/stream/424242')).toMatchObject({
      status: 404,
      body: { error: { code: 'not_found', message: 'stream 424242 not found' } },
    });
    for (const raw of ['abc', '0', '-1', '1.5', '99999999999999999999']) {
      const reply = await call('GET', `/stream/${raw}`);
      expect(reply.status, raw).toBe(400);
      expect(reply.body.error?.field).toBe('id');
    }
    const badLimit = await call('GET', '/streams?limit=nope');
    expect(badLimit).toMatchObject({ status: 400, body: { error: { field: 'limit' } } });
  });

  it('shows a private stream to its owner only and keeps it out of the directory', async () => {
    const dj = await account('private');
    const started = await call('POST', '/stream/start', {
      token: dj.token,
      body: { title: 'Rehearsal', is_public: false },
    });
    const id = started.body.stream_id as number;
    expect(await call('GET', `/stream/${id}`, { token: dj.token })).toMatchObject({
      status: 200,
      body: { stream: { id, is_public: false } },
    });
    expect((await call('GET', `/stream/${id}`)).status).toBe(404);
    const live = await call('GET', '/streams');
    expect((live.body.streams as Array<{ id: number }>).some((s) => s.id === id)).toBe(false);
  });

  it('pages the directory with next_page_token, public streams only', async () => {
    const ids: number[] = [];
    for (const is_public of [true, false, true]) {
      const dj = await account('paged');
      const started = await call('POST', '/stream/start', {
        token: dj.token,
        body: { title: 'Paged', is_public },
      });
      if (is_public) ids.push(started.body.stream_id as number);
    }
    const [expected] = await h.sql<{ n: number }[]>`
      select count(*)::int as n from streams where status = 'live' and is_public`;
    const listed: number[] = [];
    let path = '/streams?limit=1';
    for (let page = 0; page < 100; page += 1) {
      const reply = await call('GET', path);
      expect(reply.status).toBe(200);
      listed.push(...(reply.body.streams as Array<{ id: number }>).map((s) => s.id));
      const next = reply.body.next_page_token as string | null;
      if (next === null) break;
      path = `/streams?limit=1&page_token=${encodeURIComponent(next)}`;
    }
    expect(new Set(listed).size).toBe(listed.length);
    expect(listed).toHaveLength(expected?.n ?? -1);
    expect(listed).toEqual(expect.arrayContaining(ids));
    expect((await call('GET', '/streams')).body.next_page_token).toBeNull();
    const bad = await call('GET', '/streams?page_token=nope!');
    expect(bad).toMatchObject({
      status: 400,
      body: { error: { code: 'invalid_argument', field: 'page_token' } },
    });
  });
});

describe('POST /stream/:id/listener-token', () => {
  it('issues a verifiable listener token only for public streams that allow anonymous listeners', async () => {
    const dj = await account('anon');
    const open = await call('POST', '/stream/start', {
      token: dj.token,
      body: { title: 'Open', allow_anonymous: true },
    });
    const id = open.body.stream_id as number;
    const issued = await call('POST', `/stream/${id}/listener-token`);
    expect(issued.status).toBe(200);
    expect(issued.body.expires_in).toBeGreaterThan(0);

    const jwks = await (await fetch(`${base}/.well-known/jwks.json`)).json();
    const verified = await verifyAccessToken(issued.body.token as string, createLocalJWKSet(jwks));
    expect(verified.claims).toMatchObject({ typ: 'listener', stream_id: id, sub: '0', roles: ['listener'] });

    const dj2 = await account('members');
    const closed = await call('POST', '/stream/start', { token: dj2.token, body: { title: 'Members only' } });
    const refused = await call('POST', `/stream/${closed.body.stream_id}/listener-token`);
    expect(refused).toMatchObject({ status: 403, body: { error: { code: 'permission_denied' } } });
    expect((await call('POST', '/stream/424242/listener-token')).status).toBe(404);
  });
});
