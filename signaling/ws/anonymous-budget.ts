/**
 * How many tokenless (anonymous listener) connections one client address may hold open on this
 * edge at once (ANONYMOUS_CONNECTIONS_PER_IP). A connection with a token costs its owner a login
 * or a listener token, each rate-limited by the control plane; a tokenless one costs nothing, so
 * without this one client could hold every socket, peer and listener slot of the edge.
 *
 * Counted per edge, in memory: a client spread over several edges by a load balancer gets the
 * budget on each, which is still a bound, and needs no shared state on the handshake path.
 */
import { RateLimitedError } from '../../common/contracts/index.js';

export class AnonymousBudget {
  readonly perAddress: number;
  readonly #open = new Map<string, number>();

  constructor(perAddress: number) {
    if (!Number.isInteger(perAddress) || perAddress < 1)
      throw new RangeError(`the anonymous connection budget must be a positive integer, got ${perAddress}`);
    this.perAddress = perAddress;
  }

  /**
   * Takes one slot for `address`; throws resource_exhausted (HTTP 429 on the handshake) naming
   * the limit when the address holds all of its slots already. Give the slot back with release().
   */
  take(address: string): void {
    const open = this.#open.get(address) ?? 0;
    if (open >= this.perAddress) {
      throw new RateLimitedError(
        `too many connections without a token from this address: at most ${this.perAddress} at once ` +
          '(ANONYMOUS_CONNECTIONS_PER_IP); close one, or sign in',
        // Slots come back when connections close, not on a clock: a short hint is honest.
        5_000,
      );
    }
    this.#open.set(address, open + 1);
  }

  release(address: string): void {
    const open = this.#open.get(address) ?? 0;
    if (open <= 1) this.#open.delete(address);
    else this.#open.set(address, open - 1);
  }

  /** Open tokenless connections of `address`. */
  openFrom(address: string): number {
    return this.#open.get(address) ?? 0;
  }
}
