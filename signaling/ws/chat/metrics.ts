import { counter, gauge, histogram, STEP_BUCKETS_S } from '../../../common/index.js';
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
  'The most bytes a chat socket still on its room was seen holding unsent at a check of its room (before a publish that could put a socket over the pause limit), since start',
);
/**
 * Where a chat.send's time goes on the edge, from the frame read to the ack written. With the
 * control plane's veza_chat_send_stage_seconds it splits an ack (bench/chat reads both).
 */
export const chatSendSteps = histogram(
  'veza_ws_chat_send_step_seconds',
  "A chat.send on the edge, by step: validate (decode and schema check), queue (behind the connection's earlier requests), control_plane (SendMessage as the edge sees it), broadcast (waiting for its own message to pass this edge), total (frame read to ack written)",
  ['step'],
  STEP_BUCKETS_S,
);
