/**
 * The moderation port: something that scores a text from 0 (fine) to 1 (certainly
 * unacceptable), with the reasons a moderator and the sender can read.
 */

export interface ScoreResult {
  score: number;
  /** Short, human-readable and safe to show the sender, e.g. "offensive language". */
  reasons: string[];
  /** What triggered the reasons (matched words, domains), for the moderator queue only. */
  matches?: string[];
}

export interface ScoreContext {
  /** The sender's recent messages in the same room, newest first, for repeat detection. */
  recent?: readonly string[];
}

export interface ContentScorer {
  score(text: string, context?: ScoreContext): Promise<ScoreResult>;
  /** Releases timers and sockets. */
  close?(): void;
}

/** Above this a message is stored flagged and not delivered. */
export const MODERATION_THRESHOLD = 0.7;

export const CLEAN: ScoreResult = Object.freeze({ score: 0, reasons: [], matches: [] }) as ScoreResult;

/** Independent signals add up: two medium ones make a strong one, none exceeds 1. */
export function combineScores(results: readonly ScoreResult[]): ScoreResult {
  let keep = 1;
  const reasons: string[] = [];
  const matches: string[] = [];
  for (const result of results) {
    keep *= 1 - Math.min(1, Math.max(0, result.score));
    for (const reason of result.reasons) if (!reasons.includes(reason)) reasons.push(reason);
    for (const match of result.matches ?? []) if (!matches.includes(match)) matches.push(match);
  }
  return { score: Math.round((1 - keep) * 1000) / 1000, reasons, matches };
}
