/**
 * OpenTelemetry across the roles: threaded standalone mode (each role group on its own thread,
 * each its own service, wired over the thread bus as cluster mode is over NATS) exports to a real
 * OTLP receiver on loopback (the default protocol, http/protobuf, decoded by common/testing's
 * receiver). A user registers,
 * signs in, goes live, joins the stream's socket, sends a chat message and uploads a track; each
 * request is one trace whose spans cross the edge, the control plane, PostgreSQL, the bus, the
 * media node and the transcode worker, each child of the span that caused it.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, loadConfig } from '../common/index.js';
import {
  createTestDatabase,
  type OtlpReceiver,
  type ReceivedSpan,
  startOtlpReceiver,
  type TestDatabase,
} from '../common/testing/index.js';
import { nodeWebSocket } from '../signaling/client/testing/index.js';
import { makeAudio } from '../workers/test-audio.js';
import { startThreadedPlatform, type ThreadedPlatform } from './supervisor.js';

const SERVER = 2;
const CLIENT = 3;
const PRODUCER = 4;
const CONSUMER = 5;

/** The variables the SDK reads itself; the role threads inherit this process's environment. */
const OTEL_ENV = ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_PROTOCOL', 'OTEL_BSP_SCHEDULE_DELAY'];

interface Json {
  [key: string]: unknown;
}

/** A trace's spans, with the walks the assertions need. */
class Trace {
  constructor(readonly spans: ReceivedSpan[]) {}

  get roots(): ReceivedSpan[] {
    return this.spans.filter((span) => span.parentSpanId === '');
  }

  parentOf(span: ReceivedSpan): ReceivedSpan | undefined {
    return this.spans.find((candidate) => candidate.spanId === span.parentSpanId);
  }

  /** The one span named `name` in `service` (several: the first); fails naming what there is. */
  find(service: string, name: string | RegExp, kind?: number): ReceivedSpan {
    const found = this.all(service, name, kind)[0];
    if (!found) {
      const seen = this.spans.map((span) => `${span.service}: ${span.name}`).join('\n  ');
      throw new Error(`no span ${String(name)} in ${service}; the trace has:\n  ${seen}`);
    }
    return found;
  }

  all(service: string, name: string | RegExp, kind?: number): ReceivedSpan[] {
    return this.spans.filter(
      (span) =>
        span.service === service &&
        (typeof name === 'string' ? span.name === name : name.test(span.name)) &&
        (kind === undefined || span.kind === kind),
    );
  }

  /** The first PostgreSQL query of `service` whose statement matches `statement`. */
  query(service: string, statement: RegExp): ReceivedSpan {
    const found = this.all(service, /^postgres /, CLIENT).find((span) =>
      statement.test(String(span.attributes['db.query.text'])),
    );
    if (!found) throw new Error(`no query ${String(statement)} in ${service}`);
    return found;
  }

  /** True when `ancestor` is on the path from `span` to the root. */
  descends(span: ReceivedSpan, ancestor: ReceivedSpan): boolean {
    for (let at = this.parentOf(span); at; at = this.parentOf(at))
      if (at.spanId === ancestor.spanId) return true;
    return false;
  }
}

