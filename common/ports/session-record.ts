/** Input validation shared by the SessionStore adapters, so both accept and refuse the same records. */
import { z } from 'zod';
import { InvalidArgumentError } from '../contracts/index.js';
import type { SessionRecord } from './session-store.js';

/** Canonical lowercase form only: PostgreSQL would lowercase an uppercase id and break the round trip. */
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isSessionId(value: string): boolean {
  return SESSION_ID.test(value);
}

const userId = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const reason = z.string().min(1).max(200);

const recordSchema = z
  .object({
    sessionId: z.string().regex(SESSION_ID, 'must be a lowercase UUID'),
    userId,
    deviceId: z.string().max(200),
    ipAddress: z.string().max(100),
    createdAt: z.date(),
    lastUsedAt: z.date(),
    expiresAt: z.date(),
    revokedAt: z.date().nullable(),
    revokedReason: reason.nullable(),
  })
  .refine((record) => (record.revokedAt === null) === (record.revokedReason === null), {
    message: 'revokedAt and revokedReason are set together',
    path: ['revokedReason'],
  });

function parse<T>(schema: z.ZodType<T>, value: unknown, field: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = [field, ...(issue?.path ?? []).map(String)].filter((part) => part.length > 0).join('.');
  throw new InvalidArgumentError(`${path}: ${issue?.message ?? 'invalid'}`, path);
}

export function parseSessionRecord(record: SessionRecord): SessionRecord {
  return parse(recordSchema, record, '');
}

export function parseUserId(value: number): number {
  return parse(userId, value, 'userId');
}

export function parseReason(value: string): string {
  return parse(reason, value, 'reason');
}
