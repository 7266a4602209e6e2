/**
 * The media-node API's inputs, validated at the boundary with the contract's schemas
 * (common/contracts/media-node.ts and mediasoup.ts). In cluster mode they arrive as JSON from
 * another process, so nothing is trusted: a bad field is an InvalidArgumentError naming the field,
 * never an exception from inside mediasoup (or a crashed worker).
 *
 * RTP parameters and capabilities are checked for shape; mediasoup's own ORTC validation then
 * checks their meaning (and its TypeErrors become InvalidArgumentErrors too, see errors.ts).
 */
import type { types as ms } from 'mediasoup';
import type { z } from 'zod';
import {
  type dtlsParametersSchema,
  InvalidArgumentError,
  type rtpCapabilitiesSchema,
  type rtpParametersSchema,
} from '../common/contracts/index.js';

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
export const asRtpParameters = (value: z.output<typeof rtpParametersSchema>): ms.RtpParameters =>
  value as ms.RtpParameters;
export const asRtpCapabilities = (value: z.output<typeof rtpCapabilitiesSchema>): ms.RtpCapabilities =>
  value as ms.RtpCapabilities;
export const asDtlsParameters = (value: z.output<typeof dtlsParametersSchema>): ms.DtlsParameters => value;
