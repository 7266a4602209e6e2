/**
 * Chat rooms and messages (ChatService), wired with moderation and notifications by
 * startChatModule. The bus subjects and payload schemas here are what the edges subscribe to.
 */
export {
  type Chat,
  type ChatRateLimits,
  type ChatReader,
  type ChatUser,
  createChat,
  notSent,
} from './chat.js';
export { CHAT_BURST, CHAT_SUSTAINED, STREAM_BUFFER_LIMIT } from './limits.js';
export { type ChatModule, type ChatModuleDeps, type ChatModuleOptions, startChatModule } from './module.js';
export { type ChatServiceDeps, createChatService } from './service.js';
