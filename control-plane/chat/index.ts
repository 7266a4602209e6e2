/**
 * Chat rooms and messages (ChatService), wired with moderation and notifications by
 * startChatModule. The bus subjects and payloads edges subscribe to are in common/contracts.
 */
export { type ChatModuleOptions, startChatModule } from './module.js';
export { REPLAY_MESSAGE_LIMIT, replayMessages } from './store.js';
