/** The CLI helpers (first admin, role changes by email) and registration's all-or-nothing write. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from '../../common/contracts/index.js';
import { createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import { STRONG_PASSWORD, tableDigest } from '../test-harness.js';
import { createAccount, createAdmin, setUserRole } from './accounts.js';
import { verifyPassword } from './passwords.js';
import { findUserByEmail } from './users.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase('embedded');
});
afterAll(() => db?.drop());

describe('createAdmin', () => {
  it('creates a confirmed account with all four roles and an audit row, without email', async () => {
    const admin = await createAdmin(
      { sql: db.sql },
      { email: 'Boss@Example.com', username: 'boss', password: STRONG_PASSWORD },
    );
    expect(admin.roles).toEqual(['listener', 'broadcaster', 'moderator', 'admin']);
    const stored = await findUserByEmail(db.sql, 'boss@example.com');
    expect(stored?.emailConfirmedAt).toBeInstanceOf(Date);
    expect(await verifyPassword(stored?.passwordHash ?? '', STRONG_PASSWORD)).toBe(true);
    expect(await db.sql`select 1 from email_outbox`).toHaveLength(0);
    const audit =
      await db.sql`select action, actor_id from audit_log where target_id = ${String(admin.userId)}`;
    expect(audit).toEqual([{ action: 'user.created_admin', actor_id: null }]);
  });

  it('applies the same validation as registration, changing nothing on failure', async () => {
    const before = await tableDigest(db.sql);
    await expect(
      createAdmin(
        { sql: db.sql },
        { email: 'boss@example.com', username: 'other', password: STRONG_PASSWORD },
      ),
    ).rejects.toBeInstanceOf(AlreadyExistsError);
    await expect(
      createAdmin({ sql: db.sql }, { email: 'x@example.com', username: 'x_admin', password: 'weak' }),
    ).rejects.toThrow('password must be at least 10 characters');
    expect(await tableDigest(db.sql)).toBe(before);
  });
});

describe('setUserRole', () => {
  it('grants and takes roles by email with audit rows, keeping the role order', async () => {
    await createAccount(
      db.sql,
      { email: 'mod@example.com', username: 'mod', password: STRONG_PASSWORD },
      { roles: ['listener'], confirmationBaseUrl: 'http://veza.test' },
    );
    const granted = await setUserRole(
      { sql: db.sql },
      { email: 'MOD@example.com', role: 'moderator', granted: true, actor: 'cli:ops' },
    );
    expect(granted.roles).toEqual(['listener', 'moderator']);
    const again = await setUserRole(
      { sql: db.sql },
      { email: 'mod@example.com', role: 'broadcaster', granted: true, actor: 'cli:ops' },
    );
    expect(again.roles).toEqual(['listener', 'broadcaster', 'moderator']);
    const taken = await setUserRole(
      { sql: db.sql },
      { email: 'mod@example.com', role: 'moderator', granted: false, actor: 'cli:ops' },
    );
    expect(taken.roles).toEqual(['listener', 'broadcaster']);
    const audit = await db.sql<{ action: string; details: { role: string; actor: string } }[]>`
      select action, details from audit_log where target_id = ${String(granted.userId)} order by id`;
    expect(audit.map((row) => `${row.action}:${row.details.role}:${row.details.actor}`)).toEqual([
      'role.granted:moderator:cli:ops',
      'role.granted:broadcaster:cli:ops',
      'role.revoked:moderator:cli:ops',
    ]);
    // Granting a role the user has is a no-op, not another audit row.
    await setUserRole(
      { sql: db.sql },
      { email: 'mod@example.com', role: 'listener', granted: true, actor: 'cli:ops' },
    );
    expect(await db.sql`select 1 from audit_log where target_id = ${String(granted.userId)}`).toHaveLength(3);
  });

  it('names unknown emails and roles, and keeps the last admin', async () => {
    const before = await tableDigest(db.sql);
    await expect(
      setUserRole(
        { sql: db.sql },
        { email: 'ghost@example.com', role: 'admin', granted: true, actor: 'cli' },
      ),
    ).rejects.toBeInstanceOf(NotFoundError);
    const badRole = setUserRole(
      { sql: db.sql },
      { email: 'mod@example.com', role: 'owner', granted: true, actor: 'cli' },
    );
    await expect(badRole).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(badRole).rejects.toMatchObject({ details: { field: 'role' } });
    await expect(
      setUserRole(
        { sql: db.sql },
        { email: 'boss@example.com', role: 'admin', granted: false, actor: 'cli' },
      ),
    ).rejects.toBeInstanceOf(FailedPreconditionError);
    expect(await tableDigest(db.sql)).toBe(before);
  });
});

describe('createAccount', () => {
  it('writes the user, its confirmation token and the email together, or none of them', async () => {
    const user = await createAccount(
      db.sql,
      { email: 'new@example.com', username: 'newbie', password: STRONG_PASSWORD, first_name: 'New' },
      { roles: ['listener', 'broadcaster'], confirmationBaseUrl: 'http://veza.test' },
    );
    expect(user.emailConfirmedAt).toBeNull();
    expect(await db.sql`select 1 from email_confirmations where user_id = ${user.id}`).toHaveLength(1);
    const [mail] = await db.sql<
      { body_text: string }[]
    >`select body_text from email_outbox where to_address = 'new@example.com'`;
    expect(mail?.body_text).toMatch(/http:\/\/veza\.test\/auth\/confirm\?token=[A-Za-z0-9_-]{43}\n/);

    const before = await tableDigest(db.sql);
    const duplicate = createAccount(
      db.sql,
      { email: 'other@example.com', username: 'NEWBIE', password: STRONG_PASSWORD },
      { roles: ['listener'], confirmationBaseUrl: 'http://veza.test' },
    );
    await expect(duplicate).rejects.toMatchObject({ code: 'already_exists', details: { field: 'username' } });
    expect(await tableDigest(db.sql)).toBe(before);
  });
});
