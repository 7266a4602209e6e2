/**
 * Moderation: the automatic check every message goes through, reports by users, and the
 * moderator actions, each written to audit_log (who, what, on what, when).
 *
 * Permission checks live here, not in a transport, so any caller (gRPC now, the edge's
 * REST routes through gRPC) gets the same rules:
 * - reports: any signed-in user;
 * - mute, ban, end a stream, the queue and resolving reports: moderators and admins
 *   (the `chat:moderate` permission); moderators and admins themselves cannot be muted or banned.
 */
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitedError,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import { counter, hasPermission, type Logger, type UserRole } from '../../common/index.js';
import type { EventBus, RateLimiter, RateRule } from '../../common/ports/index.js';
import type { ModerationItem } from '../../proto/gen/veza/chat/chat.js';
import { recordAudit, rolesOf, userExists } from '../auth/index.js';
import type { Notifier } from '../notifications/index.js';
import { endLiveStream } from '../streams/index.js';
import { type ContentScorer, MODERATION_THRESHOLD, type ScoreContext, type ScoreResult } from './scorer.js';
import { type ActiveSanctions, createModerationStore, type ReportStatus, type TargetType } from './store.js';

export interface Actor {
  userId: number;
  roles: readonly UserRole[];
}

export interface ModerationDeps {
  sql: Sql;
  bus: EventBus;
  log: Logger;
  notifier: Notifier;
  scorer: ContentScorer;
  rateLimiter: RateLimiter;
  /** Scores at or above it are flagged; MODERATION_THRESHOLD by default. */
  threshold?: number;
}

export interface Verdict extends ScoreResult {
  flagged: boolean;
}

/** Moderators hear of a sender's flagged messages in a room at most once per window; the queue has them all. */
export const FLAG_NOTIFY_RULE: RateRule = { name: 'moderation-flag-notify', points: 1, durationS: 60 };
/** Reports per user, so the queue cannot be flooded. */
export const REPORT_RULE: RateRule = { name: 'moderation-report', points: 10, durationS: 600 };

const flaggedTotal = counter('veza_moderation_flagged_total', 'Messages the automatic moderation refused');
const reportsTotal = counter('veza_moderation_reports_total', 'Reports by users, by target type', [
  'target_type',
]);
const actionsTotal = counter('veza_moderation_actions_total', 'Moderator actions, by action', ['action']);

export function isModerator(actor: Actor | null | undefined): boolean {
  return !!actor && hasPermission(actor.roles, 'chat:moderate');
}

function requireModerator(actor: Actor, what: string): void {
  if (!isModerator(actor)) throw new PermissionDeniedError(`${what} needs the moderator or admin role`);
}

const PROTECTED_ROLES: readonly string[] = ['moderator', 'admin'];

