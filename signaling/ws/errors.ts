/**
 * Errors whose condition a client acts on: a VezaError (code and message, as everywhere)
 * plus the protocol's `reason` token (docs/signaling.md, "Errors").
 */

import { VezaError } from '../../common/contracts/index.js';
import type { ErrorReason } from '../protocol/index.js';

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
