/**
 * The signaling protocol, version 1: the one definition shared by the edge (which
 * validates every request with these schemas) and the client library (which gets its
 * types from here). docs/signaling.md describes it for humans; this file is the truth.
 *
 * Frames are JSON text:
 * - client -> server request  `{ id, method, params }`
 * - server -> client response `{ id, ok: true, result }` or `{ id, ok: false, error: { code, message, field? } }`
 * - server -> client notification `{ notification, data }`
 */
import { z } from 'zod';
import type { ErrorCode } from '../../common/contracts/browser.js';
import {
  CHAT_NOTIFICATIONS,
  type ChatMethodParams,
  type ChatMethodResults,
  type ChatNotifications,
  chatParamsSchemas,
} from './chat.js';
import {
  type DtlsParameters,
  dtlsParametersSchema,
  type IceCandidate,
  type IceParameters,
  type IceServer,
  idSchema,
  type RtpCapabilities,
  type RtpParameters,
  rtpCapabilitiesSchema,
  rtpParametersSchema,
} from './media.js';

export const PROTOCOL_VERSION = 1;
export const SUPPORTED_PROTOCOL_VERSIONS: readonly number[] = [PROTOCOL_VERSION];
/** The endpoint path on the edge; the version and the token travel in the query: `/ws?v=1&token=...`. */
export const SIGNALING_PATH = '/ws';

/**
 * Frames up to this size are read; a larger one (up to the transport's hard limit) gets a
 * `payload_too_large` error response and the connection stays open. Above the hard limit
 * uWS closes the connection without reading the frame (and without a close frame: 1006).
 */
export const MAX_MESSAGE_BYTES = 64 * 1024;
export const HARD_MAX_MESSAGE_BYTES = 1024 * 1024;

/** WebSocket close codes the edge uses; the reason text says the same for humans. */
export const CLOSE_CODES = {
  /** The client said goodbye, or the server is shutting down cleanly. */
  normal: 1000,
  /** The edge is shutting down: reconnect (possibly to another edge). */
  goingAway: 1001,
  /** The `v` query parameter is missing or names a version this edge does not speak: do not retry as is. */
  unsupportedVersion: 4400,
  /**
   * The connection's access token expired and no `auth.refresh` replaced it in time: reconnect
   * with a fresh token.
   */
  tokenExpired: 4401,
  /** The login session of the connection's token was revoked (logout, refresh-token reuse): sign in again. */
  sessionRevoked: 4403,
  /** A newer connection of the same broadcaster took over the stream: do not reconnect. */
  replaced: 4409,
} as const;

/** Close codes after which reconnecting cannot help. */
export const TERMINAL_CLOSE_CODES: readonly number[] = [
  CLOSE_CODES.unsupportedVersion,
  CLOSE_CODES.sessionRevoked,
  CLOSE_CODES.replaced,
];

export const ROLES = ['broadcaster', 'listener'] as const;
export type Role = (typeof ROLES)[number];

const streamId = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const empty = z.strictObject({});

/** Params schema of every method. Objects are strict: an unknown key is a typo worth reporting. */
export const paramsSchemas = {
  join: z.strictObject({ streamId, role: z.enum(ROLES), rtpCapabilities: rtpCapabilitiesSchema.optional() }),
  getRouterRtpCapabilities: empty,
  createTransport: z.strictObject({ direction: z.enum(['send', 'recv']) }),
  connectTransport: z.strictObject({ transportId: idSchema, dtlsParameters: dtlsParametersSchema }),
  produce: z.strictObject({
    transportId: idSchema,
    kind: z.literal('audio'),
    rtpParameters: rtpParametersSchema,
  }),
  consume: z.strictObject({ transportId: idSchema, rtpCapabilities: rtpCapabilitiesSchema }),
  pauseProducer: z.strictObject({ producerId: idSchema }),
  resumeProducer: z.strictObject({ producerId: idSchema }),
  resumeConsumer: z.strictObject({ consumerId: idSchema }),
  pauseConsumer: z.strictObject({ consumerId: idSchema }),
  restartIce: z.strictObject({ transportId: idSchema }),
  getStats: empty,
  leave: empty,
  // Chat, notifications and moderation (./chat.ts).
  ...chatParamsSchemas,
} as const;

