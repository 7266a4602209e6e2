import type { RateRule } from '../../common/ports/index.js';
/**
 * The chat's rate limits and repeat rule, which only ChatService applies. The limits every side
 * checks (lengths, types, history pages) are the contract's (common/contracts/chat-rules.ts).
 */

/**
 * Per user and room: a short window allows a burst, a long one caps the sustained rate.
 * Both must allow a message; edits count too.
 */
export const CHAT_BURST: Omit<RateRule, 'name'> = { points: 6, durationS: 5 };
export const CHAT_SUSTAINED: Omit<RateRule, 'name'> = { points: 30, durationS: 60 };
/** Typing indicators and presence, per user and room. */
export const ACTIVITY_LIMIT: Omit<RateRule, 'name'> = { points: 20, durationS: 10 };

/** How far back the sender's own messages are compared for repeats. */
export const REPEAT_WINDOW_S = 120;
export const REPEAT_SAMPLE = 5;

/** A streaming client that stops reading is cut off past this many queued messages (it resumes from its last id). */
export const STREAM_BUFFER_LIMIT = 512;

/**
 * The most messages one group commit of a room stores (batcher.ts). A busy room's batch is
 * what queued during the previous commit; the cap keeps one transaction and one bus message
 * short (within common/contracts' MESSAGE_BATCH_MAX).
 */
export const GROUP_COMMIT_MAX = 500;

/**
 * A sender refused from memory for a ban or mute has it read again from PostgreSQL when memory
 * last read it longer ago than this: a lifting whose bus event was lost heals within it, and a
 * sanctioned user hammering sends costs at most one query per interval.
 */
export const SANCTION_RECHECK_MS = 2000;
