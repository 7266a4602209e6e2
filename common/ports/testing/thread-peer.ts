/**
 * "Another process" of the EventBus contract for the thread bus: a ThreadEventBus that lives in a
 * worker thread of its own (thread-peer-worker.ts), seen from the test's thread through this proxy.
 * Subscribing or responding here subscribes there; the hub routes to that thread; each delivery and
 * call comes back here to run the test's closure, and a responder's answer (or error) goes back
 * there to be sent as that thread's reply.
 */
import type { Worker } from 'node:worker_threads';
import { startThread } from '../../threads.js';
import { decodeReply, encodeReply, encodeReplyError } from '../bus-wire.js';
import {
  assertSubject,
  type BusHandler,
  type BusResponder,
  type EventBus,
  type Subscription,
} from '../event-bus.js';
import type { ThreadBusHub } from '../thread-bus-hub.js';
import type { PeerCommand, PeerEvent } from './thread-peer-messages.js';

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

export class ThreadPeer implements EventBus {
  private readonly handlers = new Map<number, BusHandler>();
  private readonly responders = new Map<number, BusResponder>();
  private readonly readies = new Map<number, Waiter<void>>();
  private readonly dones = new Map<number, Waiter<string | undefined>>();
  private nextId = 1;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (event: PeerEvent) => this.receive(event));
  }

  /** Starts the peer thread on a new port of `hub` and waits until it runs. */
  static async start(hub: ThreadBusHub): Promise<ThreadPeer> {
    const port = hub.connect();
    const worker = startThread(new URL('./thread-peer-worker.ts', import.meta.url), {
      workerData: { port },
      transferList: [port],
    });
    await new Promise<void>((resolve, reject) => {
      worker.once('online', resolve);
      worker.once('error', reject);
    });
    return new ThreadPeer(worker);
  }

  async publish(subject: string, payload: unknown): Promise<void> {
    await this.command((id) => ({ op: 'publish', id, subject, payload }));
  }

  subscribe(subject: string, handler: BusHandler): Subscription {
    assertSubject(subject, true);
    const id = this.nextId++;
    this.handlers.set(id, handler);
    return this.track(id, { op: 'subscribe', id, subject });
  }

  respond(subject: string, responder: BusResponder): Subscription {
    assertSubject(subject, true);
    const id = this.nextId++;
    this.responders.set(id, responder);
    return this.track(id, { op: 'respond', id, subject });
  }

  async request(subject: string, payload: unknown, options?: { timeoutMs?: number }): Promise<unknown> {
    const text = await this.command((id) => ({
      op: 'request',
      id,
      subject,
      payload,
      ...(options?.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    }));
    return decodeReply(text ?? 'null', subject);
  }

  async close(): Promise<void> {
    await this.command((id) => ({ op: 'close', id }));
    await this.worker.terminate();
  }

  /** Ends the peer's thread at once, its bus still open: what a crash does. */
  async terminate(): Promise<void> {
    await this.worker.terminate();
  }

  private track(id: number, command: PeerCommand): Subscription {
    const ready = new Promise<void>((resolve, reject) => this.readies.set(id, { resolve, reject }));
    this.worker.postMessage(command);
    return {
      ready,
      unsubscribe: () => {
        this.handlers.delete(id);
        this.responders.delete(id);
        this.worker.postMessage({ op: 'unsubscribe', id } satisfies PeerCommand);
      },
    };
  }

  private command(make: (id: number) => PeerCommand): Promise<string | undefined> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.dones.set(id, { resolve, reject });
      this.worker.postMessage(make(id));
    });
  }

  private receive(event: PeerEvent): void {
    switch (event.op) {
      case 'ready': {
        const waiter = this.readies.get(event.id);
        this.readies.delete(event.id);
        if (event.error === undefined) waiter?.resolve();
        else waiter?.reject(new Error(event.error));
        return;
      }
      case 'delivered':
        // The peer thread's bus ran its handler (this relay) fine; a test closure that throws is
        // the test's business, as a throwing subscriber is only its own on a real bus.
        try {
          const result: unknown = this.handlers.get(event.id)?.(event.payload, event.subject);
          if (result instanceof Promise) result.catch(() => {});
        } catch {}
        return;
      case 'called': {
        const responder = this.responders.get(event.id);
        const answer = (text: string) =>
          this.worker.postMessage({ op: 'answer', callId: event.callId, text } satisfies PeerCommand);
        if (!responder) return;
        responder(event.payload, event.subject).then(
          (value) => answer(encodeReply(value)),
          (error: unknown) => answer(encodeReplyError(error)),
        );
        return;
      }
      case 'done': {
        const waiter = this.dones.get(event.id);
        this.dones.delete(event.id);
        if (event.error === undefined) waiter?.resolve(event.text);
        else waiter?.reject(new Error(event.error));
        return;
      }
    }
  }
}
