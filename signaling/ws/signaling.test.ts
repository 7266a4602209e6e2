/**
 * End to end through the real edge, control plane and media node (in-process), with
 * @roamhq/wrtc peers driven by the client library, plus the misbehaving clients the
 * acceptance list names. Every wait is on an event or a condition.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type SignalingStack, startSignalingStack, type TestUser } from '../../app/testing/index.js';
import { metricsRegistry } from '../../common/index.js';
import { Broadcaster, Listener, SignalingConnection } from '../client/index.js';
import {
  type AudioTap,
  audioTap,
  installWrtcGlobals,
  listenerTap,
  NODE_HANDLER_NAME,
  nodeWebSocket,
  type SineSource,
  sineSource,
} from '../client/testing/index.js';
import { CLOSE_CODES } from '../protocol/index.js';
import { NonReadingClient, RawClient, rawHandshake, SilentClient } from './test-clients.js';

installWrtcGlobals();

const WebSocket = nodeWebSocket();
const handlerName = NODE_HANDLER_NAME;
const OPUS_CAPS = {
  codecs: [
    { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2, preferredPayloadType: 100 },
  ],
};
const audible = (rms: number) => rms > 100;
/** uWS's smallest idle timeout; every other client here (wrtc, ws) answers pings, so it is safe. */
const IDLE_TIMEOUT_S = 8;

/** Connections the edge closed for `cause`, from this process's metrics registry. */
async function closedCount(cause: string): Promise<number> {
  const metric = metricsRegistry().getSingleMetric('veza_ws_closed_total');
  const values = (await metric?.get())?.values ?? [];
  return values.find((value) => value.labels.cause === cause)?.value ?? 0;
}

/** Signaling handshakes with this result, from this process's metrics registry. */
async function upgradeCount(result: string): Promise<number | undefined> {
  const metric = metricsRegistry().getSingleMetric('veza_ws_upgrades_total');
  const values = (await metric?.get())?.values ?? [];
  return values.find((value) => value.labels.result === result)?.value;
}

interface Live {
  streamId: number;
  source: SineSource;
  connection: SignalingConnection;
  broadcaster: Broadcaster;
}

interface Heard {
  connection: SignalingConnection;
  listener: Listener;
  tap: AudioTap;
}

function harness(stackOptions: Parameters<typeof startSignalingStack>[0] = {}) {
  const state = {} as { stack: SignalingStack; owner: TestUser; fan: TestUser };
  const cleanups: Array<() => void | Promise<void>> = [];

  beforeAll(async () => {
    state.stack = await startSignalingStack(stackOptions);
    state.owner = await state.stack.createUser();
    state.fan = await state.stack.createUser();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await state.stack?.close();
  });

  const connect = async (token: string) => {
    const connection = new SignalingConnection({ url: state.stack.wsUrl, token, WebSocket });
    cleanups.push(() => connection.close());
    await connection.connect();
    return connection;
  };

  const goLive = async (owner = state.owner, streamId?: number): Promise<Live> => {
    const id = streamId ?? (await state.stack.startStream(owner));
    const source = sineSource();
    cleanups.push(() => source.stop());
    const connection = await connect(owner.token);
    const broadcaster = new Broadcaster({ connection, handlerName });
    await broadcaster.publish(id, source.track);
    return { streamId: id, source, connection, broadcaster };
  };

  const listen = async (streamId: number, token = state.fan.token): Promise<Heard> => {
    const connection = await connect(token);
    const listener = new Listener({ connection, handlerName });
    // Follows the listener's track across reconnections.
    const tap = listenerTap(listener);
    cleanups.push(() => tap.stop());
    await listener.listen(streamId);
    await tap.waitForFrames(20, audible);
    return { connection, listener, tap };
  };

  const raw = async (token: string, query = `v=1&token=${encodeURIComponent(token)}`) => {
    const client = await RawClient.open(state.stack.wsUrl, query);
    cleanups.push(() => client.close());
    return client;
  };

  return { state, cleanups, connect, goLive, listen, raw };
}

