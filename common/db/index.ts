/**
 * PostgreSQL: the one client (porsager's postgres, tagged templates only, so every query is
 * parameterised), embedded PostgreSQL for standalone mode, and the migration runner.
 */
export { connectDatabase, type DatabaseOptions, type Sql, type TransactionSql } from './client.js';
export { type EmbeddedDatabase, startEmbeddedPostgres } from './embedded.js';
export { MIGRATIONS_DIR, migrate } from './migrate.js';