describe('tracing across the roles', () => {
  let receiver: OtlpReceiver;
  let db: TestDatabase;
  let dataDir: string;
  let platform: ThreadedPlatform | undefined;
  const saved = new Map<string, string | undefined>();

  beforeAll(async () => {
    [receiver, db, dataDir] = await Promise.all([
      startOtlpReceiver(),
      createTestDatabase('embedded'),
      mkdtemp(path.join(tmpdir(), 'veza-tracing-')),
    ]);
  });
  afterAll(async () => {
    await platform?.close();
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    await receiver?.close();
    await db?.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('follows each request from the edge through gRPC, PostgreSQL, the bus, the media node and the worker', {
    timeout: 120_000,
  }, async () => {
    const env: Record<string, string | undefined> = {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      // Unset: the SDK's default, http/protobuf.
      OTEL_EXPORTER_OTLP_PROTOCOL: undefined,
      // The batch processor's own variable: spans leave every 50 ms instead of 5 s.
      OTEL_BSP_SCHEDULE_DELAY: '50',
    };
    for (const name of OTEL_ENV) {
      saved.set(name, process.env[name]);
      const value = env[name];
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    delete process.env.OTEL_SERVICE_NAME;
    const config = loadConfig({
      VEZA_DATA_DIR: dataDir,
      DATABASE_URL: db.url,
      HTTP_HOST: '127.0.0.1',
      HTTP_PORT: '0',
      GRPC_HOST: '127.0.0.1',
      GRPC_PORT: '0',
      MEDIA_LISTEN_IP: '127.0.0.1',
      MEDIA_WORKERS: '1',
      WORKER_CONCURRENCY: '1',
      LOG_LEVEL: 'warn',
      ...env,
    });
    expect(config.tracing).toBe(true);
    platform = await startThreadedPlatform(config, createLogger({ level: 'warn', name: 'tracing-test' }));
    const base = `http://127.0.0.1:${platform.httpPort}`;

    const rest = async (method: string, route: string, requestId: string, init: RequestInit = {}) => {
      const response = await fetch(`${base}${route}`, {
        ...init,
        method,
        headers: { 'x-request-id': requestId, ...(init.headers as Record<string, string>) },
      });
      const text = await response.text();
      return {
        status: response.status,
        headers: response.headers,
        body: (text ? JSON.parse(text) : {}) as Json,
      };
    };
    const json = (body: unknown, token?: string): RequestInit => ({
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    });

    const account = { email: 'ada@example.com', password: 'Analytical-Engine-1843', username: 'ada' };
    expect((await rest('POST', '/auth/register', 'trace-register-1', json(account))).status).toBe(201);
    const login = await rest(
      'POST',
      '/auth/login',
      'trace-login-0001',
      json({ email: account.email, password: account.password }),
    );
    expect(login.status).toBe(200);
    const token = String(login.body.access_token);
    const started = await rest('POST', '/stream/start', 'trace-golive-01', json({ title: 'traced' }, token));
    expect(started.status).toBe(201);
    const streamId = Number(started.body.stream_id);

    // The socket: join the stream as its broadcaster, join its chat, send, and see the fan-out.
    const WebSocket = nodeWebSocket();
    const socket = new WebSocket(`${base.replace('http', 'ws')}/ws?v=1&token=${token}`);
    const frames: Json[] = [];
    const waiters: Array<() => void> = [];
    socket.addEventListener('message', (event) => {
      frames.push(JSON.parse(String(event.data)) as Json);
      for (const wake of waiters.splice(0)) wake();
    });
    const frame = async (match: (frame: Json) => boolean): Promise<Json> => {
      for (;;) {
        const found = frames.find(match);
        if (found) return found;
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    };
    let nextId = 1;
    const call = async (method: string, params: Json): Promise<Json> => {
      const id = nextId++;
      socket.send(JSON.stringify({ id, method, params }));
      const answer = await frame((f) => f.id === id);
      expect(answer, `${method} answered ${JSON.stringify(answer)}`).toMatchObject({ ok: true });
      return answer.result as Json;
    };
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener('open', () => resolve());
      socket.addEventListener('error', () => reject(new Error('the WebSocket did not open')));
    });
    await call('join', { streamId, role: 'broadcaster' });
    const room = (await call('chat.join', { streamId })) as { room: { roomId: number } };
    const roomId = room.room.roomId;
    await call('chat.send', { roomId, content: 'hello, traces', clientMessageId: 'trace-chat-1' });
    // The edge fanned the stored message out to this socket: the bus consumer ran.
    await frame((f) => f.notification === 'chat.message');
    // Watching the user's notifications: the edge then forwards their uploads' progress.
    await call('notifications.list', {});

    // Upload (tus): create, then one chunk; the transcode job runs on the worker.
    const wav = await readFile(await makeAudio(path.join(dataDir, 'tone.wav'), 'wav', 'sine=f=440:d=2'));
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    const tus = { authorization: `Bearer ${token}`, 'tus-resumable': '1.0.0' };
    const created = await rest('POST', '/stream/upload', 'trace-upload-01', {
      headers: {
        ...tus,
        'upload-length': String(wav.length),
        'upload-metadata': `title ${b64('Traced tone')},filename ${b64('tone.wav')}`,
      },
    });
    expect(created.status).toBe(201);
    const trackId = Number(created.body.track_id);
    const chunk = await rest('PATCH', `/stream/upload/${trackId}`, 'trace-chunk-001', {
      headers: { ...tus, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
      body: new Uint8Array(wav),
    });
    expect(chunk.status).toBe(204);
    for (;;) {
      const track = await rest('GET', `/tracks/${trackId}`, `trace-poll-${Date.now()}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const status = (track.body.track as Json).status;
      expect(status).not.toBe('failed');
      if (status === 'ready') break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    await frame(
      (f) =>
        f.notification === 'track.progress' &&
        (f.data as Json).trackId === trackId &&
        (f.data as Json).status === 'ready',
    );
    socket.close();

    // Closing shuts each thread's SDK down, which exports what it still holds.
    await platform.close();
    platform = undefined;
    expect(receiver.rejected).toEqual([]);
    expect(new Set(receiver.protocols)).toEqual(new Set(['http/protobuf']));

    const spans = [...receiver.spans];
    const traceOf = (root: ReceivedSpan) => new Trace(spans.filter((span) => span.traceId === root.traceId));
    const request = (requestId: string): Trace => {
      const roots = spans.filter(
        (span) => span.service === 'veza-edge' && span.attributes['veza.request_id'] === requestId,
      );
      expect(roots, `the edge's span of ${requestId}`).toHaveLength(1);
      const trace = traceOf(roots[0]!);
      // One trace per request: its root is the edge's span, and no other request's root is in it.
      expect(trace.roots).toEqual([roots[0]]);
      return trace;
    };
    /** `client` (a call on one side) is the parent of `server` (its handling on the other). */
    const crosses = (trace: Trace, client: ReceivedSpan, server: ReceivedSpan) => {
      expect(trace.parentOf(server)).toEqual(client);
      expect(client.service).not.toBe(server.service);
    };

    // Register: edge -> gRPC -> the control plane's handler -> PostgreSQL.
    const register = request('trace-register-1');
    const registerRoot = register.roots[0]!;
    expect(registerRoot).toMatchObject({ name: 'POST /auth/register', kind: SERVER });
    expect(registerRoot.attributes['http.response.status_code']).toBe(201);
    const registerCall = register.find('veza-edge', 'grpc veza.auth.AuthService/Register', CLIENT);
    expect(register.parentOf(registerCall)).toEqual(registerRoot);
    const registerHandler = register.find(
      'veza-control-plane',
      'grpc veza.auth.AuthService/Register',
      SERVER,
    );
    crosses(register, registerCall, registerHandler);
    // The request id travels too, so the control plane's span and log lines name the same request.
    expect(registerHandler.attributes['veza.request_id']).toBe('trace-register-1');
    const insert = register.find('veza-control-plane', 'postgres INSERT', CLIENT);
    expect(register.descends(insert, registerHandler)).toBe(true);
    expect(insert.attributes['db.system.name']).toBe('postgresql');
    expect(String(insert.attributes['db.query.text'])).toMatch(/insert into/i);

    // Login: the same path, with its queries.
    const loginTrace = request('trace-login-0001');
    const loginHandler = loginTrace.find(
      'veza-control-plane',
      'grpc veza.auth.AuthService/Authenticate',
      SERVER,
    );
    crosses(
      loginTrace,
      loginTrace.find('veza-edge', 'grpc veza.auth.AuthService/Authenticate', CLIENT),
      loginHandler,
    );
    expect(
      loginTrace.all('veza-control-plane', /^postgres /).every((q) => loginTrace.descends(q, loginHandler)),
    ).toBe(true);
    expect(loginTrace.all('veza-control-plane', /^postgres /).length).toBeGreaterThan(0);

    // Go live: the handler's event crosses the bus to the edge.
    const golive = request('trace-golive-01');
    const startHandler = golive.find(
      'veza-control-plane',
      'grpc veza.stream.StreamService/StartStream',
      SERVER,
    );
    const announced = golive.find('veza-control-plane', 'publish stream.started', PRODUCER);
    expect(golive.descends(announced, startHandler)).toBe(true);
    crosses(golive, announced, golive.find('veza-edge', 'process stream.started', CONSUMER));

    // The socket's join: the edge asks the media node over the bus.
    const joins = spans.filter((span) => span.service === 'veza-edge' && span.name === 'ws join');
    expect(joins).toHaveLength(1);
    const join = traceOf(joins[0]!);
    expect(join.roots).toEqual(joins);
    const mediaAnswer = join.find('veza-media', /^answer media\./, SERVER);
    crosses(join, join.parentOf(mediaAnswer)!, mediaAnswer);
    expect(join.parentOf(mediaAnswer)).toMatchObject({ service: 'veza-edge', kind: CLIENT });

    // Chat send: edge -> ChatService -> PostgreSQL -> bus -> the edge that fans it out.
    const sends = spans.filter((span) => span.service === 'veza-edge' && span.name === 'ws chat.send');
    expect(sends).toHaveLength(1);
    const chat = traceOf(sends[0]!);
    expect(chat.roots).toEqual(sends);
    const sendHandler = chat.find('veza-control-plane', 'grpc veza.chat.ChatService/SendMessage', SERVER);
    crosses(chat, chat.find('veza-edge', 'grpc veza.chat.ChatService/SendMessage', CLIENT), sendHandler);
    expect(chat.descends(chat.query('veza-control-plane', /insert into chat_messages/i), sendHandler)).toBe(
      true,
    );
    const published = chat.find('veza-control-plane', 'publish chat.room.*', PRODUCER);
    expect(chat.descends(published, sendHandler)).toBe(true);
    crosses(chat, published, chat.find('veza-edge', 'process chat.room.*', CONSUMER));

    // Upload chunk: edge -> UploadAudioChunks -> PostgreSQL -> the transcode job on the worker,
    // whose own calls (the track records over the bus, its progress) continue the same trace.
    const upload = request('trace-chunk-001');
    const chunkRoot = upload.roots[0]!;
    expect(chunkRoot).toMatchObject({ name: 'PATCH /stream/upload/:id', kind: SERVER });
    const chunkHandler = upload.find(
      'veza-control-plane',
      'grpc veza.stream.StreamService/UploadAudioChunks',
      SERVER,
    );
    expect(upload.parentOf(chunkHandler)).toEqual(chunkRoot);
    expect(upload.all('veza-control-plane', /^postgres /).some((q) => upload.descends(q, chunkHandler))).toBe(
      true,
    );
    const transcode = upload.find('veza-control-plane', 'process transcode', CONSUMER);
    expect(upload.descends(transcode, chunkHandler)).toBe(true);
    const progress = upload.find('veza-control-plane', 'publish tracks.*.progress', PRODUCER);
    expect(upload.descends(progress, transcode)).toBe(true);
    crosses(upload, progress, upload.find('veza-edge', 'process tracks.*.progress', CONSUMER));

    // Requests are kept apart: five requests, five traces.
    const requestTraces = new Set(
      [registerRoot, loginTrace.roots[0], golive.roots[0], joins[0], sends[0], chunkRoot].map(
        (s) => s?.traceId,
      ),
    );
    expect(requestTraces.size).toBe(6);
  });
});
