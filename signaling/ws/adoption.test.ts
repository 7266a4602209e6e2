/**
 * Streams outliving the edge that watched them, end to end through the real control plane,
 * media node and edges (in-process): an edge that starts adopts the live streams of the
 * control plane, so the stream of a broadcaster who was on an edge that died (and never comes
 * back) still ends after STREAM_GRACE_S, while one whose broadcaster comes back, or is live
 * through another edge, stays.
 *
 * The stack's own edge is closed at once: it would see every stream start (`stream.started`)
 * and time it out itself. Each test starts the edges it needs and closes them.
 * Waits are on conditions; the sleeps wait for a grace period to pass before checking that
 * nothing happened.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type SignalingStack,
  startSignalingStack,
  type TestEdge,
  type TestUser,
} from '../../app/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../../control-plane/client/index.js';
import type { ListStreamsRequest } from '../../proto/gen/veza/stream/stream.js';
import { Broadcaster, SignalingConnection } from '../client/index.js';
import { installWrtcGlobals, NODE_HANDLER_NAME, nodeWebSocket, sineSource } from '../client/testing/index.js';

installWrtcGlobals();

const WebSocket = nodeWebSocket();

let stack: SignalingStack;
let owner: TestUser;
let graceMs: number;
const cleanups: Array<() => void | Promise<void>> = [];

beforeAll(async () => {
  stack = await startSignalingStack();
  await stack.edge.close();
  graceMs = stack.config.STREAM_GRACE_S * 1000;
  owner = await stack.createUser();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(async () => {
  await stack?.close();
});

const ADOPTED = 'live stream adopted: waiting for its broadcaster';
const LIST_FAILED = 'could not list the live streams to adopt; retrying';
const ADOPTION_DONE = 'live streams adopted';

/** An edge whose log lines the test can wait for (the adoption is not visible otherwise). */
async function startEdge(options: { controlPlane?: ControlPlaneClient } = {}) {
  const lines: Array<{ msg?: string; streamId?: number }> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const edge = await stack.startEdge({ ...options, log });
  cleanups.push(() => edge.edge.close());
  const logged = (msg: string, streamId?: number) =>
    lines.filter((line) => line.msg === msg && (streamId === undefined || line.streamId === streamId)).length;
  return { ...edge, logged };
}

/** The owner's broadcaster, live on `edge` with a sine microphone. */
async function goLive(edge: TestEdge, streamId: number) {
  const source = sineSource();
  cleanups.push(() => source.stop());
  const connection = new SignalingConnection({ url: edge.wsUrl, token: owner.token, WebSocket });
  cleanups.push(() => connection.close());
  await connection.connect();
  const broadcaster = new Broadcaster({ connection, handlerName: NODE_HANDLER_NAME });
  await broadcaster.publish(streamId, source.track);
  return { connection, broadcaster };
}

/** The producer of the stream on its media node, null when nobody produces. */
const producerOf = async (streamId: number) =>
  (await stack.media.getStreamInfo(String(streamId)).catch(() => null))?.producerId ?? null;

/** The edge dies with the stream live (its grace timers die with it); the broadcaster never comes back to it. */
async function edgeDies(edge: TestEdge, live: { connection: SignalingConnection }, streamId: number) {
  await edge.edge.close();
  live.connection.close();
  await expect.poll(() => producerOf(streamId), { timeout: 5_000 }).toBeNull();
  // As the owner, who sees their private streams too.
  const info = await stack.client.stream.getStreamInfo({ streamId }, { token: owner.token });
  expect(info.stream?.status).toBe('live');
}

/** GET /stream/:id on `edge`: anonymously, or as the user of `token` (for private streams). */
async function restStream(
  edge: TestEdge,
  id: number,
  token?: string,
): Promise<{ status: string; end_reason: string | null }> {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const response = await fetch(`${edge.baseUrl}/stream/${id}`, { headers });
  expect(response.status).toBe(200);
  return ((await response.json()) as { stream: { status: string; end_reason: string | null } }).stream;
}

async function restLiveIds(edge: TestEdge): Promise<number[]> {
  const response = await fetch(`${edge.baseUrl}/streams?limit=100`);
  expect(response.status).toBe(200);
  return ((await response.json()) as { streams: Array<{ id: number }> }).streams.map((stream) => stream.id);
}

/** Polls GET /stream/:id until the stream has ended, then checks it ended for want of a broadcaster. */
async function expectEndedByGrace(edge: TestEdge, streamId: number, since: number, token?: string) {
  await expect
    .poll(async () => (await restStream(edge, streamId, token)).status, {
      timeout: graceMs + 15_000,
      interval: 100,
    })
    .toBe('ended');
  expect(Date.now() - since).toBeGreaterThanOrEqual(graceMs);
  expect(await restStream(edge, streamId, token)).toMatchObject({
    status: 'ended',
    end_reason: 'broadcaster_disconnected',
  });
  expect(await restLiveIds(edge)).not.toContain(streamId);
}

