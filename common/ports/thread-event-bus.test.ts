/**
 * What the thread bus adds to the EventBus contract (event-bus.contract.test.ts runs that across
 * real threads): a thread that ends takes its interest with it, a thread that joins late learns
 * the others' interest, and a hub that closes stops every thread's bus at once, failing what was
 * waiting rather than leaving it hanging.
 */
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../contracts/index.js';
import { createLogger } from '../log.js';
import { ThreadPeer } from './testing/thread-peer.js';
import { ThreadBusHub } from './thread-bus-hub.js';
import { ThreadEventBus } from './thread-event-bus.js';

const log = createLogger({ level: 'silent', name: 'thread-bus-test' });

describe('thread bus', () => {
  it("forgets a thread's responders and subscribers when the thread ends", async () => {
    const hub = new ThreadBusHub();
    const bus = new ThreadEventBus(hub.connect(), { log });
    const peer = await ThreadPeer.start(hub);
    try {
      const answering = peer.respond('svc.ping', async () => 'pong');
      await answering.ready;
      expect(await bus.request('svc.ping', null)).toBe('pong');

      // Ends the peer's thread without a goodbye on its bus, as a crash would.
      await peer.terminate();
      // This thread hears of it through its link's close, on the link's own schedule.
      await expect.poll(() => bus.peers).toBe(0);

      const error = await bus.request('svc.ping', null, { timeoutMs: 10_000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnavailableError);
      expect((error as Error).message).toBe('no responder for svc.ping');
    } finally {
      await bus.close();
      await hub.close();
    }
  });

  it('tells a thread that joins later what the others listen to, and them what it does', async () => {
    const hub = new ThreadBusHub();
    const early = new ThreadEventBus(hub.connect(), { log });
    try {
      const answering = early.respond('svc.early', async () => 'from the first thread');
      const seen: unknown[] = [];
      const listening = early.subscribe('events.>', (payload) => seen.push(payload));
      // Alone on the bus, a subscription is routed to at once.
      await Promise.all([answering.ready, listening.ready]);

      const late = await ThreadPeer.start(hub);
      try {
        const lateAnswering = late.respond('svc.late', async () => 'from the late thread');
        await lateAnswering.ready;
        expect(await late.request('svc.early', null)).toBe('from the first thread');
        expect(await early.request('svc.late', null)).toBe('from the late thread');
        await late.publish('events.one', 1);
        await expect.poll(() => seen).toEqual([1]);
      } finally {
        await late.close();
      }
    } finally {
      await early.close();
      await hub.close();
    }
  });

  it('fails pending requests and refuses work once the hub closes', async () => {
    const hub = new ThreadBusHub();
    const bus = new ThreadEventBus(hub.connect(), { log });
    const responder = new ThreadEventBus(hub.connect(), { log });
    let markStarted = () => {};
    const started = new Promise<void>((resolve) => {
      markStarted = resolve;
    });
    const sub = responder.respond('svc.slow', async () => {
      markStarted();
      return new Promise(() => {});
    });
    await sub.ready;
    const pending = bus.request('svc.slow', null, { timeoutMs: 10_000 }).catch((e: unknown) => e);
    await started;

    await hub.close();

    const error = await pending;
    expect(error).toBeInstanceOf(UnavailableError);
    expect((error as Error).message).toBe('event bus closed');
    await expect(bus.publish('svc.after', 1)).rejects.toBeInstanceOf(UnavailableError);
    expect(() => bus.subscribe('svc.after', () => {})).toThrow(UnavailableError);
  });
});
