/**
 * Errors whose condition a client acts on: a VezaError (code and message, as everywhere)
 * plus the protocol's `reason` token (docs/signaling.md, "Errors").
 */

import { INTERNAL_MESSAGE, toVezaError, VezaError } from '../../common/contracts/index.js';
import type { ErrorBody, ErrorReason } from '../protocol/index.js';

export class SignalingConditionError extends VezaError {
  override readonly name = 'SignalingConditionError';
  readonly reason: ErrorReason;

  constructor(code: VezaError['code'], reason: ErrorReason, message: string) {
    super(code, message);
    this.reason = reason;
  }
}

export const streamEnded = (streamId: number | string) =>
  new SignalingConditionError('failed_precondition', 'stream_ended', `stream ${streamId} has ended`);

export const noAudio = (streamId: number | string) =>
  new SignalingConditionError(
    'unavailable',
    'no_audio',
    `stream ${streamId} has no broadcaster audio right now; consume again after streamStarted`,
  );

export const notJoined = (method: string) =>
  new SignalingConditionError(
    'failed_precondition',
    'not_joined',
    `${method} needs a stream: call join first`,
  );

/**
 * The error frame's body for anything a request threw. Only the edge's own condition errors name
 * a protocol reason: another role's `details.reason` is its own vocabulary, mapped where it is
 * understood (media-session.ts). An unknown error shows nothing of its internals.
 */
export function errorBodyOf(thrown: Error): ErrorBody {
  const error = toVezaError(thrown);
  return {
    code: error.code,
    message: error.code === 'internal' ? INTERNAL_MESSAGE : error.message,
    ...(thrown instanceof SignalingConditionError ? { reason: thrown.reason } : {}),
    ...(error.details.field === undefined ? {} : { field: error.details.field }),
    ...(error.details.retryAfterMs === undefined ? {} : { retryAfterMs: error.details.retryAfterMs }),
  };
}
