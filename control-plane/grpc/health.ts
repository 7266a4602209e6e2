/**
 * grpc.health.v1 of the control plane: a status per service ('' is the whole server), Check,
 * Watch and List. Ours rather than grpc-health-check's HealthImplementation (whose service
 * definition it still uses) for one reason: shutdown. Every control-plane client keeps a Watch
 * stream open per connection (control-plane/client/health-checked.ts), and a server's graceful
 * shutdown waits for every open call; these streams never end by themselves, so closing would
 * always sit out the whole grace period. Here the server ends them once its clients were told
 * NOT_SERVING (`endWatches`).
 */
import { type ServerUnaryCall, type ServerWritableStream, type sendUnaryData, status } from '@grpc/grpc-js';
import { service as healthServiceDefinition } from 'grpc-health-check';

export type ServingStatus = 'SERVING' | 'NOT_SERVING';

export interface HealthControl {
  /** The services with a health status; '' stands for the whole server. */
  readonly services: readonly string[];
  /** Sets one service's status, or every service's (and the server's) when `service` is omitted. */
  set(status: ServingStatus, service?: string): void;
  status(service?: string): ServingStatus | undefined;
}

type HealthRequest = { service: string };
type HealthResponse = { status: ServingStatus | 'SERVICE_UNKNOWN' };
type Watch = ServerWritableStream<HealthRequest, HealthResponse>;

export interface HealthService {
  control: HealthControl;
  definition: typeof healthServiceDefinition;
  handlers: {
    check(
      call: ServerUnaryCall<HealthRequest, HealthResponse>,
      callback: sendUnaryData<HealthResponse>,
    ): void;
    watch(call: Watch): void;
    list(
      call: ServerUnaryCall<unknown, unknown>,
      callback: sendUnaryData<{ statuses: Record<string, HealthResponse> }>,
    ): void;
  };
  /** Open Watch streams. */
  watching(): number;
  /** Ends every open Watch stream (OK); the server is closing, its watchers were told NOT_SERVING. */
  endWatches(): void;
}

export function createHealthService(names: readonly string[]): HealthService {
  const services = ['', ...names];
  const statuses = new Map<string, ServingStatus>(services.map((name) => [name, 'SERVING']));
  const watches = new Map<Watch, string>();
  const control: HealthControl = {
    services,
    set(next, service) {
      for (const name of service === undefined ? services : [service]) {
        if (statuses.get(name) === next) continue;
        statuses.set(name, next);
        for (const [call, watched] of watches) if (watched === name) call.write({ status: next });
      }
    },
    status: (service = '') => statuses.get(service),
  };
  return {
    control,
    definition: healthServiceDefinition,
    handlers: {
      check(call, callback) {
        const current = statuses.get(call.request.service);
        if (current) callback(null, { status: current });
        else
          callback({
            code: status.NOT_FOUND,
            details: `no health status for service "${call.request.service}"`,
          });
      },
      watch(call) {
        const service = call.request.service;
        watches.set(call, service);
        const forget = () => watches.delete(call);
        call.on('cancelled', forget);
        call.on('close', forget);
        call.write({ status: statuses.get(service) ?? 'SERVICE_UNKNOWN' });
      },
      list(_call, callback) {
        callback(null, {
          statuses: Object.fromEntries([...statuses].map(([name, current]) => [name, { status: current }])),
        });
      },
    },
    watching: () => watches.size,
    endWatches() {
      for (const call of [...watches.keys()]) {
        watches.delete(call);
        call.end();
      }
    },
  };
}
