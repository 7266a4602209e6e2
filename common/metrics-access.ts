/**
 * Who may read /metrics: anyone when no METRICS_TOKEN is configured, otherwise only a request
 * with `Authorization: Bearer <METRICS_TOKEN>` (what Prometheus's `authorization` block sends).
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Compared as digests in constant time, so the token's length and prefix do not leak through timing. */
export function metricsAccessAllowed(authorization: string | undefined, token: string | undefined): boolean {
  if (token === undefined) return true;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  if (!match?.[1]) return false;
  return timingSafeEqual(digest(match[1]), digest(token));
}
