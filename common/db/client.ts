/**
 * The PostgreSQL client (porsager/postgres). Tagged templates are the only way queries
 * are written, so every value is a bound parameter.
 */
import net from 'node:net';
import postgres from 'postgres';
import { counter } from '../metrics.js';
import { tracingEnabled } from '../tracing.js';
import { traceQueries } from './traced-sql.js';

/**
 * Counted at the socket, where every failure to reach or keep a PostgreSQL server shows up
 * (refused, reset, timed out), whichever query happened to be waiting: the alert on it tells
 * an operator the database is unreachable, not that one query was wrong.
 */
const connectionErrors = counter(
  'veza_db_connection_errors_total',
  'PostgreSQL connections that failed to open or broke, by database (embedded or external) and error code',
  ['database', 'code'],
);

export type Sql = postgres.Sql<Record<string, never>>;
export type TransactionSql = postgres.TransactionSql<Record<string, never>>;

export interface DatabaseOptions {
  max?: number;
  /** Notices and debug lines are routed here instead of the console. */
  onNotice?: (message: string) => void;
  /** Names the server in metrics: `embedded` (standalone's own) or `external` (DATABASE_URL). */
  database?: 'embedded' | 'external';
}

interface SocketTarget {
  host: string[];
  port: number[];
  path?: string | false;
}

/**
 * Our own socket only to count its errors; postgres still owns the protocol, TLS included (it
 * writes its SSLRequest and upgrades this socket). One host per URL here, so the client's rotation
 * over several hosts is not needed. `socket` is a documented option that postgres's types omit.
 */
function countingSocket(database: 'embedded' | 'external'): object {
  return {
    socket: (target: SocketTarget) => {
      const socket = target.path
        ? net.connect(target.path)
        : net.connect(target.port[0] ?? 5432, target.host[0] ?? 'localhost');
      socket.once('error', (error: NodeJS.ErrnoException) =>
        connectionErrors.inc({ database, code: error.code ?? 'unknown' }),
      );
      return socket;
    },
  };
}

/** With tracing on (common/tracing.ts, started before this), every query the client sends is a span. */
export function connectDatabase(url: string, options: DatabaseOptions = {}): Sql {
  const sql = postgres(url, {
    max: options.max ?? 10,
    idle_timeout: 30,
    connect_timeout: 10,
    // porsager's default waits up to 20 s between reconnection attempts once PostgreSQL has
    // failed a few times, and queries queue behind that wait: during an outage a request would
    // hang for seconds before failing. At most a second keeps failures fast (a 503 the edge's
    // breaker counts) and notices the server's return within a second.
    backoff: (retries: number) => (0.5 + Math.random() / 2) * Math.min(3 ** retries / 100, 1),
    onnotice: (notice) => options.onNotice?.(String(notice.message)),
    ...countingSocket(options.database ?? 'external'),
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
