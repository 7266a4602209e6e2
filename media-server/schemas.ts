/**
 * The media-node API's inputs, validated at the boundary. In cluster mode they arrive as JSON from
 * another process, so nothing is trusted: a bad field is an InvalidArgumentError naming the field,
 * never an exception from inside mediasoup (or a crashed worker).
 *
 * RTP parameters and capabilities are checked for shape here; mediasoup's own ORTC validation then
 * checks their meaning (and its TypeErrors become InvalidArgumentErrors too, see errors.ts).
 */
import type { types as ms } from 'mediasoup';
import { z } from 'zod';
import { InvalidArgumentError } from '../common/errors.js';

/** Ids chosen by callers (stream, peer): safe to log and to use in bus subjects. */
export const callerId = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._:-]+$/, 'letters, digits and . _ : - only');
/** Ids mediasoup made (uuids); only bounded, since an unknown one is a NotFound, not a bad argument. */
export const objectId = z.string().min(1).max(128);

const parameters = z.record(z.string(), z.unknown());
const rtcpFeedback = z.array(z.looseObject({ type: z.string(), parameter: z.string().optional() }));

const fingerprint = z.object({
  algorithm: z.enum(['sha-1', 'sha-224', 'sha-256', 'sha-384', 'sha-512']),
  value: z
    .string()
    .regex(/^([0-9A-Fa-f]{2}:)+[0-9A-Fa-f]{2}$/, 'hex bytes separated by colons (e.g. "AB:CD:...")'),
});

export const dtlsParameters = z.object({
  role: z.enum(['auto', 'client', 'server']).optional(),
  fingerprints: z.array(fingerprint).min(1, 'at least one fingerprint'),
});

export const rtpParameters = z.looseObject({
  mid: z.string().optional(),
  codecs: z
    .array(
      z.looseObject({
        mimeType: z.string(),
        payloadType: z.number().int(),
        clockRate: z.number().int(),
        channels: z.number().int().optional(),
        parameters: parameters.optional(),
        rtcpFeedback: rtcpFeedback.optional(),
      }),
    )
    .min(1, 'at least one codec'),
  headerExtensions: z
    .array(
      z.looseObject({
        uri: z.string(),
        id: z.number().int(),
        encrypt: z.boolean().optional(),
        parameters: parameters.optional(),
      }),
    )
    .optional(),
  encodings: z.array(z.looseObject({ ssrc: z.number().int().optional() })).optional(),
  rtcp: z
    .looseObject({
      cname: z.string().optional(),
      reducedSize: z.boolean().optional(),
      mux: z.boolean().optional(),
    })
    .optional(),
});

export const rtpCapabilities = z.looseObject({
  codecs: z
    .array(
      z.looseObject({
        kind: z.enum(['audio', 'video']),
        mimeType: z.string(),
        preferredPayloadType: z.number().int().optional(),
        clockRate: z.number().int(),
        channels: z.number().int().optional(),
        parameters: parameters.optional(),
        rtcpFeedback: rtcpFeedback.optional(),
      }),
    )
    .optional(),
  headerExtensions: z
    .array(
      z.looseObject({
        kind: z.enum(['audio', 'video']),
        uri: z.string(),
        preferredId: z.number().int(),
        preferredEncrypt: z.boolean().optional(),
        direction: z.enum(['sendrecv', 'sendonly', 'recvonly', 'inactive']).optional(),
      }),
    )
    .optional(),
});

export const createTransportInput = z.object({
  streamId: callerId,
  peerId: callerId,
  direction: z.enum(['send', 'recv']),
});

export const produceInput = z.object({
  transportId: objectId,
  peerId: callerId,
  kind: z.literal('audio', { error: 'only audio producers are supported' }),
  rtpParameters,
});

export const consumeInput = z.object({
  transportId: objectId,
  peerId: callerId,
  rtpCapabilities,
});

/** Parses `input` or throws an InvalidArgumentError naming the first bad field (e.g. `dtlsParameters.fingerprints.0.value`). */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, name?: string): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = [name, ...(issue?.path ?? []).map(String)].filter((part) => part !== undefined && part !== '');
  const field = path.length > 0 ? path.join('.') : 'input';
  throw new InvalidArgumentError(`${field}: ${issue?.message ?? 'invalid value'}`, field);
}

/**
 * After validation the shapes match mediasoup's types; these casts only bridge zod's loose-object
 * typing (unknown extra keys) to mediasoup's declared interfaces.
 */
export const asRtpParameters = (value: z.output<typeof rtpParameters>): ms.RtpParameters =>
  value as ms.RtpParameters;
export const asRtpCapabilities = (value: z.output<typeof rtpCapabilities>): ms.RtpCapabilities =>
  value as ms.RtpCapabilities;
export const asDtlsParameters = (value: z.output<typeof dtlsParameters>): ms.DtlsParameters => value;
