/**
 * VezaError <-> gRPC status, in both directions.
 *
 * The server attaches the exact Veza code in the `veza-error-code` trailer so a Veza
 * client (the edge) gets back the same error the service threw, e.g. a 413 stays a 413
 * even though gRPC has no "payload too large" status.
 */
import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { type ErrorCode, INTERNAL_MESSAGE, isErrorCode, toVezaError, VezaError } from './contracts/index.js';

const GRPC_STATUS: Record<ErrorCode, status> = {
  invalid_argument: status.INVALID_ARGUMENT,
  unauthenticated: status.UNAUTHENTICATED,
  permission_denied: status.PERMISSION_DENIED,
  not_found: status.NOT_FOUND,
  already_exists: status.ALREADY_EXISTS,
  failed_precondition: status.FAILED_PRECONDITION,
  payload_too_large: status.RESOURCE_EXHAUSTED,
  resource_exhausted: status.RESOURCE_EXHAUSTED,
  unavailable: status.UNAVAILABLE,
  unimplemented: status.UNIMPLEMENTED,
  internal: status.INTERNAL,
};

const FROM_GRPC: Partial<Record<status, ErrorCode>> = {
  [status.INVALID_ARGUMENT]: 'invalid_argument',
  [status.UNAUTHENTICATED]: 'unauthenticated',
  [status.PERMISSION_DENIED]: 'permission_denied',
  [status.NOT_FOUND]: 'not_found',
  [status.ALREADY_EXISTS]: 'already_exists',
  [status.FAILED_PRECONDITION]: 'failed_precondition',
  [status.RESOURCE_EXHAUSTED]: 'resource_exhausted',
  [status.UNAVAILABLE]: 'unavailable',
  [status.DEADLINE_EXCEEDED]: 'unavailable',
  [status.UNIMPLEMENTED]: 'unimplemented',
};

export const ERROR_CODE_KEY = 'veza-error-code';
export const ERROR_FIELD_KEY = 'veza-error-field';
export const RETRY_AFTER_KEY = 'veza-retry-after-ms';
/** ErrorDetails.reason, so a caller can tell e.g. a dependency outage from a refusal with the same code. */
export const ERROR_REASON_KEY = 'veza-error-reason';

export interface GrpcStatusObject {
  code: status;
  details: string;
  metadata: Metadata;
}

/** The status object a grpc-js handler passes to its callback or `emit('error')`. */
export function toGrpcStatus(error: unknown): GrpcStatusObject {
  const veza = toVezaError(error);
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_KEY, veza.code);
  if (veza.details.field) metadata.set(ERROR_FIELD_KEY, veza.details.field);
  if (veza.details.retryAfterMs !== undefined)
    metadata.set(RETRY_AFTER_KEY, String(veza.details.retryAfterMs));
  if (veza.details.reason) metadata.set(ERROR_REASON_KEY, veza.details.reason);
  const details = veza.code === 'internal' ? INTERNAL_MESSAGE : veza.message;
  return { code: GRPC_STATUS[veza.code], details, metadata };
}

function isServiceError(error: unknown): error is ServiceError {
  return typeof error === 'object' && error !== null && 'code' in error && 'metadata' in error;
}

/** Rebuilds the VezaError a remote Veza service threw from a client-side gRPC error. */
export function fromGrpcError(error: unknown): VezaError {
  if (error instanceof VezaError) return error;
  if (!isServiceError(error)) return toVezaError(error);
  const sent = String(error.metadata.get(ERROR_CODE_KEY)[0] ?? '');
  const code: ErrorCode = isErrorCode(sent) ? sent : (FROM_GRPC[error.code] ?? 'internal');
  const field = error.metadata.get(ERROR_FIELD_KEY)[0];
  const retry = error.metadata.get(RETRY_AFTER_KEY)[0];
  const reason = error.metadata.get(ERROR_REASON_KEY)[0];
  const message = code === 'internal' ? INTERNAL_MESSAGE : error.details || 'remote call failed';
  return new VezaError(
    code,
    message,
    {
      ...(field === undefined ? {} : { field: String(field) }),
      ...(retry === undefined ? {} : { retryAfterMs: Number(retry) }),
      ...(reason === undefined ? {} : { reason: String(reason) }),
    },
    { cause: error },
  );
}
