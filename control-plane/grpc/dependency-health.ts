/**
 * grpc.health.v1 that means something: each service is SERVING only while the dependencies it
 * needs answer their probes (common/dependency-health.ts), and '' (the whole server) only while
 * all of them do. A client that routes by health (the edge's readiness, a load balancer) then
 * stops sending work that would fail, and sends it again once the dependency is back.
 */
import type { DependencyMonitor, DependencyName, Logger } from '../../common/index.js';
import type { HealthControl } from './server.js';

/** What each service cannot work without; a dependency this process does not probe is ignored. */
export const SERVICE_DEPENDENCIES: Readonly<Record<string, readonly DependencyName[]>> = {
  // Logins and token checks: users (PostgreSQL), sessions and rate limits (Redis), invalidations (NATS).
  'veza.auth.AuthService': ['postgres', 'redis', 'nats'],
  'veza.chat.ChatService': ['postgres', 'redis', 'nats'],
  // Going live places the stream on a media node; uploads stage into blob storage.
  'veza.stream.StreamService': ['postgres', 'nats', 'blob-storage', 'media-registry'],
  'veza.analytics.AnalyticsService': ['postgres'],
  'veza.notification.NotificationService': ['postgres', 'nats'],
};

/**
 * Keeps `health` in step with `monitor` until the returned stop() (called when the server starts
 * closing, which then sets everything NOT_SERVING for good).
 */
export function followDependencies(
  health: HealthControl,
  monitor: DependencyMonitor,
  log: Logger,
): () => void {
  let stopped = false;
  const apply = () => {
    if (stopped) return;
    for (const service of health.services) {
      // The whole server ('') follows what the process needs; an advisory dependency (no media node
      // live) turns only the services that need it NOT_SERVING.
      const needs = service === '' ? monitor.required : (SERVICE_DEPENDENCIES[service] ?? monitor.required);
      const next = monitor.allUp(needs) ? 'SERVING' : 'NOT_SERVING';
      if (health.status(service) === next) continue;
      health.set(next, service);
      const down = needs.filter((name) => monitor.status(name)?.up === false);
      log.info({ service: service || '(server)', status: next, down }, 'grpc health status changed');
    }
  };
  monitor.onChange(apply);
  apply();
  return () => {
    stopped = true;
  };
}
