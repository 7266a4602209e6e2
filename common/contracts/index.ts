/**
 * Everything that crosses a role, defined once: the error codes every wire carries, the bus
 * subjects and payloads (streams, chat, notifications, sessions, uploads, the media node's calls
 * and events, presence), the chat rules, and the mediasoup shapes. Each side parses what it
 * receives with these schemas. See docs/architecture.md.
 *
 * Browser-safe: zod and the generated protobuf types only, so the web app and the client library
 * import it too.
 */
export * from './analytics-events.js';
export * from './analytics-rest.js';
export * from './chat-events.js';
export * from './chat-rules.js';
export * from './errors.js';
export * from './listener-placement.js';
export * from './media-node.js';
export * from './mediasoup.js';
export * from './notification-events.js';
export * from './presence.js';
export * from './recordings.js';
export * from './session-events.js';
export * from './stream-events.js';
export * from './token-caches.js';
export * from './trace-context.js';
export * from './uploads.js';