export type Method = keyof typeof paramsSchemas;
export const METHODS = Object.keys(paramsSchemas) as Method[];

export function isMethod(value: string): value is Method {
  return Object.hasOwn(paramsSchemas, value);
}

/** Params as the application sees them: mediasoup shapes carry mediasoup-client's types. */
export interface MethodParams extends ChatMethodParams {
  /**
   * With `rtpCapabilities` (the device's, loaded from the `routerRtpCapabilities` notification)
   * the answer carries the connection's transport and, for a listener, its consumer: one request
   * places the connection. Without them (protocol v1's first shape) the client goes on with
   * createTransport and consume.
   */
  join: { streamId: number; role: Role; rtpCapabilities?: RtpCapabilities };
  getRouterRtpCapabilities: Record<string, never>;
  createTransport: { direction: 'send' | 'recv' };
  connectTransport: { transportId: string; dtlsParameters: DtlsParameters };
  produce: { transportId: string; kind: 'audio'; rtpParameters: RtpParameters };
  consume: { transportId: string; rtpCapabilities: RtpCapabilities };
  pauseProducer: { producerId: string };
  resumeProducer: { producerId: string };
  resumeConsumer: { consumerId: string };
  pauseConsumer: { consumerId: string };
  restartIce: { transportId: string };
  getStats: Record<string, never>;
  leave: Record<string, never>;
}

/** A paused consumer of the broadcaster's audio: resume it once the local consumer exists. */
export interface ConsumerOffer {
  consumerId: string;
  producerId: string;
  kind: 'audio';
  rtpParameters: RtpParameters;
  paused: true;
}

export interface TransportInfo {
  id: string;
  iceParameters: IceParameters;
  iceCandidates: IceCandidate[];
  dtlsParameters: DtlsParameters;
  iceServers: IceServer[];
}

/**
 * Connection quality as the media node measures it: for the listener page's quality
 * indicator and for analytics. Units are in the names; packet loss is a fraction 0..1 of
 * the last RTCP interval; scores are mediasoup's 0..10.
 */
export interface PeerStats {
  transports: Array<{
    transportId: string;
    direction: 'send' | 'recv';
    iceState: string;
    dtlsState: string;
    bytesReceived: number;
    bytesSent: number;
    recvBitrateBps: number;
    sendBitrateBps: number;
  }>;
  producer: {
    producerId: string;
    paused: boolean;
    score: number;
    packetLoss: number;
    packetsLost: number;
    bitrateBps: number;
    roundTripTimeMs: number | null;
    jitter: number;
  } | null;
  consumers: Array<{
    consumerId: string;
    producerId: string;
    paused: boolean;
    producerPaused: boolean;
    score: number;
    /** The broadcaster's upstream quality: low means the problem is on their side. */
    producerScore: number;
    packetLoss: number;
    packetsLost: number;
    bitrateBps: number;
    roundTripTimeMs: number | null;
  }>;
}

export interface MethodResults extends ChatMethodResults {
  join: {
    /** This connection's media peer; it changes on every join. */
    peerId: string;
    streamId: number;
    role: Role;
    rtpCapabilities: RtpCapabilities;
    iceServers: IceServer[];
    listenerCount: number;
    stream: { title: string; ownerId: number; ownerUsername: string };
    /** Only when `rtpCapabilities` were given: the send (broadcaster) or recv (listener) transport. */
    transport?: TransportInfo;
    /**
     * Only when `rtpCapabilities` were given: the listener's paused consumer, or null when the
     * broadcaster is not sending (`no_audio`: wait for `streamStarted`, then `consume`); always
     * null for a broadcaster.
     */
    consumer?: ConsumerOffer | null;
  };
  getRouterRtpCapabilities: { rtpCapabilities: RtpCapabilities };
  createTransport: TransportInfo;
  connectTransport: Record<string, never>;
  produce: { producerId: string };
  consume: ConsumerOffer;
  pauseProducer: Record<string, never>;
  resumeProducer: Record<string, never>;
  resumeConsumer: Record<string, never>;
  pauseConsumer: Record<string, never>;
  restartIce: { iceParameters: IceParameters };
  getStats: PeerStats;
  leave: Record<string, never>;
}

