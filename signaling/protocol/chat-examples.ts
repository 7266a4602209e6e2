/** Test support (imported by *.test.ts only): a valid params object for every chat method. */
import type { ChatMethod } from './chat.js';

export const CHAT_PARAM_EXAMPLES: Record<ChatMethod, Record<string, unknown>> = {
  'chat.join': { streamId: 12, afterMessageId: 40, limit: 20 },
  'chat.leave': { roomId: 3 },
  'chat.createRoom': { name: 'Night owls', description: 'late talk', isPrivate: false },
  'chat.send': {
    roomId: 3,
    content: 'hello',
    clientMessageId: 'c-01:a.b_c',
    messageType: 'text',
    metadata: { emoji: ':wave:' },
    replyToId: 40,
  },
  'chat.edit': { messageId: 41, content: 'hello again' },
  'chat.delete': { messageId: 41, reason: 'spam' },
  'chat.history': { roomId: 3, beforeMessageId: 41, limit: 50 },
  'chat.typing': { roomId: 3, typing: false },
  'chat.report': { targetType: 'message', targetId: 41, reason: 'spam', details: 'links' },
  'notifications.list': { page: 1, pageSize: 20, unreadOnly: true },
  'notifications.markRead': { notificationIds: [1, 2] },
  'moderation.queue': { status: 'open', limit: 20, beforeReportId: 9 },
  'moderation.resolve': { reportId: 9, resolution: 'approved', note: 'fine' },
  'moderation.mute': { roomId: 3, userId: 7, durationS: 600, reason: 'cool down' },
  'moderation.unmute': { roomId: 3, userId: 7 },
  'moderation.ban': { roomId: 3, userId: 7, durationS: 0, reason: 'abuse' },
  'moderation.unban': { roomId: 3, userId: 7 },
  'moderation.endStream': { streamId: 12, reason: 'terms_violation' },
  'auth.refresh': { token: 'header.payload.signature' },
};
