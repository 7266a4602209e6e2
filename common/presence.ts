/**
 * Presence on the EventBus: which processes of one kind are alive, one mechanism for every kind
 * (media nodes announce themselves to the control planes, edges to the media nodes; the subjects
 * and payloads of each are in media-server/bus-protocol.ts).
 *
 * Under a group prefix `<group>` (e.g. `media-nodes.<cluster>`):
 * - `<group>.heartbeat`, every `intervalMs`: `{ nodeId, bootId, intervalMs, ...state }`. The boot id
 *   is new in every process, so a process that restarts with the same node id is a new member.
 * - `<group>.goodbye` on a clean close: `{ nodeId, bootId }`.
 * - `<group>.probe`: every member answers with a heartbeat at once (a watcher that just started).
 * - `<group>.echo.<watchId>`: a watcher's message to itself (see below).
 *
 * A watcher forgets a member when it says goodbye, when a heartbeat with its node id comes from
 * another boot (it restarted), or when it misses PRESENCE_MISSED_HEARTBEATS of its own intervals.
 * Silence only counts while the watcher's own bus demonstrably works: while it has members, it
 * sends itself an echo every half interval, and a gap in those echoes (its connection to NATS
 * dropped, or its event loop stalled) restarts every member's count. A watcher cut off from the
 * bus therefore does not declare the whole cluster dead.
 */
import { randomBytes } from 'node:crypto';
import type { z } from 'zod';
import {
  PRESENCE_BOOT_ID,
  PRESENCE_HEARTBEAT_MS,
  PRESENCE_MISSED_HEARTBEATS,
  PRESENCE_NODE_ID,
  type PresenceGoodbye,
  type PresenceHeartbeat,
  presenceEchoSubject,
  presenceGoodbyeSchema,
  presenceKindOf,
  presenceOf,
  presenceSubject,
} from './contracts/index.js';
import type { Logger } from './log.js';
import type { EventBus, Subscription } from './ports/index.js';

/** A fresh boot id: one per process (or per announcing component), never reused. */
export const newBootId = (): string => randomBytes(6).toString('hex');

// Announcing.

export interface AnnouncePresenceOptions<S extends object> {
  bus: EventBus;
  group: string;
  nodeId: string;
  /** Default: a new one. */
  bootId?: string;
  /** Default PRESENCE_HEARTBEAT_MS. */
  intervalMs?: number;
  log: Logger;
  /** What the member is, for logs ("media node", "edge"). */
  what: string;
  /** More heartbeat fields (a media node's load); a throw skips that heartbeat. */
  state?: () => S | Promise<S>;
  /** Heartbeats start once this resolves (a media node announces itself once it answers). */
  after?: Promise<unknown>;
}

export interface PresenceAnnouncer {
  readonly nodeId: string;
  readonly bootId: string;
  /** Resolves once probes reach the member and its first heartbeat is out. */
  readonly ready: Promise<void>;
  /** Stops the heartbeats and says goodbye: watchers forget the member at once. Idempotent. */
  goodbye(): Promise<void>;
}

