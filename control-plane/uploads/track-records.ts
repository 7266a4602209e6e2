/**
 * The uploads module's answer to the worker role: the transcode worker reads and records its
 * tracks through the calls of common/contracts' UPLOADS_TRACK_CALLS (request/reply on
 * `uploads.tracks.<method>`), so the tracks table keeps one writer while the worker runs in a
 * process of its own. Every control plane serves them; the bus hands each request to one.
 */
import type { z } from 'zod';
import {
  methodOfRequestSubject,
  UnimplementedError,
  UPLOADS_TRACK_CALLS,
  UPLOADS_TRACK_REQUESTS,
  type UploadsTrackMethod,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import type { EventBus, Subscription } from '../../common/ports/index.js';
import { createUploadStore } from './store.js';
import { parseInput } from './validation.js';

type Calls = typeof UPLOADS_TRACK_CALLS;
/** One handler per method, so a method added to the contract does not compile until it is answered. */
type Handlers = {
  [M in UploadsTrackMethod]: (request: z.output<Calls[M]['request']>) => Promise<z.output<Calls[M]['reply']>>;
};

const isMethod = (method: string): method is UploadsTrackMethod => Object.hasOwn(UPLOADS_TRACK_CALLS, method);

interface TrackRecordsDeps {
  sql: Sql;
  bus: EventBus;
}

/** Answers the worker's calls until the returned subscription is unsubscribed. */
export function serveTrackRecords(deps: TrackRecordsDeps): Subscription {
  const store = createUploadStore(deps.sql);
  const handlers: Handlers = {
    trackToProcess: (request) => store.trackToProcess(request.trackId, request.sourceKey),
    markProcessing: (request) => store.markProcessing(request.trackId),
    recordProgress: (request) => store.recordProgress(request.trackId, request.percent),
    recordReady: async (request) => ({ outcome: await store.recordReady(request) }),
    recordFailed: (request) => store.recordFailed(request.trackId, request.reason, request.dropSource),
  };

  return deps.bus.respond(UPLOADS_TRACK_REQUESTS, async (payload, subject) => {
    const method = methodOfRequestSubject(subject);
    if (!isMethod(method)) throw new UnimplementedError(`the uploads module has no method ${method}`);
    // The request is parsed with this method's own schema, so its handler gets what it expects.
    const handle = handlers[method] as (request: unknown) => Promise<unknown>;
    return handle(parseInput(UPLOADS_TRACK_CALLS[method].request, payload));
  });
}
