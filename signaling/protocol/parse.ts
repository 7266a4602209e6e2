/**
 * Reading frames: requests on the edge, responses and notifications in the client.
 * Nothing here throws on bad input; a bad frame becomes an error body that names the
 * field, so the edge can answer it and keep the connection open.
 */
import { z } from 'zod';
import { ERROR_CODES } from '../../common/contracts/browser.js';
import {
  ERROR_REASONS,
  type ErrorBody,
  isMethod,
  METHODS,
  type Method,
  type MethodParams,
  NOTIFICATIONS,
  type NotificationFrame,
  paramsSchemas,
  type RequestFrame,
  type RequestId,
  type ResponseFrame,
  requestIdSchema,
} from './messages.js';

export type ParsedRequest =
  | { ok: true; request: RequestFrame }
  | { ok: false; id: RequestId | null; error: ErrorBody };

/** `a.b.0.c` from a zod path; symbols (never produced by our schemas) are dropped. */
function dotted(prefix: string, path: readonly PropertyKey[]): string {
  const parts = [prefix, ...path.filter((part) => typeof part !== 'symbol').map(String)].filter(
    (p) => p !== '',
  );
  return parts.length > 0 ? parts.join('.') : 'frame';
}

/** The first issue, as a message naming its field: users fix one thing at a time anyway. */
export function describeIssue(prefix: string, error: z.ZodError): { field: string; message: string } {
  const issue = error.issues[0];
  if (!issue) return { field: dotted(prefix, []), message: `invalid ${dotted(prefix, [])}` };
  if (issue.code === 'unrecognized_keys') {
    const field = dotted(prefix, issue.path);
    return {
      field,
      message: `invalid ${field}: unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`,
    };
  }
  const field = dotted(prefix, issue.path);
  return { field, message: `invalid ${field}: ${issue.message}` };
}

const envelopeSchema = z.object({
  id: requestIdSchema,
  method: z.string().min(1).max(64),
  params: z.record(z.string(), z.unknown()).optional(),
});

/** Parses and validates one request frame (text already size-checked by the caller). */
export function parseRequest(text: string): ParsedRequest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    const detail = error instanceof Error ? error.message : 'unreadable';
    return { ok: false, id: null, error: { code: 'invalid_argument', message: `malformed JSON: ${detail}` } };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return {
      ok: false,
      id: null,
      error: { code: 'invalid_argument', message: 'a request must be a JSON object {id, method, params}' },
    };
  }
  // Keep the id when it is usable even if something else is wrong, so the client can match the error.
  const candidateId = requestIdSchema.safeParse((json as { id?: unknown }).id);
  const id = candidateId.success ? candidateId.data : null;
  const envelope = envelopeSchema.safeParse(json);
  if (!envelope.success) {
    const { field, message } = describeIssue('', envelope.error);
    return { ok: false, id, error: { code: 'invalid_argument', message, field } };
  }
  const { method } = envelope.data;
  if (!isMethod(method)) {
    return {
      ok: false,
      id: envelope.data.id,
      error: {
        code: 'unimplemented',
        message: `unknown method "${method}"; this edge speaks ${METHODS.join(', ')}`,
        field: 'method',
      },
    };
  }
  const params = paramsSchemas[method].safeParse(envelope.data.params ?? {});
  if (!params.success) {
    const { field, message } = describeIssue('params', params.error);
    return { ok: false, id: envelope.data.id, error: { code: 'invalid_argument', message, field } };
  }
  return {
    ok: true,
    // The schemas check the shapes mediasoup relies on; the mediasoup-client types name them.
    request: { id: envelope.data.id, method, params: params.data as unknown as MethodParams[Method] },
  };
}

const errorBodySchema = z.object({
  code: z.enum(ERROR_CODES),
  message: z.string(),
  // An unknown reason from a newer server is dropped, not an error: the code still says enough.
  reason: z.enum(ERROR_REASONS).optional().catch(undefined),
  field: z.string().optional(),
  retryAfterMs: z.number().optional(),
});

// Responses only: notifications, most frames (a busy chat room), are read before it without a
// schema (parseServerFrame).
const responseFrameSchema = z.union([
  z.object({ id: requestIdSchema, ok: z.literal(true), result: z.unknown() }),
  z.object({ id: requestIdSchema.nullable(), ok: z.literal(false), error: errorBodySchema }),
]);

export type ParsedServerFrame =
  | { kind: 'response'; frame: ResponseFrame }
  | { kind: 'notification'; frame: NotificationFrame }
  /** A notification this client version does not know: ignore it (servers may add some). */
  | { kind: 'unknown-notification'; name: string }
  | { kind: 'invalid'; reason: string };

const KNOWN_NOTIFICATIONS: ReadonlySet<string> = new Set(NOTIFICATIONS);

/** The client's reader: envelopes are checked, results are trusted to match their method. */
export function parseServerFrame(text: string): ParsedServerFrame {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { kind: 'invalid', reason: 'malformed JSON from the server' };
  }
  // A notification needs no schema: its name is one this client knows, its data is the
  // server's, and a chat room can send a client thousands a second.
  const notification = (json as { notification?: unknown } | null)?.notification;
  if (typeof notification === 'string' && typeof json === 'object' && !Array.isArray(json)) {
    if (!KNOWN_NOTIFICATIONS.has(notification)) return { kind: 'unknown-notification', name: notification };
    const { data } = json as { data?: unknown };
    return { kind: 'notification', frame: { notification, data } as NotificationFrame };
  }
  const parsed = responseFrameSchema.safeParse(json);
  if (!parsed.success) return { kind: 'invalid', reason: describeIssue('frame', parsed.error).message };
  const frame = parsed.data;
  return { kind: 'response', frame: frame as ResponseFrame };
}
