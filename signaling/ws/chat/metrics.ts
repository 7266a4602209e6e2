import { counter, gauge } from '../../../common/index.js';
/** Metrics of chat delivery on the edge, on the process registry (common/metrics.ts). */

export const chatAckWaits = counter(
  'veza_ws_chat_ack_waits_total',
  'Chat acks that waited for their own message to pass through this edge, by result (delivered, timeout)',
  ['result'],
);
export const chatDeliveries = counter(
  'veza_ws_chat_deliveries_total',
  'Chat frames (messages, edits, deletions) handed to the sockets of a room, one per receiving socket',
);
export const chatSlowConsumers = counter(
  'veza_ws_chat_slow_consumers_total',
  'Chat sockets disconnected because they did not read their notifications',
);
export const chatPaused = counter(
  'veza_ws_chat_paused_total',
  'Times a chat socket was taken off a room because it was behind (it is told the gap once it drains)',
);
export const chatBufferedPeak = gauge(
  'veza_ws_chat_buffered_peak_bytes',
  'The most bytes a chat socket still on its room was seen holding unsent at a room publish, since start',
);
