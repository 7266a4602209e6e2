import { VezaError } from '../../common/contracts/index.js';

/**
 * The upload itself is unusable (not audio, corrupt, empty, too long...). Retrying cannot
 * help, so the track fails at once; the message is written for its owner. An
 * `invalid_argument` about the `file` field wherever it is mapped to a transport.
 */
export class AudioRejectedError extends VezaError {
  override readonly name: string = 'AudioRejectedError';
  constructor(message: string) {
    super('invalid_argument', message, { field: 'file' });
  }
}