export function createModeration(deps: ModerationDeps) {
  const store = createModerationStore(deps.sql);
  const { sql } = deps;
  const threshold = deps.threshold ?? MODERATION_THRESHOLD;
  const log = deps.log.child({ component: 'moderation' });

  const roomExists = async (roomId: number) => {
    const [room] = await sql<{ id: number }[]>`select id from chat_rooms where id = ${roomId}`;
    if (!room) throw new NotFoundError(`room ${roomId} not found`);
  };

  /** The target of a mute or ban: an existing user who is not staff, and not the actor. */
  const sanctionable = async (actor: Actor, userId: number, what: string) => {
    if (userId === actor.userId) throw new InvalidArgumentError(`you cannot ${what} yourself`, 'user_id');
    const roles = await rolesOf(sql, userId);
    if (!roles) throw new NotFoundError(`user ${userId} not found`);
    if (roles.some((role) => PROTECTED_ROLES.includes(role))) {
      throw new PermissionDeniedError(
        `moderators and admins cannot be ${what === 'ban' ? 'banned' : 'muted'}`,
      );
    }
  };

  const action = async (
    actor: Actor,
    name: string,
    target: { type: string; id: number },
    details: object,
  ) => {
    actionsTotal.inc({ action: name });
    await recordAudit(sql, {
      actorId: actor.userId,
      action: name,
      targetType: target.type,
      targetId: target.id,
      details,
    });
    log.info({ actorId: actor.userId, action: name, target }, 'moderator action');
  };

  return {
    threshold,

    /** Scores a text; a scorer failure never blocks chat (the external one falls back itself). */
    async check(text: string, context?: ScoreContext): Promise<Verdict> {
      const result = await deps.scorer.score(text, context);
      return { ...result, flagged: result.score >= threshold };
    },

    sanctionsOf: (roomId: number, userId: number): Promise<ActiveSanctions> =>
      store.sanctionsOf(roomId, userId),

    /**
     * Queues a flagged message for the moderators and tells them, at most once a minute per
     * sender and room. Called after the message is stored with flagged = true.
     */
    async flagged(input: {
      messageId: number;
      roomId: number;
      userId: number;
      username: string;
      content: string;
      verdict: ScoreResult;
    }): Promise<number> {
      flaggedTotal.inc();
      const report = await store.insertReport({
        source: 'automatic',
        reporterId: null,
        targetType: 'message',
        targetId: input.messageId,
        roomId: input.roomId,
        reason: input.verdict.reasons.join(', ') || 'automatic moderation',
        details: (input.verdict.matches ?? []).join(', '),
        score: input.verdict.score,
        reasons: input.verdict.reasons,
      });
      const decision = await deps.rateLimiter.consume(FLAG_NOTIFY_RULE, `${input.userId}:${input.roomId}`);
      if (decision.allowed) {
        await deps.notifier.notifyModerators(
          'moderation.flagged',
          `Message by ${input.username} was blocked`,
          input.content.slice(0, 200),
          {
            report_id: report.id,
            message_id: input.messageId,
            room_id: input.roomId,
            user_id: input.userId,
            score: input.verdict.score,
            reasons: input.verdict.reasons,
          },
        );
      }
      return report.id;
    },

    async report(
      reporter: Actor,
      input: { targetType: TargetType; targetId: number; reason: string; details: string },
    ): Promise<{ reportId: number; created: boolean }> {
      let roomId: number | null = null;
      if (input.targetType === 'message') {
        const [message] = await sql<{ room_id: number }[]>`
          select room_id from chat_messages where id = ${input.targetId} and not flagged`;
        if (!message) throw new NotFoundError(`message ${input.targetId} not found`);
        roomId = message.room_id;
      } else if (input.targetType === 'user') {
        if (input.targetId === reporter.userId)
          throw new InvalidArgumentError('you cannot report yourself', 'target_id');
        if (!(await userExists(sql, input.targetId)))
          throw new NotFoundError(`user ${input.targetId} not found`);
      } else {
        const [stream] = await sql<{ chat_room_id: number }[]>`
          select chat_room_id from streams where id = ${input.targetId}`;
        if (!stream) throw new NotFoundError(`stream ${input.targetId} not found`);
        roomId = stream.chat_room_id;
      }
      const decision = await deps.rateLimiter.consume(REPORT_RULE, String(reporter.userId));
      if (!decision.allowed) {
        const seconds = Math.ceil(decision.retryAfterMs / 1000);
        throw new RateLimitedError(`too many reports; try again in ${seconds} s`, decision.retryAfterMs);
      }
      const report = await store.insertReport({
        source: 'user',
        reporterId: reporter.userId,
        targetType: input.targetType,
        targetId: input.targetId,
        roomId,
        reason: input.reason,
        details: input.details,
        score: null,
        reasons: [],
      });
      if (report.created) {
        reportsTotal.inc({ target_type: input.targetType });
        await deps.notifier.notifyModerators(
          'moderation.report',
          `New report on a ${input.targetType}`,
          input.reason,
          { report_id: report.id, target_type: input.targetType, target_id: input.targetId, room_id: roomId },
        );
      }
      return { reportId: report.id, created: report.created };
    },

    async mute(actor: Actor, input: { roomId: number; userId: number; durationS: number; reason: string }) {
      requireModerator(actor, 'muting a user');
      await roomExists(input.roomId);
      await sanctionable(actor, input.userId, 'mute');
      const expiresAt = await store.mute({ ...input, actorId: actor.userId });
      await action(
        actor,
        'chat.user_muted',
        { type: 'user', id: input.userId },
        {
          room_id: input.roomId,
          duration_s: input.durationS,
          expires_at: expiresAt.toISOString(),
          reason: input.reason,
        },
      );
      return expiresAt;
    },

    async unmute(actor: Actor, input: { roomId: number; userId: number }): Promise<boolean> {
      requireModerator(actor, 'unmuting a user');
      const changed = await store.unmute(input.roomId, input.userId);
      if (changed)
        await action(
          actor,
          'chat.user_unmuted',
          { type: 'user', id: input.userId },
          { room_id: input.roomId },
        );
      return changed;
    },

    async ban(
      actor: Actor,
      input: { roomId: number; userId: number; durationS: number | null; reason: string },
    ) {
      requireModerator(actor, 'banning a user');
      await roomExists(input.roomId);
      await sanctionable(actor, input.userId, 'ban');
      const expiresAt = await store.ban({ ...input, actorId: actor.userId });
      await action(
        actor,
        'chat.user_banned',
        { type: 'user', id: input.userId },
        {
          room_id: input.roomId,
          duration_s: input.durationS,
          expires_at: expiresAt?.toISOString() ?? null,
          reason: input.reason,
        },
      );
      return expiresAt;
    },

    async unban(actor: Actor, input: { roomId: number; userId: number }): Promise<boolean> {
      requireModerator(actor, 'unbanning a user');
      const changed = await store.unban(input.roomId, input.userId);
      if (changed)
        await action(
          actor,
          'chat.user_unbanned',
          { type: 'user', id: input.userId },
          { room_id: input.roomId },
        );
      return changed;
    },

    /** Ends a live stream as a moderator, through the streams module's one way of ending a stream. */
    async endStream(actor: Actor, input: { streamId: number; reason: string }): Promise<'live' | 'ended'> {
      requireModerator(actor, 'ending a stream');
      const reason = input.reason || 'stopped_by_moderator';
      const ended = await endLiveStream({ sql, bus: deps.bus, log }, input.streamId, reason);
      if (!ended) {
        const [existing] = await sql<{ id: number }[]>`select id from streams where id = ${input.streamId}`;
        if (!existing) throw new NotFoundError(`stream ${input.streamId} not found`);
        return 'ended';
      }
      await action(actor, 'stream.ended_by_moderator', { type: 'stream', id: ended.id }, { reason });
      return 'live';
    },

    async queue(
      actor: Actor,
      options: { status: 'open' | 'resolved' | 'all'; limit: number; beforeId: number },
    ): Promise<{ items: ModerationItem[]; hasMore: boolean }> {
      requireModerator(actor, 'reading the moderation queue');
      return store.listReports(options);
    },

    /**
     * Closes an open report. "approved" is for a message the automatic moderation flagged
     * wrongly: it is unflagged, and the caller delivers it (returned as approvedMessageId).
     */
    async resolve(
      actor: Actor,
      input: { reportId: number; resolution: Exclude<ReportStatus, 'open'>; note: string },
    ): Promise<{ item: ModerationItem; approvedMessageId: number | null }> {
      requireModerator(actor, 'resolving a report');
      const current = await store.getReport(input.reportId);
      if (!current) throw new NotFoundError(`report ${input.reportId} not found`);
      if (current.status !== 'open') {
        throw new FailedPreconditionError(`report ${input.reportId} is already ${current.status}`);
      }
      const approving = input.resolution === 'approved';
      if (approving && (current.source !== 'automatic' || current.targetType !== 'message')) {
        throw new InvalidArgumentError(
          'only a message the automatic moderation flagged can be approved',
          'resolution',
        );
      }
      const item = await sql.begin(async (tx) => {
        const resolved = await store.resolveReport(
          input.reportId,
          { status: input.resolution, actorId: actor.userId, note: input.note },
          tx,
        );
        if (!resolved) throw new FailedPreconditionError(`report ${input.reportId} is already resolved`);
        if (approving) await tx`update chat_messages set flagged = false where id = ${current.targetId}`;
        await recordAudit(tx, {
          actorId: actor.userId,
          action: 'report.resolved',
          targetType: 'report',
          targetId: input.reportId,
          details: {
            resolution: input.resolution,
            note: input.note,
            target_type: current.targetType,
            target_id: current.targetId,
          },
        });
        return resolved;
      });
      actionsTotal.inc({ action: 'report.resolved' });
      return { item, approvedMessageId: approving ? current.targetId : null };
    },

    /** Records a moderator's deletion of someone else's message (the chat module deletes it). */
    async auditMessageDeletion(
      actor: Actor,
      message: { messageId: number; roomId: number; userId: number },
      reason: string,
    ) {
      await action(
        actor,
        'chat.message_deleted',
        { type: 'message', id: message.messageId },
        {
          room_id: message.roomId,
          author_id: message.userId,
          reason,
        },
      );
    },
  };
}

export type Moderation = ReturnType<typeof createModeration>;
