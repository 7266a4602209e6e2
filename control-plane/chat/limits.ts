/**
 * Chat limits. Constants here rather than in common/config.ts until an operator needs to
 * change them: CHAT_MAX_LENGTH is the one most likely to move there (ask the lead).
 */
import type { RateRule } from '../../common/ports/rate-limiter.js';

/** Characters (code points) in one message, after trimming. */
export const CHAT_MAX_LENGTH = 1000;
export const METADATA_MAX_BYTES = 4 * 1024;
export const CLIENT_MESSAGE_ID_MAX = 64;
/** The message types a client may send; an empty message_type means "text". */
export const MESSAGE_TYPES = ['text', 'emote', 'reaction'] as const;
export type MessageType = (typeof MESSAGE_TYPES)[number];

export const ROOM_NAME_MAX = 100;
export const ROOM_DESCRIPTION_MAX = 500;
export const REPORT_REASON_MAX = 500;
export const REPORT_DETAILS_MAX = 2000;

export const HISTORY_DEFAULT_LIMIT = 50;
export const HISTORY_MAX_LIMIT = 100;

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
