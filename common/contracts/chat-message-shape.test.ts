/**
 * The StreamMessages item as the seed's clients read it: a Message carries ChatMessage's fields
 * with the same names and numbers (1-9), so bytes written as a Message read back as the same
 * ChatMessage fields, and the event type and the platform additions come after them.
 */
import { describe, expect, it } from 'vitest';
import { ChatMessage, Message } from '../../proto/gen/veza/chat/chat.js';
import { chatMessageOf, toMessage } from './chat-events.js';

const chat: ChatMessage = {
  messageId: 41,
  roomId: 7,
  userId: 3,
  content: 'hello',
  messageType: 'text',
  metadata: Buffer.from('{"a":1}'),
  replyToId: 40,
  createdAt: new Date('2026-01-01T10:00:00.000Z'),
  updatedAt: new Date('2026-01-01T10:00:01.000Z'),
  clientMessageId: 'c-1',
  username: 'ada',
  deleted: false,
};

describe('veza.chat.Message', () => {
  it('puts ChatMessage’s fields 1-9 on the wire where ChatMessage has them', () => {
    const bytes = Message.encode(toMessage('created', chat)).finish();
    const asChat = ChatMessage.decode(bytes);
    const { clientMessageId: _1, username: _2, deleted: _3, ...seedFields } = chat;
    expect({ ...asChat, metadata: Buffer.from(asChat.metadata) }).toMatchObject(seedFields);
  });

  it('keeps the event type and the additions, and converts back', () => {
    const message = Message.decode(Message.encode(toMessage('edited', chat)).finish());
    expect(message.content).toBe('hello');
    expect(message.eventType).toBe('edited');
    expect([message.clientMessageId, message.username, message.deleted]).toEqual(['c-1', 'ada', false]);
    expect(chatMessageOf(message)).toEqual({ ...chat, metadata: message.metadata });
  });
});
