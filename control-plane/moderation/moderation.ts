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
  ANALYTICS_EVENTS,
  analyticsEvent,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitedError,
} from '../../common/contracts/index.js';
import type { Sql, TransactionSql } from '../../common/db/index.js';
import { counter, hasPermission, type Logger, type UserRole } from '../../common/index.js';
import type { EventBus, RateLimiter, RateRule } from '../../common/ports/index.js';
import type { ChatMessage, ModerationItem } from '../../proto/gen/veza/chat/chat.js';
import { recordAudit, rolesOf, userExists } from '../auth/index.js';
import type { Notifier } from '../notifications/index.js';
import { endLiveStream, streamStateOf } from '../streams/index.js';
import { type ContentScorer, MODERATION_THRESHOLD, type ScoreContext, type ScoreResult } from './scorer.js';
import {
  createModerationStore,
  type ReportRow,
  type ReportStatus,
  type TargetType,
  toModerationItem,
} from './store.js';

interface Actor {
  userId: number;
  roles: readonly UserRole[];
}

/**
 * What moderation needs of the chat module's rooms, messages and sanctions, which only the
 * chat store touches. The chat module hands its store in: it depends on moderation (every
 * message is scored before it is stored), so moderation cannot import it.
 */
interface ModeratedChat {
  roomExists(roomId: number): Promise<boolean>;
  /** The room of a message members can see (not flagged); null when there is none. */
  roomOfVisibleMessage(messageId: number): Promise<number | null>;
  /** Returns when the mute ends. */
  mute(input: {
    roomId: number;
    userId: number;
    actorId: number;
    durationS: number;
    reason: string;
  }): Promise<Date>;
  unmute(roomId: number, userId: number): Promise<boolean>;
  /** Also ends the membership; returns when the ban ends (null: until lifted). */
  ban(input: {
    roomId: number;
    userId: number;
    actorId: number;
    durationS: number | null;
    reason: string;
  }): Promise<Date | null>;
  unban(roomId: number, userId: number): Promise<boolean>;
  /** In the caller's transaction: approving a flagged message resolves its report at the same time. */
  unflagMessage(tx: TransactionSql, messageId: number): Promise<void>;
  /** Messages by id as their authors wrote them, flagged and deleted ones included. */
  messagesAsWritten(ids: readonly number[]): Promise<Map<number, ChatMessage>>;
}

interface ModerationDeps {
  sql: Sql;
  chat: ModeratedChat;
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
const FLAG_NOTIFY_RULE: RateRule = { name: 'moderation-flag-notify', points: 1, durationS: 60 };
/** Reports per user, so the queue cannot be flooded. */
const REPORT_RULE: RateRule = { name: 'moderation-report', points: 10, durationS: 600 };

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
  const { sql, chat } = deps;
  const threshold = deps.threshold ?? MODERATION_THRESHOLD;
  const log = deps.log.child({ component: 'moderation' });

  const roomExists = async (roomId: number) => {
    if (!(await chat.roomExists(roomId))) throw new NotFoundError(`room ${roomId} not found`);
  };

  /** Reports as moderators see them: with the reported message as it was written. */
  const itemsOf = async (rows: readonly ReportRow[]): Promise<ModerationItem[]> => {
    const messageIds = rows.filter((row) => row.target_type === 'message').map((row) => row.target_id);
    const messages = await chat.messagesAsWritten(messageIds);
    return rows.map((row) =>
      toModerationItem(row, row.target_type === 'message' ? messages.get(row.target_id) : undefined),
    );
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
        roomId = await chat.roomOfVisibleMessage(input.targetId);
        if (roomId === null) throw new NotFoundError(`message ${input.targetId} not found`);
      } else if (input.targetType === 'user') {
        if (input.targetId === reporter.userId)
          throw new InvalidArgumentError('you cannot report yourself', 'target_id');
        if (!(await userExists(sql, input.targetId)))
          throw new NotFoundError(`user ${input.targetId} not found`);
      } else {
        const stream = await streamStateOf(sql, input.targetId);
        if (!stream) throw new NotFoundError(`stream ${input.targetId} not found`);
        roomId = stream.chatRoomId;
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
        // Counted in the stream's analytics (its chat room names the stream; the store resolves it).
        if (roomId !== null) {
          deps.bus
            .publish(
              ANALYTICS_EVENTS,
              analyticsEvent({
                type: 'chat.report',
                user_id: reporter.userId,
                properties: { room_id: String(roomId), target_type: input.targetType },
                dedupe_key: `chat.report:${report.id}`,
              }),
            )
            .catch((error: unknown) => log.warn({ err: error }, 'could not count a report in analytics'));
        }
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
      const expiresAt = await chat.mute({ ...input, actorId: actor.userId });
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
      const changed = await chat.unmute(input.roomId, input.userId);
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
      const expiresAt = await chat.ban({ ...input, actorId: actor.userId });
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
      const changed = await chat.unban(input.roomId, input.userId);
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
        if (!(await streamStateOf(sql, input.streamId))) {
          throw new NotFoundError(`stream ${input.streamId} not found`);
        }
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
      const page = await store.listReports(options);
      return { items: await itemsOf(page.rows), hasMore: page.hasMore };
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
      if (approving && (current.source !== 'automatic' || current.target_type !== 'message')) {
        throw new InvalidArgumentError(
          'only a message the automatic moderation flagged can be approved',
          'resolution',
        );
      }
      const resolved = await sql.begin(async (tx) => {
        const row = await store.resolveReport(
          input.reportId,
          { status: input.resolution, actorId: actor.userId, note: input.note },
          tx,
        );
        if (!row) throw new FailedPreconditionError(`report ${input.reportId} is already resolved`);
        if (approving) await chat.unflagMessage(tx, current.target_id);
        await recordAudit(tx, {
          actorId: actor.userId,
          action: 'report.resolved',
          targetType: 'report',
          targetId: input.reportId,
          details: {
            resolution: input.resolution,
            note: input.note,
            target_type: current.target_type,
            target_id: current.target_id,
          },
        });
        return row;
      });
      actionsTotal.inc({ action: 'report.resolved' });
      const [item] = await itemsOf([resolved]);
      if (!item) throw new Error(`report ${input.reportId} lost its item`);
      return { item, approvedMessageId: approving ? current.target_id : null };
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
