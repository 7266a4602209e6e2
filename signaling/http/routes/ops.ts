/** Operations endpoints: Prometheus metrics, liveness and readiness. */

import { UnauthenticatedError, UnavailableError, VezaError } from '../../../common/contracts/index.js';
import {
  type DependencyMonitor,
  dependencyReadiness,
  metricsAccessAllowed,
  renderMetrics,
  reportReadiness,
} from '../../../common/index.js';
import { json, text } from '../reply.js';
import type { RouteRegistrar } from '../server.js';
import type { RouteDeps } from './shared.js';

/** The service the edge cannot work without; readiness follows its gRPC health status. */
export const READINESS_SERVICE = 'veza.auth.AuthService';
const READINESS_DEADLINE_MS = 2_000;

/**
 * Registers the routes and reports the edge's readiness as `veza_ready{endpoint="edge"}`; the
 * returned function stops that report (the edge is closing).
 */
export function registerOpsRoutes(
  routes: RouteRegistrar,
  deps: Pick<RouteDeps, 'controlPlane'> & {
    isClosing(): boolean;
    metricsToken: string | undefined;
    dependencies?: DependencyMonitor;
  },
): () => void {
  routes.route('GET', '/metrics', async (request) => {
    if (!metricsAccessAllowed(request.header('authorization') || undefined, deps.metricsToken))
      throw new UnauthenticatedError('/metrics needs the bearer token configured in METRICS_TOKEN');
    const metrics = await renderMetrics();
    return text(metrics.body, metrics.contentType, 200, { 'cache-control': 'no-store' });
  });

  // Liveness: the event loop answers. Nothing else, so a control-plane outage never restarts edges.
  routes.route('GET', '/healthz', () => json({ status: 'ok' }, 200, { 'cache-control': 'no-store' }));

  routes.route('GET', '/readyz', async (request) => {
    if (deps.isClosing()) throw new UnavailableError('the edge is shutting down');
    let status: string;
    try {
      status = await deps.controlPlane.health(READINESS_SERVICE, {
        requestId: request.requestId,
        signal: request.signal,
        deadlineMs: READINESS_DEADLINE_MS,
      });
    } catch (error) {
      const reason =
        error instanceof VezaError && error.code !== 'internal' ? error.message : 'the control plane failed';
      throw new UnavailableError(`not ready: ${reason}`);
    }
    if (status !== 'SERVING')
      throw new UnavailableError(`control plane reports ${READINESS_SERVICE} ${status}`);
    // The edge's own dependencies (NATS in cluster mode, blob storage), from the last probe.
    const own = deps.dependencies ? dependencyReadiness(deps.dependencies) : { ready: true, checks: {} };
    const checks = { control_plane: status, ...own.checks };
    if (!own.ready) {
      const down = Object.entries(own.checks)
        .filter(([, check]) => check !== 'up' && !check.endsWith('(advisory)'))
        .map(([name, check]) => `${name} ${check}`);
      throw new UnavailableError(`not ready: ${down.join('; ')}`);
    }
    return json({ status: 'ready', checks }, 200, { 'cache-control': 'no-store' });
  });

  return reportReadiness('edge', async () => {
    if (deps.isClosing()) return false;
    const status = await deps.controlPlane.health(READINESS_SERVICE, { deadlineMs: READINESS_DEADLINE_MS });
    return status === 'SERVING' && (!deps.dependencies || dependencyReadiness(deps.dependencies).ready);
  });
}
