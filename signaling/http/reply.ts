/**
 * What a route handler returns, and the one mapping from errors to HTTP responses:
 * `{"error":{"code","message"}}` with the status from httpStatusOf, Retry-After on 429.
 */
import type { Readable } from 'node:stream';
import {
  type ErrorCode,
  httpStatusOf,
  INTERNAL_MESSAGE,
  toVezaError,
  VezaError,
} from '../../common/contracts/index.js';
import type { Logger } from '../../common/index.js';

export interface StreamBody {
  stream: Readable;
  /** Exact byte count the stream will produce (sent as Content-Length). */
  length: number;
}

export interface HttpReply {
  status: number;
  headers: Record<string, string>;
  body?: string | Buffer | StreamBody;
}

export function json(value: unknown, status = 200, headers: Record<string, string> = {}): HttpReply {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
    body: JSON.stringify(value),
  };
}

export function noContent(headers: Record<string, string> = {}): HttpReply {
  return { status: 204, headers };
}

export function html(markup: string, status = 200, headers: Record<string, string> = {}): HttpReply {
  return { status, headers: { 'content-type': 'text/html; charset=utf-8', ...headers }, body: markup };
}

export function text(
  body: string,
  contentType: string,
  status = 200,
  headers: Record<string, string> = {},
): HttpReply {
  return { status, headers: { 'content-type': contentType, ...headers }, body };
}

/**
 * An error whose HTTP status is not the code's default, for the few HTTP-only cases
 * (405 with Allow, 416 with Content-Range). The body keeps a code from common/errors.
 */
export class HttpStatusError extends VezaError {
  override readonly name = 'HttpStatusError';
  constructor(
    code: ErrorCode,
    message: string,
    readonly status: number,
    readonly headers: Record<string, string> = {},
  ) {
    super(code, message);
  }
}

export interface ErrorBody {
  error: { code: ErrorCode; message: string; field?: string };
}

export function errorBody(error: VezaError): ErrorBody {
  const message = error.code === 'internal' ? INTERNAL_MESSAGE : error.message;
  return {
    error: { code: error.code, message, ...(error.details.field ? { field: error.details.field } : {}) },
  };
}

/** Renders anything thrown; unexpected errors are logged here, once, and shown only as "internal server error". */
export function errorReply(thrown: unknown, log?: Logger): HttpReply {
  const error = toVezaError(thrown);
  if (error.code === 'internal') log?.error({ err: error.cause ?? thrown }, 'request failed');
  const headers: Record<string, string> = { 'cache-control': 'no-store' };
  if (error.details.retryAfterMs !== undefined) {
    headers['retry-after'] = String(Math.max(1, Math.ceil(error.details.retryAfterMs / 1000)));
  }
  if (error instanceof HttpStatusError) {
    return json(errorBody(error), error.status, { ...headers, ...error.headers });
  }
  return json(errorBody(error), httpStatusOf(error.code), headers);
}
