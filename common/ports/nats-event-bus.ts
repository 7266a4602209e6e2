/**
 * Cluster EventBus on NATS core. Responders join one queue group, so the server hands
 * each request to a single process; replies carry the envelope of bus-wire.ts. With a
 * namespace, every subject goes on the wire as `<namespace>.<subject>` and handlers see the
 * subject without it: deployments sharing one NATS server stay apart.
 */
import {
  connect,
  ErrorCode,
  Events,
  headers,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  NatsError,
  type Subscription as NatsSubscription,
  type SubscriptionOptions,
} from 'nats';
import { UnavailableError, VezaError } from '../contracts/index.js';
import { createLogger, type Logger } from '../log.js';
import { carrierFrom, type TraceCarrier, tracedReceive, tracedSend } from './bus-tracing.js';
import {
  decodePayload,
  decodeReply,
  encodePayload,
  encodeReply,
  encodeReplyError,
  requestTimeoutOf,
} from './bus-wire.js';
import {
  assertSubject,
  type BusHandler,
  type BusResponder,
  type EventBus,
  type Subscription,
} from './event-bus.js';

/** Every responder of a subject is in this group, whatever process it runs in. */
const RESPONDER_QUEUE = 'veza-responders';
/** How long close() lets running responders finish their answer. */
const CLOSE_GRACE_MS = 5_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface NatsEventBusOptions {
  log?: Logger;
  /** VEZA_NAMESPACE: the first token of every subject on the wire. */
  namespace?: string;
}

export class NatsEventBus implements EventBus {
  private readonly log: Logger;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly responderSubs = new Set<NatsSubscription>();
  private readonly prefix: string;

  constructor(
    private readonly nc: NatsConnection,
    options: NatsEventBusOptions = {},
  ) {
    this.log = options.log ?? createLogger({ name: 'event-bus' });
    if (options.namespace !== undefined && !/^[A-Za-z0-9_-]{1,32}$/.test(options.namespace)) {
      throw new Error(
        `invalid bus namespace "${options.namespace}": one subject token of letters, digits, _ and -`,
      );
    }
    this.prefix = options.namespace ? `${options.namespace}.` : '';
  }

  /** The subject on the wire. */
  private wire(subject: string): string {
    return `${this.prefix}${subject}`;
  }

  /** The subject as our callers know it. */
  private local(wireSubject: string): string {
    return wireSubject.startsWith(this.prefix) ? wireSubject.slice(this.prefix.length) : wireSubject;
  }

  /** Connects and keeps reconnecting for ever: a node without its bus waits for NATS rather than dying. */
  static async connect(
    servers: string,
    options: NatsEventBusOptions & { name?: string } = {},
  ): Promise<NatsEventBus> {
    const nc = await connect({
      servers: servers.split(',').map((server) => server.trim()),
      name: options.name,
      maxReconnectAttempts: -1,
    });
    const bus = new NatsEventBus(nc, options);
    bus.watchStatus();
    return bus;
  }

  /**
   * Health probe: a round trip to the server. While the connection is down (reconnecting), the
   * flush waits for it, so the caller's timeout decides; a closed connection fails at once.
   */
  async probe(): Promise<void> {
    if (this.nc.isClosed()) throw new Error('the NATS connection is closed');
    await this.nc.flush();
  }

  async publish(subject: string, payload: unknown): Promise<void> {
    assertSubject(subject, false);
    const data = encoder.encode(encodePayload(payload));
    tracedSend('publish', subject, (carrier) => {
      try {
        this.nc.publish(this.wire(subject), data, carrier ? { headers: headersOf(carrier) } : undefined);
      } catch (error) {
        throw this.mapError(error, subject, 0);
      }
    });
  }

  subscribe(subject: string, handler: BusHandler): Subscription {
    assertSubject(subject, true);
    const sub = this.natsSubscribe(subject, {
      callback: (error, msg) => {
        if (error) {
          this.log.error({ err: error, subject }, 'bus subscription failed');
          return;
        }
        let payload: unknown;
        try {
          payload = decodePayload(decoder.decode(msg.data));
        } catch (cause) {
          this.log.warn({ err: cause, subject: msg.subject }, 'dropped a bus message that is not JSON');
          return;
        }
        try {
          const result: unknown = tracedReceive(
            'process',
            this.local(msg.subject),
            carrierOf(msg.headers),
            () => handler(payload, this.local(msg.subject)),
          );
          if (result instanceof Promise) {
            result.catch((cause: unknown) => this.handlerFailed(msg.subject, cause));
          }
        } catch (cause) {
          this.handlerFailed(msg.subject, cause);
        }
      },
    });
    return this.wrap(sub);
  }

