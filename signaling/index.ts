/**
 * The edge: the HTTP and WebSocket front door of Veza Live on uWebSockets.js. It serves the
 * seed's REST flows by calling the control plane over gRPC, serves media objects from
 * BlobStorage, exposes /metrics, /healthz and /readyz, and, given `signaling`, the
 * signaling WebSocket (/ws).
 *
 * This file is the folder's public surface.
 */

import type { Config, DependencyMonitor, Logger } from '../common/index.js';
import type { BlobStorage } from '../common/ports/index.js';
import type { ControlPlaneClient } from '../control-plane/client/index.js';
import { registerAdminRoutes } from './http/routes/admin.js';
import { registerAnalyticsRoutes } from './http/routes/analytics.js';
import { registerAuthRoutes } from './http/routes/auth.js';
import { registerFollowRoutes } from './http/routes/follows.js';
import { registerJwksRoutes } from './http/routes/jwks.js';
import { registerMediaRoutes } from './http/routes/media.js';
import { registerModerationRoutes } from './http/routes/moderation.js';
import { registerOpsRoutes } from './http/routes/ops.js';
import { type RouterCapabilitiesProvider, registerStreamRoutes } from './http/routes/streams.js';
import { registerTrackRoutes } from './http/routes/tracks.js';
import { registerUploadRoutes } from './http/routes/uploads.js';
import { registerWebRoutes } from './http/routes/web.js';
import { createHttpServer } from './http/server.js';
import type { TemplatedApp } from './http/uws.js';
import { registerSignaling, type SignalingOptions } from './ws/index.js';

export type { BodySpec } from './http/body.js';
export type { EdgeRequest, RouteHandler, RouteOptions } from './http/context.js';
export type { MultipartPart } from './http/input.js';
export { validate } from './http/input.js';
export {
  errorBody,
  errorReply,
  type HttpReply,
  HttpStatusError,
  html,
  json,
  noContent,
  text,
} from './http/reply.js';
export type { HttpMethod } from './http/router.js';
export type { RouterCapabilitiesProvider } from './http/routes/streams.js';
export type { RouteRegistrar } from './http/server.js';
export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, WebSocketBehavior } from './http/uws.js';
// The signaling WebSocket (/ws): startEdge serves it when given `signaling: { bus, media }`.
export {
  busMediaGateway,
  DEFAULT_SIGNALING_LIMITS,
  directMediaGateway,
  type MediaGateway,
  routerCapabilitiesProvider,
  type SignalingLimits,
  type SignalingOptions,
} from './ws/index.js';

export interface EdgeDeps {
  config: Config;
  log: Logger;
  controlPlane: ControlPlaneClient;
  blobs: BlobStorage;
  /** The signaling WebSocket (/ws); without it the edge serves the REST API only. */
  signaling?: SignalingOptions;
  /** This process's dependency probes; /readyz is 503 while one the edge needs is down. */
  dependencies?: DependencyMonitor;
  /** Router RTP capabilities for POST /stream/start; without it the response carries null. */
  routerRtpCapabilities?: RouterCapabilitiesProvider;
  /** How long close() waits for in-flight requests (default 5 s). */
  shutdownGraceMs?: number;
}

export interface Edge {
  /** The bound port (the real one when HTTP_PORT is 0). */
  port: number;
  app: TemplatedApp;
  close(): Promise<void>;
}

export async function startEdge(deps: EdgeDeps): Promise<Edge> {
  const { config, controlPlane, blobs } = deps;
  const log = deps.log.child({ component: 'edge' });
  const server = createHttpServer({ log });
  const routeDeps = { config, log, controlPlane, blobs };

  const stopReadinessReport = registerOpsRoutes(server, {
    controlPlane,
    isClosing: () => server.closing,
    metricsToken: config.METRICS_TOKEN,
    ...(deps.dependencies ? { dependencies: deps.dependencies } : {}),
  });
  registerAuthRoutes(server, routeDeps);
  registerAdminRoutes(server, routeDeps);
  registerJwksRoutes(server, routeDeps);
  registerMediaRoutes(server, routeDeps);
  registerStreamRoutes(server, { ...routeDeps, routerRtpCapabilities: deps.routerRtpCapabilities });
  registerModerationRoutes(server, routeDeps);
  registerUploadRoutes(server, routeDeps);
  registerTrackRoutes(server, routeDeps);
  registerAnalyticsRoutes(server, routeDeps);
  registerFollowRoutes(server, routeDeps);
  registerWebRoutes(server, { log });

  // Close hooks run after the edge stops accepting and before in-flight requests drain.
  const closeHooks: Array<() => Promise<void> | void> = [stopReadinessReport];
  if (deps.signaling) {
    await registerSignaling(
      { app: server.app, config, log, controlPlane, onClose: (hook) => closeHooks.push(hook) },
      deps.signaling,
    );
  }

  const port = await server.listen(config.HTTP_HOST, config.HTTP_PORT);
  let closed: Promise<void> | null = null;
  return {
    port,
    app: server.app,
    close() {
      closed ??= server.close({
        ...(deps.shutdownGraceMs === undefined ? {} : { graceMs: deps.shutdownGraceMs }),
        beforeDrain: async () => {
          for (const hook of closeHooks) {
            try {
              await hook();
            } catch (error) {
              log.error({ err: error }, 'edge close hook failed');
            }
          }
        },
      });
      return closed;
    },
  };
}
