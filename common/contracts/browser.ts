/**
 * The part of the contracts the browser shares (the web app and the client library import this
 * entry, not index.ts): the error codes, the chat rules and the mediasoup shapes. zod only: no
 * protobuf types, nothing of Node.js.
 */

export * from './analytics-rest.js';
export * from './chat-rules.js';
export * from './errors.js';
export * from './mediasoup.js';
