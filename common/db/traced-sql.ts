/**
 * A span per PostgreSQL query, for porsager's postgres, which has no OpenTelemetry
 * instrumentation of its own. connectDatabase wraps its client with this only when tracing is
 * on, so with tracing off the client is postgres's own, untouched.
 *
 * A query of postgres is a lazy promise: building it (`sql\`...\``) sends nothing, and a query
 * used as a fragment of another is never sent. It is sent from its `handle()`, which its first
 * `then`/`catch`/`finally`/`execute` calls; the span starts there, in the caller's context, and
 * ends when the query settles. The statement's text is recorded with its placeholders, never
 * the values.
 */
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { spanFailed } from '../tracing.js';

const tracer = trace.getTracer('veza-live/postgres');

/** What a postgres Query looks like from here (it extends Promise). */
interface PendingQuery extends Promise<unknown> {
  strings: readonly string[] | string;
  handle(): Promise<void>;
}

function isQuery(value: unknown): value is PendingQuery {
  return (
    value instanceof Promise && 'strings' in value && typeof (value as PendingQuery).handle === 'function'
  );
}

function statementOf(query: PendingQuery): string {
  const text = typeof query.strings === 'string' ? query.strings : query.strings.join('$?');
  return text.replace(/\s+/g, ' ').trim();
}

/** `SELECT`, `INSERT`, ...: the span's name, short and low in cardinality as the conventions want. */
function operationOf(statement: string): string {
  const word = /^\(*\s*([A-Za-z]+)/.exec(statement)?.[1];
  return word ? word.toUpperCase() : 'QUERY';
}

function traceQuery<T>(value: T): T {
  if (!isQuery(value)) return value;
  const query = value;
  const send = query.handle;
  let started = false;
  query.handle = function tracedHandle(this: PendingQuery) {
    if (!started) {
      started = true;
      const statement = statementOf(query);
      const span = tracer.startSpan(
        `postgres ${operationOf(statement)}`,
        {
          kind: SpanKind.CLIENT,
          attributes: { 'db.system.name': 'postgresql', 'db.query.text': statement.slice(0, 2000) },
        },
        context.active(),
      );
      // Promise.prototype.then, not the query's own: that would call handle() again.
      Promise.prototype.then.call(
        query,
        () => span.end(),
        (error: unknown) => {
          spanFailed(span, error);
          span.end();
        },
      );
    }
    return send.call(this);
  };
  return value;
}

/** A transaction is a span of its own, so its statements (begin and commit included) group under it. */
function traceTransaction<T>(run: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan('postgres transaction', { kind: SpanKind.INTERNAL }, async (span) => {
    try {
      return await run();
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR });
      throw error;
    } finally {
      span.end();
    }
  });
}

/** Wraps a postgres client (or a transaction's) so each query it sends is a span. */
export function traceQueries<S extends object>(sql: S): S {
  return new Proxy(sql, {
    apply(target, thisArg, args: unknown[]) {
      return traceQuery(Reflect.apply(target as (...a: unknown[]) => unknown, thisArg, args));
    },
    get(target, key) {
      const value: unknown = Reflect.get(target, key);
      if (typeof value !== 'function') return value;
      const method = value as (...a: unknown[]) => unknown;
      switch (key) {
        case 'unsafe':
        case 'file':
          return (...args: unknown[]) => traceQuery(method.apply(target, args));
        case 'begin':
        case 'savepoint':
          return (...args: unknown[]) => {
            const last = args.length - 1;
            const body = args[last];
            if (typeof body !== 'function') return method.apply(target, args);
            args[last] = (tx: object) => body(traceQueries(tx));
            return traceTransaction(() => method.apply(target, args) as Promise<unknown>);
          };
        case 'reserve':
          return async () => traceQueries((await method.call(target)) as object);
        default:
          return value;
      }
    },
  });
}
