import { describe, expect, it } from 'vitest';
import {
  AlreadyExistsError,
  InvalidArgumentError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitedError,
  UnauthenticatedError,
} from '../../common/contracts/index.js';
import { createLogger } from '../../common/index.js';
import { errorReply, HttpStatusError, json } from './reply.js';

const parse = (body: unknown) => JSON.parse(String(body));

describe('errorReply', () => {
  it.each([
    [new InvalidArgumentError('bad field', 'email'), 400, 'invalid_argument'],
    [new UnauthenticatedError('invalid token: expired'), 401, 'unauthenticated'],
    [new PermissionDeniedError('admins only'), 403, 'permission_denied'],
    [new NotFoundError('no such user'), 404, 'not_found'],
    [new AlreadyExistsError('email already registered', 'email'), 409, 'already_exists'],
    [new PayloadTooLargeError('too big'), 413, 'payload_too_large'],
  ])('renders %s as %d', (error, status, code) => {
    const reply = errorReply(error);
    expect(reply.status).toBe(status);
    expect(reply.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(parse(reply.body).error).toMatchObject({ code, message: error.message });
  });

  it('includes the field when the error names one', () => {
    expect(parse(errorReply(new InvalidArgumentError('bad', 'email')).body)).toEqual({
      error: { code: 'invalid_argument', message: 'bad', field: 'email' },
    });
  });

  it('sets Retry-After in whole seconds, at least 1, on 429', () => {
    const reply = errorReply(new RateLimitedError('too many logins', 1_200));
    expect(reply.status).toBe(429);
    expect(reply.headers['retry-after']).toBe('2');
    expect(errorReply(new RateLimitedError('slow down', 10)).headers['retry-after']).toBe('1');
  });

  it('hides unknown errors behind "internal server error" and logs them', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'error' });
    const captured = log.child({}, { level: 'error' });
    captured.error = ((obj: unknown, msg?: string) => {
      lines.push(`${msg} ${String((obj as { err: Error }).err.message)}`);
    }) as typeof captured.error;
    const reply = errorReply(new Error('connection to 10.0.0.3:5432 refused'), captured);
    expect(reply.status).toBe(500);
    expect(parse(reply.body)).toEqual({ error: { code: 'internal', message: 'internal server error' } });
    expect(lines).toEqual(['request failed connection to 10.0.0.3:5432 refused']);
  });

  it('keeps HTTP-only statuses and headers of HttpStatusError', () => {
    const reply = errorReply(
      new HttpStatusError('not_found', 'method PUT not allowed', 405, { allow: 'GET' }),
    );
    expect(reply.status).toBe(405);
    expect(reply.headers.allow).toBe('GET');
    expect(parse(reply.body).error.code).toBe('not_found');
  });
});

describe('json', () => {
  it('serialises with the JSON content type', () => {
    expect(json({ a: 1 }, 201, { 'x-y': 'z' })).toEqual({
      status: 201,
      headers: { 'content-type': 'application/json; charset=utf-8', 'x-y': 'z' },
      body: '{"a":1}',
    });
  });
});
