/** Per-rpc Prometheus metrics: how many calls ended with which status, and how long they took. */
import { status } from '@grpc/grpc-js';
import { counter, histogram } from '../../common/index.js';

const requests = () =>
  counter('veza_grpc_requests_total', 'gRPC calls handled, by method and status code', ['method', 'code']);
const duration = () =>
  histogram(
    'veza_grpc_request_duration_seconds',
    'gRPC call duration in seconds (streams: until they end), by method and status code',
    ['method', 'code'],
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 600],
  );

/** The status name as clients and dashboards know it: OK, UNAUTHENTICATED, ... */
export function statusName(code: status): string {
  return status[code] ?? String(code);
}

export function recordCall(method: string, code: status, seconds: number): void {
  const labels = { method, code: statusName(code) };
  requests().inc(labels);
  duration().observe(labels, seconds);
}
