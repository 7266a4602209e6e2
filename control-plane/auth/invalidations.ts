/**
 * Acknowledged invalidations: how a control plane makes sure that every token cache (each
 * control plane's, each edge's) applied a revocation or a user change before the call that made
 * it returns. A publish alone does not: subscribers apply it when their event loop gets to it.
 *
 * 1. The holders announce themselves with presence (common/presence.ts) in
 *    TOKEN_CACHE_GROUPS; this control plane watches both groups.
 * 2. It publishes the change on `auth.invalidations.<userId>` with an ack subject of its own
 *    (`auth.acks.<bootId>.<n>`; one wildcard subscription for all of them, made at start).
 * 3. Each holder applies the change (refuses the sessions, closes their sockets, drops the user)
 *    and only then publishes `{ nodeId, bootId }` on the ack subject.
 * 4. The call waits until every member it listed at publish time acknowledged, or left presence
 *    (goodbye, missed heartbeats, restart), for at most `ackTimeoutMs`. A member still silent
 *    then is logged and counted (veza_auth_invalidation_ack_timeouts_total) and the call returns:
 *    a live process answers within milliseconds, so it is presumably dead and about to leave
 *    presence; if it is alive after all, its cache entries are reloaded within their maximum
 *    age (token-checks.ts), which bounds the damage.
 *
 * Two start-up rules close the windows presence leaves open. A holder that starts is not yet
 * known to every control plane, so for one heartbeat interval after its first heartbeat it
 * reads through (caches nothing); and a control plane that starts has not heard every holder
 * yet, so an invalidation in its first heartbeat interval waits for that interval to end. Both
 * assume the bus delivers a heartbeat within one interval, as presence does.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type Invalidation,
  invalidationAckPrefix,
  invalidationAckSchema,
  invalidationSubject,
  presenceHeartbeatSchema,
  TOKEN_CACHE_GROUPS,
  type TokenCacheRole,
} from '../../common/contracts/index.js';
import { counter, histogram, type Logger, newBootId, watchPresence } from '../../common/index.js';
import type { EventBus } from '../../common/ports/index.js';

type WithoutAck<T> = T extends unknown ? Omit<T, 'ack'> : never;

/** An invalidation as published, without the ack subject this module adds. */
export type InvalidationChange = WithoutAck<Invalidation>;

export interface InvalidationsOptions {
  bus: EventBus;
  log: Logger;
  /** The holders' heartbeat interval (config.PRESENCE_HEARTBEAT_MS). */
  intervalMs: number;
  /** How long a broadcast waits for a silent member (default: one heartbeat interval). */
  ackTimeoutMs?: number;
}

export interface BroadcastOutcome {
  /** Members that acknowledged. */
  acknowledged: number;
  /** Members that had not acknowledged (nor left) when the wait ended: `<role>:<nodeId>`. */
  missing: string[];
}

export interface Invalidations {
  /** Resolves once acks reach this process and the holders were asked to announce themselves. */
  readonly ready: Promise<void>;
  /** Tells every token cache, and waits for them (see the module comment). Never throws. */
  broadcast(change: InvalidationChange): Promise<BroadcastOutcome>;
  close(): void;
}

const ackTimeouts = () =>
  counter(
    'veza_auth_invalidation_ack_timeouts_total',
    'Token-cache holders that did not acknowledge a revocation or user change in time, by role',
    ['role'],
  );
const acksReceived = () =>
  counter(
    'veza_auth_invalidation_acks_total',
    'Acknowledgements of revocations and user changes received in time from token-cache holders, by role',
    ['role'],
  );
const broadcastDuration = () =>
  histogram(
    'veza_auth_invalidation_duration_seconds',
    'From publishing a revocation or user change to the last acknowledgement (or the timeout)',
    ['type'],
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  );
const publishFailures = () =>
  counter(
    'veza_auth_invalidation_publish_failures_total',
    'Revocations and user changes that could not be published on the bus',
  );

interface Member {
  role: TokenCacheRole;
  nodeId: string;
}

interface Pending {
  waiting: Map<string, Member>;
  acknowledged: number;
  settle(): void;
}

const memberKey = (nodeId: string, bootId: string) => `${nodeId}/${bootId}`;

