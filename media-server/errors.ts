import {
  FailedPreconditionError,
  InvalidArgumentError,
  toVezaError,
  type VezaError,
} from '../common/contracts/index.js';
/**
 * mediasoup's errors, mapped once to ours. mediasoup throws TypeError for bad arguments (its own ORTC
 * validation and the worker's MS_THROW_TYPE_ERROR), UnsupportedError for what it cannot do (e.g. a codec
 * the router lacks) and InvalidStateError for calls on closed objects. Those messages describe the
 * caller's input, so they are passed on; anything else becomes `internal` (see common/errors.ts).
 */

export function fromMediasoupError(error: unknown, context: { what: string; field?: string }): VezaError {
  if (error instanceof Error) {
    const message = `${context.what}: ${error.message}`;
    switch (error.name) {
      case 'TypeError':
      case 'UnsupportedError':
        return new InvalidArgumentError(message, context.field);
      case 'InvalidStateError':
        return new FailedPreconditionError(message);
    }
  }
  return toVezaError(error);
}
