import { request as httpRequest } from 'node:http';
import { Readable, Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { UnauthenticatedError } from '../../common/contracts/index.js';
import { renderMetrics } from '../../common/index.js';
import { json } from './reply.js';
import { createHttpServer, type HttpServer } from './server.js';

interface Started {
  server: HttpServer;
  base: string;
  port: number;
  logs: Array<Record<string, unknown>>;
}

const servers: HttpServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close({ graceMs: 100 })));
});

async function start(setup: (server: HttpServer) => void): Promise<Started> {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  const server = createHttpServer({ log: pino({ level: 'info' }, sink) });
  servers.push(server);
  setup(server);
  const port = await server.listen('127.0.0.1', 0);
  return { server, base: `http://127.0.0.1:${port}`, port, logs };
}

/** A deferred promise: a gate a test opens when the condition it waits for is met. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const echoSchema = z.strictObject({ name: z.string().min(1), count: z.number().int().optional() });

function echoRoutes(server: HttpServer) {
  server.route('POST', '/echo', (request) => json({ got: request.json(echoSchema), id: request.requestId }), {
    body: { json: 1_000 },
  });
  server.route('GET', '/things/:id', (request) => json({ id: request.params.id, q: request.query.get('q') }));
  server.route('GET', '/secret', () => {
    throw new UnauthenticatedError('missing authorization header');
  });
  server.route('GET', '/boom', () => {
    throw new Error('db password is hunter2');
  });
}

async function errorOf(response: Response) {
  return ((await response.json()) as { error: { code: string; message: string } }).error;
}

describe('HTTP server', () => {
  it('routes, validates JSON and echoes request ids', async () => {
    const { base } = await start(echoRoutes);
    const ok = await fetch(`${base}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'test-request-0001' },
      body: JSON.stringify({ name: 'a', count: 2 }),
    });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('x-request-id')).toBe('test-request-0001');
    expect(await ok.json()).toEqual({ got: { name: 'a', count: 2 }, id: 'test-request-0001' });

    const params = await fetch(`${base}/things/a%2Fb?q=x%20y`, { headers: { 'x-request-id': 'bad id!' } });
    expect(await params.json()).toEqual({ id: 'a/b', q: 'x y' });
    // A forged-looking id is replaced, never echoed.
    expect(params.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers bad input with our JSON errors', async () => {
    const { base } = await start(echoRoutes);
    const post = (body: string, contentType = 'application/json') =>
      fetch(`${base}/echo`, { method: 'POST', headers: { 'content-type': contentType }, body });

    const malformed = await post('{"name":');
    expect(malformed.status).toBe(400);
    expect(await errorOf(malformed)).toMatchObject({
      code: 'invalid_argument',
      message: expect.stringMatching(/^malformed JSON body: /),
    });

    const missing = await post('{}');
    expect(missing.status).toBe(400);
    expect(await errorOf(missing)).toEqual({
      code: 'invalid_argument',
      message: 'missing field "name" in request body',
      field: 'name',
    });

    const wrongType = await post('name=a', 'application/x-www-form-urlencoded');
    expect(wrongType.status).toBe(400);
    expect((await errorOf(wrongType)).message).toBe(
      'unsupported content type "application/x-www-form-urlencoded": expected application/json',
    );

    const empty = await fetch(`${base}/echo`, { method: 'POST' });
    expect(empty.status).toBe(400);
    expect((await errorOf(empty)).message).toBe('missing request body: expected application/json');

    const unauthenticated = await fetch(`${base}/secret`);
    expect(unauthenticated.status).toBe(401);
    expect(await errorOf(unauthenticated)).toEqual({
      code: 'unauthenticated',
      message: 'missing authorization header',
    });

    const boom = await fetch(`${base}/boom`);
    expect(boom.status).toBe(500);
    expect(await boom.text()).toBe('{"error":{"code":"internal","message":"internal server error"}}');
  });

  it('answers unknown routes with 404 and wrong methods with 405 and Allow', async () => {
    const { base } = await start(echoRoutes);
    const unknown = await fetch(`${base}/nowhere`);
    expect(unknown.status).toBe(404);
    expect(await errorOf(unknown)).toEqual({ code: 'not_found', message: 'no route for GET /nowhere' });

    const wrong = await fetch(`${base}/echo`, { method: 'DELETE' });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('POST');
    expect(await errorOf(wrong)).toEqual({
      code: 'not_found',
      message: 'method DELETE is not allowed on /echo (allowed: POST)',
    });
  });

  it('refuses a declared oversize body before reading it', async () => {
    let calls = 0;
    const { base } = await start((server) =>
      server.route(
        'POST',
        '/upload',
        () => {
          calls += 1;
          return json({});
        },
        { body: { json: 1_000 } },
      ),
    );
    const response = await fetch(`${base}/upload`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pad: 'x'.repeat(5_000) }),
    });
    expect(response.status).toBe(413);
    expect(await errorOf(response)).toEqual({
      code: 'payload_too_large',
      message: 'request body too large: the limit for application/json is 1000 bytes',
    });
    expect(calls).toBe(0);
  });

  it('cuts off a streamed body at the limit without reading the rest', async () => {
    let calls = 0;
    const { port } = await start((server) =>
      server.route(
        'POST',
        '/upload',
        () => {
          calls += 1;
          return json({});
        },
        { body: { json: 64 * 1024 } },
      ),
    );
    // 256 MB offered lazily with chunked encoding (no Content-Length): only a streaming check can stop it.
    const total = 256 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    let offered = 0;
    const source = new Readable({
      read() {
        if (offered >= total) return this.push(null);
        offered += chunk.length;
        this.push(chunk);
      },
    });
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/upload',
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (part: string) => {
            text += part;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      source.pipe(req);
    });
    source.destroy();
    expect(status).toBe(413);
    expect(JSON.parse(body).error.code).toBe('payload_too_large');
    expect(calls).toBe(0);
    // The client stopped well short of the 256 MB: the server closed the connection.
    expect(offered).toBeLessThan(total / 4);
  });

  it('never writes to an aborted response', async () => {
    const entered = deferred<AbortSignal>();
    const release = deferred();
    const { port } = await start((server) =>
      server.route('GET', '/slow', async (request) => {
        entered.resolve(request.signal);
        await release.promise;
        return json({ late: true });
      }),
    );
    const req = httpRequest({ host: '127.0.0.1', port, path: '/slow' });
    req.on('error', () => undefined);
    req.end();
    const signal = await entered.promise;
    const aborted = new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
    req.destroy();
    await aborted;
    release.resolve();
    // The reply to the dead request is dropped and counted as aborted; the process survives.
    await expect
      .poll(async () => (await renderMetrics()).body)
      .toContain('veza_http_requests_total{method="GET",route="/slow",status="aborted"} 1');
  });

  it('forgets a request whose client disconnects in the middle of its body', async () => {
    let calls = 0;
    const { port, server } = await start((s) =>
      s.route(
        'POST',
        '/upload',
        () => {
          calls += 1;
          return json({});
        },
        { body: { json: 1_000_000 } },
      ),
    );
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/upload',
      headers: { 'content-type': 'application/json', 'content-length': '1000' },
    });
    req.on('error', () => undefined);
    req.write('{"a":');
    await expect.poll(() => server.inFlight).toBe(1);
    req.destroy();
    await expect.poll(() => server.inFlight).toBe(0);
    expect(calls).toBe(0);
  });

  it('streams large replies with backpressure and answers HEAD without a body', async () => {
    const size = 8 * 1024 * 1024;
    const payload = Buffer.alloc(size);
    for (let i = 0; i < size; i++) payload[i] = i % 251;
    const { base } = await start((server) =>
      server.route('GET', '/big', () => ({
        status: 200,
        headers: { 'content-type': 'application/octet-stream' },
        body: {
          stream: Readable.from(
            (function* () {
              for (let offset = 0; offset < size; offset += 100_000)
                yield payload.subarray(offset, offset + 100_000);
            })(),
          ),
          length: size,
        },
      })),
    );
    const response = await fetch(`${base}/big`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe(String(size));
    expect(Buffer.from(await response.arrayBuffer()).equals(payload)).toBe(true);

    const head = await fetch(`${base}/big`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(size));
    expect(await head.text()).toBe('');
  });

  it('counts requests by method, route and status and logs one line each, without bodies or tokens', async () => {
    const { base, logs } = await start(echoRoutes);
    await fetch(`${base}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sekret-token-value' },
      body: JSON.stringify({ name: 'password-like-body-value' }),
    });
    await fetch(`${base}/things/1?token=query-secret`);
    const metrics = (await renderMetrics()).body;
    expect(metrics).toMatch(/veza_http_requests_total\{method="POST",route="\/echo",status="200"\} \d+/);
    expect(metrics).toMatch(
      /veza_http_request_duration_seconds_count\{method="GET",route="\/things\/:id",status="200"\} \d+/,
    );

    const lines = logs.filter((line) => line.msg === 'request');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      method: 'POST',
      path: '/echo',
      route: '/echo',
      status: 200,
      ip: '127.0.0.1',
    });
    expect(lines[0]?.durationMs).toEqual(expect.any(Number));
    expect(lines[1]).toMatchObject({ method: 'GET', path: '/things/1', status: 200 });
    const text = JSON.stringify(logs);
    for (const secret of ['sekret-token-value', 'password-like-body-value', 'query-secret']) {
      expect(text).not.toContain(secret);
    }
  });

  it('lets uWS routes added to the app take precedence over the catch-all', async () => {
    const { base, server } = await start(echoRoutes);
    server.app.get('/raw', (res) => {
      res.end('raw');
    });
    expect(await (await fetch(`${base}/raw`)).text()).toBe('raw');
    expect((await fetch(`${base}/things/2`)).status).toBe(200);
  });

  it('stops accepting on close and lets in-flight requests finish', async () => {
    const entered = deferred();
    const release = deferred();
    const { base, server } = await start((server) =>
      server.route('GET', '/wait', async () => {
        entered.resolve();
        await release.promise;
        return json({ finished: true });
      }),
    );
    const inFlight = fetch(`${base}/wait`);
    await entered.promise;
    const closed = server.close({ graceMs: 10_000 });
    expect(server.closing).toBe(true);
    await expect(fetch(`${base}/wait`)).rejects.toThrow();
    release.resolve();
    const response = await inFlight;
    expect(await response.json()).toEqual({ finished: true });
    await closed;
    expect(server.inFlight).toBe(0);
  });
});
