/**
 * The router of the thread bus: what the NATS server is to NatsEventBus, this is to ThreadEventBus,
 * inside one process. Each thread gets a MessagePort from connect(); the hub keeps every thread's
 * interest (subjects with `*` and `>`), hands each published message to the threads with a matching
 * subscription, and each request to exactly one responder of its subject across all threads (round
 * robin), answering "no responders" at once when there is none.
 *
 * It runs on the supervisor's thread (app/supervisor.ts), whose event loop does little else, so
 * routing never waits behind a role's work. It only looks at subjects: payloads pass through as the
 * JSON text the publisher encoded.
 */

import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { subjectMatches } from './event-bus.js';
import type { ClientFrame, HubFrame } from './thread-bus-frames.js';

interface Client {
  readonly id: number;
  readonly port: MessagePort;
  readonly subs: Map<number, Sub>;
  /** Its requests in flight: its rid -> the hub's call id. */
  readonly requests: Map<number, number>;
}

interface Sub {
  readonly client: Client;
  readonly sid: number;
  readonly subject: string;
  readonly queue: boolean;
}

interface Call {
  requester: Client;
  rid: number;
  responder: Client;
}

const isWildcard = (subject: string) => subject.split('.').some((token) => token === '*' || token === '>');

export class ThreadBusHub {
  private readonly clients = new Set<Client>();
  /** Subscriptions without wildcards, by subject: most of them, found without a scan. */
  private readonly exact = new Map<string, Set<Sub>>();
  private readonly wildcards = new Set<Sub>();
  private readonly calls = new Map<number, Call>();
  private nextClient = 1;
  private nextCall = 1;
  private nextResponder = 0;
  private closed = false;

  /** Threads connected now (one that ended or closed its bus is gone). */
  get connected(): number {
    return this.clients.size;
  }

  /** A new thread's end of the bus: hand it to `new ThreadEventBus(port)` there (transfer it to the thread). */
  connect(): MessagePort {
    if (this.closed) throw new Error('the thread bus hub is closed');
    const { port1, port2 } = new MessageChannel();
    const client: Client = { id: this.nextClient++, port: port1, subs: new Map(), requests: new Map() };
    this.clients.add(client);
    port1.on('message', (frame: ClientFrame) => this.handle(client, frame));
    // The thread closed its bus or ended (a crash included): its interest goes with it.
    port1.on('close', () => this.drop(client));
    return port2;
  }

  /** Disconnects every thread; their buses then refuse work. */
  async close(): Promise<void> {
    this.closed = true;
    for (const client of [...this.clients]) {
      this.drop(client);
      client.port.close();
    }
  }

  private handle(client: Client, frame: ClientFrame): void {
    if (!this.clients.has(client)) return;
    switch (frame.op) {
      case 'sub':
        this.add({ client, sid: frame.sid, subject: frame.subject, queue: frame.queue });
        this.send(client, { op: 'ack', sid: frame.sid });
        return;
      case 'unsub': {
        const sub = client.subs.get(frame.sid);
        if (sub) this.remove(sub);
        return;
      }
      case 'pub':
        this.deliver(frame.subject, frame.data);
        return;
      case 'req':
        this.request(client, frame.rid, frame.subject, frame.data);
        return;
      case 'cancel': {
        const cid = client.requests.get(frame.rid);
        client.requests.delete(frame.rid);
        if (cid !== undefined) this.calls.delete(cid);
        return;
      }
      case 'answer': {
        const call = this.calls.get(frame.cid);
        if (!call || call.responder !== client) return;
        this.calls.delete(frame.cid);
        call.requester.requests.delete(call.rid);
        this.send(call.requester, { op: 'reply', rid: call.rid, data: frame.data });
        return;
      }
    }
  }

  private add(sub: Sub): void {
    sub.client.subs.set(sub.sid, sub);
    if (isWildcard(sub.subject)) {
      this.wildcards.add(sub);
      return;
    }
    let set = this.exact.get(sub.subject);
    if (!set) {
      set = new Set();
      this.exact.set(sub.subject, set);
    }
    set.add(sub);
  }

  private remove(sub: Sub): void {
    sub.client.subs.delete(sub.sid);
    if (this.wildcards.delete(sub)) return;
    const set = this.exact.get(sub.subject);
    set?.delete(sub);
    if (set?.size === 0) this.exact.delete(sub.subject);
  }

  private matching(subject: string): Sub[] {
    const found = [...(this.exact.get(subject) ?? [])];
    for (const sub of this.wildcards) if (subjectMatches(sub.subject, subject)) found.push(sub);
    return found;
  }

  /** To every matching subscription that is not a responder: one frame per thread. */
  private deliver(subject: string, data: string): void {
    const byClient = new Map<Client, number[]>();
    for (const sub of this.matching(subject)) {
      if (sub.queue) continue;
      const sids = byClient.get(sub.client);
      if (sids) sids.push(sub.sid);
      else byClient.set(sub.client, [sub.sid]);
    }
    for (const [client, sids] of byClient) this.send(client, { op: 'msg', sids, subject, data });
  }

  private request(requester: Client, rid: number, subject: string, data: string): void {
    // Subscribers of a request subject see the request too, as on NATS.
    this.deliver(subject, data);
    const responders = this.matching(subject).filter((sub) => sub.queue);
    const chosen = responders[this.nextResponder++ % Math.max(responders.length, 1)];
    if (!chosen) {
      this.send(requester, { op: 'noresp', rid });
      return;
    }
    const cid = this.nextCall++;
    this.calls.set(cid, { requester, rid, responder: chosen.client });
    requester.requests.set(rid, cid);
    this.send(chosen.client, { op: 'call', sid: chosen.sid, cid, subject, data });
  }

  /**
   * A thread that leaves takes its subscriptions with it. Calls it was answering stay unanswered,
   * and their requesters time out, as on NATS when a responder dies mid-request.
   */
  private drop(client: Client): void {
    if (!this.clients.delete(client)) return;
    for (const sub of [...client.subs.values()]) this.remove(sub);
    for (const cid of client.requests.values()) this.calls.delete(cid);
    client.requests.clear();
  }

  private send(client: Client, frame: HubFrame): void {
    client.port.postMessage(frame);
  }
}
