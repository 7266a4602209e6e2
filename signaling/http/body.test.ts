import { describe, expect, it } from 'vitest';
import { BodyCollector, planBody } from './body.js';

const headers = (contentType: string, contentLength = '', transferEncoding = '') => ({
  contentType,
  contentLength,
  transferEncoding,
});

describe('planBody', () => {
  const spec = { json: 100, multipart: 1_000 };

  it('picks the limit of the content type', () => {
    expect(planBody(spec, headers('application/json; charset=utf-8', '10'))).toEqual({
      kind: 'json',
      limit: 100,
      mediaType: 'application/json',
    });
    expect(planBody(spec, headers('application/merge-patch+json', '10')).kind).toBe('json');
    expect(planBody(spec, headers('multipart/form-data; boundary=x', '', 'chunked'))).toMatchObject({
      kind: 'multipart',
      limit: 1_000,
    });
  });

  it('treats a request without body bytes as no body, whatever its content type', () => {
    expect(planBody(spec, headers('', '')).kind).toBe('none');
    expect(planBody(spec, headers('text/plain', '0')).kind).toBe('none');
  });

  it('refuses a declared length over the limit before reading', () => {
    expect(() => planBody(spec, headers('application/json', '101'))).toThrow(
      'request body too large: the limit for application/json is 100 bytes',
    );
    expect(() => planBody(spec, headers('application/json', '100'))).not.toThrow();
  });

  it('names the accepted types when the content type is wrong', () => {
    expect(() => planBody(spec, headers('text/plain', '3'))).toThrow(
      'unsupported content type "text/plain": expected application/json or multipart/form-data',
    );
    expect(() => planBody({ json: 10 }, headers('', '3'))).toThrow(
      'unsupported content type "(none)": expected application/json',
    );
    expect(() => planBody({}, headers('application/json', '3'))).toThrow(
      'this endpoint takes no request body',
    );
  });

  it('refuses a malformed Content-Length', () => {
    expect(() => planBody(spec, headers('application/json', '1e3'))).toThrow(
      'invalid Content-Length header "1e3"',
    );
  });
});

describe('BodyCollector', () => {
  const chunk = (text: string) => new TextEncoder().encode(text).buffer as ArrayBuffer;

  it('concatenates copies of the chunks', () => {
    const collector = new BodyCollector(10);
    const first = chunk('abc');
    expect(collector.push(first)).toBe(true);
    new Uint8Array(first).fill(0); // uWS reuses chunk memory: the collector must have copied it
    expect(collector.push(chunk('def'))).toBe(true);
    expect(collector.concat().toString()).toBe('abcdef');
  });

  it('stops at the first byte past the limit and drops what it held', () => {
    const collector = new BodyCollector(5);
    expect(collector.push(chunk('abc'))).toBe(true);
    expect(collector.push(chunk('de'))).toBe(true);
    expect(collector.push(chunk('f'))).toBe(false);
    expect(collector.received).toBe(6);
    expect(collector.concat().length).toBe(0);
  });
});
