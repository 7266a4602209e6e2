/**
 * The PostgreSQL client (porsager/postgres). Tagged templates are the only way queries
 * are written, so every value is a bound parameter.
 */
import postgres from 'postgres';
import { tracingEnabled } from '../tracing.js';
import { traceQueries } from './traced-sql.js';

export type Sql = postgres.Sql<Record<string, never>>;
export type TransactionSql = postgres.TransactionSql<Record<string, never>>;

export interface DatabaseOptions {
  max?: number;
  /** Notices and debug lines are routed here instead of the console. */
  onNotice?: (message: string) => void;
}

/** With tracing on (common/tracing.ts, started before this), every query the client sends is a span. */
export function connectDatabase(url: string, options: DatabaseOptions = {}): Sql {
  const sql = postgres(url, {
    max: options.max ?? 10,
    idle_timeout: 30,
    connect_timeout: 10,
    onnotice: (notice) => options.onNotice?.(String(notice.message)),
    // int8 columns (bigserial ids) come back as JS numbers: ids stay far below 2^53.
    types: {
      bigint: {
        to: 20,
        from: [20],
        serialize: (value: number) => String(value),
        parse: (value: string) => Number(value),
      },
    },
  }) as unknown as Sql;
  return tracingEnabled() ? traceQueries(sql) : sql;
}
