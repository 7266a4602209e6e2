import { counter, histogram } from '../../common/index.js';
/** Edge request metrics, labelled by route pattern (never the raw path, which is unbounded). */

export const LABELS = ['method', 'route', 'status'] as const;

export const httpRequests = counter('veza_http_requests_total', 'HTTP requests handled by the edge', LABELS);

export const httpDuration = histogram(
  'veza_http_request_duration_seconds',
  'Time from request to the last byte of the response',
  LABELS,
);

/** Route label for requests no route matched, so scanners cannot create series. */
export const UNMATCHED_ROUTE = 'unmatched';