export function startInvalidations(options: InvalidationsOptions): Invalidations {
  const { bus, intervalMs } = options;
  const log = options.log.child({ component: 'invalidations' });
  const ackTimeoutMs = options.ackTimeoutMs ?? intervalMs;
  const prefix = invalidationAckPrefix(newBootId());
  const pending = new Map<number, Pending>();
  let sequence = 0;

  const stopWaitingFor = (key: string) => {
    for (const broadcast of pending.values()) {
      if (broadcast.waiting.delete(key) && broadcast.waiting.size === 0) broadcast.settle();
    }
  };

  const watches = (Object.keys(TOKEN_CACHE_GROUPS) as TokenCacheRole[]).map((role) => ({
    role,
    watch: watchPresence({
      bus,
      group: TOKEN_CACHE_GROUPS[role],
      log,
      what: role === 'edge' ? 'edge token cache' : 'control-plane token cache',
      schema: presenceHeartbeatSchema,
      // A member that left cannot answer any more: waiting for it would only run into the timeout.
      onLeave: (heartbeat) => stopWaitingFor(memberKey(heartbeat.nodeId, heartbeat.bootId)),
    }),
  }));

  const acks = bus.subscribe(`${prefix}.*`, (payload, subject) => {
    const ack = invalidationAckSchema.safeParse(payload);
    const broadcast = pending.get(Number(subject.slice(prefix.length + 1)));
    if (!ack.success || !broadcast) return;
    const key = memberKey(ack.data.nodeId, ack.data.bootId);
    const member = broadcast.waiting.get(key);
    if (member && broadcast.waiting.delete(key)) {
      broadcast.acknowledged += 1;
      acksReceived().inc({ role: member.role });
      if (broadcast.waiting.size === 0) broadcast.settle();
    }
  });

  // Until one interval after the watches started, a holder may be alive without having been heard.
  let viewCompleteAt = Number.POSITIVE_INFINITY;
  const ready = Promise.all([acks.ready, ...watches.map(({ watch }) => watch.ready)]).then(() => {
    viewCompleteAt = performance.now() + intervalMs;
  });

  const broadcast = async (change: InvalidationChange): Promise<BroadcastOutcome> => {
    await ready;
    const early = viewCompleteAt - performance.now();
    if (early > 0) await sleep(early);
    const started = performance.now();
    const n = ++sequence;
    const waiting = new Map<string, Member>();
    for (const { role, watch } of watches) {
      for (const { heartbeat } of watch.members()) {
        waiting.set(memberKey(heartbeat.nodeId, heartbeat.bootId), { role, nodeId: heartbeat.nodeId });
      }
    }
    let settle = () => {};
    const settled = new Promise<void>((resolve) => {
      settle = resolve;
    });
    const entry: Pending = { waiting, acknowledged: 0, settle };
    pending.set(n, entry);
    let timer: NodeJS.Timeout | undefined;
    try {
      try {
        await bus.publish(invalidationSubject(change.userId), { ...change, ack: `${prefix}.${n}` });
      } catch (error) {
        // The change is stored and stands; the caches catch up within their entries' maximum age.
        publishFailures().inc();
        log.error(
          { err: error, type: change.type, userId: change.userId },
          'could not publish an invalidation',
        );
        return {
          acknowledged: 0,
          missing: [...waiting.values()].map(({ role, nodeId }) => `${role}:${nodeId}`),
        };
      }
      if (waiting.size > 0) {
        await Promise.race([
          settled,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, ackTimeoutMs);
          }),
        ]);
      }
    } finally {
      clearTimeout(timer);
      pending.delete(n);
    }
    const missing = [...waiting.values()];
    for (const member of missing) ackTimeouts().inc({ role: member.role });
    if (missing.length > 0) {
      log.warn(
        {
          type: change.type,
          userId: change.userId,
          missing: missing.map(({ role, nodeId }) => `${role}:${nodeId}`),
          ackTimeoutMs,
        },
        'token caches did not acknowledge an invalidation in time; presumably dead',
      );
    }
    broadcastDuration().observe({ type: change.type }, (performance.now() - started) / 1000);
    return {
      acknowledged: entry.acknowledged,
      missing: missing.map(({ role, nodeId }) => `${role}:${nodeId}`),
    };
  };

  return {
    ready,
    broadcast,
    close() {
      acks.unsubscribe();
      for (const { watch } of watches) watch.close();
      for (const entry of pending.values()) entry.settle();
    },
  };
}
