/**
 * Zod schemas for the mediasoup shapes that cross the signaling WebSocket.
 *
 * They check what the media node relies on and name the bad field; anything else a
 * browser adds (new RTCP feedback types, codec parameters) passes through untouched, so a
 * newer browser does not break signaling. The TypeScript types are mediasoup-client's,
 * which the client hands straight to its Device and the media node accepts as JSON.
 */
import type {
  DtlsParameters,
  IceCandidate,
  IceParameters,
  RtpCapabilities,
  RtpParameters,
} from 'mediasoup-client/types';
import { z } from 'zod';

export type { DtlsParameters, IceCandidate, IceParameters, RtpCapabilities, RtpParameters };

/** RTCIceServer as handed to RTCPeerConnection (TURN credentials included when configured). */
export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

const id = z.string().min(1).max(128);
const payloadType = z.number().int().min(0).max(127);
const mediaKind = z.enum(['audio', 'video']);
const codecParameters = z.record(z.string(), z.unknown());
const rtcpFeedback = z.looseObject({
  type: z.string().min(1).max(64),
  parameter: z.string().max(64).optional(),
});

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
        mimeType: z.string().regex(/^(audio|video)\/[A-Za-z0-9._-]+$/, 'expected e.g. "audio/opus"'),
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
        mimeType: z.string().regex(/^(audio|video)\/[A-Za-z0-9._-]+$/, 'expected e.g. "audio/opus"'),
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

export const idSchema = id;
