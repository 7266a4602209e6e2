/**
 * How many tokenless (anonymous listener) connections one client address may hold open on this
 * edge at once (ANONYMOUS_CONNECTIONS_PER_IP). A connection with a token costs its owner a login
 * or a listener token, each rate-limited by the control plane; a tokenless one costs nothing, so
 * without this one client could hold every socket, peer and listener slot of the edge.
 *
 * Counted per edge, in memory: a client spread over several edges by a load balancer gets the
 * budget on each, which is still a bound, and needs no shared state on the handshake path.
 *
 * An IPv6 client counts by its /64: one subscriber usually gets a whole /64 (RFC 6177), so per
 * full address it could open a fresh budget with every connection.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { RateLimitedError } from '../../common/contracts/index.js';

/**
 * What a client address is counted as: an IPv4 address itself (also when written IPv4-mapped,
 * `::ffff:192.0.2.1`), an IPv6 address by its first 64 bits (`2001:db8:1:2::/64`), anything else
 * as it is.
 */
export function budgetKey(address: string): string {
  if (!isIPv6(address)) return address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1] && isIPv4(mapped[1])) return mapped[1];
  // isIPv6 vouched for the shape: at most one '::', which stands for the missing zero groups.
  const [head = '', tail] = address.split('::');
  const groupsOf = (part: string) => (part === '' ? [] : part.split(':'));
  const before = groupsOf(head);
  const after = tail === undefined ? [] : groupsOf(tail);
  // A trailing dotted quad is two groups; it only ever lands past the first four.
  const width = (groups: string[]) => groups.reduce((n, group) => n + (group.includes('.') ? 2 : 1), 0);
  const zeros = tail === undefined ? 0 : 8 - width(before) - width(after);
  const groups = [...before, ...Array.from({ length: zeros }, () => '0'), ...after];
  const prefix = groups.slice(0, 4).map((group) => Number.parseInt(group, 16).toString(16));
  return `${prefix.join(':')}::/64`;
}

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
    const key = budgetKey(address);
    const open = this.#open.get(key) ?? 0;
    if (open >= this.perAddress) {
      throw new RateLimitedError(
        `too many connections without a token from this address: at most ${this.perAddress} at once ` +
          '(ANONYMOUS_CONNECTIONS_PER_IP); close one, or sign in',
        // Slots come back when connections close, not on a clock: a short hint is honest.
        5_000,
      );
    }
    this.#open.set(key, open + 1);
  }

  release(address: string): void {
    const key = budgetKey(address);
    const open = this.#open.get(key) ?? 0;
    if (open <= 1) this.#open.delete(key);
    else this.#open.set(key, open - 1);
  }

  /** Open tokenless connections counted against `address` (its /64 for IPv6). */
  openFrom(address: string): number {
    return this.#open.get(budgetKey(address)) ?? 0;
  }
}
