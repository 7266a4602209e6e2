/**
 * Acknowledged invalidations on the in-process bus, with real token-cache holders and a member
 * that announces itself but never answers: a broadcast returns once every listed holder applied
 * the change and acknowledged it, stops waiting for a member that leaves presence, and gives up
 * on a silent one after its timeout, logged and counted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ALL_INVALIDATIONS, type Invalidation, TOKEN_CACHE_GROUPS } from '../../common/contracts/index.js';
import { announcePresence, holdTokenCache, metricsRegistry } from '../../common/index.js';
import { MemoryEventBus } from '../../common/ports/index.js';
import { captureLogs } from '../test-harness.js';
import { type InvalidationChange, startInvalidations } from './invalidations.js';

const INTERVAL_MS = 50;
const logs = captureLogs('warn');
const cleanups: Array<() => unknown> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setUp(ackTimeoutMs?: number) {
  const bus = new MemoryEventBus({ log: logs.log });
  const invalidations = startInvalidations({
    bus,
    log: logs.log,
    intervalMs: INTERVAL_MS,
    ...(ackTimeoutMs === undefined ? {} : { ackTimeoutMs }),
  });
  cleanups.push(
    () => bus.close(),
    () => invalidations.close(),
  );
  return { bus, invalidations };
}

function holder(bus: MemoryEventBus, role: 'controlPlane' | 'edge', nodeId: string, applied: string[]) {
  const held = holdTokenCache({
    bus,
    log: logs.log,
    role,
    nodeId,
    intervalMs: INTERVAL_MS,
    apply: (invalidation: Invalidation) => {
      if (invalidation.type === 'sessions-revoked')
        applied.push(`${nodeId}:${invalidation.sessionIds.join(',')}`);
    },
  });
  cleanups.push(() => held.close());
  return held;
}

async function timeouts(role: string): Promise<number> {
  const metric = await metricsRegistry().getSingleMetric('veza_auth_invalidation_ack_timeouts_total')?.get();
  return metric?.values.find((value) => value.labels.role === role)?.value ?? 0;
}

const SESSION_ID = '9d2b1f3e-0000-4000-8000-000000000001';
const revocation: InvalidationChange = {
  type: 'sessions-revoked',
  userId: 7,
  sessionIds: [SESSION_ID],
  reason: 'logout',
};

describe('acknowledged invalidations', () => {
  it('return once every holder has applied the change and acknowledged it', async () => {
    const { bus, invalidations } = setUp();
    const applied: string[] = [];
    const holders = [holder(bus, 'controlPlane', 'cp-1', applied), holder(bus, 'edge', 'edge-1', applied)];
    await Promise.all([invalidations.ready, ...holders.map((held) => held.ready)]);

    const outcome = await invalidations.broadcast(revocation);
    expect(outcome).toEqual({ acknowledged: 2, missing: [] });
    expect(applied.sort()).toEqual([`cp-1:${SESSION_ID}`, `edge-1:${SESSION_ID}`]);
  });

  it('give up on a member that never answers after the timeout, logged and counted', async () => {
    const { bus, invalidations } = setUp(200);
    const ghost = announcePresence({
      bus,
      group: TOKEN_CACHE_GROUPS.edge,
      nodeId: 'ghost-edge',
      intervalMs: INTERVAL_MS,
      log: logs.log,
      what: 'edge token cache',
    });
    cleanups.push(() => ghost.goodbye());
    await Promise.all([invalidations.ready, ghost.ready]);
    const before = await timeouts('edge');

    const started = performance.now();
    const outcome = await invalidations.broadcast(revocation);
    expect(performance.now() - started).toBeGreaterThanOrEqual(200);
    expect(outcome).toEqual({ acknowledged: 0, missing: ['edge:ghost-edge'] });
    expect(await timeouts('edge')).toBe(before + 1);
    expect(
      logs.lines.find(
        (line) =>
          line.msg === 'token caches did not acknowledge an invalidation in time; presumably dead' &&
          JSON.stringify(line.missing) === '["edge:ghost-edge"]',
      ),
    ).toBeDefined();
  });

  it('stop waiting for a member that leaves presence meanwhile', async () => {
    // A timeout far beyond the test's own: only the goodbye can end the wait.
    const { bus, invalidations } = setUp(60_000);
    const ghost = announcePresence({
      bus,
      group: TOKEN_CACHE_GROUPS.controlPlane,
      nodeId: 'leaving-cp',
      intervalMs: INTERVAL_MS,
      log: logs.log,
      what: 'control-plane token cache',
    });
    await Promise.all([invalidations.ready, ghost.ready]);
    // It leaves once the invalidation is out, i.e. while the broadcast waits for it.
    const watcher = bus.subscribe(ALL_INVALIDATIONS, () => void ghost.goodbye());
    cleanups.push(() => watcher.unsubscribe());

    const outcome = await invalidations.broadcast(revocation);
    expect(outcome).toEqual({ acknowledged: 0, missing: [] });
  });
});