export function announcePresence<S extends object>(options: AnnouncePresenceOptions<S>): PresenceAnnouncer {
  const { bus, group, nodeId, log, what } = options;
  if (!PRESENCE_NODE_ID.test(nodeId)) {
    throw new Error(`${what} id "${nodeId}" must be 1-80 letters, digits, dots, _ or - (no ":")`);
  }
  const bootId = options.bootId ?? newBootId();
  if (!PRESENCE_BOOT_ID.test(bootId)) throw new Error(`boot id "${bootId}" is not 8-32 lowercase hex digits`);
  const intervalMs = options.intervalMs ?? PRESENCE_HEARTBEAT_MS;

  let started = false;
  let leaving = false;
  let beating = false;
  let failing = false;
  const beat = async (): Promise<void> => {
    if (!started || leaving || beating) return;
    beating = true;
    try {
      const state = options.state ? await options.state() : {};
      // A goodbye sent while the state was gathered must stay the last word.
      if (leaving) return;
      await bus.publish(presenceSubject(group, 'heartbeat'), { ...state, nodeId, bootId, intervalMs });
      if (failing) log.info({ nodeId, group }, `${what} heartbeats are getting out again`);
      failing = false;
    } catch (error) {
      // Logged once per outage: the bus reconnects on its own, and heartbeats resume with it.
      if (!failing) log.warn({ err: error, nodeId, group }, `could not send the ${what} heartbeat`);
      failing = true;
    } finally {
      beating = false;
    }
  };

  const timer = setInterval(() => void beat(), intervalMs);
  timer.unref();
  // A watcher that just started asks instead of waiting for the next beat.
  const probes: Subscription = bus.subscribe(presenceSubject(group, 'probe'), () => void beat());
  const ready = Promise.all([probes.ready, options.after]).then(async () => {
    if (leaving) return;
    started = true;
    await beat();
    log.info({ nodeId, bootId, group, intervalMs }, `${what} announced on the bus`);
  });

  let left: Promise<void> | undefined;
  return {
    nodeId,
    bootId,
    ready,
    goodbye() {
      left ??= (async () => {
        leaving = true;
        clearInterval(timer);
        probes.unsubscribe();
        const goodbye: PresenceGoodbye = { nodeId, bootId };
        try {
          await bus.publish(presenceSubject(group, 'goodbye'), goodbye);
          log.info({ nodeId, group }, `${what} said goodbye`);
        } catch (error) {
          // The watchers forget it after its missed heartbeats instead.
          log.warn({ err: error, nodeId, group }, `could not send the ${what} goodbye`);
        }
      })();
      return left;
    },
  };
}

// Watching.

export type PresenceLeaveCause = 'goodbye' | 'missed' | 'restarted';

export interface PresenceMember<H extends PresenceHeartbeat> {
  /** Its latest heartbeat. */
  heartbeat: H;
  /** performance.now() when it arrived. */
  seenAt: number;
}

export interface WatchPresenceOptions<H extends PresenceHeartbeat> {
  bus: EventBus;
  group: string;
  log: Logger;
  /** What the members are, for logs ("media node", "edge"). */
  what: string;
  /** The heartbeat's schema (presenceHeartbeatSchema, extended); malformed heartbeats are ignored. */
  schema: z.ZodType<H>;
  /** Default PRESENCE_MISSED_HEARTBEATS. */
  missedHeartbeats?: number;
  /** Every heartbeat; `joined` for a member's first one (or its new boot's). */
  onHeartbeat?(heartbeat: H, joined: boolean): void;
  /** A member is gone; with `restarted`, its new boot is a member already. */
  onLeave?(heartbeat: H, cause: PresenceLeaveCause): void;
}

export interface PresenceWatch<H extends PresenceHeartbeat> {
  /** Resolves once heartbeats reach the watcher and the members already running were asked to announce themselves. */
  readonly ready: Promise<void>;
  /** The members not forgotten yet. */
  members(): PresenceMember<H>[];
  /** Whether a member was heard within its expiry, whatever the watcher's own bus did (for placement). */
  fresh(member: PresenceMember<H>): boolean;
  /** Asks every member to announce itself now. */
  probe(): Promise<void>;
  close(): void;
}

