/**
 * Chat, notifications and moderation on the signaling WebSocket: the per-node delivery hub
 * (bus subjects to uWS topics) and the per-connection session answering the chat methods.
 * The protocol is in ../../protocol/chat.ts; the control plane's contract in
 * control-plane/chat/README.md.
 */
export { ChatHub, type ChatHubOptions, type ChatMember, roomTopic, userTopic } from './hub.js';
export { chatSendSteps } from './metrics.js';
export { ChatSession, type ChatSessionOptions, type ChatSocket } from './session.js';
export type { ChatRequests } from './types.js';
