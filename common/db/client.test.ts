import { describe, expect, it } from 'vitest';
import { metricsRegistry } from '../metrics.js';
import { createTestDatabase, freePort } from '../testing/index.js';
import { connectDatabase } from './client.js';

async function connectionErrors(database: string, code: string): Promise<number> {
  const metric = metricsRegistry().getSingleMetric('veza_db_connection_errors_total');
  const values = (await metric?.get())?.values ?? [];
  return values.find((value) => value.labels.database === database && value.labels.code === code)?.value ?? 0;
}

describe('connectDatabase', () => {
  it('queries through its own socket and counts nothing while the server answers', async () => {
    const db = await createTestDatabase('cluster');
    const sql = connectDatabase(db.url, { max: 1, database: 'external' });
    try {
      const before = await connectionErrors('external', 'ECONNREFUSED');
      const [row] = await sql<Array<{ answer: number }>>`select ${41}::int + 1 as answer`;
      expect(row?.answer).toBe(42);
      expect(await connectionErrors('external', 'ECONNREFUSED')).toBe(before);
    } finally {
      await sql.end({ timeout: 1 });
      await db.drop();
    }
  });

  it('counts a server that refuses the connection, by database and error code', async () => {
    const port = await freePort();
    const sql = connectDatabase(`postgres://postgres@127.0.0.1:${port}/nothing`, {
      max: 1,
      database: 'embedded',
    });
    try {
      const before = await connectionErrors('embedded', 'ECONNREFUSED');
      await expect(sql`select 1`).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      expect(await connectionErrors('embedded', 'ECONNREFUSED')).toBe(before + 1);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });
});
