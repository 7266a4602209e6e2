/**
 * What Broadcaster and Listener share: one stream on one SignalingConnection, a
 * mediasoup-client Device, and a single-flight runner that (re)negotiates the media.
 *
 * Every reason to renegotiate (the WebSocket came back, the media worker was replaced,
 * the transport failed) goes through `schedule()`, which coalesces concurrent requests:
 * at most one negotiation runs, and one more follows if something asked meanwhile. Each
 * run starts with `join`, which makes the edge drop this connection's previous media, so
 * a run never has to undo half of an earlier one on the server.
 */
import { Device } from 'mediasoup-client';
import type { BuiltinHandlerName, HandlerFactory, Transport } from 'mediasoup-client/types';
import { VezaError } from '../../common/contracts/browser.js';
import {
  CLOSE_CODES,
  type MethodResults,
  type Notifications,
  type Role,
  type RtpCapabilities,
  type TransportInfo,
} from '../protocol/index.js';
import { type SignalingConnection, SignalingError } from './connection.js';
import { Emitter } from './emitter.js';

export interface SessionOptions {
  connection: SignalingConnection;
  /** A mediasoup-client built-in handler; detected from the browser when absent. */
  handlerName?: BuiltinHandlerName;
  /** A custom mediasoup-client handler (e.g. for Node with @roamhq/wrtc). */
  handlerFactory?: HandlerFactory;
}

export type SessionState =
  | 'idle'
  | 'connecting'
  /** Broadcaster: producing. Listener: receiving. */
  | 'live'
  /** Listener: joined, waiting for the broadcaster's audio. */
  | 'waiting'
  | 'reconnecting'
  | 'ended'
  | 'closed'
  | 'failed';

export type BaseSessionEvents = {
  state: [SessionState];
  /** Media was re-established after a worker restart, a transport failure or a lost WebSocket. */
  reconnected: [{ cause: string }];
  /** The stream is over. */
  ended: [{ reason: string }];
  listenerCount: [number];
  /** A failure that stopped the session (permission denied, bad token, ...). */
  error: [Error];
};

export type RunMode = 'rejoin' | 'consume';

/** Retry delays after a transient failure; the last one repeats. */
const RETRY_DELAYS_MS = [250, 500, 1000, 2000, 5000];
/** Errors that retrying cannot fix. */
const FATAL_CODES = new Set(['permission_denied', 'unauthenticated', 'not_found', 'invalid_argument']);

export abstract class MediaSession<E extends BaseSessionEvents> extends Emitter<E> {
  protected readonly connection: SignalingConnection;
  protected readonly role: Role;
  protected streamId = 0;
  protected device: Device | undefined;
  protected joined: MethodResults['join'] | undefined;
  #state: SessionState = 'idle';
  #options: SessionOptions;
  #running = false;
  #pending: RunMode | null = null;
  #pendingCause = '';
  #retries = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #established = false;
  #offs: Array<() => void> = [];

  protected constructor(options: SessionOptions, role: Role) {
    super();
    this.#options = options;
    this.connection = options.connection;
    this.role = role;
  }

  get state(): SessionState {
    return this.#state;
  }

  /** True once the session ended, was closed or failed: nothing will renegotiate any more. */
  get finished(): boolean {
    return this.#state === 'ended' || this.#state === 'closed' || this.#state === 'failed';
  }

  /** Leaves the stream (best effort) and releases local media; the connection stays open. */
  async close(): Promise<void> {
    if (this.finished) return;
    this.finish('closed');
    if (this.connection.state === 'open') {
      await this.connection.request('leave', {}).catch(() => undefined);
    }
  }