  respond(subject: string, responder: BusResponder): Subscription {
    assertSubject(subject, true);
    const sub = this.natsSubscribe(subject, {
      queue: RESPONDER_QUEUE,
      callback: (error, msg) => {
        if (error) {
          this.log.error({ err: error, subject }, 'bus responder subscription failed');
          return;
        }
        // A plain publish on a request subject has nobody to answer.
        if (!msg.reply) return;
        const task = this.answer(msg, responder);
        this.inFlight.add(task);
        void task.finally(() => this.inFlight.delete(task));
      },
    });
    this.responderSubs.add(sub);
    const wrapped = this.wrap(sub);
    return {
      ready: wrapped.ready,
      unsubscribe: () => {
        this.responderSubs.delete(sub);
        wrapped.unsubscribe();
      },
    };
  }

  request(subject: string, payload: unknown, options?: { timeoutMs?: number }): Promise<unknown> {
    return tracedSend('request', subject, (carrier) => this.call(subject, payload, options, carrier));
  }

  private async call(
    subject: string,
    payload: unknown,
    options: { timeoutMs?: number } | undefined,
    carrier: TraceCarrier | undefined,
  ): Promise<unknown> {
    assertSubject(subject, false);
    const timeoutMs = requestTimeoutOf(options);
    const data = encoder.encode(encodePayload(payload));
    let reply: Msg;
    try {
      reply = await this.nc.request(this.wire(subject), data, {
        timeout: timeoutMs,
        ...(carrier ? { headers: headersOf(carrier) } : {}),
      });
    } catch (error) {
      throw this.mapError(error, subject, timeoutMs);
    }
    return decodeReply(decoder.decode(reply.data), subject);
  }

  /** Stops taking requests, lets running responders answer (bounded), then drains the connection. */
  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    await Promise.allSettled([...this.responderSubs].map((sub) => sub.drain()));
    this.responderSubs.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, CLOSE_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
    if (!this.nc.isClosed()) await this.nc.drain();
  }

  private natsSubscribe(subject: string, options: SubscriptionOptions): NatsSubscription {
    try {
      return this.nc.subscribe(this.wire(subject), options);
    } catch (error) {
      throw this.mapError(error, subject, 0);
    }
  }

  private wrap(sub: NatsSubscription): Subscription {
    const nc = this.nc;
    let ready: Promise<void> | undefined;
    return {
      // A flush round trip proves the server has processed our SUB; only paid when asked for.
      get ready() {
        ready ??= nc.flush();
        return ready;
      },
      unsubscribe: () => {
        if (!sub.isClosed()) sub.unsubscribe();
      },
    };
  }

  private async answer(msg: Msg, responder: BusResponder): Promise<void> {
    let text: string;
    try {
      const subject = this.local(msg.subject);
      const payload = decodePayload(decoder.decode(msg.data));
      text = encodeReply(
        await tracedReceive('answer', subject, carrierOf(msg.headers), () => responder(payload, subject)),
      );
    } catch (error) {
      if (!(error instanceof VezaError))
        this.log.error({ err: error, subject: msg.subject }, 'bus responder failed');
      text = encodeReplyError(error);
    }
    try {
      msg.respond(encoder.encode(text));
    } catch (error) {
      // The connection closed under us; the requester times out.
      this.log.warn({ err: error, subject: msg.subject }, 'could not send a bus reply');
    }
  }

  private mapError(error: unknown, subject: string, timeoutMs: number): Error {
    if (!(error instanceof NatsError)) return error instanceof Error ? error : new Error(String(error));
    switch (error.code) {
      case ErrorCode.NoResponders:
        return new UnavailableError(`no responder for ${subject}`, { cause: error });
      case ErrorCode.Timeout:
        return new UnavailableError(`request to ${subject} timed out after ${timeoutMs} ms`, {
          cause: error,
        });
      case ErrorCode.ConnectionClosed:
      case ErrorCode.ConnectionDraining:
        return new UnavailableError('event bus closed', { cause: error });
      default:
        return new UnavailableError(`event bus failed on ${subject}: ${error.code}`, { cause: error });
    }
  }

  private handlerFailed(subject: string, error: unknown): void {
    this.log.error({ err: error, subject }, 'bus subscriber failed');
  }

  private watchStatus(): void {
    void (async () => {
      for await (const status of this.nc.status()) {
        // Debug events (ping timers, reconnect attempts) would flood the log at info.
        const level = Object.values<string>(Events).includes(status.type) ? 'warn' : 'debug';
        this.log[level]({ type: status.type, data: String(status.data) }, 'nats connection status');
      }
    })();
  }
}

/** A trace's W3C context as NATS headers. */
function headersOf(carrier: TraceCarrier): MsgHdrs {
  const set = headers();
  set.set('traceparent', carrier.traceparent);
  if (carrier.tracestate) set.set('tracestate', carrier.tracestate);
  return set;
}

function carrierOf(received: MsgHdrs | undefined): TraceCarrier | undefined {
  if (!received) return undefined;
  return carrierFrom((key) => (received.has(key) ? received.get(key) : undefined));
}
