/**
 * The users repository. Email and username are unique after normalisation, so
 * "Ana@Example.com" and "ana@example.com" are one account.
 */
import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from '../../common/contracts/index.js';
import type { Sql, TransactionSql } from '../../common/db/index.js';
import { USER_ROLES, type UserRole } from '../../common/index.js';

export interface UserRecord {
  id: number;
  email: string;
  username: string;
  passwordHash: string;
  firstName: string;
  lastName: string;
  displayName: string;
  bio: string;
  avatarKey: string | null;
  roles: UserRole[];
  emailConfirmedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

interface UserRow {
  id: number;
  email: string;
  username: string;
  password_hash: string;
  first_name: string;
  last_name: string;
  display_name: string;
  bio: string;
  avatar_key: string | null;
  roles: UserRole[];
  email_confirmed_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

type Db = Sql | TransactionSql;

function toRecord(row: UserRow): UserRecord {
  return {
    id: row.id,
    email: row.email,
    username: row.username,
    passwordHash: row.password_hash,
    firstName: row.first_name,
    lastName: row.last_name,
    displayName: row.display_name,
    bio: row.bio,
    avatarKey: row.avatar_key,
    roles: row.roles,
    emailConfirmedAt: row.email_confirmed_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export function normalizeEmail(email: string): string {
  return email.trim().normalize('NFKC').toLowerCase();
}

export function normalizeUsername(username: string): string {
  return username.trim().normalize('NFKC').toLowerCase();
}

export interface NewUser {
  email: string;
  username: string;
  passwordHash: string;
  firstName?: string;
  lastName?: string;
  roles: readonly UserRole[];
  emailConfirmed?: boolean;
}

function isUniqueViolation(error: unknown): error is { code: string; constraint_name?: string } {
  return typeof error === 'object' && error !== null && 'code' in error && error.code === '23505';
}

export async function createUser(db: Db, user: NewUser): Promise<UserRecord> {
  try {
    const [row] = await db<UserRow[]>`
      insert into users (email, email_normalized, username, username_normalized, password_hash,
                         first_name, last_name, roles, email_confirmed_at)
      values (${user.email.trim()}, ${normalizeEmail(user.email)}, ${user.username.trim()},
              ${normalizeUsername(user.username)}, ${user.passwordHash}, ${user.firstName ?? ''},
              ${user.lastName ?? ''}, ${db.array([...user.roles])}::text[],
              ${user.emailConfirmed ? new Date() : null})
      returning *`;
    if (!row) throw new Error('insert into users returned nothing');
    return toRecord(row);
  } catch (error) {
    if (isUniqueViolation(error)) {
      if (error.constraint_name?.includes('email')) {
        throw new AlreadyExistsError('an account with this email already exists', 'email');
      }
      if (error.constraint_name?.includes('username')) {
        throw new AlreadyExistsError('this username is already taken', 'username');
      }
    }
    throw error;
  }
}

export async function findUserById(db: Db, id: number): Promise<UserRecord | null> {
  const [row] = await db<UserRow[]>`select * from users where id = ${id}`;
  return row ? toRecord(row) : null;
}

export async function getUserById(db: Db, id: number): Promise<UserRecord> {
  const user = await findUserById(db, id);
  if (!user) throw new NotFoundError(`user ${id} not found`);
  return user;
}

export async function findUserByEmail(db: Db, email: string): Promise<UserRecord | null> {
  const [row] = await db<UserRow[]>`select * from users where email_normalized = ${normalizeEmail(email)}`;
  return row ? toRecord(row) : null;
}

export interface ProfilePatch {
  displayName?: string;
  bio?: string;
  firstName?: string;
  lastName?: string;
  avatarKey?: string;
}

export async function updateProfile(db: Db, id: number, patch: ProfilePatch): Promise<UserRecord> {
  const [row] = await db<UserRow[]>`
    update users set
      display_name = coalesce(${patch.displayName ?? null}, display_name),
      bio = coalesce(${patch.bio ?? null}, bio),
      first_name = coalesce(${patch.firstName ?? null}, first_name),
      last_name = coalesce(${patch.lastName ?? null}, last_name),
      avatar_key = coalesce(${patch.avatarKey ?? null}, avatar_key),
      updated_at = now()
    where id = ${id}
    returning *`;
  if (!row) throw new NotFoundError(`user ${id} not found`);
  return toRecord(row);
}

export async function markEmailConfirmed(db: Db, id: number): Promise<UserRecord> {
  const [row] = await db<UserRow[]>`
    update users set email_confirmed_at = coalesce(email_confirmed_at, now()), updated_at = now()
    where id = ${id} returning *`;
  if (!row) throw new NotFoundError(`user ${id} not found`);
  return toRecord(row);
}

/** Who changed something, for the audit log: a user, or an operator at the CLI. */
export interface Actor {
  userId: number | null;
  label: string;
}

export async function audit(
  db: Db,
  actor: Actor,
  action: string,
  target: { type: string; id: string | number },
  details: Record<string, string | number | boolean | null> = {},
): Promise<void> {
  await db`
    insert into audit_log (actor_id, action, target_type, target_id, details)
    values (${actor.userId}, ${action}, ${target.type}, ${String(target.id)},
            ${db.json({ ...details, actor: actor.label })})`;
}

/**
 * Grants or takes away one role, with an audit row, in one transaction. Taking admin
 * from the last admin is refused: nobody could grant it back except at the CLI.
 */
export async function changeRole(
  sql: Sql,
  change: { userId: number; role: UserRole; granted: boolean; actor: Actor },
): Promise<UserRecord> {
  return sql.begin(async (tx) => {
    const [current] = await tx<UserRow[]>`select * from users where id = ${change.userId} for update`;
    if (!current) throw new NotFoundError(`user ${change.userId} not found`);
    const has = current.roles.includes(change.role);
    if (has === change.granted) return toRecord(current);
    if (!change.granted && change.role === 'admin') {
      await tx`select pg_advisory_xact_lock(7360433)`;
      const [{ admins } = { admins: 0 }] = await tx<{ admins: number }[]>`
        select count(*)::int as admins from users where 'admin' = any(roles)`;
      if (admins <= 1) throw new FailedPreconditionError('cannot take the admin role from the last admin');
    }
    const wanted = new Set(current.roles);
    if (change.granted) wanted.add(change.role);
    else wanted.delete(change.role);
    const roles = USER_ROLES.filter((role) => wanted.has(role));
    const [row] = await tx<UserRow[]>`
      update users set roles = ${tx.array(roles)}::text[], updated_at = now()
      where id = ${change.userId} returning *`;
    await audit(
      tx,
      change.actor,
      change.granted ? 'role.granted' : 'role.revoked',
      {
        type: 'user',
        id: change.userId,
      },
      { role: change.role },
    );
    if (!row) throw new Error('update of users returned nothing');
    return toRecord(row);
  });
}
