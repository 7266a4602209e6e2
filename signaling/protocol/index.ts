/**
 * The signaling protocol's public surface, shared by the edge and the client library.
 * Browser-safe: it imports zod, type-only mediasoup-client shapes and common/errors.ts only.
 */
export * from './chat.js';
export * from './media.js';
export * from './messages.js';
export * from './parse.js';
