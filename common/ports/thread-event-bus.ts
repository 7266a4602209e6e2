/**
 * EventBus across the threads of one process (threaded standalone mode). Each thread has one
 * ThreadEventBus on its port to the ThreadBusHub (thread-bus-hub.ts), which hands it a link to
 * every other thread; each side of a link keeps a copy of the other's interest, so publishing and
 * requesting go straight to the threads concerned (thread-bus-frames.ts). A thread routes nothing
 * before it knows the interest of every thread that was there when it connected, and a
 * subscription is `ready` once every linked thread has confirmed it.
 *
 * It behaves as NatsEventBus does, so the roles are wired exactly as in cluster mode: delivery is
 * asynchronous, every subscriber gets its own copy of the JSON, `ready` resolves once every other
 * thread routes to the subscription, each request reaches exactly one responder in whichever
 * thread (round robin), "no responders" fails at once, and errors cross as bus-wire.ts's reply
 * envelope.
 */

import type { MessagePort } from 'node:worker_threads';
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
import type { HubFrame, LinkFrame, SubscriptionFrame } from './thread-bus-frames.js';

/** How long close() lets running responders finish their answer (as NatsEventBus). */
const CLOSE_GRACE_MS = 5_000;

type Entry = (
  | { kind: 'subscriber'; handler: BusHandler }
  | { kind: 'responder'; responder: BusResponder }
) & {
  subject: string;
  active: boolean;
  /** The links that have not acknowledged the subscription yet; `ready` once empty. */
  unacked: Set<Link>;
  ready: Deferred;
};

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

/** Another thread, and its interest as it told us. */
interface Link {
  port: MessagePort;
  subs: Map<number, SubscriptionFrame>;
  /** Subscriptions without wildcards, by subject: most of them, found without a scan. */
  exact: Map<string, Map<number, SubscriptionFrame>>;
  wildcards: Map<number, SubscriptionFrame>;
}

/** Where a request can go: a responder of this thread, or one behind a link. */
type Candidate = { sid: number; local: Entry } | { sid: number; link: Link };

interface Pending {
  resolve(text: string): void;
  reject(error: Error): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Most callers never wait for `ready`; a bus closed before it settled must not make that an
  // unhandled rejection. Those who do wait still see it.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

const isWildcard = (subject: string) => subject.split('.').some((token) => token === '*' || token === '>');

export interface ThreadEventBusOptions {
  log?: Logger;
}

export class ThreadEventBus implements EventBus {
  private readonly log: Logger;
  private readonly entries = new Map<number, Entry>();
  private readonly links = new Set<Link>();
  private readonly pending = new Map<number, Pending>();
  private readonly inFlight = new Set<Promise<void>>();
  /** The threads that were there when this one connected, until each has told us its interest. */
  private readonly unsynced = new Set<Link>();
  /** Resolves once the hub's welcome came and every link in it has synced. */
  private readonly joined = deferred();
  private welcomed = false;
  private isJoined = false;
  private nextSid = 1;
  private nextRid = 1;
  private nextResponder = 0;
  private closed = false;

  constructor(
    private readonly hub: MessagePort,
    options: ThreadEventBusOptions = {},
  ) {
    this.log = options.log ?? createLogger({ name: 'event-bus' });
    hub.on('message', (frame: HubFrame) => {
      if (frame.op === 'link') {
        this.addLink(frame.port);
        return;
      }
      this.welcomed = true;
      for (const port of frame.ports) {
        const link = this.addLink(port);
        if (link) this.unsynced.add(link);
      }
      this.checkJoined();
    });
    // The hub closed (the supervisor is shutting down): this thread is off the bus.
    hub.on('close', () => this.shut());
  }

  /** Other threads linked to this one now. */
  get peers(): number {
    return this.links.size;
  }

  publish(subject: string, payload: unknown): Promise<void> {
    return tracedSend('publish', subject, (carrier) => this.post(subject, payload, carrier));
  }

  private async post(subject: string, payload: unknown, carrier: TraceCarrier | undefined): Promise<void> {
    this.assertOpen();
    assertSubject(subject, false);
    const data = encodePayload(payload);
    // Always through the await, so publishes keep their order across the moment of joining.
    await this.joined.promise;
    this.deliver(subject, data, carrier);
  }

  subscribe(subject: string, handler: BusHandler): Subscription {
    return this.add({
      kind: 'subscriber',
      handler,
      subject,
      active: true,
      unacked: new Set(),
      ready: deferred(),
    });
  }