describe('an edge that starts adopts the live streams', () => {
  it('ends the stream of a broadcaster whose edge died, once the grace period is over', async () => {
    const first = await startEdge();
    const streamId = await stack.startStream(owner);
    const live = await goLive(first, streamId);
    await expect.poll(() => producerOf(streamId), { timeout: 5_000 }).not.toBeNull();
    await edgeDies(first, live, streamId);

    const startedAt = Date.now();
    const next = await startEdge();
    await expect.poll(() => next.logged(ADOPTED, streamId), { timeout: 5_000 }).toBe(1);
    expect(await restLiveIds(next)).toContain(streamId);
    await expectEndedByGrace(next, streamId, startedAt);
  });

  it('adopts private streams too, paging through every live stream', async () => {
    const other = await stack.createUser();
    const first = await startEdge();
    const privateId = await stack.startStream(owner, { isPublic: false });
    const publicId = await stack.startStream(other);
    const live = await goLive(first, privateId);
    await expect.poll(() => producerOf(privateId), { timeout: 5_000 }).not.toBeNull();
    await edgeDies(first, live, privateId);

    // The control plane answers one stream per page, so the edge must follow next_page_token.
    const requests: ListStreamsRequest[] = [];
    const controlPlane: ControlPlaneClient = {
      ...stack.client,
      stream: {
        ...stack.client.stream,
        listStreams: (request, context) => {
          requests.push(request);
          return stack.client.stream.listStreams({ ...request, limit: 1 }, context);
        },
      },
    };
    const startedAt = Date.now();
    const next = await startEdge({ controlPlane });
    await expect.poll(() => next.logged(ADOPTED, privateId), { timeout: 5_000 }).toBe(1);
    await expect.poll(() => next.logged(ADOPTED, publicId), { timeout: 5_000 }).toBe(1);
    await expect.poll(() => next.logged(ADOPTION_DONE), { timeout: 5_000 }).toBe(1);
    const pages = requests.length;
    expect(pages).toBeGreaterThanOrEqual(3);
    expect(requests.every((request) => request.includePrivate)).toBe(true);
    expect(requests[0]?.pageToken).toBe('');
    expect(requests.slice(1).every((request) => request.pageToken !== '')).toBe(true);

    await expectEndedByGrace(next, privateId, startedAt, owner.token);
    await expectEndedByGrace(next, publicId, startedAt);
    // One listing: the edge does not list again once the adopted grace periods are over (the
    // other calls are GET /streams of expectEndedByGrace, which never lists private streams).
    expect(requests.filter((request) => request.includePrivate)).toHaveLength(pages);
  });

  it('keeps the stream when its broadcaster reconnects to the new edge within the grace period', async () => {
    const first = await startEdge();
    const streamId = await stack.startStream(owner);
    const live = await goLive(first, streamId);
    await edgeDies(first, live, streamId);

    const next = await startEdge();
    await expect.poll(() => next.logged(ADOPTED, streamId), { timeout: 5_000 }).toBe(1);
    const adoptedAt = Date.now();
    const back = await goLive(next, streamId);

    // A negative check: nothing may end the stream once the adopted grace period is over.
    await sleep(Math.max(0, adoptedAt + graceMs + 500 - Date.now()));
    expect((await restStream(next, streamId)).status).toBe('live');
    expect(back.broadcaster.state).toBe('live');
    expect(await producerOf(streamId)).not.toBeNull();
  });

  it('keeps the stream whose broadcaster is live on another edge: the media node decides, not the edge', async () => {
    const first = await startEdge();
    const streamId = await stack.startStream(owner);
    const live = await goLive(first, streamId);

    // A second edge of the cluster (or one restarted beside it) adopts the stream too.
    const second = await startEdge();
    await expect.poll(() => second.logged(ADOPTED, streamId), { timeout: 5_000 }).toBe(1);
    const adoptedAt = Date.now();

    await sleep(Math.max(0, adoptedAt + graceMs + 500 - Date.now()));
    expect((await restStream(second, streamId)).status).toBe('live');
    expect(live.broadcaster.state).toBe('live');
  });

  it('does not wait for the control plane to start, and adopts once it answers', async () => {
    const first = await startEdge();
    // Its broadcaster never joins; the edge dies before the stream's own grace period ends.
    const streamId = await stack.startStream(owner);
    await first.edge.close();

    // ListStreams goes to an address nothing listens on for the first two calls (the edge's
    // adoption; GET /streams would list through it too, so the test does not call it before).
    const unreachable = createControlPlaneClient({ address: '127.0.0.1:1', apiKey: 'none' });
    cleanups.push(() => unreachable.close());
    let listCalls = 0;
    const controlPlane: ControlPlaneClient = {
      ...stack.client,
      stream: {
        ...stack.client.stream,
        listStreams: (request, context) =>
          (++listCalls <= 2 ? unreachable : stack.client).stream.listStreams(request, context),
      },
    };
    const next = await startEdge({ controlPlane });
    const startedAt = Date.now();
    // Serving already: at most the first attempt has been made (the retries back off).
    expect(listCalls).toBeLessThanOrEqual(1);
    expect((await restStream(next, streamId)).status).toBe('live');

    await expect.poll(() => next.logged(ADOPTED, streamId), { timeout: 10_000 }).toBe(1);
    expect(next.logged(LIST_FAILED)).toBe(2);
    expect(listCalls).toBe(3);
    await expectEndedByGrace(next, streamId, startedAt);
  });
});
