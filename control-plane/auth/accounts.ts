/**
 * Creating accounts (registration and the CLI's first admin) and changing roles.
 * A registration writes the user, its confirmation token and the confirmation email in
 * one transaction: either all of it exists or none of it.
 */
import { NotFoundError } from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import { USER_ROLES, type UserRole } from '../../common/index.js';
import { confirmationLink, createConfirmation } from './confirmations.js';
import { enqueueEmail } from './outbox.js';
import { hashPassword } from './passwords.js';
import { type Actor, audit, changeRole, createUser, findUserByEmail, type UserRecord } from './users.js';
import { parseInput, parseRegistration, roleInputSchema } from './validation.js';

export interface RegistrationInput {
  email: string;
  username: string;
  password: string;
  first_name?: string;
  last_name?: string;
}

export interface RegistrationOptions {
  roles: readonly UserRole[];
  /** Where the confirmation link points (config.publicUrl); no email is sent when null. */
  confirmationBaseUrl: string | null;
  /** An audit_log row written in the same transaction. */
  audit?: { actor: Actor; action: string };
}

function confirmationEmail(to: string, username: string, link: string) {
  return {
    to,
    kind: 'email_confirmation',
    subject: 'Confirm your Veza Live account',
    text: [
      `Hello ${username},`,
      '',
      'Welcome to Veza Live. Confirm your email address by opening this link:',
      link,
      '',
      'If you did not create this account, ignore this message.',
    ].join('\n'),
  };
}

/** Validates, hashes and stores a new account; throws InvalidArgument/AlreadyExists naming the field. */
export async function createAccount(
  sql: Sql,
  input: RegistrationInput,
  options: RegistrationOptions,
): Promise<UserRecord> {
  const value = parseRegistration({ first_name: '', last_name: '', ...input });
  const passwordHash = await hashPassword(value.password);
  return sql.begin(async (tx) => {
    const user = await createUser(tx, {
      email: value.email,
      username: value.username,
      passwordHash,
      firstName: value.first_name,
      lastName: value.last_name,
      roles: options.roles,
      emailConfirmed: options.confirmationBaseUrl === null,
    });
    if (options.confirmationBaseUrl !== null) {
      const token = await createConfirmation(tx, user.id);
      const link = confirmationLink(options.confirmationBaseUrl, token);
      await enqueueEmail(tx, confirmationEmail(user.email, user.username, link));
    }
    if (options.audit)
      await audit(tx, options.audit.actor, options.audit.action, { type: 'user', id: user.id });
    return user;
  });
}

export interface AdminDeps {
  sql: Sql;
}

export interface AccountSummary {
  userId: number;
  email: string;
  username: string;
  roles: UserRole[];
}

const summary = (user: UserRecord): AccountSummary => ({
  userId: user.id,
  email: user.email,
  username: user.username,
  roles: user.roles,
});

/** For the CLI: an account with every role and a confirmed email (there is nobody to confirm it to). */
export async function createAdmin(
  deps: AdminDeps,
  input: { email: string; username: string; password: string },
): Promise<AccountSummary> {
  const user = await createAccount(deps.sql, input, {
    roles: USER_ROLES,
    confirmationBaseUrl: null,
    audit: { actor: { userId: null, label: 'cli' }, action: 'user.created_admin' },
  });
  return summary(user);
}

/** For the CLI: grants or takes a role by email; `actor` says who did it, for the audit log. */
export async function setUserRole(
  deps: AdminDeps,
  input: { email: string; role: string; granted: boolean; actor: string },
): Promise<AccountSummary> {
  const { role } = parseInput(roleInputSchema, { role: input.role });
  const user = await findUserByEmail(deps.sql, input.email);
  if (!user) throw new NotFoundError(`no account with email ${input.email}`);
  const actor: Actor = { userId: null, label: input.actor };
  return summary(await changeRole(deps.sql, { userId: user.id, role, granted: input.granted, actor }));
}
