/**
 * The HTTP server of the edge: one uWS catch-all handler that routes through our router,
 * so every route gets the same body limits, error rendering, request ids, access log and
 * metrics. WebSocket behaviours and other uWS routes may still be added to `app`: uWS
 * prefers more specific patterns, so they win over the catch-all.
 *
 * uWS rules kept here: everything is read from the request synchronously (it is stack
 * allocated); an abort handler is attached before anything async; nothing is written to an
 * aborted response; writes after an await are corked.
 */
import { STATUS_CODES } from 'node:http';
import type { Readable } from 'node:stream';
import { NotFoundError } from '../../common/contracts/index.js';
import {
  type Logger,
  REQUEST_ID_HEADER,
  requestIdFrom,
  type Span,
  SpanKind,
  SpanStatusCode,
  tracingEnabled,
  withRootSpan,
} from '../../common/index.js';
import { type BodyPlan, type BodySpec, hasBody, planBody, readBody, streamBody } from './body.js';
import { createEdgeRequest, type RouteHandler, type RouteOptions } from './context.js';
import { httpDuration, httpRequests, UNMATCHED_ROUTE } from './metrics.js';
import { errorReply, type HttpReply, HttpStatusError, type StreamBody } from './reply.js';
import { type HttpMethod, isHttpMethod, Router } from './router.js';
import {
  closeAllSockets,
  closeListenSocket,
  createUwsApp,
  type HttpRequest,
  type HttpResponse,
  listen,
  localPort,
  type TemplatedApp,
  type us_listen_socket,
} from './uws.js';

export interface RouteRegistrar {
  route(method: HttpMethod, pattern: string, handler: RouteHandler, options?: RouteOptions): void;
}

export interface HttpServer extends RouteRegistrar {
  readonly app: TemplatedApp;
  /** True once close() has begun (readiness reports it). */
  readonly closing: boolean;
  readonly inFlight: number;
  listen(host: string, port: number): Promise<number>;
  /**
   * Stops accepting, runs `beforeDrain` (e.g. closing WebSockets), lets in-flight requests
   * finish for up to `graceMs`, then closes every remaining socket.
   */
  close(options?: { graceMs?: number; beforeDrain?: () => Promise<void> }): Promise<void>;
}

interface RouteEntry {
  handler: RouteHandler;
  body: BodySpec | undefined;
}

/** Per-request state shared by the reader, the writer and the abort handler. */
interface Exchange {
  res: HttpResponse;
  method: string;
  path: string;
  route: string;
  requestId: string;
  remoteAddress: string;
  started: number;
  log: Logger;
  aborted: boolean;
  /** All body bytes have arrived; otherwise the connection is closed after responding. */
  bodyComplete: boolean;
  onAbort?: () => void;
  /** The request's server span, the root of its trace (tracing on only). */
  span: Span | undefined;
}

const DEFAULT_GRACE_MS = 5_000;

