/**
 * The PostgreSQL client (porsager/postgres). Tagged templates are the only way queries
 * are written, so every value is a bound parameter.
 */
import postgres from 'postgres';

export type Sql = postgres.Sql<Record<string, never>>;
export type TransactionSql = postgres.TransactionSql<Record<string, never>>;

export interface DatabaseOptions {
  max?: number;
  /** Notices and debug lines are routed here instead of the console. */
  onNotice?: (message: string) => void;
}

export function connectDatabase(url: string, options: DatabaseOptions = {}): Sql {
  return postgres(url, {
    max: options.max ?? 10,
    idle_timeout: 30,
    connect_timeout: 10,
    // porsager's default waits up to 20 s between reconnection attempts once PostgreSQL has
    // failed a few times, and queries queue behind that wait: during an outage a request would
    // hang for seconds before failing. At most a second keeps failures fast (a 503 the edge's
    // breaker counts) and notices the server's return within a second.
    backoff: (retries: number) => (0.5 + Math.random() / 2) * Math.min(3 ** retries / 100, 1),
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
}
