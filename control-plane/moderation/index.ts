/**
 * Moderation: the ContentScorer port with its local and external (circuit-broken) scorers,
 * reports, the moderator queue and actions (room sanctions among them, stored by the chat
 * module, which hands moderation its store).
 */

import type { Logger } from '../../common/index.js';
import { ExternalScorer, type ExternalScorerOptions } from './external-scorer.js';
import { LocalScorer } from './local-scorer.js';
import type { ContentScorer } from './scorer.js';

export { createModeration, isModerator, type Moderation, type Verdict } from './moderation.js';
export type { ContentScorer } from './scorer.js';

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