export function createHttpServer(options: { log: Logger }): HttpServer {
  const log = options.log;
  const app = createUwsApp();
  const router = new Router<RouteEntry>();
  let listenSocket: us_listen_socket | null = null;
  let closing = false;
  let inFlight = 0;
  let drained: (() => void) | null = null;

  const finish = (exchange: Exchange, status: number | 'aborted') => {
    const seconds = (performance.now() - exchange.started) / 1000;
    const labels = { method: exchange.method, route: exchange.route, status: String(status) };
    httpRequests.inc(labels);
    httpDuration.observe(labels, seconds);
    const line = {
      method: exchange.method,
      path: exchange.path,
      route: exchange.route,
      status,
      durationMs: Math.round(seconds * 10_000) / 10,
      ip: exchange.remoteAddress,
    };
    if (status === 'aborted') exchange.log.info(line, 'request aborted by client');
    else exchange.log.info(line, 'request');
    if (exchange.span) endRequestSpan(exchange, status);
    inFlight -= 1;
    if (inFlight === 0) drained?.();
  };

  // Each request is the root of a trace: the edge is where a trace starts (a client's
  // traceparent is not trusted, so a caller cannot attach our spans to its trace or forge ids).
  const dispatch = (res: HttpResponse, req: HttpRequest) => {
    if (tracingEnabled()) withRootSpan('HTTP', SpanKind.SERVER, (span) => serve(res, req, span));
    else serve(res, req, undefined);
  };

  const serve = (res: HttpResponse, req: HttpRequest, span: Span | undefined) => {
    const started = performance.now();
    const method = req.getMethod().toUpperCase();
    const path = req.getUrl();
    const query = req.getQuery() ?? '';
    const headers = new Map<string, string>();
    req.forEach((key, value) => {
      const previous = headers.get(key);
      headers.set(key, previous === undefined ? value : `${previous}, ${value}`);
    });
    const requestId = requestIdFrom(headers.get(REQUEST_ID_HEADER));
    const bodyHeaders = {
      contentType: headers.get('content-type') ?? '',
      contentLength: headers.get('content-length') ?? '',
      transferEncoding: headers.get('transfer-encoding') ?? '',
    };
    const exchange: Exchange = {
      res,
      method,
      path,
      route: UNMATCHED_ROUTE,
      requestId,
      remoteAddress: Buffer.from(res.getRemoteAddressAsText()).toString('utf8'),
      started,
      log: log.child({ requestId }),
      aborted: false,
      bodyComplete: !hasBody(bodyHeaders),
      span,
    };
    const controller = new AbortController();
    res.onAborted(() => {
      exchange.aborted = true;
      controller.abort();
      exchange.onAbort?.();
    });
    inFlight += 1;

    let prepared: {
      entry: RouteEntry;
      params: Record<string, string>;
      plan: BodyPlan;
      body: Promise<Buffer>;
      stream: Readable | undefined;
    };
    try {
      if (!isHttpMethod(method)) throw methodNotAllowed(method, path, []);
      const match = router.match(method, path);
      if (match.kind === 'not_found') throw new NotFoundError(`no route for ${method} ${path}`);
      exchange.route = match.pattern;
      if (match.kind === 'method_not_allowed') throw methodNotAllowed(method, path, match.allowed);
      const plan = match.value.body
        ? planBody(match.value.body, bodyHeaders)
        : { kind: 'none' as const, limit: 0, mediaType: '' };
      const onComplete = () => {
        exchange.bodyComplete = true;
      };
      const stream =
        plan.kind === 'stream' ? streamBody(res, plan, controller.signal, onComplete) : undefined;
      const body =
        plan.kind === 'none' || stream
          ? Promise.resolve(Buffer.alloc(0))
          : readBody(res, plan, controller.signal, onComplete);
      prepared = { entry: match.value, params: match.params, plan, body, stream };
    } catch (error) {
      send(exchange, errorReply(error, exchange.log));
      return;
    }

    const run = async (): Promise<HttpReply> => {
      try {
        const body = await prepared.body;
        const request = createEdgeRequest({
          method: method as HttpMethod,
          path,
          route: exchange.route,
          params: prepared.params,
          query,
          headers,
          requestId,
          remoteAddress: exchange.remoteAddress,
          log: exchange.log,
          signal: controller.signal,
          bodyKind: prepared.plan.kind,
          body,
          ...(prepared.stream ? { stream: prepared.stream } : {}),
          spec: prepared.entry.body,
        });
        return await prepared.entry.handler(request);
      } catch (error) {
        return errorReply(error, exchange.log);
      }
    };
    void run().then((reply) => send(exchange, reply));
  };

  const send = (exchange: Exchange, reply: HttpReply) => {
    const { res } = exchange;
    const stream = isStreamBody(reply.body) ? reply.body : null;
    if (exchange.aborted) {
      stream?.stream.destroy();
      finish(exchange, 'aborted');
      return;
    }
    const closeConnection = !exchange.bodyComplete;
    const head = exchange.method === 'HEAD';
    res.cork(() => {
      res.writeStatus(`${reply.status} ${STATUS_CODES[reply.status] ?? ''}`.trimEnd());
      res.writeHeader(REQUEST_ID_HEADER, exchange.requestId);
      // uWS writes Content-Length itself; a second one would corrupt the response.
      for (const [name, value] of Object.entries(reply.headers)) {
        if (name.toLowerCase() !== 'content-length') res.writeHeader(name, value);
      }
      const body = reply.body ?? '';
      if (isStreamBody(body)) {
        if (head) {
          body.stream.destroy();
          res.endWithoutBody(body.length, closeConnection);
        }
        return;
      }
      if (reply.status === 204 || reply.status === 304) res.endWithoutBody(undefined, closeConnection);
      else if (head) res.endWithoutBody(Buffer.byteLength(body), closeConnection);
      else res.end(body, closeConnection);
    });
    if (stream && !head)
      pipeStream(exchange, stream, (ok) => finish(exchange, ok ? reply.status : 'aborted'));
    else finish(exchange, reply.status);
  };

  app.any('/*', dispatch);

  return {
    app,
    get closing() {
      return closing;
    },
    get inFlight() {
      return inFlight;
    },
    route(method, pattern, handler, routeOptions = {}) {
      router.add(method, pattern, { handler, body: routeOptions.body });
    },
    async listen(host, port) {
      if (listenSocket) throw new Error('the HTTP server is already listening');
      listenSocket = await listen(app, host, port);
      return localPort(listenSocket);
    },
    async close({ graceMs = DEFAULT_GRACE_MS, beforeDrain } = {}) {
      if (closing) return;
      closing = true;
      if (listenSocket) closeListenSocket(listenSocket);
      listenSocket = null;
      await beforeDrain?.();
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          timer.unref();
          drained = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      closeAllSockets(app);
    },
  };
}

