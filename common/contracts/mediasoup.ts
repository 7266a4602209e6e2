/**
 * The mediasoup JSON shapes that cross a boundary: the signaling WebSocket (browser → edge) and
 * the media node's bus protocol (edge → media node). One definition, one set of bounds, checked by
 * the edge on what a client sends and by the media node on what an edge sends.
 *
 * They check what the media node relies on and name the bad field; anything else a browser adds
 * (new RTCP feedback types, codec parameters) passes through untouched, so a newer browser does
 * not break signaling. mediasoup's own ORTC validation then checks their meaning.
 *
 * Browser-safe: zod only.
 */
import { z } from 'zod';

/** Ids chosen by callers (stream, peer): safe to log and to use in bus subjects. */
export const callerIdSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._:-]+$/, 'letters, digits and . _ : - only');
/** Ids mediasoup made (uuids); only bounded, since an unknown one is a NotFound, not a bad argument. */
export const objectIdSchema = z.string().min(1).max(128);

const payloadType = z.number().int().min(0).max(127);
const mediaKind = z.enum(['audio', 'video']);
const codecParameters = z.record(z.string(), z.unknown());
const rtcpFeedback = z.looseObject({
  type: z.string().min(1).max(64),
  parameter: z.string().max(64).optional(),
});
const mimeType = z.string().regex(/^(audio|video)\/[A-Za-z0-9._-]+$/, 'expected e.g. "audio/opus"');

/** Fingerprint values are colon-separated hex pairs (RFC 8122); anything else cannot be a certificate hash. */
const FINGERPRINT_VALUE = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){19,63}$/;

export const dtlsParametersSchema = z.strictObject({
  role: z.enum(['auto', 'client', 'server']).optional(),
  fingerprints: z
    .array(
      z.strictObject({
        algorithm: z.enum(['sha-1', 'sha-224', 'sha-256', 'sha-384', 'sha-512']),
        value: z.string().regex(FINGERPRINT_VALUE, 'expected colon-separated hex pairs'),
      }),
    )
    .min(1, 'at least one fingerprint is required')
    .max(8),
});

export const rtpParametersSchema = z.looseObject({
  mid: z.string().max(32).optional(),
  codecs: z
    .array(
      z.looseObject({
        mimeType,
        payloadType,
        clockRate: z.number().int().positive(),
        channels: z.number().int().min(1).max(8).optional(),
        parameters: codecParameters.optional(),
        rtcpFeedback: z.array(rtcpFeedback).max(32).optional(),
      }),
    )
    .min(1, 'at least one codec is required')
    .max(16),
  headerExtensions: z
    .array(
      z.looseObject({
        uri: z.string().min(1).max(256),
        id: z.number().int().min(1).max(255),
        encrypt: z.boolean().optional(),
        parameters: codecParameters.optional(),
      }),
    )
    .max(32)
    .optional(),
  encodings: z
    .array(
      z.looseObject({
        ssrc: z.number().int().min(0).max(0xffffffff).optional(),
        rid: z.string().max(32).optional(),
        codecPayloadType: payloadType.optional(),
        dtx: z.boolean().optional(),
        maxBitrate: z.number().positive().optional(),
      }),
    )
    .max(8)
    .optional(),
  rtcp: z
    .looseObject({
      cname: z.string().max(256).optional(),
      reducedSize: z.boolean().optional(),
      mux: z.boolean().optional(),
    })
    .optional(),
  msid: z.string().max(256).optional(),
});