export function watchPresence<H extends PresenceHeartbeat>(
  options: WatchPresenceOptions<H>,
): PresenceWatch<H> {
  const { bus, group, what } = options;
  const log = options.log.child({ presence: group });
  const missed = options.missedHeartbeats ?? PRESENCE_MISSED_HEARTBEATS;
  const members = new Map<string, PresenceMember<H>>();
  const watchId = randomBytes(6).toString('hex');
  const expiryOf = (member: PresenceMember<H>) => missed * member.heartbeat.intervalMs;
  let closed = false;

  const call = (name: string, run: () => void) => {
    try {
      run();
    } catch (error) {
      log.error({ err: error }, `a presence ${name} handler threw`);
    }
  };
  const leave = (member: PresenceMember<H>, cause: PresenceLeaveCause) =>
    call('leave', () => options.onLeave?.(member.heartbeat, cause));

  // The watcher's own bus: echoes to itself while it has members to judge.
  let lastEchoAt = Number.NEGATIVE_INFINITY;
  /** Since when echoes came back without a gap: silence before that proves nothing. */
  let bridgedSince = Number.POSITIVE_INFINITY;
  let ticker: ReturnType<typeof setTimeout> | undefined;
  const shortestInterval = () => {
    let shortest = PRESENCE_HEARTBEAT_MS;
    for (const member of members.values()) shortest = Math.min(shortest, member.heartbeat.intervalMs);
    return shortest;
  };
  const tick = () => {
    ticker = undefined;
    if (closed || members.size === 0) return;
    bus.publish(presenceEchoSubject(group, watchId), {}).catch(() => {
      // The bus is down: no echo comes back, so nobody is judged meanwhile.
    });
    ticker = setTimeout(tick, shortestInterval() / 2);
    ticker.unref?.();
  };
  const ensureTicking = () => {
    if (ticker === undefined && !closed) tick();
  };

  /** Forgets the members silent for their expiry while this watcher's bus was working. */
  const sweep = (now: number) => {
    for (const [nodeId, member] of members) {
      const silentSince = Math.max(member.seenAt, bridgedSince);
      if (now - silentSince <= expiryOf(member)) continue;
      members.delete(nodeId);
      log.warn(
        { nodeId, bootId: member.heartbeat.bootId, silentMs: Math.round(now - member.seenAt) },
        `${what} missed its heartbeats; forgetting it`,
      );
      leave(member, 'missed');
    }
  };

  const echoes = bus.subscribe(presenceEchoSubject(group, watchId), () => {
    const now = performance.now();
    // A gap longer than one and a half intervals may have swallowed heartbeats: count afresh.
    if (now - lastEchoAt > 1.5 * shortestInterval()) bridgedSince = now;
    lastEchoAt = now;
    sweep(now);
  });

  // One subscription for heartbeats and goodbyes keeps each member's messages in the order it sent them.
  const subscription = bus.subscribe(presenceOf(group), (payload, subject) => {
    if (closed) return;
    const kind = presenceKindOf(subject);
    if (kind === 'heartbeat') {
      const parsed = options.schema.safeParse(payload);
      if (!parsed.success) {
        log.warn(
          { subject, issue: parsed.error.issues[0]?.message },
          `ignoring a malformed ${what} heartbeat`,
        );
        return;
      }
      const heartbeat = parsed.data;
      const previous = members.get(heartbeat.nodeId);
      members.set(heartbeat.nodeId, { heartbeat, seenAt: performance.now() });
      const restarted = previous !== undefined && previous.heartbeat.bootId !== heartbeat.bootId;
      if (restarted) {
        log.warn(
          { nodeId: heartbeat.nodeId, bootId: heartbeat.bootId, previousBootId: previous.heartbeat.bootId },
          `${what} restarted: forgetting its previous run`,
        );
        leave(previous, 'restarted');
      } else if (!previous) {
        log.info({ nodeId: heartbeat.nodeId, bootId: heartbeat.bootId }, `${what} joined`);
      }
      call('heartbeat', () => options.onHeartbeat?.(heartbeat, !previous || restarted));
      ensureTicking();
    } else if (kind === 'goodbye') {
      const parsed = presenceGoodbyeSchema.safeParse(payload);
      if (!parsed.success) return;
      const member = members.get(parsed.data.nodeId);
      // A late goodbye of a previous boot does not remove the current one.
      if (!member || member.heartbeat.bootId !== parsed.data.bootId) return;
      members.delete(parsed.data.nodeId);
      log.info({ nodeId: parsed.data.nodeId }, `${what} left (goodbye)`);
      leave(member, 'goodbye');
    }
  });

  const probe = async () => {
    try {
      await bus.publish(presenceSubject(group, 'probe'), {});
    } catch (error) {
      // The members' next heartbeats find this watcher anyway.
      log.warn({ err: error }, `could not ask the ${what}s to announce themselves`);
    }
  };

  return {
    ready: Promise.all([subscription.ready, echoes.ready]).then(probe),
    members: () => [...members.values()],
    fresh: (member) => performance.now() - member.seenAt <= expiryOf(member),
    probe,
    close() {
      closed = true;
      if (ticker !== undefined) clearTimeout(ticker);
      ticker = undefined;
      subscription.unsubscribe();
      echoes.unsubscribe();
      members.clear();
    },
  };
}