function methodNotAllowed(method: string, path: string, allowed: HttpMethod[]): HttpStatusError {
  const list = allowed.length > 0 ? allowed.join(', ') : 'none';
  return new HttpStatusError(
    'not_found',
    `method ${method} is not allowed on ${path} (allowed: ${list})`,
    405,
    {
      allow: allowed.join(', '),
    },
  );
}

function isStreamBody(body: HttpReply['body']): body is StreamBody {
  return typeof body === 'object' && body !== null && !Buffer.isBuffer(body);
}

/** Streams with backpressure: tryEnd until uWS buffers too much, then wait for onWritable. */
function pipeStream(exchange: Exchange, body: StreamBody, done: (ok: boolean) => void): void {
  const { res } = exchange;
  const { stream, length } = body;
  let finished = false;
  const end = (ok: boolean) => {
    if (finished) return;
    finished = true;
    stream.destroy();
    done(ok);
  };
  const abortMidway = (reason: string, error?: unknown) => {
    // Headers are out; the only honest signal left is to cut the connection.
    if (!exchange.aborted) {
      exchange.log.warn({ err: error, path: exchange.path }, reason);
      res.close();
    }
    end(false);
  };
  exchange.onAbort = () => end(false);
  if (length === 0) {
    res.cork(() => res.end('', !exchange.bodyComplete));
    end(true);
    return;
  }
  // The chunk uWS could not take whole, and the write offset it started at. uWS keeps the
  // first onWritable handler it is given, so there is one handler reading this state.
  let pending: { chunk: Buffer; offset: number } | null = null;
  let sourceEnded = false;
  const checkComplete = () => {
    if (sourceEnded && !pending && !finished) abortMidway(`response stream ended before ${length} bytes`);
  };
  res.onWritable((writeOffset) => {
    if (exchange.aborted || !pending) return true;
    const [ok, responded] = res.tryEnd(pending.chunk.subarray(writeOffset - pending.offset), length);
    if (responded) {
      end(true);
    } else if (ok) {
      pending = null;
      stream.resume();
      checkComplete();
    }
    return ok;
  });
  stream.on('data', (chunk: Buffer) => {
    if (exchange.aborted) return end(false);
    const offset = res.getWriteOffset();
    let result: [boolean, boolean] = [false, false];
    res.cork(() => {
      result = res.tryEnd(chunk, length);
    });
    const [ok, responded] = result;
    if (responded) return end(true);
    if (ok) return;
    pending = { chunk, offset };
    stream.pause();
  });
  stream.on('error', (error) => abortMidway('response stream failed', error));
  stream.on('end', () => {
    sourceEnded = true;
    checkComplete();
  });
}

/** Names the span after the route (low cardinality), as OpenTelemetry's HTTP conventions do. */
function endRequestSpan(exchange: Exchange, status: number | 'aborted'): void {
  const span = exchange.span;
  if (!span) return;
  span.updateName(`${exchange.method} ${exchange.route}`);
  span.setAttributes({
    'http.request.method': exchange.method,
    'http.route': exchange.route,
    'url.path': exchange.path,
    'veza.request_id': exchange.requestId,
    ...(status === 'aborted' ? {} : { 'http.response.status_code': status }),
  });
  if (status === 'aborted' || status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}
