/**
 * The mediasoup shapes that cross the signaling WebSocket. Their schemas (and bounds) are the
 * contract's (common/contracts/mediasoup.ts); the TypeScript types are mediasoup-client's, which
 * the client hands straight to its Device and the media node accepts as JSON.
 */
import type {
  DtlsParameters,
  IceCandidate,
  IceParameters,
  RtpCapabilities,
  RtpParameters,
} from 'mediasoup-client/types';

// The shapes' schemas are the contract's, shared with the media node, which checks the same bounds.
export {
  dtlsParametersSchema,
  type IceServer,
  objectIdSchema as idSchema,
  rtpCapabilitiesSchema,
  rtpParametersSchema,
} from '../../common/contracts/browser.js';
export type { DtlsParameters, IceCandidate, IceParameters, RtpCapabilities, RtpParameters };
