/**
 * The edge's last known answers, for when the control plane cannot answer (its breaker is open,
 * or it or its database is down): a reader is better served by the stream directory, a stream's
 * page or a chat room's history as they were a moment ago than by an error. Writes never fall back.
 *
 * Bounded (least recently used dropped), and consulted only for `unavailable`: a 404 or a 403 is
 * the control plane's answer and passes through.
 */
import { VezaError } from '../common/contracts/index.js';
import { type BreakerTarget, LruMap, noteFallback } from '../common/index.js';

export interface LastKnownOptions {
  /** The fallback's name in `veza_circuit_breaker_fallbacks_total{fallback}`. */
  name: string;
  target?: BreakerTarget;
  maxEntries?: number;
}

export interface Fallen<T> {
  value: T;
  /** True when the value is the last known one, served because the live read was unavailable. */
  stale: boolean;
  /** When the served value was read from the control plane (epoch ms). */
  readAt: number;
}

export class LastKnown<K, T> {
  readonly #entries: LruMap<K, { value: T; readAt: number }>;
  readonly #name: string;
  readonly #target: BreakerTarget;

  constructor(options: LastKnownOptions) {
    this.#entries = new LruMap(options.maxEntries ?? 1000);
    this.#name = options.name;
    this.#target = options.target ?? 'control-plane';
  }

  /**
   * Reads live and remembers the answer when `keep(value)` allows (e.g. only what anyone may
   * see); on `unavailable`, answers the last kept value for `key` if there is one.
   */
  async read(key: K, live: () => Promise<T>, keep: (value: T) => boolean = () => true): Promise<Fallen<T>> {
    try {
      const value = await live();
      const readAt = Date.now();
      // A value no longer kept (a stream made private) must not outlive its change either.
      if (keep(value)) this.#entries.set(key, { value, readAt });
      else this.#entries.delete(key);
      return { value, stale: false, readAt };
    } catch (error) {
      const known =
        error instanceof VezaError && error.code === 'unavailable' ? this.#entries.get(key) : undefined;
      if (!known) throw error;
      noteFallback(this.#target, this.#name);
      return { value: known.value, stale: true, readAt: known.readAt };
    }
  }

  forget(key: K): void {
    this.#entries.delete(key);
  }
}

/** Headers that tell an HTTP client it got the last known answer, and how old it is. */
export function staleHeaders(fallen: Fallen<unknown>): Record<string, string> {
  if (!fallen.stale) return {};
  return {
    'x-veza-stale': 'true',
    age: String(Math.max(0, Math.floor((Date.now() - fallen.readAt) / 1000))),
  };
}