describe.each(['direct', 'bus'] as const)('live audio through /ws (%s media gateway)', (gateway) => {
  const { state, connect, goLive } = harness({ gateway });

  it('a sine published by the broadcaster arrives decoded at the listener, RMS within 10%', async () => {
    const live = await goLive();
    const level = live.broadcaster.next('level');
    const counted = live.broadcaster.next('listenerCount');

    const connection = await connect(state.fan.token);
    const listener = new Listener({ connection, handlerName });
    const tap = audioTap(await listener.listen(live.streamId));
    // Past the decoder's start-up, then one second of audio.
    await tap.waitForFrames(50, audible);
    tap.reset();
    await tap.waitForFrames(100);
    expect(Math.abs(tap.medianFrameRms() - live.source.rms) / live.source.rms).toBeLessThan(0.1);
    expect((await counted)[0]).toBe(1);
    const [{ volume, speaking }] = await level;
    expect(volume).toBeGreaterThan(-60);
    expect(speaking).toBe(true);
    const stats = await listener.getStats();
    expect(stats.consumers[0]?.score).toBeGreaterThan(0);

    const ended = listener.next('ended');
    const broadcasterEnded = live.broadcaster.next('ended');
    await state.stack.stopStream(state.owner, live.streamId);
    expect((await ended)[0].reason).toBe('stopped');
    await broadcasterEnded;
    expect(listener.state).toBe('ended');
    tap.stop();
  });
});

