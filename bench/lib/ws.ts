/**
 * A WHATWG WebSocket for Node 20 (no global one without a flag). `ws` ships with our
 * uWebSockets.js package; signaling/client/testing/node.ts does the same, but importing it
 * would load @roamhq/wrtc into every load-generator process.
 */
import { createRequire } from 'node:module';
import type { WebSocketConstructor } from '../../signaling/client/index.js';

export function nodeWebSocket(): WebSocketConstructor {
  const globalWs = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  return globalWs ?? (createRequire(import.meta.url)('ws') as WebSocketConstructor);
}
