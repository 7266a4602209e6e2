/**
 * In-process EventBus for standalone mode.
 *
 * It mimics NATS on purpose: delivery is asynchronous, every subscriber gets its own
 * JSON copy of the payload, requests are also seen by subscribers of the subject, and
 * errors cross as the reply envelope. Code that works here then works on the cluster bus.
 */

import { UnavailableError, VezaError } from '../contracts/index.js';
import { createLogger, type Logger } from '../log.js';
import { type TraceCarrier, tracedReceive, tracedSend } from './bus-tracing.js';
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
  subjectMatches,
} from './event-bus.js';

interface Entry<T> {
  pattern: string;
  callback: T;
  active: boolean;
}

export interface MemoryEventBusOptions {
  log?: Logger;
}

export class MemoryEventBus implements EventBus {
  private readonly log: Logger;
  private readonly subscribers = new Set<Entry<BusHandler>>();
  private readonly responders = new Set<Entry<BusResponder>>();
  private readonly pending = new Set<(error: Error) => void>();
  private nextResponder = 0;
  private closed = false;

  constructor(options: MemoryEventBusOptions = {}) {
    this.log = options.log ?? createLogger({ name: 'event-bus' });
  }

  async publish(subject: string, payload: unknown): Promise<void> {
    this.assertOpen();
    assertSubject(subject, false);
    const wire = encodePayload(payload);
    tracedSend('publish', subject, (carrier) => this.deliver(subject, wire, carrier));
  }

  subscribe(subject: string, handler: BusHandler): Subscription {
    this.assertOpen();
    assertSubject(subject, true);
    return this.add(this.subscribers, { pattern: subject, callback: handler, active: true });
  }

  respond(subject: string, responder: BusResponder): Subscription {
    this.assertOpen();
    assertSubject(subject, true);
    return this.add(this.responders, { pattern: subject, callback: responder, active: true });
  }

  request(subject: string, payload: unknown, options?: { timeoutMs?: number }): Promise<unknown> {
    return tracedSend('request', subject, (carrier) => this.send(subject, payload, options, carrier));
  }

  private async send(
    subject: string,
    payload: unknown,
    options: { timeoutMs?: number } | undefined,
    carrier: TraceCarrier | undefined,
  ): Promise<unknown> {
    this.assertOpen();
    assertSubject(subject, false);
    const timeoutMs = requestTimeoutOf(options);
    const wire = encodePayload(payload);
    this.deliver(subject, wire, carrier);
    const candidates = [...this.responders].filter((entry) => subjectMatches(entry.pattern, subject));
    const chosen = candidates[this.nextResponder++ % Math.max(candidates.length, 1)];
    if (!chosen) throw new UnavailableError(`no responder for ${subject}`);

    const reply = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(fail);
        reject(new UnavailableError(`request to ${subject} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      const fail = (error: Error) => {
        clearTimeout(timer);
        reject(error);
      };
      this.pending.add(fail);
      this.answer(chosen, subject, wire, carrier).then((text) => {
        clearTimeout(timer);
        this.pending.delete(fail);
        resolve(text);
      });
    });
    return decodeReply(await reply, subject);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const entry of [...this.subscribers, ...this.responders]) entry.active = false;
    this.subscribers.clear();
    this.responders.clear();
    for (const fail of this.pending) fail(new UnavailableError('event bus closed'));
    this.pending.clear();
  }

  private assertOpen(): void {
    if (this.closed) throw new UnavailableError('event bus closed');
  }

  private add<T>(set: Set<Entry<T>>, entry: Entry<T>): Subscription {
    set.add(entry);
    return {
      ready: Promise.resolve(),
      unsubscribe: () => {
        entry.active = false;
        set.delete(entry);
      },
    };
  }

  /** Subscribers are chosen when the message is sent (as a server routes it); an unsubscribe before delivery still wins. */
  private deliver(subject: string, wire: string, carrier: TraceCarrier | undefined): void {
    for (const entry of this.subscribers) {
      if (!subjectMatches(entry.pattern, subject)) continue;
      queueMicrotask(() => {
        if (!entry.active) return;
        try {
          const result: unknown = tracedReceive('process', subject, carrier, () =>
            entry.callback(decodePayload(wire), subject),
          );
          if (result instanceof Promise) {
            result.catch((error: unknown) => this.handlerFailed(subject, error));
          }
        } catch (error) {
          this.handlerFailed(subject, error);
        }
      });
    }
  }

  private async answer(
    entry: Entry<BusResponder>,
    subject: string,
    wire: string,
    carrier: TraceCarrier | undefined,
  ): Promise<string> {
    // A microtask hop, so a responder never runs inside the requester's call stack.
    await Promise.resolve();
    try {
      return encodeReply(
        await tracedReceive('answer', subject, carrier, () => entry.callback(decodePayload(wire), subject)),
      );
    } catch (error) {
      if (!(error instanceof VezaError)) {
        this.log.error({ err: error, subject }, 'bus responder failed');
      }
      return encodeReplyError(error);
    }
  }

  private handlerFailed(subject: string, error: unknown): void {
    this.log.error({ err: error, subject }, 'bus subscriber failed');
  }
}