describe('the /ws endpoint', () => {
  const { state, cleanups, connect, goLive, listen, raw } = harness({
    limits: { maxBackpressureBytes: 64 * 1024, idleTimeoutS: IDLE_TIMEOUT_S },
  });
  const query = (token: string) => `v=1&token=${encodeURIComponent(token)}`;

  it('refuses unknown protocol versions with a close reason, and bad tokens with 401 before upgrading', async () => {
    const wrongVersion = await RawClient.open(state.stack.wsUrl, `v=2&token=${state.fan.token}`);
    expect(await wrongVersion.closed).toEqual({
      code: CLOSE_CODES.unsupportedVersion,
      reason: expect.stringMatching(/unsupported protocol version "2"/),
    });
    const noVersion = await RawClient.open(state.stack.wsUrl, `token=${state.fan.token}`);
    expect((await noVersion.closed).reason).toMatch(/missing protocol version/);

    // No token is an anonymous listener, not an error (the join decides what it may hear).
    const anonymous = await rawHandshake(state.stack.baseUrl, 'v=1');
    expect(anonymous.status).toBe(101);
    const forged = await rawHandshake(state.stack.baseUrl, `v=1&token=${state.fan.token.slice(0, -4)}AAAA`);
    expect(forged.status).toBe(401);
    const accepted = await rawHandshake(state.stack.baseUrl, query(state.fan.token));
    expect(accepted.status).toBe(101);
  });

  it('answers malformed JSON, unknown methods, bad params and oversized frames with errors, and stays open', async () => {
    const streamId = await state.stack.startStream(state.owner);
    const client = await raw(state.fan.token);

    client.send('{"id": 1, "method": ');
    let frame = await client.next((f) => f.id === null);
    expect(frame.error).toMatchObject({
      code: 'invalid_argument',
      message: expect.stringMatching(/^malformed JSON/),
    });

    frame = await client.request('teleport', {});
    expect(frame).toMatchObject({ ok: false, error: { code: 'unimplemented', field: 'method' } });
    expect(JSON.stringify(frame)).toMatch(/unknown method \\"teleport\\"/);

    frame = await client.request('join', { streamId: 'one', role: 'listener' });
    expect(frame).toMatchObject({ ok: false, error: { code: 'invalid_argument', field: 'params.streamId' } });
    frame = await client.request('join', { streamId, role: 'dj' });
    expect(frame).toMatchObject({ ok: false, error: { code: 'invalid_argument', field: 'params.role' } });
    frame = await client.request('join', { streamId, role: 'listener', colour: 'blue' });
    expect(frame).toMatchObject({
      ok: false,
      error: { code: 'invalid_argument', message: expect.stringMatching(/"colour"/) },
    });

    client.send(JSON.stringify({ method: 'leave', params: {} }));
    frame = await client.next((f) => f.id === null);
    expect(frame.error).toMatchObject({ code: 'invalid_argument', field: 'id' });

    // Above the protocol's limit but below the transport's: an error frame, not a dropped connection.
    client.send(JSON.stringify({ id: 'big', method: 'join', params: { pad: 'x'.repeat(70 * 1024) } }));
    frame = await client.next((f) => f.id === null);
    expect(frame.error).toMatchObject({ code: 'payload_too_large' });

    frame = await client.request('getStats', {});
    expect(frame).toMatchObject({ ok: false, error: { code: 'failed_precondition', reason: 'not_joined' } });

    expect(client.open).toBe(true);
    frame = await client.request('join', { streamId, role: 'listener' });
    expect(frame).toMatchObject({ ok: true, result: { streamId, role: 'listener' } });
  });

  it('closes a connection that sends a frame over the hard limit; the client library reconnects', async () => {
    const client = await raw(state.fan.token);
    client.send('x'.repeat(2 * 1024 * 1024));
    expect((await client.closed).code).toBe(1006);

    let tokensAsked = 0;
    const connection = new SignalingConnection({
      url: state.stack.wsUrl,
      token: async () => {
        tokensAsked++;
        return state.fan.token;
      },
      WebSocket,
    });
    cleanups.push(() => connection.close());
    await connection.connect();
    const reopened = connection.next('open');
    const oversized = connection.request as unknown as (method: string, params: unknown) => Promise<unknown>;
    await expect(
      oversized.call(connection, 'leave', { pad: 'x'.repeat(2 * 1024 * 1024) }),
    ).rejects.toMatchObject({
      code: 'unavailable',
    });
    expect((await reopened)[0]).toEqual({ reconnect: true });
    await expect(connection.request('leave', {})).resolves.toEqual({});
    // A fresh token for every attempt: the first one may have expired meanwhile.
    expect(tokensAsked).toBe(2);
  });

  it('fails connect() at once when the token is refused, without retrying', async () => {
    const connection = new SignalingConnection({ url: state.stack.wsUrl, token: 'not-a-token', WebSocket });
    const closes: unknown[] = [];
    connection.on('close', (info) => closes.push(info));
    await expect(connection.connect()).rejects.toMatchObject({ code: 'unavailable' });
    expect(connection.state).toBe('closed');
    expect(closes).toEqual([{ code: 1006, reason: '', willReconnect: false }]);
    await expect(connection.request('leave', {})).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('lets only the owner with the broadcaster role produce; the stream stays healthy', async () => {
    const live = await goLive();
    const heard = await listen(live.streamId);
    const intruder = await state.stack.createUser();
    const client = await raw(intruder.token);

    let frame = await client.request('join', { streamId: live.streamId, role: 'broadcaster' });
    expect(frame).toMatchObject({ ok: false, error: { code: 'permission_denied' } });
    expect(JSON.stringify(frame)).toMatch(/only the owner of stream/);

    frame = await client.request('join', { streamId: live.streamId, role: 'listener' });
    expect(frame.ok).toBe(true);
    frame = await client.request('createTransport', { direction: 'send' });
    expect(frame).toMatchObject({ ok: false, error: { code: 'permission_denied' } });
    const recv = await client.request('createTransport', { direction: 'recv' });
    const transportId = recv.ok ? (recv.result as { id: string }).id : '';
    frame = await client.request('produce', {
      transportId,
      kind: 'audio',
      rtpParameters: live.broadcaster.producer!.rtpParameters,
    });
    expect(frame).toMatchObject({
      ok: false,
      error: {
        code: 'permission_denied',
        message: "only the stream's owner with the broadcaster role may produce",
      },
    });

    expect(client.open).toBe(true);
    await heard.tap.waitForFrames(50, audible);
  });

  it('rejects bad DTLS parameters with the field named; the transport and stream stay usable', async () => {
    const live = await goLive();
    const heard = await listen(live.streamId);
    const client = await raw(state.fan.token);
    await client.request('join', { streamId: live.streamId, role: 'listener' });
    const recv = await client.request('createTransport', { direction: 'recv' });
    const transportId = recv.ok ? (recv.result as { id: string }).id : '';
    const connectWith = (dtlsParameters: unknown) =>
      client.request('connectTransport', { transportId, dtlsParameters });

    let frame = await connectWith({
      role: 'client',
      fingerprints: [{ algorithm: 'sha-256', value: 'not-hex' }],
    });
    expect(frame).toMatchObject({
      ok: false,
      error: { code: 'invalid_argument', field: 'params.dtlsParameters.fingerprints.0.value' },
    });
    frame = await connectWith({ role: 'client', fingerprints: [{ algorithm: 'md5', value: 'AB:CD' }] });
    expect(frame).toMatchObject({ error: { field: 'params.dtlsParameters.fingerprints.0.algorithm' } });
    frame = await connectWith({ role: 'client', fingerprints: [] });
    expect(frame).toMatchObject({ error: { field: 'params.dtlsParameters.fingerprints' } });
    frame = await client.request('connectTransport', {
      transportId: 'not-mine',
      dtlsParameters: { fingerprints: [{ algorithm: 'sha-256', value: Array(32).fill('AB').join(':') }] },
    });
    expect(frame).toMatchObject({ ok: false, error: { code: 'not_found' } });

    const fingerprint = { algorithm: 'sha-256', value: Array(32).fill('0F').join(':') };
    frame = await connectWith({ role: 'client', fingerprints: [fingerprint] });
    expect(frame.ok).toBe(true);
    frame = await connectWith({ role: 'client', fingerprints: [fingerprint] });
    expect(frame).toMatchObject({ ok: false, error: { code: 'failed_precondition' } });

    expect(client.open).toBe(true);
    await heard.tap.waitForFrames(50, audible);
  });

  it('says clearly that an ended stream cannot be consumed or joined', async () => {
    const streamId = await state.stack.startStream(state.owner);
    const client = await raw(state.fan.token);
    expect((await client.request('join', { streamId, role: 'listener' })).ok).toBe(true);
    const recv = await client.request('createTransport', { direction: 'recv' });
    const transportId = recv.ok ? (recv.result as { id: string }).id : '';

    let frame = await client.request('consume', { transportId, rtpCapabilities: OPUS_CAPS });
    expect(frame).toMatchObject({ ok: false, error: { code: 'unavailable', reason: 'no_audio' } });

    await state.stack.stopStream(state.owner, streamId);
    const ended = await client.next((f) => f.notification === 'streamEnded');
    expect(ended.data).toEqual({ streamId, reason: 'stopped' });

    frame = await client.request('consume', { transportId, rtpCapabilities: OPUS_CAPS });
    expect(frame).toMatchObject({
      ok: false,
      error: { code: 'failed_precondition', reason: 'stream_ended', message: `stream ${streamId} has ended` },
    });
    frame = await client.request('join', { streamId, role: 'listener' });
    expect(frame).toMatchObject({
      ok: false,
      error: { code: 'failed_precondition', reason: 'stream_ended' },
    });
    frame = await client.request('join', { streamId: 987654, role: 'listener' });
    expect(frame).toMatchObject({ ok: false, error: { code: 'not_found' } });

    const connection = await connect(state.fan.token);
    const listener = new Listener({ connection, handlerName });
    await expect(listener.listen(streamId)).rejects.toMatchObject({ code: 'failed_precondition' });
    expect(listener.state).toBe('ended');
  });

  it('drops a client that never reads, by backpressure, while the stream stays healthy for another listener', async () => {
    const live = await goLive();
    const heard = await listen(live.streamId);
    const lurker = await state.stack.createUser();
    const backpressureDrops = await closedCount('backpressure');
    const slow = await NonReadingClient.open(state.stack.edge.port, query(lurker.token));
    slow.send(
      JSON.stringify({ id: 0, method: 'join', params: { streamId: live.streamId, role: 'listener' } }),
    );

    let dropped = false;
    void slow.dropped.then(() => {
      dropped = true;
    });
    let sent = 0;
    // Every request gets an answer it never reads. Keep writing until the edge lets go: a write
    // to the dropped connection fails, which is how a client that never reads can tell.
    while (!dropped) {
      if (slow.socket.writableLength < 256 * 1024) {
        for (let i = 0; i < 200; i++) {
          slow.send(JSON.stringify({ id: ++sent, method: 'getRouterRtpCapabilities', params: {} }));
        }
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    await slow.dropped;
    expect(dropped).toBe(true);
    expect(await closedCount('backpressure')).toBeGreaterThan(backpressureDrops);

    expect(heard.connection.state).toBe('open');
    heard.tap.reset();
    await heard.tap.waitForFrames(50, audible);
    expect(Math.abs(heard.tap.medianFrameRms() - live.source.rms) / live.source.rms).toBeLessThan(0.1);
    await expect(heard.listener.getStats()).resolves.toMatchObject({ consumers: [expect.anything()] });
  });

  it('pings idle connections and closes one that stays silent past the idle timeout', async () => {
    const silent = await SilentClient.open(state.stack.edge.port, query(state.fan.token));
    const opened = performance.now();
    await silent.closed;
    const idleMs = performance.now() - opened;
    expect(silent.pings).toBeGreaterThan(0);
    // uWS keeps time in 4-second ticks and pings half-way, so the close comes within a tick or two of the timeout.
    expect(idleMs).toBeGreaterThan(IDLE_TIMEOUT_S * 1000 * 0.5);
    expect(idleMs).toBeLessThan(IDLE_TIMEOUT_S * 1000 * 2.5);
  }, 30_000);

  it('limits the request rate of a connection with resource_exhausted and a retry hint', async () => {
    const client = await raw(state.fan.token);
    for (let i = 0; i < 150; i++) client.send(JSON.stringify({ id: `b${i}`, method: 'leave', params: {} }));
    const limited = await client.next(
      (f) => (f.error as { code?: string } | undefined)?.code === 'resource_exhausted',
    );
    expect((limited.error as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
    expect(client.open).toBe(true);
  });

  it('lets a listener token listen to its own stream only', async () => {
    const streamId = await state.stack.startStream(state.owner, { allowAnonymous: true });
    const other = await state.stack.startStream(await state.stack.createUser(), { allowAnonymous: true });
    const { token } = await state.stack.client.stream.issueListenerToken({ streamId });
    const client = await raw(token);
    let frame = await client.request('join', { streamId, role: 'broadcaster' });
    expect(frame).toMatchObject({ ok: false, error: { code: 'permission_denied' } });
    frame = await client.request('join', { streamId: other, role: 'listener' });
    expect(frame).toMatchObject({ ok: false, error: { code: 'permission_denied' } });
    frame = await client.request('join', { streamId, role: 'listener' });
    expect(frame).toMatchObject({ ok: true, result: { streamId, role: 'listener' } });
  });

  it('lets a connection without a token listen to, and read the chat of, streams that allow anonymous listeners only', async () => {
    const open = await state.stack.startStream(state.owner, { allowAnonymous: true });
    const closed = await state.stack.startStream(await state.stack.createUser(), { allowAnonymous: false });
    const client = await raw('', 'v=1');
    let frame = await client.request('join', { streamId: open, role: 'broadcaster' });
    expect(frame).toMatchObject({ ok: false, error: { code: 'permission_denied' } });
    frame = await client.request('join', { streamId: closed, role: 'listener' });
    expect(frame).toMatchObject({
      ok: false,
      error: {
        code: 'permission_denied',
        message: expect.stringMatching(/does not allow anonymous listeners/),
      },
    });
    frame = await client.request('join', { streamId: open, role: 'listener' });
    expect(frame).toMatchObject({ ok: true, result: { streamId: open, role: 'listener' } });

    frame = await client.request('chat.join', { streamId: closed });
    expect(frame).toMatchObject({ ok: false });
    frame = await client.request('chat.join', { roomId: 1 });
    expect(frame).toMatchObject({
      ok: false,
      error: { code: 'invalid_argument', message: expect.stringMatching(/pass streamId/) },
    });
    frame = await client.request('chat.join', { streamId: open });
    expect(frame).toMatchObject({ ok: true, result: { readOnly: true, userId: 0 } });
    if (!frame.ok) throw new Error('chat.join failed');
    const roomId = (frame.result as { room: { roomId: number } }).room.roomId;
    frame = await client.request('chat.send', { roomId, content: 'anonymous words' });
    expect(frame).toMatchObject({ ok: false });
  });

  it('holds each address to ANONYMOUS_CONNECTIONS_PER_IP tokenless connections: the next gets 429 naming the limit, counted', async () => {
    const limit = state.stack.config.ANONYMOUS_CONNECTIONS_PER_IP;
    expect(limit).toBe(20);
    // Client addresses of this test's own, through X-Forwarded-For (loopback is a trusted proxy by default).
    const from = (address: string) => ({ headers: { 'x-forwarded-for': address } });
    const anonymous = (address: string) =>
      rawHandshake(state.stack.baseUrl, 'v=1', { ...from(address), keepOpen: true }).then((answer) => {
        cleanups.push(() => answer.close());
        return answer;
      });
    const refusedBefore = (await upgradeCount('anonymous_limit')) ?? 0;
    const held = [];
    for (let i = 0; i < limit; i += 1) held.push(await anonymous('203.0.113.7'));
    expect(held.map((answer) => answer.status)).toEqual(held.map(() => 101));

    const over = await anonymous('203.0.113.7');
    expect(over.status).toBe(429);
    expect(JSON.parse(over.body)).toEqual({
      error: {
        code: 'resource_exhausted',
        message: expect.stringMatching(/at most 20 at once \(ANONYMOUS_CONNECTIONS_PER_IP\)/),
      },
    });
    expect(await upgradeCount('anonymous_limit')).toBe(refusedBefore + 1);
    // Another address, and a connection with a token from the same one, are not held back.
    expect((await anonymous('203.0.113.8')).status).toBe(101);
    const withToken = await rawHandshake(state.stack.baseUrl, query(state.fan.token), from('203.0.113.7'));
    expect(withToken.status).toBe(101);

    // A closed connection gives its slot back.
    held[0]?.close();
    await expect
      .poll(
        async () => {
          const again = await anonymous('203.0.113.7');
          return again.status;
        },
        { timeout: 5_000, interval: 100 },
      )
      .toBe(101);
  });

  it('keeps the stream when the broadcaster comes back within the grace period, and ends it when not', async () => {
    const live = await goLive();
    const heard = await listen(live.streamId);

    // An abnormal drop (a frame over the hard limit): the library reconnects, re-joins and re-produces.
    const back = live.broadcaster.next('reconnected');
    const listenerBack = heard.listener.next('reconnected');
    const oversized = live.connection.request as unknown as (
      method: string,
      params: unknown,
    ) => Promise<unknown>;
    await oversized
      .call(live.connection, 'leave', { pad: 'x'.repeat(2 * 1024 * 1024) })
      .catch(() => undefined);
    await back;
    await listenerBack;
    await heard.tap.waitForFrames(20, audible);
    // A negative check: nothing may end the stream once the grace period has passed.
    await sleep(state.stack.config.STREAM_GRACE_S * 1000 + 500);
    let info = await state.stack.client.stream.getStreamInfo(
      { streamId: live.streamId },
      { token: state.owner.token },
    );
    expect(info.stream?.status).toBe('live');

    const ended = heard.listener.next('ended');
    live.connection.close();
    expect((await ended)[0].reason).toBe('broadcaster_disconnected');
    info = await state.stack.client.stream.getStreamInfo(
      { streamId: live.streamId },
      { token: state.owner.token },
    );
    expect(info.stream).toMatchObject({ status: 'ended', endReason: 'broadcaster_disconnected' });
  });

  it('replaces the broadcaster by their newer connection; listeners follow the new producer', async () => {
    const live = await goLive();
    const heard = await listen(live.streamId);
    const oldClosed = live.connection.next('close');
    const listenerBack = heard.listener.next('reconnected');

    const second = await goLive(state.owner, live.streamId);
    expect((await oldClosed)[0]).toMatchObject({ code: CLOSE_CODES.replaced, willReconnect: false });
    expect(live.broadcaster.state).toBe('failed');
    await listenerBack;
    await heard.tap.waitForFrames(50, audible);
    expect(second.broadcaster.state).toBe('live');
  });

  it('brings the listeners back within 3 s when the mediasoup worker is killed mid-stream', async () => {
    const live = await goLive();
    const heard = await listen(live.streamId);
    const [worker] = await state.stack.media.getWorkers();
    const back = heard.listener.next('reconnected');
    const restarted = heard.connection.next('workerRestarted');
    const killedAt = performance.now();
    process.kill(worker!.pid, 'SIGKILL');

    expect((await restarted)[0]).toEqual({ streamId: live.streamId, reconnect: true });
    expect((await back)[0].cause).toMatch(/worker restarted|broadcaster is back/);
    await heard.tap.waitForFrames(5, audible);
    expect(performance.now() - killedAt).toBeLessThan(3000);
    expect(heard.listener.state).toBe('live');
  });

  it('lets a listener who arrives before the broadcaster wait, then hear them', async () => {
    const streamId = await state.stack.startStream(state.owner);
    const connection = await connect(state.fan.token);
    const listener = new Listener({ connection, handlerName });
    const waiting = listener.next('state');
    const heard = listener.listen(streamId);
    expect((await waiting)[0]).toBe('connecting');
    await expect.poll(() => listener.state).toBe('waiting');

    await goLive(state.owner, streamId);
    const tap = audioTap(await heard);
    cleanups.push(() => tap.stop());
    await tap.waitForFrames(20, audible);
    expect(listener.state).toBe('live');
  });

  it('tells listeners when the broadcaster mutes and unmutes', async () => {
    const live = await goLive();
    const heard = await listen(live.streamId);
    const paused = heard.listener.next('paused');
    await live.broadcaster.pause();
    await paused;
    const resumed = heard.listener.next('resumed');
    await live.broadcaster.resume();
    await resumed;
    await heard.tap.waitForFrames(20, audible);

    const other = await raw(state.fan.token);
    await other.request('join', { streamId: live.streamId, role: 'listener' });
    const frame = await other.request('pauseProducer', { producerId: live.broadcaster.producer!.id });
    expect(frame).toMatchObject({ ok: false, error: { code: 'not_found' } });
  });

  it('reports listener counts to the control plane', async () => {
    const live = await goLive();
    const counted = live.broadcaster.next('listenerCount');
    await listen(live.streamId);
    expect((await counted)[0]).toBe(1);
    await expect
      .poll(async () => {
        const info = await state.stack.client.stream.getStreamInfo(
          { streamId: live.streamId },
          { token: state.owner.token },
        );
        return info.stream?.listenerCount;
      })
      .toBe(1);
  });
});