  respond(subject: string, responder: BusResponder): Subscription {
    return this.add({
      kind: 'responder',
      responder,
      subject,
      active: true,
      unacked: new Set(),
      ready: deferred(),
    });
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
    this.assertOpen();
    assertSubject(subject, false);
    const timeoutMs = requestTimeoutOf(options);
    const data = encodePayload(payload);
    await this.joined.promise;
    // Subscribers of a request subject see the request too, as on NATS.
    this.deliver(subject, data, carrier);
    const candidates = this.responders(subject);
    const chosen = candidates[this.nextResponder++ % Math.max(candidates.length, 1)];
    if (!chosen) throw new UnavailableError(`no responder for ${subject}`);
    const rid = this.nextRid++;
    const text = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(new UnavailableError(`request to ${subject} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      const settle =
        <T>(fn: (value: T) => void) =>
        (value: T) => {
          clearTimeout(timer);
          this.pending.delete(rid);
          fn(value);
        };
      this.pending.set(rid, { resolve: settle(resolve), reject: settle(reject) });
      if ('link' in chosen) {
        this.send(chosen.link, {
          op: 'call',
          sid: chosen.sid,
          rid,
          subject,
          data,
          ...(carrier ? { trace: carrier } : {}),
        });
      } else {
        // A microtask hop, so a responder never runs inside the requester's call stack.
        queueMicrotask(() =>
          this.answer(chosen.local, subject, data, carrier, (reply) => this.pending.get(rid)?.resolve(reply)),
        );
      }
    });
    return decodeReply(text, subject);
  }

  /** Stops taking requests, lets running responders answer (bounded), then leaves the bus. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [sid, entry] of this.entries) {
      if (entry.kind === 'subscriber') entry.active = false;
      else for (const link of this.links) this.send(link, { op: 'unsub', sid });
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
  }

  private assertOpen(): void {
    if (this.closed) throw new UnavailableError('event bus closed');
  }

  private add(entry: Entry): Subscription {
    this.assertOpen();
    assertSubject(entry.subject, true);
    const sid = this.nextSid++;
    this.entries.set(sid, entry);
    const frame: LinkFrame = { op: 'sub', sid, subject: entry.subject, queue: entry.kind === 'responder' };
    for (const link of this.links) {
      entry.unacked.add(link);
      this.send(link, frame);
    }
    // A thread linked later learns of it when the link opens (the `sync` frame).
    this.checkReady(entry);
    return {
      ready: entry.ready.promise,
      unsubscribe: () => {
        if (!this.entries.delete(sid)) return;
        entry.active = false;
        for (const link of this.links) this.send(link, { op: 'unsub', sid });
      },
    };
  }

  private addLink(port: MessagePort): Link | null {
    if (this.closed) {
      port.close();
      return null;
    }
    const link: Link = { port, subs: new Map(), exact: new Map(), wildcards: new Map() };
    this.links.add(link);
    port.on('message', (frame: LinkFrame) => this.receive(link, frame));
    // The other thread closed its bus or ended (a crash included): its interest goes with it.
    // Requests it was answering stay unanswered and time out, as on NATS when a responder dies.
    port.on('close', () => this.dropLink(link));
    const subs: SubscriptionFrame[] = [];
    for (const [sid, entry] of this.entries) {
      if (!entry.active) continue;
      subs.push({ sid, subject: entry.subject, queue: entry.kind === 'responder' });
      entry.unacked.add(link);
    }
    this.send(link, { op: 'sync', subs });
    return link;
  }

  private dropLink(link: Link): void {
    if (!this.links.delete(link)) return;
    this.unsynced.delete(link);
    for (const entry of this.entries.values()) this.acknowledged(entry, link);
    this.checkJoined();
  }

  private checkJoined(): void {
    if (this.isJoined || !this.welcomed || this.unsynced.size > 0) return;
    this.isJoined = true;
    this.joined.resolve();
    for (const entry of this.entries.values()) this.checkReady(entry);
  }

  private checkReady(entry: Entry): void {
    if (this.isJoined && entry.unacked.size === 0) entry.ready.resolve();
  }

  private receive(link: Link, frame: LinkFrame): void {
    switch (frame.op) {
      case 'sync':
        for (const sub of frame.subs) this.remember(link, sub);
        this.send(link, { op: 'synced', sids: frame.subs.map((sub) => sub.sid) });
        this.unsynced.delete(link);
        this.checkJoined();
        return;
      case 'synced':
        for (const sid of frame.sids) {
          const entry = this.entries.get(sid);
          if (entry) this.acknowledged(entry, link);
        }
        return;
      case 'sub':
        this.remember(link, frame);
        this.send(link, { op: 'ack', sid: frame.sid });
        return;
      case 'ack': {
        const entry = this.entries.get(frame.sid);
        if (entry) this.acknowledged(entry, link);
        return;
      }
      case 'unsub':
        this.forget(link, frame.sid);
        return;
      case 'msg':
        for (const sid of frame.sids) {
          const entry = this.entries.get(sid);
          if (entry) this.handle(entry, frame.subject, frame.data, frame.trace);
        }
        return;
      case 'call': {
        // A responder that unsubscribed (or a bus closing) leaves the call unanswered: the
        // requester times out, as on NATS.
        const entry = this.entries.get(frame.sid);
        if (!entry || this.closed) return;
        this.answer(entry, frame.subject, frame.data, frame.trace, (data) =>
          this.send(link, { op: 'answer', rid: frame.rid, data }),
        );
        return;
      }
      case 'answer':
        this.pending.get(frame.rid)?.resolve(frame.data);
        return;
    }
  }

  private acknowledged(entry: Entry, link: Link): void {
    if (entry.unacked.delete(link)) this.checkReady(entry);
  }

  private remember(link: Link, sub: SubscriptionFrame): void {
    link.subs.set(sub.sid, sub);
    if (isWildcard(sub.subject)) {
      link.wildcards.set(sub.sid, sub);
      return;
    }
    let bySid = link.exact.get(sub.subject);
    if (!bySid) {
      bySid = new Map();
      link.exact.set(sub.subject, bySid);
    }
    bySid.set(sub.sid, sub);
  }

  private forget(link: Link, sid: number): void {
    const sub = link.subs.get(sid);
    if (!sub) return;
    link.subs.delete(sid);
    if (link.wildcards.delete(sid)) return;
    const bySid = link.exact.get(sub.subject);
    bySid?.delete(sid);
    if (bySid?.size === 0) link.exact.delete(sub.subject);
  }

  private matching(link: Link, subject: string): SubscriptionFrame[] {
    const found = [...(link.exact.get(subject)?.values() ?? [])];
    for (const sub of link.wildcards.values()) if (subjectMatches(sub.subject, subject)) found.push(sub);
    return found;
  }

  /** To every matching subscriber, here and in the other threads (chosen now, as a server routes). */
  private deliver(subject: string, data: string, carrier: TraceCarrier | undefined): void {
    for (const entry of this.entries.values()) {
      if (entry.kind !== 'subscriber' || !subjectMatches(entry.subject, subject)) continue;
      queueMicrotask(() => this.handle(entry, subject, data, carrier));
    }
    for (const link of this.links) {
      const sids = this.matching(link, subject)
        .filter((sub) => !sub.queue)
        .map((sub) => sub.sid);
      if (sids.length > 0)
        this.send(link, { op: 'msg', sids, subject, data, ...(carrier ? { trace: carrier } : {}) });
    }
  }

  private responders(subject: string): Candidate[] {
    const candidates: Candidate[] = [];
    for (const [sid, entry] of this.entries) {
      if (entry.kind === 'responder' && entry.active && subjectMatches(entry.subject, subject)) {
        candidates.push({ sid, local: entry });
      }
    }
    for (const link of this.links) {
      for (const sub of this.matching(link, subject)) if (sub.queue) candidates.push({ sid: sub.sid, link });
    }
    return candidates;
  }

  /** An unsubscribe since the message was routed still wins. */
  private handle(entry: Entry, subject: string, data: string, carrier: TraceCarrier | undefined): void {
    if (entry.kind !== 'subscriber' || !entry.active) return;
    try {
      const result: unknown = tracedReceive('process', subject, carrier, () =>
        entry.handler(decodePayload(data), subject),
      );
      if (result instanceof Promise) result.catch((error: unknown) => this.handlerFailed(subject, error));
    } catch (error) {
      this.handlerFailed(subject, error);
    }
  }

  private answer(
    entry: Entry,
    subject: string,
    data: string,
    carrier: TraceCarrier | undefined,
    reply: (text: string) => void,
  ): void {
    if (entry.kind !== 'responder' || !entry.active) return;
    const { responder } = entry;
    const task = (async () => {
      let text: string;
      try {
        text = encodeReply(
          await tracedReceive('answer', subject, carrier, () => responder(decodePayload(data), subject)),
        );
      } catch (error) {
        if (!(error instanceof VezaError)) this.log.error({ err: error, subject }, 'bus responder failed');
        text = encodeReplyError(error);
      }
      reply(text);
    })();
    this.inFlight.add(task);
    void task.finally(() => this.inFlight.delete(task));
  }

  /** Off the bus: pending requests and subscriptions not ready yet fail, and the links close. */
  private shut(): void {
    this.closed = true;
    const closed = () => new UnavailableError('event bus closed');
    this.joined.reject(closed());
    for (const pending of [...this.pending.values()]) pending.reject(closed());
    this.pending.clear();
    for (const entry of this.entries.values()) {
      entry.active = false;
      entry.ready.reject(closed());
    }
    this.entries.clear();
    for (const link of this.links) link.port.close();
    this.links.clear();
    this.hub.close();
  }

  private send(link: Link, frame: LinkFrame): void {
    link.port.postMessage(frame);
  }

  private handlerFailed(subject: string, error: unknown): void {
    this.log.error({ err: error, subject }, 'bus subscriber failed');
  }
}
