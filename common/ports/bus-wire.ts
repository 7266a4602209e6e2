/**
 * What travels between bus processes: JSON payloads and the reply envelope of a request.
 *
 * Both EventBus adapters go through these functions, so the in-process bus hands a
 * subscriber exactly what NATS would (Dates become strings, `undefined` fields vanish,
 * a responder's VezaError arrives as a VezaError with the same code, message and details).
 */
import { z } from 'zod';
import {
  ERROR_CODES,
  INTERNAL_MESSAGE,
  InvalidArgumentError,
  toVezaError,
  VezaError,
} from '../contracts/index.js';

/** Throws on values JSON cannot carry (BigInt, cycles), the same way in both adapters. */
export function encodePayload(payload: unknown): string {
  // JSON.stringify(undefined) is undefined, which no transport can send; null is its JSON stand-in.
  return JSON.stringify(payload) ?? 'null';
}

export function decodePayload(text: string): unknown {
  return text.length === 0 ? null : JSON.parse(text);
}

type ReplyEnvelope =
  | { ok: true; value: unknown }
  | {
      ok: false;
      error: {
        code: string;
        message: string;
        details: { field?: string; retryAfterMs?: number; reason?: string };
      };
    };

export function encodeReply(value: unknown): string {
  return JSON.stringify({ ok: true, value: value ?? null } satisfies ReplyEnvelope);
}

/** Unknown errors cross the bus as `internal` with the generic message: internals stay in the responder's log. */
export function encodeReplyError(error: unknown): string {
  const veza = toVezaError(error);
  const message = veza.code === 'internal' ? INTERNAL_MESSAGE : veza.message;
  return JSON.stringify({
    ok: false,
    error: { code: veza.code, message, details: veza.details },
  } satisfies ReplyEnvelope);
}

const replySchema = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), value: z.unknown() }),
  z.object({
    ok: z.literal(false),
    error: z.object({
      code: z.enum(ERROR_CODES),
      message: z.string(),
      details: z
        .object({
          field: z.string().optional(),
          retryAfterMs: z.number().optional(),
          reason: z.string().optional(),
        })
        .optional()
        .default({}),
    }),
  }),
]);

/** Returns the responder's value or throws the VezaError it threw. */
export function decodeReply(text: string, subject: string): unknown {
  let parsed: z.infer<typeof replySchema>;
  try {
    parsed = replySchema.parse(JSON.parse(text));
  } catch (cause) {
    throw new VezaError('internal', `malformed reply on ${subject}`, {}, { cause });
  }
  if (parsed.ok) return parsed.value;
  const { code, message, details } = parsed.error;
  throw new VezaError(code, message, {
    ...(details.field === undefined ? {} : { field: details.field }),
    ...(details.retryAfterMs === undefined ? {} : { retryAfterMs: details.retryAfterMs }),
    ...(details.reason === undefined ? {} : { reason: details.reason }),
  });
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;

export function requestTimeoutOf(options: { timeoutMs?: number } | undefined): number {
  const timeoutMs = options?.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
    throw new InvalidArgumentError('timeoutMs must be a positive integer', 'timeoutMs');
  }
  return timeoutMs;
}
