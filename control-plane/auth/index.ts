/** Accounts, tokens and sessions: the AuthService and what the composition root and CLI need. */
export { issueAccessToken } from './access-tokens.js';
export { createAdmin, setUserRole } from './accounts.js';
export { createAuthService } from './auth-service.js';
export { deleteExpiredConfirmations } from './confirmations.js';
export { keyEncryptionKey } from './key-encryption.js';
export { createMailer } from './mailer.js';
export { deleteSettledEmails, startOutboxDispatcher } from './outbox.js';
export { deleteDeadRefreshTokens } from './refresh-tokens.js';
/** For tests that need a signed-in user without the gRPC surface. */
export { openSession } from './sessions.js';
export { loadSigningKeys } from './signing-keys.js';
export { loadKeyEncryptionKey } from './signing-keys-secret.js';
export { startTokenCaching, type TokenCaching } from './token-checks.js';
export {
  createUser,
  existingUserIds,
  lockUser,
  recordAudit,
  rolesOf,
  userExists,
  userIdsWithRoles,
  usernamesOf,
} from './users.js';
