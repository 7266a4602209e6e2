/**
 * The one circuit breaker (opossum) around a call to another service: the control plane, a media
 * node, S3, the external moderation scorer. While the target keeps failing the breaker opens and
 * refuses calls at once (a fast 503 with Retry-After instead of every request waiting out its
 * deadline on a service that is down), then lets one trial call through after the reset time and
 * closes again when it succeeds.
 *
 * Only failures that say the target is unwell count (`isFailure`): a 404 or a refused login is an
 * answer, and must not open the breaker for everybody.
 */
import CircuitBreaker from 'opossum';
import { UnavailableError } from './contracts/index.js';
import type { Logger } from './log.js';
import { counter, gauge } from './metrics.js';

export const BREAKER_TARGETS = ['control-plane', 'media-node', 's3', 'moderation'] as const;
export type BreakerTarget = (typeof BREAKER_TARGETS)[number];

export interface BreakerSettings {
  /** Per call; past it the call fails (and counts). false: the call's own deadline governs. */
  timeoutMs: number | false;
  /** Open → half-open after this long (CIRCUIT_BREAKER_RESET_MS). */
  resetTimeoutMs: number;
  /** Failure percentage over the rolling window that opens the breaker. */
  errorThresholdPercentage: number;
  /** Calls in the window before the percentage counts, so one early failure does not open it. */
  volumeThreshold: number;
  /** The rolling window the percentage is computed over. */
  rollingCountTimeoutMs: number;
}

/**
 * Per-target settings. The control plane's calls carry their own gRPC deadline (and a transport
 * failure is reported at once), so no breaker timeout there; S3 and the moderation scorer get one
 * because an HTTP call to them can stall. The reset time comes from the config.
 */
export const BREAKER_DEFAULTS: Record<BreakerTarget, Omit<BreakerSettings, 'resetTimeoutMs'>> = {
  'control-plane': {
    timeoutMs: false,
    errorThresholdPercentage: 50,
    volumeThreshold: 5,
    rollingCountTimeoutMs: 10_000,
  },
  'media-node': {
    timeoutMs: false,
    errorThresholdPercentage: 50,
    volumeThreshold: 5,
    rollingCountTimeoutMs: 10_000,
  },
  s3: { timeoutMs: 10_000, errorThresholdPercentage: 50, volumeThreshold: 5, rollingCountTimeoutMs: 10_000 },
  moderation: {
    timeoutMs: 800,
    errorThresholdPercentage: 50,
    volumeThreshold: 5,
    rollingCountTimeoutMs: 10_000,
  },
};

/** The value of `veza_circuit_breaker_state`: what the alert rules compare against. */
export const BREAKER_STATE_VALUE = { closed: 0, half_open: 1, open: 2 } as const;
export type BreakerState = keyof typeof BREAKER_STATE_VALUE;

const stateGauge = gauge(
  'veza_circuit_breaker_state',
  'State of the circuit breaker in front of a target: 0 closed, 1 half-open, 2 open',
  ['target', 'peer'],
  // Threads of one process with a breaker to the same target: the worst state shows.
  { aggregator: 'max' },
);
const transitions = counter(
  'veza_circuit_breaker_transitions_total',
  'Circuit breaker state changes, by target and the state entered',
  ['target', 'peer', 'state'],
);
const failures = counter(
  'veza_circuit_breaker_failures_total',
  'Calls through a circuit breaker that failed in a way that counts against the target (unavailable, timeout)',
  ['target', 'peer'],
);
const rejections = counter(
  'veza_circuit_breaker_rejections_total',
  'Calls refused at once because the breaker in front of the target was open',
  ['target', 'peer'],
);
const fallbacks = counter(
  'veza_circuit_breaker_fallbacks_total',
  'Requests answered by a fallback (last known state, cache, local scorer) because the target failed',
  ['target', 'fallback'],
);

/**
 * Sets the state gauge of a breaker built elsewhere on opossum (the moderation scorer's, which
 * falls back inside the breaker), so every breaker shows in `veza_circuit_breaker_state`.
 */
