/**
 * What every handler of the control plane receives besides its request: who is calling,
 * the request id and logger of the call, and a signal that ends long-lived streams.
 */
import type { Metadata } from '@grpc/grpc-js';
import type { Logger, UserRole } from '../../common/index.js';

/**
 * How a method authenticates its caller (the seed's two interceptors):
 * - `public`: anyone; an `x-api-key`, when present, must be valid and marks a service call.
 * - `jwt`: a user's access token in `authorization: Bearer ...`.
 * - `api-key`: another Veza process, by `x-api-key`.
 * - `jwt-or-api-key`: either; a valid token is also verified when a key is present.
 * - `public-or-jwt`: anyone, as `public`; a bearer token, when present, is verified too (an
 *   invalid one is UNAUTHENTICATED) and identifies the user, for methods that show users more.
 */
export type AuthPolicy = 'public' | 'jwt' | 'api-key' | 'jwt-or-api-key' | 'public-or-jwt';

/** The user behind a verified access token whose session is still open. */
export interface AuthenticatedUser {
  userId: number;
  sessionId: string;
  roles: UserRole[];
  email: string;
  username: string;
  expiresAt: Date;
}

/**
 * Verifies an access token (signature, claims, open session); throws (or rejects with)
 * UnauthenticatedError. It may answer at once, without a promise, when it holds the answer.
 */
export type TokenVerifier = (token: string) => AuthenticatedUser | Promise<AuthenticatedUser>;

export interface CallContext {
  /** `package.Service/Method`, as in logs and metrics. */
  method: string;
  requestId: string;
  log: Logger;
  /** The user of a valid bearer token, or null. */
  user: AuthenticatedUser | null;
  /** True when the caller presented a valid service API key. */
  service: boolean;
  /** The TCP peer's address (not a client-supplied value). */
  peerIp: string;
  metadata: Metadata;
  /** Aborted when the client cancels or the server shuts down. */
  signal: AbortSignal;
}
