import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../log.js';
import { createTestDatabase, type TestDatabase } from '../testing/index.js';
import { migrate, readMigrations } from './migrate.js';

const log = createLogger({ level: 'silent' });

describe('migrate', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase('embedded');
  });
  afterAll(() => db.drop());

  it('applies the accounts schema once and records it', async () => {
    const rows = await db.sql<{ version: number }[]>`select version from schema_migrations order by version`;
    expect(rows.map((row) => row.version)).toContain(1);
    const tables = await db.sql<{ table_name: string }[]>`
      select table_name from information_schema.tables where table_schema = 'public'`;
    expect(tables.map((row) => row.table_name)).toEqual(expect.arrayContaining(['users', 'refresh_tokens']));
  });

  it('refuses a migration edited after it was applied', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'veza-mig-'));
    await writeFile(path.join(dir, '0900_extra.sql'), 'create table extra_a (id int);');
    // Migrations in a separate directory share the table; versions stay distinct.
    expect(await migrate(db.sql, dir, log)).toBe(1);
    expect(await migrate(db.sql, dir, log)).toBe(0);
    await writeFile(path.join(dir, '0900_extra.sql'), 'create table extra_b (id int);');
    await expect(migrate(db.sql, dir, log)).rejects.toThrow(/0900_extra.sql was changed/);
  });

  it('rejects badly named files with the file name', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'veza-mig-'));
    await writeFile(path.join(dir, 'add-stuff.sql'), 'select 1;');
    await expect(readMigrations(dir)).rejects.toThrow(/add-stuff.sql is not named/);
  });
});
