/**
 * Lifetimes the edge enforces on open connections and live streams, end to end through the
 * real edge, control plane and media node (in-process):
 * - the access token's: `tokenExpiring`, `auth.refresh`, refusal and close after expiry (4401),
 *   close on session revocation (4403), a role taken away applying to the open connection; the
 *   client library refreshes by itself;
 * - the stream's: one started with POST /stream/start that no broadcaster joins ends after
 *   STREAM_GRACE_S, like one whose broadcaster left.
 * Waits are on events or conditions; the few sleeps wait for a deadline itself to pass
 * (a token's expiry, a grace period) before checking that nothing happened.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type SignalingStack, startSignalingStack, type TestUser } from '../../app/testing/index.js';
import { Broadcaster, Listener, SignalingConnection } from '../client/index.js';
import {
  installWrtcGlobals,
  listenerTap,
  NODE_HANDLER_NAME,
  nodeWebSocket,
  sineSource,
} from '../client/testing/index.js';
import { CLOSE_CODES } from '../protocol/index.js';
import { RawClient, rawHandshake } from './test-clients.js';

installWrtcGlobals();

const WebSocket = nodeWebSocket();
const handlerName = NODE_HANDLER_NAME;
const audible = (rms: number) => rms > 100;

/** Short enough to wait for; the warning and the close window are shorter still. */
const TOKEN_TTL_S = 4;
const WARNING_MS = 1500;
const CLOSE_AFTER_MS = 1500;

/** The `exp` of a JWT, in epoch ms (the client library never needs to read tokens; the test does). */
function expiryOf(token: string): number {
  const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
    exp: number;
  };
  return payload.exp * 1000;
}

/** Resolves once the wall clock has passed `deadline` (epoch ms). */
const until = (deadline: number) => sleep(Math.max(0, deadline - Date.now()));

let stack: SignalingStack;
let owner: TestUser;
let fan: TestUser;
const cleanups: Array<() => void | Promise<void>> = [];

beforeAll(async () => {
  stack = await startSignalingStack({
    env: { ACCESS_TOKEN_TTL_S: String(TOKEN_TTL_S) },
    limits: { tokenExpiryWarningMs: WARNING_MS, expiredTokenCloseMs: CLOSE_AFTER_MS },
  });
  owner = await stack.createUser();
  fan = await stack.createUser();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(async () => {
  await stack?.close();
});

const raw = async (token: string) => {
  const client = await RawClient.open(stack.wsUrl, `v=1&token=${encodeURIComponent(token)}`);
  cleanups.push(() => client.close());
  return client;
};

/** A live stream of `owner`, started with a token of a new login (the one from createUser has expired). */
const startStream = async () => {
  const login = await stack.signIn(owner);
  return stack.startStream({ ...owner, token: login.token });
};

/** POST /stream/start through the edge's REST API, as the studio page does. */
async function restStart(token: string): Promise<number> {
  const response = await fetch(`${stack.baseUrl}/stream/start`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'Going live' }),
  });
  expect(response.status).toBe(201);
  return ((await response.json()) as { stream_id: number }).stream_id;
}

/** GET /stream/:id, anonymously (the streams are public; the owner's short tokens may have expired). */
async function restStream(id: number): Promise<{ status: string; end_reason: string | null }> {
  const response = await fetch(`${stack.baseUrl}/stream/${id}`);
  expect(response.status).toBe(200);
  return ((await response.json()) as { stream: { status: string; end_reason: string | null } }).stream;
}

