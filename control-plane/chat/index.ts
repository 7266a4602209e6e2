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
export {
  ACTIVITY_TYPES,
  type ActivityEvent,
  type ActivityType,
  ALL_ACTIVITY,
  ALL_ROOMS,
  activityEventSchema,
  activitySubject,
  MESSAGE_EVENT_TYPES,
  type MessageEvent,
  type MessageEventType,
  messageEventSchema,
  parseActivityEvent,
  parseMessageEvent,
  roomSubject,
  toActivityEvent,
  toMessageEvent,
} from './events.js';
export {
  CHAT_BURST,
  CHAT_MAX_LENGTH,
  CHAT_SUSTAINED,
  HISTORY_MAX_LIMIT,
  MESSAGE_TYPES,
  METADATA_MAX_BYTES,
  STREAM_BUFFER_LIMIT,
} from './limits.js';
export { type ChatModule, type ChatModuleDeps, type ChatModuleOptions, startChatModule } from './module.js';
export { type ChatServiceDeps, createChatService } from './service.js';
