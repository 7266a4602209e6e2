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

function normalizeUsername(username: string): string {
  return username.trim().normalize('NFKC').toLowerCase();
}

interface NewUser {
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

interface ProfilePatch {
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

interface AuditEntry {
  actorId: number | null;
  action: string;
  targetType: string;
  targetId: number | string;
  /** Any JSON object; stored as given. */
  details: object;
}

/**
 * Appends to audit_log, in the caller's transaction when given one. Moderation records its
 * actions here too: one log of who did what, whatever the module.
 */
export async function recordAudit(db: Db, entry: AuditEntry): Promise<void> {
  await db`
    insert into audit_log (actor_id, action, target_type, target_id, details)
    values (${entry.actorId}, ${entry.action}, ${entry.targetType}, ${String(entry.targetId)},
            ${db.json(entry.details as Parameters<Sql['json']>[0])})`;
}

/** An account change; the actor's label (a username, or "cli") goes into the details. */
export async function audit(
  db: Db,
  actor: Actor,
  action: string,
  target: { type: string; id: string | number },
  details: Record<string, string | number | boolean | null> = {},
): Promise<void> {
  await recordAudit(db, {
    actorId: actor.userId,
    action,
    targetType: target.type,
    targetId: target.id,
    details: { ...details, actor: actor.label },
  });
}

// What other modules need to know about users. They never read the users table themselves.

/**
 * Locks the user's row until the caller's transaction ends, so what one user starts at once
 * (going live twice, two uploads against one quota) runs one after the other. False when
 * there is no such user.
 */
export async function lockUser(tx: TransactionSql, id: number): Promise<boolean> {
  const [row] = await tx`select id from users where id = ${id} for update`;
  return row !== undefined;
}

export async function userExists(db: Db, id: number): Promise<boolean> {
  const [row] = await db`select 1 from users where id = ${id}`;
  return row !== undefined;
}

/** The roles of a user; null when there is no such user. */
export async function rolesOf(db: Db, id: number): Promise<UserRole[] | null> {
  const [row] = await db<{ roles: UserRole[] }[]>`select roles from users where id = ${id}`;
  return row?.roles ?? null;
}

/** Usernames by user id; an id with no user is left out. */
export async function usernamesOf(db: Db, ids: readonly number[]): Promise<Map<number, string>> {
  if (ids.length === 0) return new Map();
  const rows = await db<{ id: number; username: string }[]>`
    select id, username from users where id = any(${db.array([...new Set(ids)])}::bigint[])`;
  return new Map(rows.map((row) => [row.id, row.username]));
}

/** The ids among `ids` that name a user, each once, ascending. */
export async function existingUserIds(db: Db, ids: readonly number[]): Promise<number[]> {
  if (ids.length === 0) return [];
  const rows = await db<{ id: number }[]>`
    select id from users where id = any(${db.array([...ids])}::bigint[]) order by id`;
  return rows.map((row) => row.id);
}

/** Every user holding one of the roles, ascending by id. */
export async function userIdsWithRoles(db: Db, roles: readonly string[]): Promise<number[]> {
  const rows = await db<{ id: number }[]>`
    select id from users where roles && ${db.array([...roles])}::text[] order by id`;
  return rows.map((row) => row.id);
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
