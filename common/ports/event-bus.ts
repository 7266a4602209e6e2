/**
 * EventBus port: publish/subscribe and request/reply between the roles.
 *
 * Subjects are dot-separated tokens with NATS wildcards: `*` matches one token and
 * `>` matches the rest, e.g. `room.*` or `user.42.>`. Payloads are JSON values; every
 * subscriber validates what it receives because another process may have sent it.
 *
 * Adapters: in-process (standalone) and NATS (cluster), covered by one contract test.
 */

export type BusHandler = (payload: unknown, subject: string) => void;
export type BusResponder = (payload: unknown, subject: string) => Promise<unknown>;

export interface Subscription {
  unsubscribe(): void;
}

export interface EventBus {
  publish(subject: string, payload: unknown): Promise<void>;
  subscribe(subject: string, handler: BusHandler): Subscription;
  /** Sends a request to the one responder of `subject` and waits for its answer. */
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
