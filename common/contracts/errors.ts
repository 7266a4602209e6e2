/**
 * The one error hierarchy of Veza Live.
 *
 * Every layer throws a VezaError (or lets an unknown error become `internal`). Each
 * transport maps it exactly once: to an HTTP status in the edge, to a gRPC status in
 * the control plane, to an error frame on the WebSocket. The `code` is the stable,
 * machine-readable part; the `message` names what was wrong for a human.
 */

export const ERROR_CODES = [
  'invalid_argument',
  'unauthenticated',
  'permission_denied',
  'not_found',
  'already_exists',
  'failed_precondition',
  'payload_too_large',
  'resource_exhausted',
  'unavailable',
  'unimplemented',
  'internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(value: string): value is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(value);
}

export interface ErrorDetails {
  /** The input field the error is about, when there is one. */
  field?: string;
  /** For rate limits: how long to wait before trying again. */
  retryAfterMs?: number;
  /**
   * A stable token for a condition the caller acts on where the code alone is too coarse (e.g. the
   * media node's MEDIA_FAILURE): callers branch on it, never on the message text.
   */
  reason?: string;
}

export class VezaError extends Error {
  override readonly name: string = 'VezaError';
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.details = details;
  }
}

export class InvalidArgumentError extends VezaError {
  override readonly name = 'InvalidArgumentError';
  constructor(message: string, field?: string) {
    super('invalid_argument', message, field === undefined ? {} : { field });
  }
}

export class UnauthenticatedError extends VezaError {
  override readonly name = 'UnauthenticatedError';
  constructor(message = 'authentication required') {
    super('unauthenticated', message);
  }
}

export class PermissionDeniedError extends VezaError {
  override readonly name = 'PermissionDeniedError';
  constructor(message = 'forbidden') {
    super('permission_denied', message);
  }
}

export class NotFoundError extends VezaError {
  override readonly name = 'NotFoundError';
  constructor(message: string) {
    super('not_found', message);
  }
}

export class AlreadyExistsError extends VezaError {
  override readonly name = 'AlreadyExistsError';
  constructor(message: string, field?: string) {
    super('already_exists', message, field === undefined ? {} : { field });
  }
}

export class FailedPreconditionError extends VezaError {
  override readonly name = 'FailedPreconditionError';
  constructor(message: string, reason?: string) {
    super('failed_precondition', message, reason === undefined ? {} : { reason });
  }
}

export class PayloadTooLargeError extends VezaError {
  override readonly name = 'PayloadTooLargeError';
  constructor(message: string) {
    super('payload_too_large', message);
  }
}

export class RateLimitedError extends VezaError {
  override readonly name = 'RateLimitedError';
  constructor(message: string, retryAfterMs: number) {
    super('resource_exhausted', message, { retryAfterMs });
  }
}

export class UnavailableError extends VezaError {
  override readonly name = 'UnavailableError';
  /**
   * `retryAfterMs`: when the caller may try again (a circuit breaker's reset time), sent as
   * Retry-After. `reason`: a token callers branch on (`cancelled`: the caller gave up, so the
   * target is not to blame).
   */
  constructor(message: string, options?: { cause?: unknown; retryAfterMs?: number; reason?: string }) {
    super(
      'unavailable',
      message,
      {
        ...(options?.retryAfterMs === undefined ? {} : { retryAfterMs: options.retryAfterMs }),
        ...(options?.reason === undefined ? {} : { reason: options.reason }),
      },
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
  }
}

export class UnimplementedError extends VezaError {
  override readonly name = 'UnimplementedError';
  constructor(message: string) {
    super('unimplemented', message);
  }
}

/** What a client may see of an unexpected failure: nothing about internals. */
export const INTERNAL_MESSAGE = 'internal server error';

/** Turns anything thrown into a VezaError without leaking internals of unknown errors. */
export function toVezaError(error: unknown): VezaError {
  if (error instanceof VezaError) return error;
  return new VezaError('internal', INTERNAL_MESSAGE, {}, { cause: error });
}

const HTTP_STATUS: Record<ErrorCode, number> = {
  invalid_argument: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  already_exists: 409,
  failed_precondition: 409,
  payload_too_large: 413,
  resource_exhausted: 429,
  unavailable: 503,
  unimplemented: 501,
  internal: 500,
};

export function httpStatusOf(code: ErrorCode): number {
  return HTTP_STATUS[code];
}
