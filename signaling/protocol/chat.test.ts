import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHAT_PARAM_EXAMPLES } from './chat-examples.js';
import {
  CHAT_MAX_LENGTH,
  CHAT_METHODS,
  CHAT_NOTIFICATIONS,
  ERROR_REASONS,
  NOTIFICATIONS,
  parseRequest,
} from './index.js';

const request = (method: string, params: unknown) => JSON.stringify({ id: 'c1', method, params });

describe('chat methods', () => {
  it('has an example for every method and lists its notifications with the others', () => {
    expect(Object.keys(CHAT_PARAM_EXAMPLES).sort()).toEqual([...CHAT_METHODS].sort());
    for (const name of CHAT_NOTIFICATIONS) expect(NOTIFICATIONS).toContain(name);
  });

  it('accepts every method with good params', () => {
    for (const [method, params] of Object.entries(CHAT_PARAM_EXAMPLES)) {
      expect(parseRequest(request(method, params)), method).toMatchObject({
        ok: true,
        request: { id: 'c1', method, params },
      });
    }
  });

  it('is documented in docs/signaling.md: every method, notification and error reason', () => {
    const doc = readFileSync(path.resolve(import.meta.dirname, '../../docs/signaling.md'), 'utf8');
    for (const method of CHAT_METHODS) expect(doc, method).toContain(`\`${method}\``);
    for (const name of CHAT_NOTIFICATIONS) expect(doc, name).toContain(`\`${name}\``);
    for (const reason of ERROR_REASONS) expect(doc, reason).toContain(`\`${reason}\``);
  });

  it('accepts the limits exactly: 1000 characters, emoji counted as one', () => {
    const at = parseRequest(
      request('chat.send', { roomId: 1, content: '😀'.repeat(CHAT_MAX_LENGTH), clientMessageId: 'a' }),
    );
    expect(at.ok).toBe(true);
    const trimmed = parseRequest(
      request('chat.send', {
        roomId: 1,
        content: `  ${'a'.repeat(CHAT_MAX_LENGTH)}  `,
        clientMessageId: 'a',
      }),
    );
    expect(trimmed.ok).toBe(true);
  });

  it.each([
    ['chat.join', {}, 'params.roomId', /roomId or streamId/],
    ['chat.join', { roomId: 1, streamId: 2 }, 'params.roomId', /roomId or streamId/],
    [
      'chat.send',
      { roomId: 1, content: 'a'.repeat(1001), clientMessageId: 'a' },
      'params.content',
      /at most 1000/,
    ],
    ['chat.send', { roomId: 1, content: '\n ', clientMessageId: 'a' }, 'params.content', /required/],
    [
      'chat.send',
      { roomId: 1, content: 'x', clientMessageId: 'x'.repeat(65) },
      'params.clientMessageId',
      /64/,
    ],
    [
      'chat.send',
      { roomId: 1, content: 'x', clientMessageId: 'a', metadata: { big: 'x'.repeat(5000) } },
      'params.metadata',
      /4096 bytes/,
    ],
    [
      'chat.send',
      { roomId: 1, content: 'x', clientMessageId: 'a', metadata: [1] },
      'params.metadata',
      /record|object/,
    ],
    ['chat.history', { roomId: 1, limit: 101 }, 'params.limit', /100/],
    ['chat.report', { targetType: 'room', targetId: 1, reason: 'x' }, 'params.targetType', /targetType/],
    ['notifications.markRead', {}, 'params.notificationIds', /notificationIds or all/],
    ['moderation.resolve', { reportId: 1, resolution: 'ignored' }, 'params.resolution', /resolution/],
    ['moderation.endStream', { streamId: 1, reason: 'Bad Reason' }, 'params.reason', /lowercase token/],
  ])('rejects %s %j naming %s', (method, params, field, message) => {
    const parsed = parseRequest(request(method, params));
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.id).toBe('c1');
    expect(parsed.error).toMatchObject({ code: 'invalid_argument', field });
    expect(parsed.error.message).toMatch(message);
  });
});
