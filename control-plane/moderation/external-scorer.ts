/**
 * An external moderation service over HTTP (MODERATION_URL: POST {text} -> {score, reasons}),
 * behind an opossum circuit breaker (the seed's "Circuit Breaker"): a slow or failing service
 * costs at most `timeoutMs` per message until the breaker opens, then nothing while it is
 * open; the local scorer answers meanwhile, so chat never waits on it.
 *
 * The local word lists always apply too: the result is the stronger of the two, so an
 * external model that misses a disguised word cannot let it through.
 */
import CircuitBreaker from 'opossum';
import { z } from 'zod';
import { counter, gauge, type Logger, noteFallback, reportBreakerState } from '../../common/index.js';
import type { LocalScorer } from './local-scorer.js';
import type { ContentScorer, ScoreContext, ScoreResult } from './scorer.js';

const BREAKER_STATES = ['closed', 'open', 'half_open'] as const;
type BreakerState = (typeof BREAKER_STATES)[number];

const breakerState = gauge(
  'veza_moderation_breaker_state',
  'State of the external moderation circuit breaker: 1 for the current state, 0 for the others',
  ['state'],
);
const fallbacks = counter(
  'veza_moderation_fallback_total',
  'Messages scored by the local scorer because the external moderation service failed or its breaker was open',
);
const externalFailures = counter(
  'veza_moderation_external_failures_total',
  'Calls to the external moderation service that failed or timed out',
);

function setBreakerState(state: BreakerState): void {
  for (const name of BREAKER_STATES) breakerState.set({ state: name }, name === state ? 1 : 0);
  // The same state in the gauge every breaker reports to (common/circuit-breaker.ts).
  reportBreakerState('moderation', state);
}

const responseSchema = z.object({
  score: z.number().min(0).max(1),
  reasons: z.array(z.string().max(200)).max(20).default([]),
});

export interface ExternalScorerOptions {
  url: string;
  local: LocalScorer;
  log: Logger;
  /** Per call; past it the call counts as a failure and the local scorer answers. */
  timeoutMs?: number;
  /** How long the breaker stays open before one trial call (half-open). */
  resetTimeoutMs?: number;
  /** Failure percentage over the rolling window that opens the breaker. */
  errorThresholdPercentage?: number;
  /** Calls in the window before the percentage counts, so one early failure does not open it. */
  volumeThreshold?: number;
}

export const EXTERNAL_DEFAULTS = {
  timeoutMs: 800,
  resetTimeoutMs: 15_000,
  errorThresholdPercentage: 50,
  volumeThreshold: 5,
} as const;

async function callService(url: string, text: string, timeoutMs: number): Promise<ScoreResult> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ text }),
    // The breaker stops waiting at its timeout; this frees the socket too.
    signal: AbortSignal.timeout(timeoutMs + 100),
  });
  if (!response.ok) throw new Error(`moderation service answered HTTP ${response.status}`);
  const parsed = responseSchema.safeParse(await response.json());
  if (!parsed.success) throw new Error('moderation service answered an unexpected body');
  return { score: parsed.data.score, reasons: parsed.data.reasons, matches: [] };
}

export class ExternalScorer implements ContentScorer {
  readonly breaker: CircuitBreaker<[string, ScoreContext | undefined], ScoreResult>;
  private readonly local: LocalScorer;

  constructor(options: ExternalScorerOptions) {
    const settings = { ...EXTERNAL_DEFAULTS, ...definedOnly(options) };
    this.local = options.local;
    const log = options.log.child({ component: 'moderation-breaker' });
    this.breaker = new CircuitBreaker(
      (text: string, _context: ScoreContext | undefined) =>
        callService(options.url, text, settings.timeoutMs),
      {
        name: 'moderation',
        timeout: settings.timeoutMs,
        resetTimeout: settings.resetTimeoutMs,
        errorThresholdPercentage: settings.errorThresholdPercentage,
        volumeThreshold: settings.volumeThreshold,
      },
    );
    this.breaker.fallback((text: string, context: ScoreContext | undefined) =>
      this.local.scoreNow(text, context),
    );
    this.breaker.on('fallback', () => {
      fallbacks.inc();
      noteFallback('moderation', 'local-scorer');
    });
    this.breaker.on('failure', (error: unknown) => {
      externalFailures.inc();
      log.warn({ err: error }, 'external moderation call failed; the local scorer answered');
    });
    this.breaker.on('open', () => {
      setBreakerState('open');
      log.warn('moderation circuit breaker opened');
    });
    this.breaker.on('halfOpen', () => setBreakerState('half_open'));
    this.breaker.on('close', () => {
      setBreakerState('closed');
      log.info('moderation circuit breaker closed');
    });
    setBreakerState('closed');
  }

  async score(text: string, context?: ScoreContext): Promise<ScoreResult> {
    const remote = await this.breaker.fire(text, context);
    const local = this.local.scoreNow(text, context);
    return remote.score >= local.score
      ? { ...remote, matches: [...(remote.matches ?? []), ...(local.matches ?? [])] }
      : local;
  }

  close(): void {
    this.breaker.shutdown();
  }
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
