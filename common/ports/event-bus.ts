/**
 * EventBus port: publish/subscribe and request/reply between the roles.
 *
 * Subjects are dot-separated tokens with NATS wildcards: `*` matches one token and
 * `>` matches the rest, e.g. `room.*` or `user.42.>`. Payloads are JSON values (they cross
 * the bus as JSON even in-process: Dates arrive as strings); every subscriber validates what
 * it receives because another process may have sent it.
 *
 * Adapters: in-process (standalone) and NATS (cluster), covered by one contract test.
 */

/** Runs for each message; an exception is logged by the bus and does not reach other subscribers. */
export type BusHandler = (payload: unknown, subject: string) => void;
/** Its result is the reply. A thrown VezaError reaches the requester with its code and message; any other error arrives as `internal`. */
export type BusResponder = (payload: unknown, subject: string) => Promise<unknown>;

export interface Subscription {
  unsubscribe(): void;
  /**
   * Resolves once the bus routes to this subscription, so a message published afterwards by any
   * process reaches it. In-process it already does; on NATS this is a round trip to the server.
   * Only needed when another process must not publish before this one listens (and in tests).
   */
  readonly ready: Promise<void>;
}

export interface EventBus {
  /** Fire and forget: resolves once the message is handed to the bus, not when subscribers have run. */
  publish(subject: string, payload: unknown): Promise<void>;
  subscribe(subject: string, handler: BusHandler): Subscription;
  /**
   * Sends a request to the one responder of `subject` and waits for its answer. Throws
   * UnavailableError naming the subject when nobody answers in time (default 5 s) or no
   * process responds on it. Subscribers of the subject see the request too (as on NATS), so
   * keep request subjects apart from event subjects.
   */
  request(subject: string, payload: unknown, options?: { timeoutMs?: number }): Promise<unknown>;
  /** Answers requests on `subject`; when several processes answer the same subject, one of them gets each request. */
  respond(subject: string, responder: BusResponder): Subscription;
  close(): Promise<void>;
}

const TOKEN = /^[A-Za-z0-9_-]+$/;

/** Subjects carry ids from requests, so a malformed one is a programming error caught here, not a routing surprise. */
export function assertSubject(subject: string, allowWildcards: boolean): void {
  const tokens = subject.split('.');
  tokens.forEach((token, index) => {
    const wildcard = allowWildcards && (token === '*' || (token === '>' && index === tokens.length - 1));
    if (!wildcard && !TOKEN.test(token)) throw new Error(`invalid bus subject "${subject}"`);
  });
}

/** NATS-style matching, shared by the in-process adapter and tests. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const want = pattern.split('.');
  const have = subject.split('.');
  for (let i = 0; i < want.length; i++) {
    const token = want[i];
    if (token === '>') return have.length > i;
    if (i >= have.length) return false;
    if (token !== '*' && token !== have[i]) return false;
  }
  return want.length === have.length;
}
