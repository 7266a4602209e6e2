/**
 * The presence module over the machine's NATS, each member and watcher on its own connection as
 * separate processes would be: `bus.close()` on a member's connection is that process dying (no
 * goodbye). Every test has its own group and node ids, so concurrent runs on one NATS server stay
 * apart. One test cuts the watcher off the bus: a wrapper around its real connection that drops
 * what it would send and receive, as a broken network would.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type PresenceHeartbeat,
  presenceHeartbeatSchema,
  presenceSubject,
  UnavailableError,
} from './contracts/index.js';
import { createLogger } from './log.js';
import { type EventBus, NatsEventBus } from './ports/index.js';
import { announcePresence, type PresenceLeaveCause, type PresenceWatch, watchPresence } from './presence.js';
import { clusterServices } from './testing/index.js';

const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: 'presence-test' });
const hex = () => randomBytes(4).toString('hex');
/** Long enough that only a first heartbeat, a probe, a goodbye or a restart can explain what a test sees. */
const NO_PERIODIC_BEAT_MS = 60_000;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const connect = async () => {
  const bus = await NatsEventBus.connect(clusterServices.natsUrl, { log });
  cleanups.push(() => bus.close());
  return bus;
};

/** A process's connection that the test can cut off the bus and reconnect. */
function partitionable(bus: EventBus) {
  let cut = false;
  const wrapped: EventBus = {
    publish: async (subject, payload) => {
      if (cut) throw new UnavailableError('the bus is unreachable');
      await bus.publish(subject, payload);
    },
    subscribe: (subject, handler) =>
      bus.subscribe(subject, (payload, s) => {
        if (!cut) handler(payload, s);
      }),
    request: (subject, payload, options) => bus.request(subject, payload, options),
    respond: (subject, responder) => bus.respond(subject, responder),
    close: () => bus.close(),
  };
  return {
    bus: wrapped,
    setCut(value: boolean) {
      cut = value;
    },
  };
}

interface Seen {
  joined: string[];
  left: Array<{ nodeId: string; bootId: string; cause: PresenceLeaveCause }>;
}

async function watcher(
  group: string,
  bus?: EventBus,
): Promise<{ watch: PresenceWatch<PresenceHeartbeat> } & Seen> {
  const seen: Seen = { joined: [], left: [] };
  const watch = watchPresence({
    bus: bus ?? (await connect()),
    group,
    log,
    what: 'test member',
    schema: presenceHeartbeatSchema,
    onHeartbeat: (heartbeat, joined) => {
      if (joined) seen.joined.push(`${heartbeat.nodeId}/${heartbeat.bootId}`);
    },
    onLeave: (heartbeat, cause) =>
      seen.left.push({ nodeId: heartbeat.nodeId, bootId: heartbeat.bootId, cause }),
  });
  cleanups.push(() => watch.close());
  await watch.ready;
  return { watch, ...seen };
}

async function member(group: string, options: { intervalMs: number; nodeId?: string; state?: () => object }) {
  const bus = await connect();
  const nodeId = options.nodeId ?? `member-${hex()}`;
  const announcer = announcePresence({
    bus,
    group,
    nodeId,
    intervalMs: options.intervalMs,
    log,
    what: 'test member',
    ...(options.state ? { state: options.state } : {}),
  });
  cleanups.push(() => announcer.goodbye());
  await announcer.ready;
  return { announcer, bus, nodeId };
}

const ids = (watch: PresenceWatch<PresenceHeartbeat>) =>
  watch.members().map((m) => `${m.heartbeat.nodeId}/${m.heartbeat.bootId}`);

