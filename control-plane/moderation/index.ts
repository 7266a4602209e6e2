/**
 * Moderation: the ContentScorer port with its local and external (circuit-broken) scorers,
 * reports, room sanctions, the moderator queue and actions.
 */

import type { Logger } from '../../common/index.js';
import { ExternalScorer, type ExternalScorerOptions } from './external-scorer.js';
import { LocalScorer } from './local-scorer.js';
import type { ContentScorer } from './scorer.js';

export { EXTERNAL_DEFAULTS, ExternalScorer, type ExternalScorerOptions } from './external-scorer.js';
export { LocalScorer, REASON_FLOOD, REASON_LANGUAGE, REASON_LINKS, REASON_REPEAT } from './local-scorer.js';
export {
  type Actor,
  createModeration,
  FLAG_NOTIFY_RULE,
  isModerator,
  type Moderation,
  type ModerationDeps,
  REPORT_RULE,
  type Verdict,
} from './moderation.js';
export {
  CLEAN,
  type ContentScorer,
  combineScores,
  MODERATION_THRESHOLD,
  type ScoreContext,
  type ScoreResult,
} from './scorer.js';
export { BUILT_IN_LISTS, ENGLISH, FRENCH, type WordEntry, type WordList } from './wordlists.js';

export interface ScorerOptions extends Partial<Omit<ExternalScorerOptions, 'local' | 'log' | 'url'>> {
  /** The external service (MODERATION_URL); the local scorer alone when unset. */
  url?: string;
}

/** The scorer a deployment uses: external behind its breaker when a URL is set, else local. */
export function createScorer(options: ScorerOptions, log: Logger): ContentScorer {
  const local = new LocalScorer();
  if (!options.url) return local;
  return new ExternalScorer({ ...options, url: options.url, local, log });
}
