/** What route modules share: their dependencies and how a request becomes a control-plane call. */

import { bearerToken, type Config, type Logger } from '../../../common/index.js';
import type { BlobStorage } from '../../../common/ports/index.js';
import type { CallContext, ControlPlaneClient } from '../../../control-plane/client/index.js';
import type { EdgeRequest } from '../context.js';

export interface RouteDeps {
  config: Config;
  log: Logger;
  controlPlane: ControlPlaneClient;
  blobs: BlobStorage;
}

/** Carries the request id, the client's address and the client's abort through to the rpc. */
export function callContext(request: EdgeRequest, token?: string): CallContext {
  return {
    requestId: request.requestId,
    signal: request.signal,
    clientIp: request.remoteAddress,
    ...(token === undefined ? {} : { token }),
  };
}

/** The bearer token of the request; 401 naming what is wrong when there is none. */
export function requireBearer(request: EdgeRequest): string {
  return bearerToken(request.header('authorization') || undefined);
}
