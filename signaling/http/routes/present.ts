/** The REST shapes of control-plane messages: snake_case keys and ISO dates. */
import type { UserInfo } from '../../../proto/gen/veza/auth/auth.js';

export interface UserJson {
  id: number;
  email: string;
  username: string;
  first_name: string;
  last_name: string;
  display_name: string;
  bio: string;
  avatar_url: string | null;
  roles: string[];
  permissions: string[];
  email_confirmed: boolean;
  created_at: string | null;
}

/** A reply without its user is a control-plane bug; it surfaces as a 500, not as `user: null`. */
export function presentUser(user: UserInfo | undefined): UserJson {
  if (!user) throw new Error('control plane replied without user_info');
  return {
    id: user.userId,
    email: user.email,
    username: user.username,
    first_name: user.firstName,
    last_name: user.lastName,
    display_name: user.displayName,
    bio: user.bio,
    avatar_url: user.avatarUrl || null,
    roles: user.roles,
    permissions: user.permissions,
    email_confirmed: user.emailConfirmed,
    created_at: user.createdAt ? user.createdAt.toISOString() : null,
  };
}

export interface TokenPairJson {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  token_type: 'Bearer';
  user: UserJson;
}

export function presentTokens(response: {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  userInfo: UserInfo | undefined;
}): TokenPairJson {
  return {
    access_token: response.accessToken,
    refresh_token: response.refreshToken,
    expires_in: response.expiresIn,
    token_type: 'Bearer',
    user: presentUser(response.userInfo),
  };
}
