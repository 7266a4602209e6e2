/**
 * The edge: the HTTP (and, through extensions, WebSocket) front door of Veza Live on
 * uWebSockets.js. It serves the seed's REST flows by calling the control plane over gRPC,
 * serves media objects from BlobStorage, and exposes /metrics, /healthz and /readyz.
 *
 * This file is the folder's public surface. Other modules add routes and WebSocket
 * behaviours through `extensions`, which run before the edge starts listening.
 */

import type { Config, Logger } from '../common/index.js';
import type { BlobStorage } from '../common/ports/index.js';
import type { ControlPlaneClient } from '../control-plane/client/index.js';
import { registerAdminRoutes } from './http/routes/admin.js';
import { registerAuthRoutes } from './http/routes/auth.js';
import { registerJwksRoutes } from './http/routes/jwks.js';
import { registerMediaRoutes } from './http/routes/media.js';
import { registerModerationRoutes } from './http/routes/moderation.js';
import { registerOpsRoutes } from './http/routes/ops.js';
import { registerReplayRoutes } from './http/routes/replays.js';
import { type RouterCapabilitiesProvider, registerStreamRoutes } from './http/routes/streams.js';
import { registerTrackRoutes } from './http/routes/tracks.js';
import { registerUploadRoutes } from './http/routes/uploads.js';
import { registerWebRoutes } from './http/routes/web.js';
import { createHttpServer, type RouteRegistrar } from './http/server.js';
import type { TemplatedApp } from './http/uws.js';

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
// The signaling WebSocket (/ws): add it with `extensions: [signalingExtension({ bus, media })]`.
export {
  busMediaGateway,
  DEFAULT_SIGNALING_LIMITS,
  directMediaGateway,
  type MediaGateway,
  routerCapabilitiesProvider,
  type SignalingLimits,
  type SignalingOptions,
  signalingExtension,
} from './ws/index.js';

export interface EdgeDeps {
  config: Config;
  log: Logger;
  controlPlane: ControlPlaneClient;
  blobs: BlobStorage;
  /** Run in order before listening; each may add routes and WebSocket behaviours. */
  extensions?: readonly EdgeExtension[];
  /** Router RTP capabilities for POST /stream/start; without it the response carries null. */
  routerRtpCapabilities?: RouterCapabilitiesProvider;
  /** How long close() waits for in-flight requests (default 5 s). */
  shutdownGraceMs?: number;
}

/** What an extension gets: our router (limits, errors, logs and metrics included) and the raw uWS app. */
export interface EdgeRegistrar extends RouteRegistrar {
  /** For `app.ws(...)` and `app.publish(...)`; HTTP routes belong on `route()`. */
  readonly app: TemplatedApp;
  readonly config: Config;
  readonly log: Logger;
  readonly controlPlane: ControlPlaneClient;
  readonly blobs: BlobStorage;
  /** Runs when the edge closes, after it stops accepting and before in-flight requests drain. */
  onClose(hook: () => Promise<void> | void): void;
}

export type EdgeExtension = (edge: EdgeRegistrar) => void | Promise<void>;

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

  registerOpsRoutes(server, { controlPlane, isClosing: () => server.closing });
  registerAuthRoutes(server, routeDeps);
  registerAdminRoutes(server, routeDeps);
  registerJwksRoutes(server, routeDeps);
  registerMediaRoutes(server, routeDeps);
  registerStreamRoutes(server, { ...routeDeps, routerRtpCapabilities: deps.routerRtpCapabilities });
  registerModerationRoutes(server, routeDeps);
  registerUploadRoutes(server, routeDeps);
  registerTrackRoutes(server, routeDeps);
  registerReplayRoutes(server, routeDeps);
  registerWebRoutes(server, { log });

  const closeHooks: Array<() => Promise<void> | void> = [];
  const registrar: EdgeRegistrar = {
    app: server.app,
    config,
    log,
    controlPlane,
    blobs,
    route: (method, pattern, handler, options) => server.route(method, pattern, handler, options),
    onClose: (hook) => {
      closeHooks.push(hook);
    },
  };
  for (const extension of deps.extensions ?? []) await extension(registrar);

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
