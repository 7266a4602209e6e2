/** Accounts, tokens and sessions: the AuthService and what the composition root and CLI need. */
export { createTokenVerifier, issueAccessToken } from './access-tokens.js';
export { type AccountSummary, type AdminDeps, createAdmin, setUserRole } from './accounts.js';
export { type AuthServiceDeps, createAuthService } from './auth-service.js';
export { deleteExpiredConfirmations } from './confirmations.js';
export { type KeyEncryptionKey, keyEncryptionKey } from './key-encryption.js';
export { createMailer, type Mailer } from './mailer.js';
export { deleteSettledEmails, type OutboxDispatcher, startOutboxDispatcher } from './outbox.js';
export { deleteDeadRefreshTokens } from './refresh-tokens.js';
/** For tests that need a signed-in user without the gRPC surface. */
export { openSession } from './sessions.js';
export { loadSigningKeys, type SigningKeys, SigningKeysDecryptionError } from './signing-keys.js';
export { loadKeyEncryptionKey, signingKeysSecretFile } from './signing-keys-secret.js';
export {
  type AuditEntry,
  createUser,
  existingUserIds,
  lockUser,
  recordAudit,
  rolesOf,
  userExists,
  userIdsWithRoles,
  usernamesOf,
} from './users.js';
