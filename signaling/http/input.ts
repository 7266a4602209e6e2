/**
 * Turning request bytes into validated values, with errors that name the problem:
 * malformed JSON says where it broke, a schema failure names the field.
 */
import type { z } from 'zod';
import { InvalidArgumentError } from '../../common/contracts/index.js';
import { getParts } from './uws.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new InvalidArgumentError(`${what} is not valid UTF-8`);
  }
}

export function parseJsonBody(body: Buffer): unknown {
  const text = decodeUtf8(body, 'request body');
  try {
    return JSON.parse(text);
  } catch (error) {
    const reason = error instanceof SyntaxError ? error.message : 'unparseable';
    throw new InvalidArgumentError(`malformed JSON body: ${reason}`);
  }
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let current = input;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

function describe(issue: z.core.$ZodIssue, input: unknown, where: string): { text: string; field?: string } {
  const field = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const names = issue.keys.map((key) => `"${field ? `${field}.` : ''}${key}"`).join(', ');
    return {
      text: `unknown field${issue.keys.length > 1 ? 's' : ''} ${names} in ${where}`,
      field: issue.keys[0],
    };
  }
  if (!field) return { text: `${where}: ${issue.message}` };
  if (issue.code === 'invalid_type' && valueAt(input, issue.path) === undefined) {
    return { text: `missing field "${field}" in ${where}`, field };
  }
  return { text: `invalid field "${field}": ${issue.message}`, field };
}

/** Validates with zod; the error names every bad field (the first is also in `details.field`). */
export function validate<S extends z.ZodType>(
  schema: S,
  input: unknown,
  where = 'request body',
): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const described = result.error.issues.map((issue) => describe(issue, input, where));
  return throwInvalid(described);
}

function throwInvalid(described: Array<{ text: string; field?: string }>): never {
  throw new InvalidArgumentError(
    described.map((d) => d.text).join('; '),
    described.find((d) => d.field)?.field,
  );
}

export interface MultipartPart {
  name: string;
  data: Buffer;
  filename?: string;
  type?: string;
}

/** Splits a multipart/form-data body with uWS's native parser; parts are copied out of the body. */
export function parseMultipart(body: Buffer, contentType: string): MultipartPart[] {
  if (!/;\s*boundary=/i.test(contentType)) {
    throw new InvalidArgumentError('multipart/form-data content type has no boundary parameter');
  }
  const view = body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength) as ArrayBuffer;
  const parts = getParts(view, contentType);
  if (!parts || (parts.length === 0 && body.length > 0)) {
    throw new InvalidArgumentError('malformed multipart/form-data body');
  }
  return parts.map((part) => ({
    name: part.name,
    data: Buffer.from(new Uint8Array(part.data)),
    ...(part.filename === undefined ? {} : { filename: part.filename }),
    ...(part.type === undefined ? {} : { type: part.type }),
  }));
}
