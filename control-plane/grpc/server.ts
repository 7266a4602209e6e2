/**
 * Assembles the gRPC server: the wrapped services, grpc.health.v1 with a status per
 * service, and reflection. Closing is graceful: health turns NOT_SERVING, streams are
 * told to end, in-flight calls get a grace period, then the rest are cut.
 */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from '../../common/index.js';
import { createApiKeyMatcher } from './caller-auth.js';
import type { TokenVerifier } from './context.js';
import { createReflectionService } from './reflection.js';
import type { ServiceBinding } from './wrap-service.js';

export type ServingStatus = 'SERVING' | 'NOT_SERVING';

export interface HealthControl {
  /** The services with a health status; '' stands for the whole server. */
  readonly services: readonly string[];
  /** Sets one service's status, or every service's (and the server's) when `service` is omitted. */
  set(status: ServingStatus, service?: string): void;
  status(service?: string): ServingStatus | undefined;
}

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
}

export interface RunningGrpcServer {
  port: number;
  health: HealthControl;
  close(): Promise<void>;
}

const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

function createHealth(names: readonly string[]): {
  implementation: HealthImplementation;
  control: HealthControl;
} {
  const services = ['', ...names];
  const statuses = new Map<string, ServingStatus>(services.map((name) => [name, 'SERVING']));
  const implementation = new HealthImplementation(Object.fromEntries(statuses));
  const control: HealthControl = {
    services,
    set(status, service) {
      for (const name of service === undefined ? services : [service]) {
        statuses.set(name, status);
        implementation.setStatus(name, status);
      }
    },
    status: (service = '') => statuses.get(service),
  };
  return { implementation, control };
}

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

  const health = createHealth(options.services.map((binding) => binding.name));
  health.implementation.addToServer(server);
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
