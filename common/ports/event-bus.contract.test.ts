import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FailedPreconditionError,
  INTERNAL_MESSAGE,
  NotFoundError,
  UnavailableError,
  VezaError,
} from '../contracts/index.js';
import { createLogger } from '../log.js';
import { clusterServices } from '../testing/index.js';
import type { EventBus } from './event-bus.js';
import { MemoryEventBus } from './memory-event-bus.js';
import { NatsEventBus } from './nats-event-bus.js';
import { ThreadPeer } from './testing/thread-peer.js';
import { ThreadBusHub } from './thread-bus-hub.js';
import { ThreadEventBus } from './thread-event-bus.js';

const log = createLogger({ level: 'silent', name: 'event-bus-test' });
/** One subject namespace per run of this file, so parallel runs on one NATS never see each other. */
const P = `t${randomBytes(6).toString('hex')}`;

interface Harness {
  bus: EventBus;
  /** Another process's bus: the same bus in-process, a second connection on NATS. */
  peer: EventBus;
  close(): Promise<void>;
}

const adapters: { name: string; create(): Promise<Harness> }[] = [
  {
    name: 'memory',
    async create() {
      const bus = new MemoryEventBus({ log });
      return { bus, peer: bus, close: () => bus.close() };
    },
  },
  {
    // Threaded standalone mode: the hub where the supervisor keeps it (this thread), this thread's
    // bus as a role thread's, and the peer's bus in a real worker thread of its own.
    name: 'threads',
    async create() {
      const hub = new ThreadBusHub();
      const bus = new ThreadEventBus(hub.connect(), { log });
      const peer = await ThreadPeer.start(hub);
      return {
        bus,
        peer,
        async close() {
          await Promise.all([bus.close(), peer.close()]);
          await hub.close();
        },
      };
    },
  },
  {
    name: 'nats',
    async create() {
      // Namespaced as deployments are (VEZA_NAMESPACE): handlers must still see plain subjects.
      const bus = await NatsEventBus.connect(clusterServices.natsUrl, { log, namespace: `ns${P}` });
      const peer = await NatsEventBus.connect(clusterServices.natsUrl, { log, namespace: `ns${P}` });
      return {
        bus,
        peer,
        async close() {
          await Promise.all([bus.close(), peer.close()]);
        },
      };
    },
  },
];