export function reportBreakerState(target: BreakerTarget, state: BreakerState, peer = ''): void {
  stateGauge.set({ target, peer }, BREAKER_STATE_VALUE[state]);
  transitions.inc({ target, peer, state });
}

/** Counts a request a caller answered from a fallback instead of the target. */
export function noteFallback(target: BreakerTarget, fallback: string): void {
  fallbacks.inc({ target, fallback });
}

export interface BreakerOptions {
  target: BreakerTarget;
  /**
   * Which one of the target's instances, when each has its own breaker (a media node's id), so one
   * node down does not cut the others off. The `peer` label; empty for a target with one breaker.
   */
  peer?: string;
  resetTimeoutMs: number;
  log: Logger;
  /** Overrides of the target's defaults (tests, or a caller with its own timeout). */
  settings?: Partial<Omit<BreakerSettings, 'resetTimeoutMs'>>;
  /** Whether an error says the target is unwell (counts); anything else passes through uncounted. */
  isFailure?: (error: unknown) => boolean;
}

export interface Breaker {
  readonly target: BreakerTarget;
  state(): BreakerState;
  /**
   * Runs the call through the breaker. Refused at once with an UnavailableError carrying
   * retryAfterMs while open; a breaker timeout is an UnavailableError too.
   */
  run<T>(call: () => Promise<T>): Promise<T>;
  /** Stops its timers (the breaker then refuses every call). */
  close(): void;
}

type Thunk = () => Promise<unknown>;

function isOpossumError(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

export function createBreaker(options: BreakerOptions): Breaker {
  const { target } = options;
  const labels = { target, peer: options.peer ?? '' };
  const settings = { ...BREAKER_DEFAULTS[target], ...options.settings };
  const log = options.log.child({
    component: 'circuit-breaker',
    target,
    ...(options.peer ? { peer: options.peer } : {}),
  });
  const isFailure = options.isFailure ?? (() => true);
  const breaker = new CircuitBreaker<[Thunk], unknown>((call: Thunk) => call(), {
    name: target,
    timeout: settings.timeoutMs,
    resetTimeout: options.resetTimeoutMs,
    errorThresholdPercentage: settings.errorThresholdPercentage,
    volumeThreshold: settings.volumeThreshold,
    rollingCountTimeout: settings.rollingCountTimeoutMs,
    // An error for which this returns true is the target's answer, not its failure: it neither
    // counts towards opening nor fails a half-open trial.
    errorFilter: (error: unknown) => !isOpossumError(error, 'ETIMEDOUT') && !isFailure(error),
  });
  let openedAt = 0;
  let current: BreakerState = 'closed';
  const enter = (state: BreakerState) => {
    current = state;
    reportBreakerState(target, state, labels.peer);
  };
  stateGauge.set(labels, BREAKER_STATE_VALUE.closed);
  breaker.on('open', () => {
    openedAt = Date.now();
    enter('open');
    log.warn(
      { resetTimeoutMs: options.resetTimeoutMs },
      `circuit breaker to ${target} ${labels.peer} opened: calls fail fast`,
    );
  });
  breaker.on('halfOpen', () => {
    enter('half_open');
    log.info(`circuit breaker to ${target} half-open: one trial call`);
  });
  breaker.on('close', () => {
    enter('closed');
    log.info(`circuit breaker to ${target} closed`);
  });
  breaker.on('failure', () => failures.inc(labels));
  breaker.on('reject', () => rejections.inc(labels));

  const retryAfterMs = () => Math.max(1000, options.resetTimeoutMs - (Date.now() - openedAt));

  return {
    target,
    state: () => current,
    async run<T>(call: () => Promise<T>): Promise<T> {
      try {
        return (await breaker.fire(call)) as T;
      } catch (error) {
        if (isOpossumError(error, 'EOPENBREAKER') || isOpossumError(error, 'ESHUTDOWN')) {
          throw new UnavailableError(`${target} is unavailable (circuit open); retry later`, {
            cause: error,
            retryAfterMs: retryAfterMs(),
          });
        }
        if (isOpossumError(error, 'ETIMEDOUT')) {
          throw new UnavailableError(`${target} did not answer in time`, { cause: error });
        }
        throw error;
      }
    },
    close: () => breaker.shutdown(),
  };
}
