/**
 * Structured logging. One pino root per process; every request gets a child carrying
 * its request id so the lines of one call can be followed across edge and control plane.
 */
import { randomUUID } from 'node:crypto';
import { type DestinationStream, type Logger, pino } from 'pino';
import { NO_TRACE_FIELDS, traceLogFields } from './tracing.js';

export type { Logger } from 'pino';

/**
 * Secrets never reach the logs, whatever object they are nested in. The censor keeps
 * the key visible so a reader knows a value was there.
 */
const REDACT_PATHS = [
  'password',
  '*.password',
  'token',
  '*.token',
  'accessToken',
  '*.accessToken',
  'refreshToken',
  '*.refreshToken',
  'access_token',
  '*.access_token',
  'refresh_token',
  '*.refresh_token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'x-api-key',
  '*["x-api-key"]',
  'apiKey',
  '*.apiKey',
  'privateKey',
  '*.privateKey',
  'smtpUrl',
  '*.smtpUrl',
  // The key-encryption key of the signing keys (a logged Config included), and private keys as JWKs.
  'SIGNING_KEYS_SECRET',
  '*.SIGNING_KEYS_SECRET',
  'signingKeysSecret',
  '*.signingKeysSecret',
  'privateJwk',
  '*.privateJwk',
  'private_jwk',
  '*.private_jwk',
  // Prometheus's bearer token for /metrics (a logged Config included).
  'METRICS_TOKEN',
  '*.METRICS_TOKEN',
];

export interface LoggerOptions {
  level?: string;
  name?: string;
  /** Where lines go (stdout by default); tests pass a stream to read them back. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      name: options.name ?? 'veza',
      level: options.level ?? process.env.LOG_LEVEL ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Every line written inside a traced request carries its trace_id and span_id. pino merges
      // a line's fields into the object the mixin returns; the shared empty one (tracing off, or
      // outside a trace) must stay empty, so such lines keep only their own fields.
      mixin: traceLogFields,
      mixinMergeStrategy: (mergeObject, mixinObject) =>
        mixinObject === NO_TRACE_FIELDS ? mergeObject : Object.assign(mixinObject, mergeObject),
    },
    options.destination,
  );
}

/** Request ids are accepted from a caller only when they look like one, so logs cannot be forged. */
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{8,128}$/;

export function requestIdFrom(candidate: string | undefined | null): string {
  return candidate && REQUEST_ID_PATTERN.test(candidate) ? candidate : randomUUID();
}

export const REQUEST_ID_HEADER = 'x-request-id';
