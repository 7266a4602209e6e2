/**
 * EventBus across the threads of one process (threaded standalone mode): each thread has one
 * ThreadEventBus on a MessagePort to the ThreadBusHub (thread-bus-hub.ts), which routes as a NATS
 * server would. It behaves as NatsEventBus does, so the roles are wired exactly as in cluster mode:
 * delivery is asynchronous, every subscriber gets its own copy of the JSON, `ready` is a round trip
 * to the hub, each request reaches exactly one responder in whichever thread, and errors cross as
 * bus-wire.ts's reply envelope.
 */

import type { MessagePort } from 'node:worker_threads';
import { UnavailableError, VezaError } from '../contracts/index.js';
import { createLogger, type Logger } from '../log.js';
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
import type { ClientFrame, HubFrame } from './thread-bus-frames.js';

/** How long close() lets running responders finish their answer (as NatsEventBus). */
const CLOSE_GRACE_MS = 5_000;

type Entry =
  | { kind: 'subscriber'; subject: string; handler: BusHandler; active: boolean; acked: Acked }
  | { kind: 'responder'; subject: string; responder: BusResponder; active: boolean; acked: Acked };

interface Acked {
  promise: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

interface Pending {
  subject: string;
  resolve(text: string): void;
  reject(error: Error): void;
}

function acked(): Acked {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Most callers never wait for `ready`; a bus closed before the hub answered must not make that an
  // unhandled rejection. Those who do wait still see it.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

export interface ThreadEventBusOptions {
  log?: Logger;
}

export class ThreadEventBus implements EventBus {
  private readonly log: Logger;
  private readonly entries = new Map<number, Entry>();
  private readonly pending = new Map<number, Pending>();
  private readonly inFlight = new Set<Promise<void>>();
  private nextSid = 1;
  private nextRid = 1;
  private closed = false;

  constructor(
    private readonly port: MessagePort,
    options: ThreadEventBusOptions = {},
  ) {
    this.log = options.log ?? createLogger({ name: 'event-bus' });
    port.on('message', (frame: HubFrame) => this.receive(frame));
    // The hub closed (the supervisor is shutting down): nothing can be routed any more.
    port.on('close', () => this.shut());
  }

  async publish(subject: string, payload: unknown): Promise<void> {
    this.assertOpen();
    assertSubject(subject, false);
    this.send({ op: 'pub', subject, data: encodePayload(payload) });
  }

  subscribe(subject: string, handler: BusHandler): Subscription {
    return this.add(subject, { kind: 'subscriber', subject, handler, active: true, acked: acked() });
  }

  respond(subject: string, responder: BusResponder): Subscription {
    return this.add(subject, { kind: 'responder', subject, responder, active: true, acked: acked() });
  }

  async request(subject: string, payload: unknown, options?: { timeoutMs?: number }): Promise<unknown> {
    this.assertOpen();
    assertSubject(subject, false);
    const timeoutMs = requestTimeoutOf(options);
    const data = encodePayload(payload);
    const rid = this.nextRid++;
    const text = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        this.send({ op: 'cancel', rid });
        reject(new UnavailableError(`request to ${subject} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      const settle =
        <T>(fn: (value: T) => void) =>
        (value: T) => {
          clearTimeout(timer);
          this.pending.delete(rid);
          fn(value);
        };
      this.pending.set(rid, { subject, resolve: settle(resolve), reject: settle(reject) });
      this.send({ op: 'req', rid, subject, data });
    });
    return decodeReply(text, subject);
  }

  /** Stops taking requests, lets running responders answer (bounded), then leaves the hub. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [sid, entry] of this.entries) {
      if (entry.kind === 'subscriber') entry.active = false;
      else this.send({ op: 'unsub', sid });
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, CLOSE_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
    this.shut();
    this.port.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new UnavailableError('event bus closed');
  }

  private add(subject: string, entry: Entry): Subscription {
    this.assertOpen();
    assertSubject(subject, true);
    const sid = this.nextSid++;
    this.entries.set(sid, entry);
    this.send({ op: 'sub', sid, subject, queue: entry.kind === 'responder' });
    return {
      ready: entry.acked.promise,
      unsubscribe: () => {
        if (!this.entries.delete(sid)) return;
        entry.active = false;
        this.send({ op: 'unsub', sid });
      },
    };
  }

  private receive(frame: HubFrame): void {
    switch (frame.op) {
      case 'ack':
        this.entries.get(frame.sid)?.acked.resolve();
        return;
      case 'msg':
        for (const sid of frame.sids) this.deliver(sid, frame.subject, frame.data);
        return;
      case 'call':
        this.call(frame.sid, frame.cid, frame.subject, frame.data);
        return;
      case 'reply':
        this.pending.get(frame.rid)?.resolve(frame.data);
        return;
      case 'noresp': {
        const pending = this.pending.get(frame.rid);
        pending?.reject(new UnavailableError(`no responder for ${pending.subject}`));
        return;
      }
    }
  }

  /** The hub chose the subscriptions when the message was sent; an unsubscribe since then still wins. */
  private deliver(sid: number, subject: string, data: string): void {
    const entry = this.entries.get(sid);
    if (entry?.kind !== 'subscriber' || !entry.active) return;
    try {
      const result: unknown = entry.handler(decodePayload(data), subject);
      if (result instanceof Promise) result.catch((error: unknown) => this.handlerFailed(subject, error));
    } catch (error) {
      this.handlerFailed(subject, error);
    }
  }

  /** A responder that unsubscribed (or a bus closing) leaves the call unanswered: the requester times out, as on NATS. */
  private call(sid: number, cid: number, subject: string, data: string): void {
    const entry = this.entries.get(sid);
    if (entry?.kind !== 'responder' || !entry.active || this.closed) return;
    const task = (async () => {
      let text: string;
      try {
        text = encodeReply(await entry.responder(decodePayload(data), subject));
      } catch (error) {
        if (!(error instanceof VezaError)) this.log.error({ err: error, subject }, 'bus responder failed');
        text = encodeReplyError(error);
      }
      this.send({ op: 'answer', cid, data: text });
    })();
    this.inFlight.add(task);
    void task.finally(() => this.inFlight.delete(task));
  }

  /** No more routing: pending requests and unacknowledged subscriptions fail. */
  private shut(): void {
    this.closed = true;
    const closed = () => new UnavailableError('event bus closed');
    for (const pending of [...this.pending.values()]) pending.reject(closed());
    this.pending.clear();
    for (const entry of this.entries.values()) {
      entry.active = false;
      entry.acked.reject(closed());
    }
    this.entries.clear();
  }

  private send(frame: ClientFrame): void {
    this.port.postMessage(frame);
  }

  private handlerFailed(subject: string, error: unknown): void {
    this.log.error({ err: error, subject }, 'bus subscriber failed');
  }
}
