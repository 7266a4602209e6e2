/**
 * Versioned SQL migrations. Files named `NNNN_description.sql` are applied in order,
 * each in its own transaction, and recorded in schema_migrations. An advisory lock
 * lets several processes start at once in cluster mode without racing.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.js';
import type { Sql } from './client.js';

const MIGRATION_FILE = /^(\d{4})_[a-z0-9_]+\.sql$/;
/** The platform's schema. The control plane owns it; every process that migrates reads it from here. */
/** The control plane owns the schema and its files; the ground floor only knows where they are, to apply them. */
export const MIGRATIONS_DIR = path.resolve(import.meta.dirname, '../../control-plane/migrations');

/** Arbitrary constant shared by every Veza process: the key of the migration lock. */
const MIGRATION_LOCK_KEY = 7_360_431;

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export async function readMigrations(directory: string): Promise<Migration[]> {
  const files = (await readdir(directory)).filter((file) => file.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const match = MIGRATION_FILE.exec(file);
    if (!match) throw new Error(`migration file ${file} is not named NNNN_description.sql`);
    const sql = await readFile(path.join(directory, file), 'utf8');
    migrations.push({
      version: Number(match[1]),
      name: file,
      sql,
      checksum: createHash('sha256').update(sql).digest('hex'),
    });
  }
  const versions = new Set<number>();
  for (const migration of migrations) {
    if (versions.has(migration.version)) throw new Error(`two migrations share version ${migration.version}`);
    versions.add(migration.version);
  }
  return migrations;
}

/** Applies what is missing; refuses to start when an applied migration was edited afterwards. */
export async function migrate(sql: Sql, directory: string, log: Logger): Promise<number> {
  const migrations = await readMigrations(directory);
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
    await tx`
      create table if not exists schema_migrations (
        version integer primary key,
        name text not null,
        checksum text not null,
        applied_at timestamptz not null default now()
      )`;
    const applied = new Map<number, string>();
    for (const row of await tx<
      { version: number; checksum: string }[]
    >`select version, checksum from schema_migrations`) {
      applied.set(row.version, row.checksum);
    }
    let count = 0;
    for (const migration of migrations) {
      const checksum = applied.get(migration.version);
      if (checksum !== undefined) {
        if (checksum !== migration.checksum) {
          throw new Error(
            `migration ${migration.name} was changed after it was applied; add a new migration instead`,
          );
        }
        continue;
      }
      await tx.savepoint(async (step) => {
        await step.unsafe(migration.sql);
        await step`insert into schema_migrations (version, name, checksum) values (${migration.version}, ${migration.name}, ${migration.checksum})`;
      });
      log.info({ migration: migration.name }, 'applied migration');
      count += 1;
    }
    return count;
  });
}
