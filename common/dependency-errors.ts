/**
 * Recognises the errors a handler sees when a dependency it calls is down (PostgreSQL refusing or
 * dropping connections, Redis disconnected), so they reach the caller as `unavailable` (gRPC
 * UNAVAILABLE, HTTP 503: try again later) rather than `internal` (a bug). The edge's circuit
 * breaker counts only those, and an outage then opens it.
 */
import { UnavailableError, VezaError } from './contracts/index.js';

/** ErrorDetails.reason of an UnavailableError caused by a dependency outage (it crosses gRPC). */
export const DEPENDENCY_DOWN = 'dependency_down';

/** Node's socket errors and porsager postgres's own connection codes. */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
]);

/** SQLSTATE classes 08 (connection exception) and 57P (operator intervention: shutdown, not yet up). */
function isUnavailableSqlState(code: string): boolean {
  return /^08[0-9A-Z]{3}$/.test(code) || /^57P0[1-4]$/.test(code);
}

/** ioredis has no codes for these: its offline-queue refusal, a closed connection, and its retry limit. */
function isRedisDisconnect(error: Error): boolean {
  return (
    error.name === 'MaxRetriesPerRequestError' ||
    /enableOfflineQueue options is false|Connection is closed/.test(error.message)
  );
}

function dependencyOf(error: Error): string | null {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (CONNECTION_CODES.has(code)) return 'a dependency';
    if (isUnavailableSqlState(code)) return 'the database';
  }
  if (isRedisDisconnect(error)) return 'the session and rate-limit store';
  return null;
}

/**
 * The UnavailableError for an error that says a dependency is down, or the error unchanged. Looks
 * through `cause` (and AggregateError's errors: Node's connect to several addresses).
 */
export function asDependencyFailure(error: unknown): unknown {
  if (error instanceof VezaError) return error;
  const seen = new Set<unknown>();
  const queue: unknown[] = [error];
  while (queue.length > 0) {
    const current = queue.shift();
    if (!(current instanceof Error) || seen.has(current)) continue;
    seen.add(current);
    const dependency = dependencyOf(current);
    if (dependency)
      return new UnavailableError(`${dependency} is unavailable; retry later`, {
        cause: error,
        reason: DEPENDENCY_DOWN,
      });
    queue.push(current.cause);
    if (current instanceof AggregateError) queue.push(...current.errors);
  }
  return error;
}
