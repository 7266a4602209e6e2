import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CHAT_NOTIFICATIONS,
  CLOSE_CODES,
  ERROR_REASONS,
  isChatMethod,
  METHODS,
  NOTIFICATIONS,
  PROTOCOL_VERSION,
  parseRequest,
  parseServerFrame,
} from './index.js';

// The media half of the protocol; chat.test.ts covers the chat half.
const MEDIA_METHODS = METHODS.filter((method) => !isChatMethod(method));
const MEDIA_NOTIFICATIONS = NOTIFICATIONS.filter(
  (name) => !(CHAT_NOTIFICATIONS as readonly string[]).includes(name),
);

const fingerprint = { algorithm: 'sha-256', value: Array(32).fill('AB').join(':') };
const opusParameters = {
  codecs: [
    {
      mimeType: 'audio/opus',
      payloadType: 111,
      clockRate: 48000,
      channels: 2,
      parameters: { useinbandfec: 1 },
    },
  ],
  headerExtensions: [{ uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 4 }],
  encodings: [{ ssrc: 1234, dtx: true }],
  rtcp: { cname: 'abc', reducedSize: true },
  mid: '0',
};

const request = (method: string, params: unknown, id: unknown = 7) => JSON.stringify({ id, method, params });

describe('parseRequest', () => {
  it('accepts every method with good params, keeping fields browsers add', () => {
    const good: Record<string, unknown> = {
      join: { streamId: 12, role: 'listener' },
      getRouterRtpCapabilities: {},
      createTransport: { direction: 'recv' },
      connectTransport: {
        transportId: 't1',
        dtlsParameters: { role: 'client', fingerprints: [fingerprint] },
      },
      produce: { transportId: 't1', kind: 'audio', rtpParameters: { ...opusParameters, futureField: true } },
      consume: {
        transportId: 't1',
        rtpCapabilities: {
          codecs: [
            {
              kind: 'audio',
              mimeType: 'audio/opus',
              clockRate: 48000,
              channels: 2,
              preferredPayloadType: 100,
            },
          ],
          headerExtensions: [{ kind: 'audio', uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', preferredId: 1 }],
        },
      },
      pauseProducer: { producerId: 'p1' },
      resumeProducer: { producerId: 'p1' },
      resumeConsumer: { consumerId: 'c1' },
      pauseConsumer: { consumerId: 'c1' },
      restartIce: { transportId: 't1' },
      getStats: {},
      leave: {},
    };
    expect(Object.keys(good).sort()).toEqual([...MEDIA_METHODS].sort());
    for (const [method, params] of Object.entries(good)) {
      const parsed = parseRequest(request(method, params));
      expect(parsed, method).toMatchObject({ ok: true, request: { id: 7, method, params } });
    }
    const produced = parseRequest(request('produce', good.produce));
    expect(
      produced.ok && (produced.request.params as { rtpParameters: object }).rtpParameters,
    ).toHaveProperty('futureField', true);
  });

  it('treats missing params as {} and string ids as ids', () => {
    expect(parseRequest(JSON.stringify({ id: 'a-1', method: 'leave' }))).toEqual({
      ok: true,
      request: { id: 'a-1', method: 'leave', params: {} },
    });
  });

  it.each([
    ['{"id":1,', null, 'invalid_argument', undefined, /^malformed JSON/],
    ['[1,2]', null, 'invalid_argument', undefined, /JSON object/],
    ['"hello"', null, 'invalid_argument', undefined, /JSON object/],
    [JSON.stringify({ method: 'leave' }), null, 'invalid_argument', 'id', /invalid id/],
    [JSON.stringify({ id: -1, method: 'leave' }), null, 'invalid_argument', 'id', /invalid id/],
    [JSON.stringify({ id: 3, params: {} }), 3, 'invalid_argument', 'method', /invalid method/],
    [
      JSON.stringify({ id: 3, method: 'leave', params: [] }),
      3,
      'invalid_argument',
      'params',
      /invalid params/,
    ],
    [request('fly', {}), 7, 'unimplemented', 'method', /unknown method "fly"; this edge speaks join, /],
    [request('constructor', {}), 7, 'unimplemented', 'method', /unknown method/],
    [
      request('join', { streamId: 0, role: 'listener' }),
      7,
      'invalid_argument',
      'params.streamId',
      /streamId/,
    ],
    [
      request('join', { streamId: 1.5, role: 'listener' }),
      7,
      'invalid_argument',
      'params.streamId',
      /streamId/,
    ],
    [request('join', { streamId: 1 }), 7, 'invalid_argument', 'params.role', /role/],
    [
      request('join', { streamId: 1, role: 'listener', x: 1 }),
      7,
      'invalid_argument',
      'params',
      /unknown field\(s\) "x"/,
    ],
    [
      request('createTransport', { direction: 'both' }),
      7,
      'invalid_argument',
      'params.direction',
      /direction/,
    ],
    [
      request('produce', { transportId: 't', kind: 'video', rtpParameters: opusParameters }),
      7,
      'invalid_argument',
      'params.kind',
      /kind/,
    ],
    [
      request('produce', { transportId: 't', kind: 'audio', rtpParameters: { codecs: [] } }),
      7,
      'invalid_argument',
      'params.rtpParameters.codecs',
      /at least one codec/,
    ],
    [
      request('produce', {
        transportId: 't',
        kind: 'audio',
        rtpParameters: { codecs: [{ mimeType: 'opus', payloadType: 111, clockRate: 48000 }] },
      }),
      7,
      'invalid_argument',
      'params.rtpParameters.codecs.0.mimeType',
      /audio\/opus/,
    ],
    [
      request('connectTransport', {
        transportId: 't',
        dtlsParameters: { fingerprints: [{ algorithm: 'sha-256', value: 'zz' }] },
      }),
      7,
      'invalid_argument',
      'params.dtlsParameters.fingerprints.0.value',
      /hex pairs/,
    ],
    [
      request('connectTransport', {
        transportId: 't',
        dtlsParameters: { role: 'boss', fingerprints: [fingerprint] },
      }),
      7,
      'invalid_argument',
      'params.dtlsParameters.role',
      /role/,
    ],
    [
      request('connectTransport', { transportId: '', dtlsParameters: { fingerprints: [fingerprint] } }),
      7,
      'invalid_argument',
      'params.transportId',
      /transportId/,
    ],
  ])('rejects %s', (text, id, code, field, message) => {
    const parsed = parseRequest(text);
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.id).toBe(id);
    expect(parsed.error.code).toBe(code);
    expect(parsed.error.field).toBe(field);
    expect(parsed.error.message).toMatch(message);
  });
});

describe('parseServerFrame', () => {
  it('reads responses, errors and notifications', () => {
    expect(parseServerFrame(JSON.stringify({ id: 1, ok: true, result: {} }))).toEqual({
      kind: 'response',
      frame: { id: 1, ok: true, result: {} },
    });
    expect(
      parseServerFrame(
        JSON.stringify({ id: null, ok: false, error: { code: 'payload_too_large', message: 'too big' } }),
      ),
    ).toMatchObject({
      kind: 'response',
      frame: { id: null, ok: false, error: { code: 'payload_too_large' } },
    });
    expect(
      parseServerFrame(JSON.stringify({ notification: 'listenerCount', data: { streamId: 1, count: 3 } })),
    ).toEqual({
      kind: 'notification',
      frame: { notification: 'listenerCount', data: { streamId: 1, count: 3 } },
    });
  });

  it('ignores notifications and error reasons it does not know, and reports garbage', () => {
    expect(parseServerFrame(JSON.stringify({ notification: 'fromTheFuture', data: {} }))).toEqual({
      kind: 'unknown-notification',
      name: 'fromTheFuture',
    });
    const future = parseServerFrame(
      JSON.stringify({
        id: 2,
        ok: false,
        error: { code: 'unavailable', message: 'x', reason: 'new_reason' },
      }),
    );
    expect(future).toMatchObject({ kind: 'response', frame: { error: { code: 'unavailable' } } });
    expect(future.kind === 'response' && !future.frame.ok && future.frame.error.reason).toBeUndefined();
    expect(parseServerFrame('nope').kind).toBe('invalid');
    // Read without the schema, a notification still needs a name that is a string.
    expect(parseServerFrame(JSON.stringify({ notification: 7, data: {} })).kind).toBe('invalid');
    expect(parseServerFrame(JSON.stringify([{ notification: 'listenerCount' }])).kind).toBe('invalid');
    expect(
      parseServerFrame(JSON.stringify({ id: 1, ok: false, error: { code: 'teapot', message: '' } })).kind,
    ).toBe('invalid');
  });
});

describe('docs/signaling.md', () => {
  const doc = readFileSync(path.resolve(import.meta.dirname, '../../docs/signaling.md'), 'utf8');

  it('documents every media method, notification, error reason and close code of this version', () => {
    expect(doc).toContain(`/ws?v=${PROTOCOL_VERSION}`);
    for (const method of MEDIA_METHODS) expect(doc, method).toContain(`\`${method}\``);
    for (const notification of MEDIA_NOTIFICATIONS)
      expect(doc, notification).toContain(`\`${notification}\``);
    for (const reason of ERROR_REASONS) expect(doc, reason).toContain(`\`${reason}\``);
    for (const code of Object.values(CLOSE_CODES)) expect(doc, String(code)).toContain(String(code));
  });
});