export const rtpCapabilitiesSchema = z.looseObject({
  codecs: z
    .array(
      z.looseObject({
        kind: mediaKind,
        mimeType,
        preferredPayloadType: payloadType.optional(),
        clockRate: z.number().int().positive(),
        channels: z.number().int().min(1).max(8).optional(),
        parameters: codecParameters.optional(),
        rtcpFeedback: z.array(rtcpFeedback).max(32).optional(),
      }),
    )
    .max(128)
    .optional(),
  headerExtensions: z
    .array(
      z.looseObject({
        kind: mediaKind,
        uri: z.string().min(1).max(256),
        preferredId: z.number().int().min(1).max(255),
        preferredEncrypt: z.boolean().optional(),
        direction: z.enum(['sendrecv', 'sendonly', 'recvonly', 'inactive']).optional(),
      }),
    )
    .max(64)
    .optional(),
});

export const iceParametersSchema = z.looseObject({
  usernameFragment: z.string().min(1).max(256),
  password: z.string().min(1).max(256),
  iceLite: z.boolean().optional(),
});

export const iceCandidateSchema = z.looseObject({
  foundation: z.string().max(64),
  priority: z.number().int().min(0),
  /** mediasoup 3.12 names the address `ip`; mediasoup-client 3.24 reads `address`: the node sends both. */
  ip: z.string().max(64),
  address: z.string().max(64),
  protocol: z.enum(['udp', 'tcp']),
  port: z.number().int().min(0).max(65535),
  type: z.string().max(16),
  tcpType: z.string().max(16).optional(),
});

export const iceStateSchema = z.enum(['new', 'connected', 'completed', 'disconnected', 'closed']);
export const dtlsStateSchema = z.enum(['new', 'connecting', 'connected', 'failed', 'closed']);

/**
 * What every Veza Live router offers: mediasoup 3.12's capabilities for its one codec list
 * (media-server/codecs.ts: Opus 48 kHz stereo, FEC, DTX). They are the same on every router
 * of every media node, so the edge hands them to a client when its socket opens (the
 * `routerRtpCapabilities` notification) and the client loads its Device before `join`, without a
 * round trip; media-server's tests check a real router reports exactly these.
 */
export const ROUTER_RTP_CAPABILITIES = {
  codecs: [
    {
      kind: 'audio',
      mimeType: 'audio/opus',
      clockRate: 48000,
      channels: 2,
      rtcpFeedback: [
        { type: 'nack', parameter: '' },
        { type: 'transport-cc', parameter: '' },
      ],
      parameters: { useinbandfec: 1, usedtx: 1, 'sprop-stereo': 1 },
      preferredPayloadType: 100,
    },
  ],
  headerExtensions: [
    ['audio', 'urn:ietf:params:rtp-hdrext:sdes:mid', 1, 'sendrecv'],
    ['video', 'urn:ietf:params:rtp-hdrext:sdes:mid', 1, 'sendrecv'],
    ['video', 'urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id', 2, 'recvonly'],
    ['video', 'urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id', 3, 'recvonly'],
    ['audio', 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time', 4, 'sendrecv'],
    ['video', 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time', 4, 'sendrecv'],
    ['audio', 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01', 5, 'recvonly'],
    ['video', 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01', 5, 'sendrecv'],
    ['video', 'http://tools.ietf.org/html/draft-ietf-avtext-framemarking-07', 6, 'sendrecv'],
    ['video', 'urn:ietf:params:rtp-hdrext:framemarking', 7, 'sendrecv'],
    ['audio', 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', 10, 'sendrecv'],
    ['video', 'urn:3gpp:video-orientation', 11, 'sendrecv'],
    ['video', 'urn:ietf:params:rtp-hdrext:toffset', 12, 'sendrecv'],
    ['audio', 'http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time', 13, 'sendrecv'],
    ['video', 'http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time', 13, 'sendrecv'],
  ].map(([kind, uri, preferredId, direction]) => ({
    kind: kind as 'audio' | 'video',
    uri: uri as string,
    preferredId: preferredId as number,
    preferredEncrypt: false,
    direction: direction as 'sendrecv' | 'recvonly',
  })),
} satisfies z.input<typeof rtpCapabilitiesSchema>;

/** RTCIceServer as handed to RTCPeerConnection (TURN credentials included when configured). */
export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}
