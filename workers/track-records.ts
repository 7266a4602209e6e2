/**
 * The uploads module's track records, as the transcode worker calls them: request/reply on the
 * bus (`uploads.tracks.<method>`), each side parsing with common/contracts' UPLOADS_TRACK_CALLS.
 * The worker never touches the tracks table; whichever control plane answers records for it.
 * A call nobody answers throws UnavailableError, which fails the delivery: the job comes back.
 */
import {
  UPLOADS_TRACK_CALLS,
  type UploadsTrackMethod,
  type UploadsTrackReply,
  type UploadsTrackRequest,
  uploadsTrackSubject,
  VezaError,
} from '../common/contracts/index.js';
import type { EventBus } from '../common/ports/index.js';

type TrackRecords = {
  [M in UploadsTrackMethod]: (request: UploadsTrackRequest<M>) => Promise<UploadsTrackReply<M>>;
};

export function trackRecordsOverBus(bus: EventBus): TrackRecords {
  const call = async <M extends UploadsTrackMethod>(
    method: M,
    request: UploadsTrackRequest<M>,
  ): Promise<UploadsTrackReply<M>> => {
    const { request: requestSchema, reply: replySchema } = UPLOADS_TRACK_CALLS[method];
    // Checked here too, so a bad request fails in the worker's log rather than as a remote refusal.
    const reply = await bus.request(uploadsTrackSubject(method), requestSchema.parse(request));
    const parsed = replySchema.safeParse(reply);
    if (!parsed.success) {
      throw new VezaError(
        'internal',
        `malformed reply from the uploads module to ${method}`,
        {},
        {
          cause: parsed.error,
        },
      );
    }
    return parsed.data as UploadsTrackReply<M>;
  };
  return {
    trackToProcess: (request) => call('trackToProcess', request),
    markProcessing: (request) => call('markProcessing', request),
    recordProgress: (request) => call('recordProgress', request),
    recordReady: (request) => call('recordReady', request),
    recordFailed: (request) => call('recordFailed', request),
  };
}