describe('the access token of an open connection', () => {
  it('is announced before it expires; then requests are refused and the connection is closed with 4401', async () => {
    const streamId = await startStream();
    const login = await stack.signIn(fan);
    const expiresAt = expiryOf(login.token);
    const client = await raw(login.token);

    const warning = await client.next((f) => f.notification === 'tokenExpiring');
    expect(warning.data).toEqual({
      expiresAt: new Date(expiresAt).toISOString(),
      expiresInMs: expect.any(Number),
    });
    const { expiresInMs } = warning.data as { expiresInMs: number };
    expect(expiresInMs).toBeGreaterThan(0);
    expect(expiresInMs).toBeLessThanOrEqual(WARNING_MS);
    // Still valid until it expires (a media and a chat-side method).
    expect(await client.request('leave', {})).toMatchObject({ ok: true });
    expect(await client.request('notifications.list', {})).toMatchObject({ ok: true });

    await until(expiresAt);
    const expired = {
      ok: false,
      error: { code: 'unauthenticated', reason: 'token_expired', message: expect.stringMatching(/expired/) },
    };
    expect(await client.request('getRouterRtpCapabilities', {})).toMatchObject(expired);
    expect(await client.request('chat.join', { streamId })).toMatchObject(expired);
    expect(await client.request('join', { streamId, role: 'listener' })).toMatchObject(expired);

    const closed = await client.closed;
    expect(closed).toEqual({ code: CLOSE_CODES.tokenExpired, reason: expect.stringMatching(/expired/) });
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt + CLOSE_AFTER_MS - 100);
    // The handshake refuses the expired token too.
    expect((await rawHandshake(stack.baseUrl, `v=1&token=${login.token}`)).status).toBe(401);
  });

  it('keeps working past the old expiry once the client hands over a fresh token', async () => {
    const login = await stack.signIn(fan);
    const firstExpiry = expiryOf(login.token);
    const client = await raw(login.token);

    await client.next((f) => f.notification === 'tokenExpiring');
    const fresh = await login.fresh();
    const refreshed = await client.request('auth.refresh', { token: fresh });
    expect(refreshed).toMatchObject({
      ok: true,
      result: { expiresAt: new Date(expiryOf(fresh)).toISOString() },
    });
    // A token of another user is refused, and the connection keeps its own.
    const stranger = await stack.signIn(owner);
    expect(await client.request('auth.refresh', { token: stranger.token })).toMatchObject({
      ok: false,
      error: { code: 'permission_denied' },
    });

    // Nothing may close the connection once the first token and its close window are over.
    await until(firstExpiry + CLOSE_AFTER_MS + 300);
    expect(client.open).toBe(true);
    expect(await client.request('leave', {})).toMatchObject({ ok: true });
    // Called on the user's behalf with the fresh token (the first one has expired).
    expect(await client.request('notifications.list', {})).toMatchObject({ ok: true });
    // The new token is announced before it expires, like the first one.
    const next = await client.next((f) => f.notification === 'tokenExpiring');
    expect((next.data as { expiresAt: string }).expiresAt).toBe(new Date(expiryOf(fresh)).toISOString());
  });

  it('closes the connections of a revoked session with 4403 and refuses its tokens; other sessions stay', async () => {
    const revoked = await stack.signIn(fan);
    const other = await stack.signIn(fan);
    const doomed = await raw(revoked.token);
    const kept = await raw(other.token);

    await stack.client.auth.revokeToken({ token: revoked.token, tokenTypeHint: 'access_token' });
    expect(await doomed.closed).toEqual({
      code: CLOSE_CODES.sessionRevoked,
      reason: expect.stringMatching(/revoked/),
    });
    // Its access token is still unexpired, but it opens nothing any more.
    expect(Date.now()).toBeLessThan(expiryOf(revoked.token));
    const handshake = await rawHandshake(stack.baseUrl, `v=1&token=${revoked.token}`);
    expect(handshake.status).toBe(401);
    expect(JSON.parse(handshake.body)).toMatchObject({
      error: { code: 'unauthenticated', message: expect.stringMatching(/session revoked/) },
    });
    expect(await kept.request('auth.refresh', { token: revoked.token })).toMatchObject({
      ok: false,
      error: { code: 'unauthenticated', message: expect.stringMatching(/session revoked/) },
    });
    expect(kept.open).toBe(true);
    expect(await kept.request('leave', {})).toMatchObject({ ok: true });
  });

  it('takes a role an administrator took away from the open connection at once', async () => {
    const admin = await stack.signIn(await stack.createUser(['admin']));
    const login = await stack.signIn(owner);
    const streamId = await stack.startStream({ ...owner, token: login.token });
    // Opened while the user is a broadcaster (and its token says so).
    const client = await raw(login.token);

    await stack.client.auth.setUserRole(
      { userId: owner.userId, role: 'broadcaster', granted: false },
      { token: admin.token },
    );
    try {
      expect(await client.request('join', { streamId, role: 'broadcaster' })).toMatchObject({
        ok: false,
        error: {
          code: 'permission_denied',
          message: `only the owner of stream ${streamId}, with the broadcaster role, may broadcast it`,
        },
      });
      expect(client.open).toBe(true);
    } finally {
      await stack.client.auth.setUserRole(
        { userId: owner.userId, role: 'broadcaster', granted: true },
        { token: admin.token },
      );
    }
  });

  it('lets a Broadcaster and a Listener of the client library outlive their tokens by refreshing', async () => {
    const ownerLogin = await stack.signIn(owner);
    const fanLogin = await stack.signIn(fan);
    const streamId = await stack.startStream({ ...owner, token: ownerLogin.token });
    /** The tokens each connection's provider handed out, in order. */
    const issued: string[][] = [];
    const open = (login: typeof ownerLogin) => {
      const tokens: string[] = [];
      issued.push(tokens);
      const connection = new SignalingConnection({
        url: stack.wsUrl,
        token: async () => {
          const token = await login.fresh();
          tokens.push(token);
          return token;
        },
        WebSocket,
      });
      cleanups.push(() => connection.close());
      return connection;
    };
    const broadcasterConnection = open(ownerLogin);
    const listenerConnection = open(fanLogin);
    const connections = [broadcasterConnection, listenerConnection];
    const closes: unknown[] = [];
    const failures: unknown[] = [];
    for (const connection of connections) {
      connection.on('close', (info) => closes.push(info));
      connection.on('tokenRefreshFailed', (error) => failures.push(error));
    }
    const refreshed = connections.map((connection) => connection.next('tokenRefreshed'));

    const source = sineSource();
    cleanups.push(() => source.stop());
    await broadcasterConnection.connect();
    const broadcaster = new Broadcaster({ connection: broadcasterConnection, handlerName });
    await broadcaster.publish(streamId, source.track);
    await listenerConnection.connect();
    const listener = new Listener({ connection: listenerConnection, handlerName });
    const tap = listenerTap(listener);
    cleanups.push(() => tap.stop());
    await listener.listen(streamId);
    await tap.waitForFrames(20, audible);
    // The later expiry of the tokens the two connections opened with.
    const firstExpiry = Math.max(...issued.map((tokens) => expiryOf(tokens[0] ?? '')));

    await Promise.all(refreshed);
    await until(firstExpiry + CLOSE_AFTER_MS + 500);
    expect(closes).toEqual([]);
    expect(failures).toEqual([]);
    expect(broadcasterConnection.state).toBe('open');
    expect(listenerConnection.state).toBe('open');
    expect(broadcaster.state).toBe('live');
    expect(listener.state).toBe('live');
    tap.reset();
    await tap.waitForFrames(20, audible);
    await expect(listener.getStats()).resolves.toMatchObject({ consumers: [expect.anything()] });
    // Opened with one token each, then refreshed (not reconnected: no close above).
    for (const tokens of issued) expect(tokens.length).toBeGreaterThanOrEqual(2);
  });
});