function deferred<T = void>(): { promise: Promise<T>; resolve(value: T): void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe.each(adapters)('EventBus contract: $name', (adapter) => {
  let h: Harness;
  beforeAll(async () => {
    h = await adapter.create();
  });
  afterAll(async () => {
    await h?.close();
  });

  /** Resolves when `subject` is delivered: messages published before it on the same bus were delivered first. */
  async function sentinel(bus: EventBus, subject: string): Promise<() => Promise<void>> {
    const seen = deferred();
    const sub = bus.subscribe(subject, () => seen.resolve());
    await sub.ready;
    return async () => {
      await bus.publish(subject, null);
      await seen.promise;
      sub.unsubscribe();
    };
  }

  it('delivers to exact, `*` and `>` subscribers only, as JSON', async () => {
    const got: Record<string, unknown[]> = { exact: [], star: [], tail: [], other: [], short: [] };
    const patterns = {
      exact: `${P}.room.1.chat`,
      star: `${P}.room.*.chat`,
      tail: `${P}.room.>`,
      other: `${P}.user.>`,
      short: `${P}.room.*`,
    };
    const subs = Object.entries(patterns).map(([name, pattern]) =>
      h.bus.subscribe(pattern, (payload, subject) => got[name]?.push({ payload, subject })),
    );
    const done = await sentinel(h.bus, `${P}.done1`);

    await h.bus.publish(`${P}.room.1.chat`, { text: 'hi', at: new Date(0), gone: undefined });
    await done();

    const expected = { payload: { text: 'hi', at: '1970-01-01T00:00:00.000Z' }, subject: `${P}.room.1.chat` };
    expect(got).toEqual({ exact: [expected], star: [expected], tail: [expected], other: [], short: [] });
    for (const sub of subs) sub.unsubscribe();
  });

  it('reaches a subscriber of another process', async () => {
    const received = deferred<unknown>();
    const sub = h.peer.subscribe(`${P}.cross`, (payload) => received.resolve(payload));
    await sub.ready;
    await h.bus.publish(`${P}.cross`, [1, 'two', null]);
    expect(await received.promise).toEqual([1, 'two', null]);
    sub.unsubscribe();
  });

  it('gives every subscriber its own copy and survives a throwing subscriber', async () => {
    const seen: unknown[] = [];
    const a = h.bus.subscribe(`${P}.copy`, (payload) => {
      (payload as { n: number }).n = 99;
      throw new Error('subscriber bug');
    });
    const b = h.bus.subscribe(`${P}.copy`, (payload) => seen.push(payload));
    const done = await sentinel(h.bus, `${P}.done2`);

    await h.bus.publish(`${P}.copy`, { n: 1 });
    await done();

    expect(seen).toEqual([{ n: 1 }]);
    a.unsubscribe();
    b.unsubscribe();
  });

  it('delivers nothing after unsubscribe', async () => {
    const seen: unknown[] = [];
    const sub = h.bus.subscribe(`${P}.unsub`, (payload) => seen.push(payload));
    const done = await sentinel(h.bus, `${P}.done3`);

    sub.unsubscribe();
    await h.bus.publish(`${P}.unsub`, 'late');
    await done();

    expect(seen).toEqual([]);
  });

  it('rejects malformed subjects', async () => {
    await expect(h.bus.publish(`${P}..x`, 1)).rejects.toThrow(/invalid bus subject/);
    await expect(h.bus.publish(`${P}.*`, 1)).rejects.toThrow(/invalid bus subject/);
    expect(() => h.bus.subscribe(`${P}.>.x`, () => {})).toThrow(/invalid bus subject/);
    await expect(h.bus.request(`${P}.a b`, 1)).rejects.toThrow(/invalid bus subject/);
  });

  it('answers a request from another process', async () => {
    const sub = h.peer.respond(`${P}.echo`, async (payload, subject) => ({ echo: payload, subject }));
    await sub.ready;
    const reply = await h.bus.request(`${P}.echo`, { at: new Date(1000) });
    expect(reply).toEqual({ echo: { at: '1970-01-01T00:00:01.000Z' }, subject: `${P}.echo` });
    sub.unsubscribe();
  });

  it('lets subscribers of a request subject see the request', async () => {
    const seen = deferred<unknown>();
    const tap = h.bus.subscribe(`${P}.svc.>`, (payload) => seen.resolve(payload));
    const sub = h.bus.respond(`${P}.svc.get`, async () => 'ok');
    await Promise.all([tap.ready, sub.ready]);
    expect(await h.bus.request(`${P}.svc.get`, { id: 7 })).toBe('ok');
    expect(await seen.promise).toEqual({ id: 7 });
    tap.unsubscribe();
    sub.unsubscribe();
  });

  it("carries a responder's VezaError and hides other errors", async () => {
    const notFound = h.peer.respond(`${P}.missing`, async () => {
      throw new NotFoundError('room 7 not found');
    });
    const ended = h.peer.respond(`${P}.ended`, async () => {
      throw new FailedPreconditionError('stream 7 has ended', 'stream_ended');
    });
    const broken = h.peer.respond(`${P}.broken`, async () => {
      throw new Error('secret internals');
    });
    await Promise.all([notFound.ready, ended.ready, broken.ready]);

    const error = await h.bus.request(`${P}.missing`, null).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VezaError);
    expect(error).toMatchObject({ code: 'not_found', message: 'room 7 not found', details: {} });

    // The reason a caller acts on crosses with the code, so it never has to read the message.
    const reasoned = await h.bus.request(`${P}.ended`, null).catch((e: unknown) => e);
    expect(reasoned).toBeInstanceOf(VezaError);
    expect(reasoned).toMatchObject({
      code: 'failed_precondition',
      message: 'stream 7 has ended',
      details: { reason: 'stream_ended' },
    });

    const internal = await h.bus.request(`${P}.broken`, null).catch((e: unknown) => e);
    expect(internal).toBeInstanceOf(VezaError);
    expect(internal).toMatchObject({ code: 'internal', message: INTERNAL_MESSAGE });
    notFound.unsubscribe();
    ended.unsubscribe();
    broken.unsubscribe();
  });

  it('fails fast with UnavailableError when nobody responds', async () => {
    const error = await h.bus.request(`${P}.nobody`, null, { timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnavailableError);
    expect((error as Error).message).toBe(`no responder for ${P}.nobody`);
  });

  it('times out with UnavailableError naming the subject', async () => {
    const release = deferred();
    const started = deferred();
    const sub = h.peer.respond(`${P}.slow`, async () => {
      started.resolve();
      await release.promise;
      return 'too late';
    });
    await sub.ready;

    const error = await h.bus.request(`${P}.slow`, null, { timeoutMs: 150 }).catch((e: unknown) => e);
    await started.promise;
    expect(error).toBeInstanceOf(UnavailableError);
    expect((error as Error).message).toContain(`${P}.slow`);
    expect((error as Error).message).toContain('timed out');

    release.resolve();
    sub.unsubscribe();
  });

  it('hands each request to exactly one of several responders', async () => {
    const calls = new Map<number, number>();
    const make = (bus: EventBus, name: string) =>
      bus.respond(`${P}.work`, async (payload) => {
        const id = payload as number;
        calls.set(id, (calls.get(id) ?? 0) + 1);
        return { id, by: name };
      });
    const first = make(h.bus, 'first');
    const second = make(h.peer, 'second');
    // Barriers on both connections: once they arrive, any duplicate delivered earlier has run.
    const barrierBus = await sentinel(h.bus, `${P}.barrier`);
    const barrierPeer = await sentinel(h.peer, `${P}.barrier`);
    await Promise.all([first.ready, second.ready]);

    const ids = Array.from({ length: 20 }, (_, i) => i);
    const replies = await Promise.all(ids.map((id) => h.bus.request(`${P}.work`, id)));
    await Promise.all([barrierBus(), barrierPeer()]);

    expect(replies.map((reply) => (reply as { id: number }).id)).toEqual(ids);
    expect(ids.map((id) => calls.get(id))).toEqual(ids.map(() => 1));
    first.unsubscribe();
    second.unsubscribe();
  });

  it('refuses work once closed', async () => {
    const own = await adapter.create();
    const pending = own.bus.respond(`${P}.closing`, async () => 'x');
    await pending.ready;
    await own.close();
    await expect(own.bus.publish(`${P}.after`, 1)).rejects.toBeInstanceOf(UnavailableError);
    await expect(own.bus.request(`${P}.closing`, 1)).rejects.toBeInstanceOf(UnavailableError);
  });
});

describe('NATS namespaces (VEZA_NAMESPACE)', () => {
  it('keeps deployments sharing one NATS server apart; the wire subject carries the namespace', async () => {
    const [a, a2, b, raw] = await Promise.all([
      NatsEventBus.connect(clusterServices.natsUrl, { log, namespace: `a${P}` }),
      NatsEventBus.connect(clusterServices.natsUrl, { log, namespace: `a${P}` }),
      NatsEventBus.connect(clusterServices.natsUrl, { log, namespace: `b${P}` }),
      NatsEventBus.connect(clusterServices.natsUrl, { log }),
    ]);
    try {
      const seen: Record<string, string[]> = { a2: [], b: [], raw: [] };
      const subs = [
        a2.subscribe('events.*', (_payload, subject) => seen.a2?.push(subject)),
        b.subscribe('events.*', (_payload, subject) => seen.b?.push(subject)),
        raw.subscribe(`a${P}.events.*`, (_payload, subject) => seen.raw?.push(subject)),
      ];
      await Promise.all(subs.map((sub) => sub.ready));
      b.respond('calls.ping', async () => 'b answers');
      await a.publish('events.started', { id: 1 });
      // Request/reply stays inside a namespace too: b's responder is not a's.
      await expect(a.request('calls.ping', {}, { timeoutMs: 500 })).rejects.toThrow(
        /no responder for calls\.ping/,
      );
      await expect(b.request('calls.ping', {})).resolves.toBe('b answers');
      await expect.poll(() => seen.a2).toEqual(['events.started']);
      await expect.poll(() => seen.raw).toEqual([`a${P}.events.started`]);
      expect(seen.b).toEqual([]);
      expect(() => new NatsEventBus(undefined as never, { namespace: 'has.dot' })).toThrow(
        'invalid bus namespace "has.dot": one subject token of letters, digits, _ and -',
      );
    } finally {
      await Promise.all([a.close(), a2.close(), b.close(), raw.close()]);
    }
  });
});
