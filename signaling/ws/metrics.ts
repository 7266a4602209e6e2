import { counter, gauge, histogram } from '../../common/index.js';
/** Metrics of the signaling endpoint, on the process registry (common/metrics.ts). */

export const wsConnections = gauge('veza_ws_connections', 'Open signaling WebSocket connections');
export const wsUpgrades = counter('veza_ws_upgrades_total', 'Signaling WebSocket handshakes, by result', [
  'result',
]);
export const wsClosed = counter('veza_ws_closed_total', 'Signaling WebSocket connections closed, by cause', [
  'cause',
]);
export const wsRequests = counter('veza_ws_requests_total', 'Signaling requests, by method and result code', [
  'method',
  'code',
]);
export const wsRequestDuration = histogram(
  'veza_ws_request_duration_seconds',
  'Time to answer a signaling request, by method',
  ['method'],
);
export const wsNotifications = counter(
  'veza_ws_notifications_total',
  'Signaling notifications published (once per topic, not per recipient), by name',
  ['notification'],
);
export const wsGraceStops = counter(
  'veza_ws_grace_stops_total',
  'Streams the edge stopped because the broadcaster did not come back within STREAM_GRACE_S',
);
