/**
 * One WebSocket connection of the edge, as a stream of requests: they are handled one at a time,
 * in arrival order (a `join` never interleaves with a `consume` of the same connection), within a
 * bounded queue and a rate budget, and only while the connection's token is valid. Each goes to
 * the part that owns its concern: `auth.refresh` to the token lifetime (./token-lifetime.ts), chat
 * methods to the chat session (./chat), media methods to the media session (./media-session.ts).
 */
import { performance } from 'node:perf_hooks';
import { RateLimitedError, toVezaError, UnimplementedError } from '../../common/contracts/index.js';
import {
  activeSpan,
  inRootSpan,
  type Logger,
  SpanKind,
  SpanStatusCode,
  tracingEnabled,
} from '../../common/index.js';
import {
  type ErrorBody,
  isChatMethod,
  isMethod,
  type MethodParams,
  type RequestFrame,
  type RequestId,
  type ServerFrame,
} from '../protocol/index.js';
import { type ChatRequests, chatSendSteps } from './chat/index.js';
import { errorBodyOf } from './errors.js';
import type { MediaRequests } from './media-session.js';
import { wsRequestDuration, wsRequests } from './metrics.js';
import { RateBudget } from './rate-budget.js';
import type { ConnectionSocket } from './socket.js';
import type { TokenLifetime } from './token-lifetime.js';

export interface ConnectionLimits {
  maxQueuedRequests: number;
  requestsPerSecond: number;
  requestBurst: number;
}

export interface ConnectionOptions {
  socket: ConnectionSocket;
  limits: ConnectionLimits;
  log: Logger;
  /** Enforces the token's expiry and revocation, and answers `auth.refresh`. */
  lifetime: Pick<TokenLifetime, 'check' | 'refresh' | 'stop'>;
  media: MediaRequests;
  /** Absent when chat is not enabled on this edge. */
  chat?: ChatRequests;
}

export class Connection {
  readonly log: Logger;
  readonly #socket: ConnectionSocket;
  readonly #maxQueued: number;
  readonly #budget: RateBudget;
  readonly #lifetime: ConnectionOptions['lifetime'];
  readonly #media: MediaRequests;
  readonly #chat: ChatRequests | null;
  #queue: Promise<void> = Promise.resolve();
  #queued = 0;

  constructor(options: ConnectionOptions) {
    this.log = options.log;
    this.#socket = options.socket;
    this.#maxQueued = options.limits.maxQueuedRequests;
    this.#budget = new RateBudget({
      perSecond: options.limits.requestsPerSecond,
      burst: options.limits.requestBurst,
    });
    this.#lifetime = options.lifetime;
    this.#media = options.media;
    this.#chat = options.chat ?? null;
  }

  /**
   * Queues a parsed request; over the queue bound or the rate budget it is answered with an error
   * at once. `receivedAt` (performance.now() when its frame was read) times a chat.send's steps.
   */
  enqueue(request: RequestFrame, receivedAt = performance.now()): void {
    if (!this.#budget.take()) {
      const error = new RateLimitedError('too many requests on this connection', this.#budget.retryAfterMs);
      this.reply(request.id, request.method, error);
      return;
    }
    if (this.#queued >= this.#maxQueued) {
      const message = `more than ${this.#maxQueued} requests waiting on this connection`;
      this.reply(request.id, request.method, new RateLimitedError(message, 100));
      return;
    }
    this.#queued++;
    const enqueuedAt = performance.now();
    this.#queue = this.#queue
      .then(() => {
        if (request.method === 'chat.send')
          chatSendSteps.observe({ step: 'queue' }, (performance.now() - enqueuedAt) / 1000);
        return tracingEnabled() ? this.#traced(request, receivedAt) : this.#handle(request, receivedAt);
      })
      .finally(() => {
        this.#queued--;
      });
  }

  /** Sends a response (result or error). Unknown errors are logged here and shown as "internal server error". */
  reply(id: RequestId | null, method: string, outcome: { result: unknown } | Error | ErrorBody): void {
    if ('result' in outcome) {
      this.send({ id: id as RequestId, ok: true, result: outcome.result } as ServerFrame);
      return;
    }
    let body: ErrorBody;
    if (outcome instanceof Error) {
      const error = toVezaError(outcome);
      if (error.code === 'internal')
        this.log.error({ err: error.cause ?? outcome, method }, 'request failed');
      body = errorBodyOf(outcome);
    } else {
      body = outcome;
    }
    // Metric labels stay bounded: unknown method names are not echoed into them.
    wsRequests.inc({ method: isMethod(method) ? method : 'unknown', code: body.code });
    const span = activeSpan();
    if (span) {
      span.setAttribute('veza.error_code', body.code);
      if (body.code === 'internal' || body.code === 'unavailable')
        span.setStatus({ code: SpanStatusCode.ERROR });
    }
    this.send({ id, ok: false, error: body });
  }

  send(frame: ServerFrame): void {
    this.#socket.send(frame);
  }

  /** Ends the connection from the server side (the close handler then runs `closed()`). */
  end(code: number, reason: string): void {
    this.#socket.end(code, reason);
  }

  /** The socket is gone: release its media and chat. Requests still queued find the connection closed. */
  async closed(): Promise<void> {
    this.#lifetime.stop();
    this.#socket.detach();
    await this.#media.closed();
    await this.#chat?.closed();
  }

  /** Each WebSocket request (join, chat send, ...) is the root of its own trace. */
  #traced(request: RequestFrame, receivedAt: number): Promise<void> {
    const method = isMethod(request.method) ? request.method : 'unknown';
    return inRootSpan(`ws ${method}`, SpanKind.SERVER, () => this.#handle(request, receivedAt), {
      'rpc.system': 'veza-ws',
      'rpc.method': method,
    });
  }

  async #handle(request: RequestFrame, receivedAt: number): Promise<void> {
    if (!this.#socket.open) return;
    const started = performance.now();
    try {
      const { method } = request;
      let result: unknown;
      if (method === 'auth.refresh') {
        // The connection's own token, for media and chat alike.
        result = await this.#lifetime.refresh((request.params as MethodParams['auth.refresh']).token);
      } else if (isChatMethod(method)) {
        this.#lifetime.check();
        if (!this.#chat) throw new UnimplementedError('chat is not enabled on this edge');
        result = await this.#chat.handle(method, request.params as MethodParams[typeof method]);
      } else {
        this.#lifetime.check();
        result = await this.#media.handle(method, request.params as MethodParams[typeof method]);
      }
      wsRequests.inc({ method: request.method, code: 'ok' });
      this.reply(request.id, request.method, { result });
    } catch (error) {
      this.reply(request.id, request.method, error as Error);
    } finally {
      const done = performance.now();
      wsRequestDuration.observe({ method: request.method }, (done - started) / 1000);
      // The ack's whole time on the edge, from its frame read to its answer written.
      if (request.method === 'chat.send')
        chatSendSteps.observe({ step: 'total' }, (done - receivedAt) / 1000);
    }
  }
}
