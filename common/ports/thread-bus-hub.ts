/**
 * Where the threads of the thread bus meet. Each thread gets a port from connect() (its
 * ThreadEventBus runs on it); the hub then hands that thread one end of a new link to every thread
 * already connected, and each of those the other end. From there the threads route among
 * themselves (thread-event-bus.ts): messages never pass through the hub's thread, so a request
 * from the edge to the media node is one hop each way, and the supervisor's loop stays out of it.
 *
 * Closing the hub closes every thread's port to it, and the threads' buses then refuse work.
 */

import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { HubFrame } from './thread-bus-frames.js';

export class ThreadBusHub {
  private readonly members = new Set<MessagePort>();
  private closed = false;

  /** Threads connected now (one that ended or closed its bus is gone). */
  get connected(): number {
    return this.members.size;
  }

  /** A new thread's end of the bus: hand it to `new ThreadEventBus(port)` there (transfer it to the thread). */
  connect(): MessagePort {
    if (this.closed) throw new Error('the thread bus hub is closed');
    const { port1: own, port2: theirs } = new MessageChannel();
    const ports: MessagePort[] = [];
    for (const member of this.members) {
      const link = new MessageChannel();
      member.postMessage({ op: 'link', port: link.port1 } satisfies HubFrame, [link.port1]);
      ports.push(link.port2);
    }
    // Queued on the port until the new thread listens on it: its first frame.
    own.postMessage({ op: 'welcome', ports } satisfies HubFrame, ports);
    this.members.add(own);
    // The thread closed its bus or ended (a crash included).
    own.on('close', () => this.members.delete(own));
    // Nothing comes back on it; it must not keep the supervisor's process alive by itself.
    own.unref();
    return theirs;
  }

  /** Disconnects every thread; their buses then refuse work. */
  async close(): Promise<void> {
    this.closed = true;
    for (const member of this.members) member.close();
    this.members.clear();
  }
}