describe('a stream nobody broadcasts', () => {
  it('ends once the grace period is over when its broadcaster never joins', async () => {
    const login = await stack.signIn(owner);
    const graceMs = stack.config.STREAM_GRACE_S * 1000;
    const startedAt = Date.now();
    const streamId = await restStart(login.token);
    expect((await restStream(streamId)).status).toBe('live');

    await expect
      .poll(async () => (await restStream(streamId)).status, {
        timeout: graceMs + 10_000,
        interval: 100,
      })
      .toBe('ended');
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(graceMs);
    expect(await restStream(streamId)).toMatchObject({
      status: 'ended',
      end_reason: 'broadcaster_disconnected',
    });
  });

  it('stays live when its broadcaster joins within the grace period', async () => {
    const login = await stack.signIn(owner);
    const streamId = await restStart(login.token);
    const source = sineSource();
    cleanups.push(() => source.stop());
    const connection = new SignalingConnection({ url: stack.wsUrl, token: () => login.fresh(), WebSocket });
    cleanups.push(() => connection.close());
    await connection.connect();
    const broadcaster = new Broadcaster({ connection, handlerName });
    const joinedAt = Date.now();
    await broadcaster.publish(streamId, source.track);

    // A negative check: nothing may end the stream once the grace period (from the start) is over.
    await until(joinedAt + stack.config.STREAM_GRACE_S * 1000 + 500);
    expect((await restStream(streamId)).status).toBe('live');
    expect(broadcaster.state).toBe('live');
  });
});
