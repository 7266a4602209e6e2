/**
 * Dependency probes against a real TCP server that goes away and comes back: the monitor reports
 * it down with the reason, in the gauge and to its listeners, and up again once it answers; a
 * probe that hangs counts as down after the timeout; readiness is decided from the last probe.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type DependencyMonitor, dependencyReadiness, startDependencyMonitor } from './dependency-health.js';
import { createLogger } from './log.js';
import { metricsRegistry } from './metrics.js';

const log = createLogger({ level: 'silent' });

async function upGauge(dependency: string): Promise<number | undefined> {
  const data = await metricsRegistry().getSingleMetric('veza_dependency_up')?.get();
  return data?.values.find((value) => value.labels.dependency === dependency)?.value;
}

function listen(server: net.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

function connects(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
  });
}

const monitors: DependencyMonitor[] = [];
afterEach(() => {
  for (const monitor of monitors.splice(0)) monitor.close();
});

describe('startDependencyMonitor', () => {
  it('reports a dependency down with its reason while it is gone, and up when it is back', async () => {
    const sockets = new Set<net.Socket>();
    let server = net.createServer((socket) => sockets.add(socket));
    const port = await listen(server);
    const changes: Array<[string, boolean, string | null]> = [];
    const monitor = startDependencyMonitor({
      probes: [{ name: 'redis', check: () => connects(port) }],
      intervalMs: 50,
      timeoutMs: 500,
      log,
    });
    monitors.push(monitor);
    monitor.onChange((name, status) => changes.push([name, status.up, status.reason]));
    await monitor.ready;
    expect(monitor.allUp()).toBe(true);
    expect(await upGauge('redis')).toBe(1);
    expect(dependencyReadiness(monitor)).toEqual({ ready: true, checks: { redis: 'up' } });

    await new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await expect.poll(() => monitor.allUp(), { timeout: 3000, interval: 20 }).toBe(false);
    expect(monitor.status('redis')?.reason).toMatch(/ECONNREFUSED/);
    expect(await upGauge('redis')).toBe(0);
    const readiness = dependencyReadiness(monitor);
    expect(readiness.ready).toBe(false);
    expect(readiness.checks.redis).toMatch(/^down: .*ECONNREFUSED/);

    server = net.createServer();
    await listen(server, port);
    try {
      await expect.poll(() => monitor.allUp(), { timeout: 3000, interval: 20 }).toBe(true);
      expect(await upGauge('redis')).toBe(1);
      // The first probe's result, then one change each way (repeated probes are not changes).
      expect(changes.map(([name, up]) => [name, up])).toEqual([
        ['redis', true],
        ['redis', false],
        ['redis', true],
      ]);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('counts a probe that does not answer within the timeout as down', async () => {
    const monitor = startDependencyMonitor({
      probes: [{ name: 'nats', check: () => new Promise(() => {}) }],
      intervalMs: 1000,
      timeoutMs: 30,
      log,
    });
    monitors.push(monitor);
    await monitor.ready;
    expect(monitor.status('nats')).toMatchObject({ up: false, reason: 'no answer within 30 ms' });
    // A dependency this process does not probe does not hold readiness back.
    expect(monitor.allUp(['postgres'])).toBe(true);
    expect(monitor.allUp(['nats', 'postgres'])).toBe(false);
  });

  it('takes probes added later; an advisory one is reported but does not hold readiness back', async () => {
    const monitor = startDependencyMonitor({
      probes: [{ name: 'postgres', check: async () => {} }],
      intervalMs: 1000,
      timeoutMs: 100,
      log,
    });
    monitors.push(monitor);
    await monitor.ready;
    const changed = new Promise<void>((resolve) =>
      monitor.onChange((name) => name === 'media-registry' && resolve()),
    );
    monitor.add({
      name: 'media-registry',
      advisory: true,
      check: () => Promise.reject(new Error('no media node has announced itself')),
    });
    await changed;
    expect(monitor.names).toEqual(['postgres', 'media-registry']);
    expect(monitor.required).toEqual(['postgres']);
    expect(monitor.allUp()).toBe(true);
    expect(monitor.allUp(['postgres', 'media-registry'])).toBe(false);
    expect(dependencyReadiness(monitor)).toEqual({
      ready: true,
      checks: { postgres: 'up', 'media-registry': 'down: no media node has announced itself (advisory)' },
    });
    expect(() => monitor.add({ name: 'postgres', check: async () => {} })).toThrow(/registered already/);
  });

  it('keeps credentials of a URL in an error out of the reason', async () => {
    const monitor = startDependencyMonitor({
      probes: [
        {
          name: 'postgres',
          check: () => Promise.reject(new Error('cannot reach postgres://veza:s3cret@db:5432/veza')),
        },
      ],
      intervalMs: 1000,
      timeoutMs: 100,
      log,
    });
    monitors.push(monitor);
    await monitor.ready;
    expect(monitor.status('postgres')?.reason).toBe('cannot reach <url>');
  });
});
