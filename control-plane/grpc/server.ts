/**
 * Assembles the gRPC server: the wrapped services, grpc.health.v1 with a status per
 * service, and reflection. Closing is graceful: health turns NOT_SERVING, which clients
 * watching it (control-plane/client/) hear at once and stop sending new calls here; after
 * a short drain, while calls still arriving are served, the health watches end, streams are
 * told to end, in-flight calls get a grace period, then the rest are cut.
 */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from '../../common/index.js';
import { createApiKeyMatcher } from './caller-auth.js';
import type { TokenVerifier } from './context.js';
import { createHealthService, type HealthControl } from './health.js';
import { createReflectionService } from './reflection.js';
import type { ServiceBinding } from './wrap-service.js';

export type { HealthControl, ServingStatus } from './health.js';

export interface GrpcServerOptions {
  host: string;
  /** 0 picks a free port; the bound one is reported back. */
  port: number;
  log: Logger;
  apiKeys: readonly string[];
  verifyToken: TokenVerifier;
  services: readonly ServiceBinding[];
  maxReceiveMessageBytes?: number;
  /** How long close() lets in-flight calls finish before cutting them. */
  shutdownGraceMs?: number;
  /**
   * How long close() keeps taking new calls after turning NOT_SERVING, when clients watch its
   * health: the time their watch needs to hear it and route elsewhere. Default 250 ms.
   */
  shutdownDrainMs?: number;
}

export interface RunningGrpcServer {
  port: number;
  health: HealthControl;
  close(): Promise<void>;
}

const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

function bindAddress(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

export async function startGrpcServer(options: GrpcServerOptions): Promise<RunningGrpcServer> {
  const log = options.log.child({ component: 'grpc' });
  const maxBytes = options.maxReceiveMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const server = new Server({
    'grpc.max_receive_message_length': maxBytes,
    'grpc.max_send_message_length': maxBytes,
  });
  const shutdown = new AbortController();
  const runtime = {
    apiKeys: createApiKeyMatcher(options.apiKeys),
    verifyToken: options.verifyToken,
    log,
    shutdown: shutdown.signal,
  };
  for (const binding of options.services) server.addService(binding.definition, binding.implement(runtime));

  const health = createHealthService(options.services.map((binding) => binding.name));
  server.addService(health.definition, health.handlers);
  createReflectionService().addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      bindAddress(options.host, options.port),
      ServerCredentials.createInsecure(),
      (error, bound) => (error ? reject(error) : resolve(bound)),
    );
  });

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      health.control.set('NOT_SERVING');
      // Watchers move away when they read NOT_SERVING; calls that were already picked for this
      // server still arrive meanwhile and are served. Nobody watching: nobody to wait for.
      if (health.watching() > 0) {
        await new Promise((resolve) => setTimeout(resolve, options.shutdownDrainMs ?? 250));
      }
      health.endWatches();
      shutdown.abort();
      const graceMs = options.shutdownGraceMs ?? 5000;
      const drained = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      if (!drained) {
        log.warn({ graceMs }, 'gRPC calls still running after the grace period; cutting them');
        server.forceShutdown();
      }
    })();
    return closing;
  };

  return { port, health: health.control, close };
}