  protected setState(state: SessionState): void {
    if (this.#state === state || this.finished) return;
    this.#state = state;
    this.emitBase('state', state);
  }

  protected emitBase<K extends keyof BaseSessionEvents>(event: K, ...args: BaseSessionEvents[K]): void {
    (this.emit as (event: K, ...args: BaseSessionEvents[K]) => void)(event, ...args);
  }

  /** Subscribes to the connection for `streamId`; called once by publish()/listen(). */
  protected begin(streamId: number): void {
    if (this.#state !== 'idle') throw new Error(`${this.role} session already started`);
    this.streamId = streamId;
    const mine = <T extends { streamId: number }>(handler: (data: T) => void) => {
      return (data: T) => {
        if (data.streamId === this.streamId && !this.finished) handler(data);
      };
    };
    const on = this.connection.on.bind(this.connection);
    this.#offs.push(
      on(
        'open',
        ({ reconnect }) => reconnect && !this.finished && this.schedule('rejoin', 'signaling reconnected'),
      ),
      on('close', (info) => {
        if (!info.willReconnect && !this.finished) {
          // Closed on purpose by the app: not a failure.
          if (info.code === CLOSE_CODES.normal) {
            this.finish('closed');
            return;
          }
          this.finish('failed');
          this.emitBase(
            'error',
            new VezaError('unavailable', `signaling closed (${info.code}: ${info.reason})`),
          );
        } else if (!this.finished) {
          this.setState('reconnecting');
        }
      }),
      on(
        'workerRestarted',
        mine(() => this.schedule('rejoin', 'media worker restarted')),
      ),
      on(
        'streamEnded',
        mine((data: Notifications['streamEnded']) => this.end(data.reason)),
      ),
      on(
        'listenerCount',
        mine((data: Notifications['listenerCount']) => this.emitBase('listenerCount', data.count)),
      ),
    );
    this.setState('connecting');
  }

  protected addCleanup(off: () => void): void {
    this.#offs.push(off);
  }

  /** Ask for a negotiation; a rejoin request overrides a pending consume. */
  protected schedule(mode: RunMode, cause: string): void {
    if (this.finished) return;
    if (this.#pending !== 'rejoin') {
      this.#pending = mode;
      this.#pendingCause = cause;
    }
    if (this.#retryTimer !== undefined) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
    }
    if (!this.#running) void this.#drain();
  }

  /** Performs one negotiation; throws to report a failure (classified by the runner). */
  protected abstract negotiate(mode: RunMode): Promise<'live' | 'waiting'>;

  /** Closes local transports, producers and consumers (not the server side: `join` does that). */
  protected abstract releaseMedia(): void;

  /**
   * One request places the connection: the Device is loaded with the router capabilities the edge
   * sent when the socket opened, and `join` carries the device's, so its answer holds the
   * transport (and a listener's consumer).
   */
  protected async join(): Promise<MethodResults['join']> {
    const device = await this.loadDevice(await this.connection.routerRtpCapabilities());
    const joined = await this.connection.request('join', {
      streamId: this.streamId,
      role: this.role,
      rtpCapabilities: device.recvRtpCapabilities,
    });
    this.joined = joined;
    return joined;
  }

  protected async loadDevice(rtpCapabilities: RtpCapabilities): Promise<Device> {
    if (this.device?.loaded) return this.device;
    const device = new Device({
      ...(this.#options.handlerName ? { handlerName: this.#options.handlerName } : {}),
      ...(this.#options.handlerFactory ? { handlerFactory: this.#options.handlerFactory } : {}),
    });
    await device.load({ routerRtpCapabilities: rtpCapabilities });
    this.device = device;
    return device;
  }

  /**
   * The local twin of the server's WebRTC transport (the one `join` answered with, or a new one
   * asked with createTransport), connected (DTLS) on first use and watched for health. The
   * caller adds what its direction needs (the `produce` handler).
   *
   * connectTransport is pipelined: sent without waiting for its answer, since the edge handles a
   * connection's requests in order, so what follows it (resumeConsumer, produce) goes out at once
   * and the join costs one round trip less. A refused connect fails the transport: rejoin.
   */
  protected async openTransport(direction: 'send' | 'recv', given?: TransportInfo): Promise<Transport> {
    const info = given ?? (await this.connection.request('createTransport', { direction }));
    const options = {
      id: info.id,
      iceParameters: info.iceParameters,
      iceCandidates: info.iceCandidates,
      dtlsParameters: info.dtlsParameters,
      iceServers: info.iceServers,
    };
    const device = this.device!;
    const transport =
      direction === 'send' ? device.createSendTransport(options) : device.createRecvTransport(options);
    transport.on('connect', ({ dtlsParameters }, callback) => {
      this.connection
        .request('connectTransport', { transportId: transport.id, dtlsParameters })
        .catch((error: unknown) => {
          if (this.finished || transport.closed) return;
          if (error instanceof SignalingError && error.reason === 'stream_ended') this.end('ended');
          else this.schedule('rejoin', `connecting the ${direction} transport failed`);
        });
      callback();
    });
    this.#watchTransport(transport);
    return transport;
  }

  /** Transport health: ICE restart when it wobbles, a full rejoin when it fails. */
  #watchTransport(transport: Transport): void {
    transport.on('connectionstatechange', (state) => {
      if (this.finished || transport.closed) return;
      if (state === 'failed') this.schedule('rejoin', `${transport.direction} transport failed`);
      if (state === 'disconnected') void this.restartIce(transport);
    });
  }

  protected end(reason: string): void {
    if (this.finished) return;
    this.finish('ended');
    this.emitBase('ended', { reason });
  }

  protected finish(state: 'ended' | 'closed' | 'failed'): void {
    if (this.finished) return;
    this.#state = state;
    this.emitBase('state', state);
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    for (const off of this.#offs) off();
    this.#offs = [];
    this.releaseMedia();
  }

  protected async restartIce(transport: Transport): Promise<void> {
    try {
      const { iceParameters } = await this.connection.request('restartIce', { transportId: transport.id });
      if (!transport.closed) await transport.restartIce({ iceParameters });
    } catch {
      // If ICE cannot recover the transport goes to 'failed', and that rejoins.
    }
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#pending && !this.finished) {
        const mode = this.#pending;
        const cause = this.#pendingCause;
        this.#pending = null;
        await this.#runOnce(mode, cause);
      }
    } finally {
      this.#running = false;
    }
  }

  async #runOnce(mode: RunMode, cause: string): Promise<void> {
    if (this.#established && mode === 'rejoin') this.setState('reconnecting');
    try {
      const outcome = await this.negotiate(mode);
      if (this.finished || this.#pending === 'rejoin') return;
      this.#retries = 0;
      this.setState(outcome);
      if (outcome === 'live') {
        if (this.#established) this.emitBase('reconnected', { cause });
        this.#established = true;
      }
    } catch (error) {
      this.#onFailure(error, mode);
    }
  }

  #onFailure(error: unknown, mode: RunMode): void {
    if (this.finished) return;
    const veza = error instanceof VezaError ? error : undefined;
    if (error instanceof SignalingError && error.reason === 'stream_ended') {
      this.end('ended');
      return;
    }
    // An expired token is being replaced (auth.refresh) or the edge closes and we reconnect: retry.
    const tokenExpired = error instanceof SignalingError && error.reason === 'token_expired';
    if (veza && FATAL_CODES.has(veza.code) && !tokenExpired) {
      this.finish('failed');
      this.emitBase('error', veza);
      return;
    }
    // Lost signaling: the connection's next 'open' schedules a rejoin.
    if (this.connection.state !== 'open') return;
    const delay = RETRY_DELAYS_MS[Math.min(this.#retries, RETRY_DELAYS_MS.length - 1)] ?? 5000;
    this.#retries++;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.schedule(mode === 'consume' ? 'consume' : 'rejoin', 'retry after a failure');
    }, delay);
  }
}
