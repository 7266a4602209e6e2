/**
 * SignalingConnection: one WebSocket to the edge, speaking docs/signaling.md.
 *
 * - request(method, params) sends `{id, method, params}` and resolves with the result of
 *   the response carrying the same id, or rejects with a VezaError (code, message, field).
 * - Notifications arrive as typed events (`connection.on('listenerCount', ...)`).
 * - After the first successful open, a lost connection is re-opened with exponential
 *   backoff and jitter; `open` fires again and the high-level Broadcaster/Listener re-join.
 *   The token provider runs before every attempt, so a refreshed token is picked up.
 * - The edge enforces the token's lifetime on the open connection: on `tokenExpiring` (or an
 *   `unauthenticated` / `token_expired` answer) the token provider is asked again and its token
 *   handed over with `auth.refresh`, so a connection outlives its access tokens.
 *
 * Runs in browsers and in Node: pass a WebSocket constructor where there is no global one.
 */

import { UnavailableError, VezaError } from '../../common/contracts/browser.js';
import {
  type ErrorBody,
  type ErrorReason,
  type Method,
  type MethodParams,
  type MethodResults,
  type NotificationFrame,
  type Notifications,
  PROTOCOL_VERSION,
  parseServerFrame,
  type RequestId,
  type RtpCapabilities,
  TERMINAL_CLOSE_CODES,
} from '../protocol/index.js';
import { Emitter } from './emitter.js';

/** The part of the WHATWG WebSocket this client uses (browsers, Node's global, `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string }) => void): void;
  addEventListener(type: 'open' | 'error', listener: (event: unknown) => void): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export type TokenProvider = string | (() => string | Promise<string>);

export interface ReconnectOptions {
  /** First delay; doubled per failed attempt up to `maxDelayMs`. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Give up after this many consecutive failed attempts (default: never). */
  maxAttempts?: number;
}

export interface SignalingConnectionOptions {
  /** The edge's signaling endpoint, e.g. `wss://live.example/ws` (http(s) URLs are converted). */
  url: string;
  /**
   * An access token or listener token, or a function returning a fresh one for each attempt.
   * Without one the connection is an anonymous listener: it may listen to (and read the chat
   * of) public streams that allow anonymous listeners.
   */
  token?: TokenProvider;
  /** Defaults to `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Per-request timeout (default 10 s). */
  requestTimeoutMs?: number;
  /** `false` turns automatic reconnection off. */
  reconnect?: ReconnectOptions | false;
}

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface CloseInfo {
  code: number;
  reason: string;
  /** False when the close is final: closed by us, a terminal close code, or attempts exhausted. */
  willReconnect: boolean;
}

export type ConnectionEvents = {
  [N in keyof Notifications]: [Notifications[N]];
} & {
  /** Every successful open; `reconnect` is true after the first. */
  open: [{ reconnect: boolean }];
  close: [CloseInfo];
  reconnecting: [{ attempt: number; delayMs: number }];
  /** Every notification, including ones this version has no typed event for. */
  notification: [NotificationFrame];
  /** A frame the client could not read; the connection carries on. */
  protocolError: [string];
  /** The connection's token was replaced (`auth.refresh`) after the edge said it expires soon. */
  tokenRefreshed: [{ expiresAt: string }];
  /**
   * Replacing the token failed (the provider threw, or the edge refused its token): the edge
   * closes the connection once the old token expired (4401) and the client reconnects.
   */
  tokenRefreshFailed: [Error];
  state: [ConnectionState];
};

interface Pending {
  method: Method;
  resolve: (result: unknown) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

const OPEN = 1;
const DEFAULT_TIMEOUT_MS = 10_000;

/** An error response: a VezaError (switch on `code` as on the server) with the protocol's `reason`. */
export class SignalingError extends VezaError {
  override readonly name = 'SignalingError';
  readonly reason: ErrorReason | undefined;

  constructor(body: ErrorBody) {
    const details: { field?: string; retryAfterMs?: number } = {};
    if (body.field !== undefined) details.field = body.field;
    if (body.retryAfterMs !== undefined) details.retryAfterMs = body.retryAfterMs;
    super(body.code, body.message, details);
    this.reason = body.reason;
  }
}

export function signalingUrl(base: string, token: string | null, listenerId?: string): string {
  const url = new URL(base);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol === 'https:') url.protocol = 'wss:';
  url.searchParams.set('v', String(PROTOCOL_VERSION));
  if (token) url.searchParams.set('token', token);
  else if (listenerId) url.searchParams.set('listener', listenerId);
  return url.toString();
}

