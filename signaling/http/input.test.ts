import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { InvalidArgumentError } from '../../common/contracts/index.js';
import { parseJsonBody, parseMultipart, validate } from './input.js';

function caught(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (error) {
    if (error instanceof InvalidArgumentError) return error;
    throw error;
  }
  throw new Error('expected an InvalidArgumentError');
}

describe('parseJsonBody', () => {
  it('parses JSON', () => {
    expect(parseJsonBody(Buffer.from('{"a":1}'))).toEqual({ a: 1 });
  });

  it('says where malformed JSON broke', () => {
    const error = caught(() => parseJsonBody(Buffer.from('{"a":')));
    expect(error.message).toMatch(/^malformed JSON body: /);
    expect(error.message.length).toBeGreaterThan('malformed JSON body: '.length);
  });

  it('refuses bytes that are not UTF-8', () => {
    expect(caught(() => parseJsonBody(Buffer.from([0x7b, 0xff, 0x7d]))).message).toBe(
      'request body is not valid UTF-8',
    );
  });
});

describe('validate', () => {
  const schema = z.strictObject({
    email: z.email({ error: 'must be a valid email address' }),
    password: z.string(),
    age: z.number().int().optional(),
    profile: z.object({ bio: z.string() }).optional(),
  });

  it('returns the parsed value', () => {
    expect(validate(schema, { email: 'a@b.co', password: 'x' })).toEqual({ email: 'a@b.co', password: 'x' });
  });

  it('names missing fields', () => {
    const error = caught(() => validate(schema, { password: 'x' }));
    expect(error.message).toBe('missing field "email" in request body');
    expect(error.details.field).toBe('email');
  });

  it('names invalid fields with the reason', () => {
    const error = caught(() => validate(schema, { email: 'nope', password: 'x' }));
    expect(error.message).toBe('invalid field "email": must be a valid email address');
    expect(error.details.field).toBe('email');
  });

  it('names nested fields with a dotted path', () => {
    const error = caught(() => validate(schema, { email: 'a@b.co', password: 'x', profile: { bio: 3 } }));
    expect(error.message).toMatch(/^invalid field "profile.bio": /);
    expect(error.details.field).toBe('profile.bio');
  });

  it('names unknown fields', () => {
    const error = caught(() => validate(schema, { email: 'a@b.co', password: 'x', pasword: 'y' }));
    expect(error.message).toBe('unknown field "pasword" in request body');
  });

  it('lists every problem', () => {
    const error = caught(() => validate(schema, {}));
    expect(error.message).toBe(
      'missing field "email" in request body; missing field "password" in request body',
    );
  });

  it('explains a body of the wrong shape', () => {
    expect(caught(() => validate(schema, [])).message).toBe(
      'request body: Invalid input: expected object, received array',
    );
  });
});

describe('parseMultipart', () => {
  async function encode(form: FormData) {
    const request = new Request('http://localhost/', { method: 'POST', body: form });
    return {
      contentType: request.headers.get('content-type') ?? '',
      body: Buffer.from(await request.arrayBuffer()),
    };
  }

  it('splits text fields and files', async () => {
    const form = new FormData();
    form.append('display_name', 'Zoë');
    form.append('avatar', new Blob([new Uint8Array([1, 2, 3])], { type: 'image/png' }), 'a.png');
    const { contentType, body } = await encode(form);
    const parts = parseMultipart(body, contentType);
    expect(parts).toEqual([
      { name: 'display_name', data: Buffer.from('Zoë') },
      { name: 'avatar', data: Buffer.from([1, 2, 3]), filename: 'a.png', type: 'image/png' },
    ]);
  });

  it('refuses a content type without a boundary and a body that is not multipart', async () => {
    const form = new FormData();
    form.append('a', 'b');
    const { body, contentType } = await encode(form);
    expect(caught(() => parseMultipart(body, 'multipart/form-data')).message).toBe(
      'multipart/form-data content type has no boundary parameter',
    );
    expect(caught(() => parseMultipart(Buffer.from('hello'), contentType)).message).toBe(
      'malformed multipart/form-data body',
    );
  });
});