describe('presence on the bus', () => {
  it('lists a member from its first heartbeat, with its state; a watcher started later finds it by probing', async () => {
    const group = `presence-${hex()}`;
    const early = await watcher(group);
    let load = 7;
    const { announcer, nodeId } = await member(group, {
      intervalMs: NO_PERIODIC_BEAT_MS,
      state: () => ({ load }),
    });
    const id = `${nodeId}/${announcer.bootId}`;
    await vi.waitFor(() => expect(ids(early.watch)).toEqual([id]));
    expect(early.watch.members()[0]?.heartbeat).toMatchObject({
      nodeId,
      intervalMs: NO_PERIODIC_BEAT_MS,
      load: 7,
    });
    expect(early.joined).toEqual([id]);

    // Its next heartbeat is a minute away: only the new watcher's probe can bring it in.
    load = 9;
    const late = await watcher(group);
    await vi.waitFor(() => expect(ids(late.watch)).toEqual([id]), { timeout: 5_000 });
    expect(late.watch.members()[0]?.heartbeat).toMatchObject({ load: 9 });
    // The early watcher heard that answer too: the same member, not a new one.
    await vi.waitFor(() => expect(early.watch.members()[0]?.heartbeat).toMatchObject({ load: 9 }));
    expect(early.joined).toEqual([id]);
    expect(early.left).toEqual([]);
  });

  it('forgets a member at once when it says goodbye', async () => {
    const group = `presence-${hex()}`;
    const seen = await watcher(group);
    const { announcer, nodeId } = await member(group, { intervalMs: NO_PERIODIC_BEAT_MS });
    await vi.waitFor(() => expect(seen.watch.members()).toHaveLength(1));

    // Expiry would take three minutes: gone within seconds means the goodbye did it.
    await announcer.goodbye();
    await vi.waitFor(() => expect(seen.watch.members()).toEqual([]), { timeout: 5_000 });
    expect(seen.left).toEqual([{ nodeId, bootId: announcer.bootId, cause: 'goodbye' }]);
  });

  it('forgets a member whose heartbeats stop (no goodbye) after three missed intervals', async () => {
    const group = `presence-${hex()}`;
    const seen = await watcher(group);
    const intervalMs = 100;
    const { announcer, nodeId, bus } = await member(group, { intervalMs });
    await vi.waitFor(() => expect(seen.watch.members()).toHaveLength(1));

    // Alive well past three intervals: its periodic heartbeats keep it listed.
    const listedAt = performance.now();
    await vi.waitFor(() => expect(performance.now() - listedAt).toBeGreaterThan(6 * intervalMs), {
      timeout: 5_000,
      interval: 20,
    });
    expect(seen.left).toEqual([]);
    expect(seen.watch.fresh(seen.watch.members()[0]!)).toBe(true);

    // The process "dies": its connection goes, and no goodbye is sent.
    const diedAt = performance.now();
    await bus.close();
    await vi.waitFor(() => expect(seen.left).toHaveLength(1), { timeout: 5_000, interval: 20 });
    expect(performance.now() - diedAt).toBeGreaterThanOrEqual(2 * intervalMs);
    expect(seen.left).toEqual([{ nodeId, bootId: announcer.bootId, cause: 'missed' }]);
    expect(seen.watch.members()).toEqual([]);
  });

  it('takes a heartbeat from a new boot of the same node for a restart: the previous run is gone', async () => {
    const group = `presence-${hex()}`;
    const seen = await watcher(group);
    const nodeId = `member-${hex()}`;
    const first = await member(group, { intervalMs: NO_PERIODIC_BEAT_MS, nodeId });
    await vi.waitFor(() => expect(seen.watch.members()).toHaveLength(1));
    // Crashes, and comes back at once with the same node id: expiry (three minutes) cannot explain what follows.
    await first.bus.close();
    const second = await member(group, { intervalMs: NO_PERIODIC_BEAT_MS, nodeId });
    expect(second.announcer.bootId).not.toBe(first.announcer.bootId);

    await vi.waitFor(() => expect(seen.left).toHaveLength(1), { timeout: 5_000 });
    expect(seen.left).toEqual([{ nodeId, bootId: first.announcer.bootId, cause: 'restarted' }]);
    expect(ids(seen.watch)).toEqual([`${nodeId}/${second.announcer.bootId}`]);
    expect(seen.joined).toEqual([
      `${nodeId}/${first.announcer.bootId}`,
      `${nodeId}/${second.announcer.bootId}`,
    ]);

    // A goodbye of the previous run, arriving late, does not remove the current one.
    const stray = await connect();
    await stray.publish(presenceSubject(group, 'goodbye'), { nodeId, bootId: first.announcer.bootId });
    await second.announcer.goodbye();
    await vi.waitFor(() => expect(seen.left).toHaveLength(2), { timeout: 5_000 });
    expect(seen.left[1]).toEqual({ nodeId, bootId: second.announcer.bootId, cause: 'goodbye' });
  });

  it('does not judge anyone while its own bus is cut off, and gives everyone a full expiry once it is back', async () => {
    const group = `presence-${hex()}`;
    const link = partitionable(await connect());
    const seen = await watcher(group, link.bus);
    const intervalMs = 100;
    const alive = await member(group, { intervalMs });
    const dying = await member(group, { intervalMs });
    await vi.waitFor(() => expect(seen.watch.members()).toHaveLength(2));

    // Ten intervals without hearing anything: both look silent, but the watcher cannot reach the
    // bus either (its own echoes do not come back), so that proves nothing. One of them dies meanwhile.
    link.setCut(true);
    const cutAt = performance.now();
    await dying.bus.close();
    await vi.waitFor(() => expect(performance.now() - cutAt).toBeGreaterThan(10 * intervalMs), {
      timeout: 5_000,
      interval: 20,
    });
    expect(seen.watch.members().every((m) => !seen.watch.fresh(m))).toBe(true);
    expect(seen.left).toEqual([]);

    // Back on the bus: the dead one is forgotten after three intervals of silence counted from
    // now, not at once; the living one, heard again, never is.
    link.setCut(false);
    const backAt = performance.now();
    await vi.waitFor(() => expect(seen.left).toHaveLength(1), { timeout: 5_000, interval: 10 });
    expect(performance.now() - backAt).toBeGreaterThanOrEqual(3 * intervalMs);
    expect(seen.left).toEqual([{ nodeId: dying.nodeId, bootId: dying.announcer.bootId, cause: 'missed' }]);
    expect(seen.watch.members().map((m) => m.heartbeat.nodeId)).toEqual([alive.nodeId]);
    expect(seen.watch.fresh(seen.watch.members()[0]!)).toBe(true);
  });
});