export class SignalingConnection extends Emitter<ConnectionEvents> {
  /**
   * Without a token: the id this connection object gives itself on every (re)connection, so the
   * edge counts one anonymous listener across reconnects. Random, and tied to nothing else.
   */
  readonly #listenerId = Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) =>
    byte.toString(16).padStart(2, '0'),
  ).join('');
  readonly #options: SignalingConnectionOptions;
  readonly #WebSocket: WebSocketConstructor;
  readonly #pending = new Map<RequestId, Pending>();
  #socket: WebSocketLike | undefined;
  #state: ConnectionState = 'idle';
  #nextId = 1;
  #opens = 0;
  #attempt = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #refreshing = false;
  /** What the edge sent when the socket opened (the same for every router, so kept across reconnects). */
  #routerCapabilities: RtpCapabilities | undefined;

  constructor(options: SignalingConnectionOptions) {
    super();
    this.#options = options;
    const ctor =
      options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? undefined;
    if (!ctor) throw new Error('no WebSocket implementation: pass options.WebSocket');
    this.#WebSocket = ctor;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Opens the connection; rejects if the first attempt fails (bad token, wrong URL, edge down). */
  async connect(): Promise<void> {
    if (this.#state === 'open') return;
    if (this.#state === 'closed') throw new UnavailableError('connection closed');
    if (this.#state === 'idle') void this.#open();
    await this.#untilOpen();
  }

  /**
   * The routers' RTP capabilities, which the edge sends as the first frame of every connection
   * (`routerRtpCapabilities`): what a Device loads before a one-request `join`. Waits for them on
   * a connection that has just opened; rejects after the request timeout.
   */
  async routerRtpCapabilities(): Promise<RtpCapabilities> {
    if (this.#routerCapabilities) return this.#routerCapabilities;
    const timeoutMs = this.#options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    const [{ rtpCapabilities }] = await this.next('routerRtpCapabilities', timeoutMs).catch(() => {
      throw new UnavailableError(`the edge sent no router capabilities within ${timeoutMs} ms`);
    });
    return rtpCapabilities;
  }

  /** Sends a request and resolves with its result; waits for a (re)connection in progress. */
  async request<M extends Method>(
    method: M,
    params: MethodParams[M],
    options: { timeoutMs?: number } = {},
  ): Promise<MethodResults[M]> {
    const timeoutMs = options.timeoutMs ?? this.#options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (this.#state !== 'open') await this.#untilOpen(timeoutMs);
    const socket = this.#socket;
    if (!socket || socket.readyState !== OPEN) throw new UnavailableError(`${method}: not connected`);
    const id = this.#nextId++;
    return new Promise<MethodResults[M]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new UnavailableError(`${method} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        method,
        resolve: resolve as (result: unknown) => void,
        reject,
        timer,
      });
      socket.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Closes for good: no reconnection, pending requests fail. */
  close(code = 1000, reason = 'client closed'): void {
    if (this.#state === 'closed') return;
    this.#setState('closed');
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    const socket = this.#socket;
    this.#socket = undefined;
    this.#failPending(new UnavailableError('connection closed'));
    socket?.close(code, reason);
    this.emit('close', { code, reason, willReconnect: false });
  }

  #setState(state: ConnectionState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.emit('state', state);
  }

  #untilOpen(timeoutMs?: number): Promise<void> {
    if (this.#state === 'open') return Promise.resolve();
    if (this.#state === 'closed') return Promise.reject(new UnavailableError('connection closed'));
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = (error?: Error) => {
        offOpen();
        offClose();
        if (timer !== undefined) clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
      const offOpen = this.on('open', () => done());
      const offClose = this.on('close', (info) => {
        // Before the first open, any failure is reported: retrying a bad token forever helps nobody.
        if (!info.willReconnect || this.#opens === 0) {
          done(
            new UnavailableError(
              `signaling connection closed (${info.code}${info.reason ? `: ${info.reason}` : ''})`,
            ),
          );
        }
      });
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () => done(new UnavailableError(`not connected after ${timeoutMs} ms`)),
          timeoutMs,
        );
      }
    });
  }

  async #open(): Promise<void> {
    this.#setState(this.#opens === 0 ? 'connecting' : 'reconnecting');
    let token: string | null;
    try {
      const provider = this.#options.token;
      token = provider === undefined || typeof provider === 'string' ? (provider ?? null) : await provider();
    } catch (error) {
      this.#onClose(1006, `token provider failed: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    if (this.#state === 'closed') return;
    const socket = new this.#WebSocket(signalingUrl(this.#options.url, token, this.#listenerId));
    this.#socket = socket;
    socket.addEventListener('open', () => {
      if (this.#socket !== socket) return;
      this.#attempt = 0;
      const reconnect = this.#opens > 0;
      this.#opens++;
      this.#setState('open');
      this.emit('open', { reconnect });
    });
    socket.addEventListener('message', (event) => {
      if (this.#socket === socket) this.#onMessage(event.data);
    });
    socket.addEventListener('close', (event) => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#onClose(event.code, event.reason);
    });
    // An 'error' is always followed by 'close', which does the work.
    socket.addEventListener('error', () => undefined);
  }

  #onMessage(data: unknown): void {
    if (typeof data !== 'string') {
      this.emit('protocolError', 'binary frame from the server');
      return;
    }
    const parsed = parseServerFrame(data);
    switch (parsed.kind) {
      case 'response': {
        const { frame } = parsed;
        if (frame.id === null) {
          // The server could not read one of our frames far enough to find its id.
          this.emit('protocolError', frame.ok ? 'response without id' : frame.error.message);
          return;
        }
        const pending = this.#pending.get(frame.id);
        if (!pending) return;
        this.#pending.delete(frame.id);
        clearTimeout(pending.timer);
        if (frame.ok) pending.resolve(frame.result);
        else {
          if (frame.error.reason === 'token_expired') this.#refreshToken();
          pending.reject(new SignalingError(frame.error));
        }
        return;
      }
      case 'notification': {
        const { frame } = parsed;
        if (frame.notification === 'tokenExpiring') this.#refreshToken();
        if (frame.notification === 'routerRtpCapabilities')
          this.#routerCapabilities = frame.data.rtpCapabilities;
        this.emit('notification', frame);
        (this.emit as (event: string, data: unknown) => void)(frame.notification, frame.data);
        return;
      }
      case 'unknown-notification':
        return;
      case 'invalid':
        this.emit('protocolError', parsed.reason);
    }
  }

  /** Asks the token provider for a fresh token and hands it to the edge (one at a time). */
  #refreshToken(): void {
    const provider = this.#options.token;
    // A fixed token cannot be refreshed: the edge will close at expiry and a reconnect fails.
    if (provider === undefined || typeof provider === 'string' || this.#refreshing) return;
    const socket = this.#socket;
    this.#refreshing = true;
    void (async () => {
      try {
        const token = await provider();
        // Lost meanwhile: the reconnect asks the provider anyway.
        if (this.#socket !== socket || this.#state !== 'open') return;
        const { expiresAt } = await this.request('auth.refresh', { token });
        this.emit('tokenRefreshed', { expiresAt });
      } catch (error) {
        if (this.#socket !== socket || this.#state !== 'open') return;
        this.emit('tokenRefreshFailed', error instanceof Error ? error : new Error(String(error)));
      } finally {
        this.#refreshing = false;
      }
    })();
  }

  #onClose(code: number, reason: string): void {
    this.#failPending(new UnavailableError(`connection lost (${code}${reason ? `: ${reason}` : ''})`));
    if (this.#state === 'closed') return;
    const reconnect = this.#options.reconnect;
    const maxAttempts = reconnect === false ? 0 : (reconnect?.maxAttempts ?? Number.POSITIVE_INFINITY);
    const final =
      reconnect === false ||
      this.#opens === 0 ||
      TERMINAL_CLOSE_CODES.includes(code) ||
      this.#attempt >= maxAttempts;
    if (final) {
      this.#setState('closed');
      this.emit('close', { code, reason, willReconnect: false });
      return;
    }
    this.emit('close', { code, reason, willReconnect: true });
    const backoff = reconnect || {};
    const initial = backoff.initialDelayMs ?? 250;
    const max = backoff.maxDelayMs ?? 10_000;
    const base = Math.min(max, initial * 2 ** this.#attempt);
    // Jitter spreads a crowd of clients that lost the same edge at the same moment.
    const delayMs = Math.round(base * (0.8 + Math.random() * 0.4));
    this.#attempt++;
    this.#setState('reconnecting');
    this.emit('reconnecting', { attempt: this.#attempt, delayMs });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#state !== 'closed') void this.#open();
    }, delayMs);
  }

  #failPending(error: Error): void {
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
  }
}
