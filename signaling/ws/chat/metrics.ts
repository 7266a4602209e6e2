import { counter } from '../../../common/index.js';
/** Metrics of chat delivery on the edge, on the process registry (common/metrics.ts). */

export const chatAckWaits = counter(
  'veza_ws_chat_ack_waits_total',
  'Chat acks that waited for their own message to pass through this edge, by result (delivered, timeout)',
  ['result'],
);
export const chatSlowConsumers = counter(
  'veza_ws_chat_slow_consumers_total',
  'Chat sockets disconnected because they did not read their room or notification messages',
);