export interface Notifications extends ChatNotifications {
  /**
   * The first frame on every connection: the router capabilities (the same on every router), so
   * the client loads its Device and joins with its own capabilities without asking for them.
   */
  routerRtpCapabilities: { rtpCapabilities: RtpCapabilities };
  /** The stream has audio: listeners that are not consuming should consume now (sent again after a broadcaster reconnects). */
  streamStarted: { streamId: number; producerId: string };
  /** The stream is over; its media is closed on the server. */
  streamEnded: { streamId: number; reason: string };
  producerPaused: { streamId: number; producerId: string };
  producerResumed: { streamId: number; producerId: string };
  /** The broadcaster's producer is gone (disconnect, worker loss); a `streamStarted` follows if they come back. */
  producerClosed: { streamId: number; producerId: string };
  listenerCount: { streamId: number; count: number };
  /** To the broadcaster only, about 4 times a second while sound is present. `volume` is in dBov (-127..0). */
  audioLevel: { streamId: number; volume: number; speaking: boolean };
  /** The media worker hosting the stream died and was replaced: re-join and re-negotiate. */
  workerRestarted: { streamId: number; reconnect: true };
  /**
   * The connection's access token expires soon (`expiresInMs` from when it was sent): hand over a
   * fresh one with `auth.refresh`, or the connection is refused and closed (4401) after expiry.
   */
  tokenExpiring: { expiresAt: string; expiresInMs: number };
}

export type NotificationName = keyof Notifications;
export const NOTIFICATIONS: readonly NotificationName[] = [
  'routerRtpCapabilities',
  'streamStarted',
  'streamEnded',
  'producerPaused',
  'producerResumed',
  'producerClosed',
  'listenerCount',
  'audioLevel',
  'workerRestarted',
  'tokenExpiring',
  ...CHAT_NOTIFICATIONS,
];

export type RequestId = string | number;

export interface RequestFrame<M extends Method = Method> {
  id: RequestId;
  method: M;
  params: MethodParams[M];
}

/**
 * Stable tokens for the conditions a client acts on, next to the generic code:
 * - `stream_ended`: the stream is over (code failed_precondition); stop, show "ended".
 * - `no_audio`: the stream is live but its broadcaster is not sending (code unavailable); wait for `streamStarted`.
 * - `not_joined`: a media method before `join`, or a chat method on a room the connection has not
 *   `chat.join`ed (code failed_precondition).
 * - `token_expired`: the connection's access token expired (code unauthenticated); `auth.refresh`
 *   still works until the edge closes the connection (4401).
 * - `session_revoked`: the token's login session was revoked (code unauthenticated); the edge closes
 *   the connection (4403).
 */
export const ERROR_REASONS = [
  'stream_ended',
  'no_audio',
  'not_joined',
  'token_expired',
  'session_revoked',
] as const;
export type ErrorReason = (typeof ERROR_REASONS)[number];

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  reason?: ErrorReason;
  /** The request field the error is about, as a dotted path (`params.dtlsParameters.fingerprints.0.value`). */
  field?: string;
  retryAfterMs?: number;
}

export type ResponseFrame<M extends Method = Method> =
  | { id: RequestId; ok: true; result: MethodResults[M] }
  /** `id` is null when the frame could not be read far enough to find it. */
  | { id: RequestId | null; ok: false; error: ErrorBody };

export type NotificationFrame<N extends NotificationName = NotificationName> = {
  [K in N]: { notification: K; data: Notifications[K] };
}[N];

export type ServerFrame = ResponseFrame | NotificationFrame;

export const requestIdSchema = z.union([
  z.string().min(1).max(64),
  z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
]);
