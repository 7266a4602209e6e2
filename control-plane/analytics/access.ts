/**
 * Who may read a stream's audience, and the bounds of a range and a step. Owners read their own
 * streams, admins and service callers (API key, no user) everything, others nothing.
 */
import {
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnauthenticatedError,
} from '../../common/contracts/index.js';
import { hasPermission } from '../../common/index.js';
import type { CallContext } from '../grpc/index.js';
import type { AudienceStore, StreamRecord } from './audience-store.js';

/** The roll-ups' resolution: a series cannot be finer. */
export const MIN_STEP_S = 60;
/** The most points one series returns; a step that would make more is too small for the range. */
export const MAX_POINTS = 1440;

export const readsEverything = (ctx: CallContext): boolean =>
  (ctx.service && !ctx.user) || (!!ctx.user && hasPermission(ctx.user.roles, 'users:manage'));

/** The stream, when the caller may read its audience; the errors say why not. */
export async function readableStream(
  store: AudienceStore,
  ctx: CallContext,
  streamId: number,
): Promise<StreamRecord> {
  if (!ctx.user && !ctx.service) throw new UnauthenticatedError('reading analytics needs a signed-in user');
  const stream = await store.stream(streamId);
  if (!stream) throw new NotFoundError(`stream ${streamId} not found`);
  if (!readsEverything(ctx) && stream.ownerId !== ctx.user?.userId) {
    throw new PermissionDeniedError(
      `only the owner of stream ${streamId} or an admin may read its analytics`,
    );
  }
  return stream;
}

export interface Range {
  from: Date;
  to: Date;
}

/** Checks a range: from before to, at most `maxDays` long. */
export function checkRange(range: Range, maxDays: number): Range {
  if (range.from >= range.to) throw new InvalidArgumentError('from must be before to', 'from');
  const days = (range.to.getTime() - range.from.getTime()) / 86_400_000;
  if (days > maxDays) {
    throw new InvalidArgumentError(
      `the range is ${days.toFixed(1)} days long; at most ${maxDays} days per query`,
      'from',
    );
  }
  return range;
}

/** The step in seconds (default: the smallest that fits the range); too small a step is an error. */
export function checkStep(range: Range, stepSeconds: number): number {
  const spanS = (range.to.getTime() - range.from.getTime()) / 1000;
  const smallest = Math.max(MIN_STEP_S, Math.ceil(spanS / MAX_POINTS / MIN_STEP_S) * MIN_STEP_S);
  if (stepSeconds === 0) return smallest;
  if (stepSeconds < smallest) {
    throw new InvalidArgumentError(
      `step_seconds ${stepSeconds} is too small for this range: at least ${smallest} s (at most ${MAX_POINTS} points, and the roll-ups are per minute)`,
      'step_seconds',
    );
  }
  if (stepSeconds % MIN_STEP_S !== 0) {
    throw new InvalidArgumentError(`step_seconds must be a multiple of ${MIN_STEP_S}`, 'step_seconds');
  }
  return stepSeconds;
}
