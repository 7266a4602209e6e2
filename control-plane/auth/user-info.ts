/** A user as the API shows it: the proto UserInfo, with the permissions of its roles. */

import { permissionsFor } from '../../common/index.js';
import type { BlobStorage } from '../../common/ports/index.js';
import type { UserInfo } from '../../proto/gen/veza/auth/auth.js';
import type { UserRecord } from './users.js';

export function toUserInfo(user: UserRecord, blobs: Pick<BlobStorage, 'publicUrl'>): UserInfo {
  return {
    userId: user.id,
    email: user.email,
    username: user.username,
    firstName: user.firstName,
    lastName: user.lastName,
    roles: [...user.roles],
    createdAt: user.createdAt,
    permissions: permissionsFor(user.roles),
    displayName: user.displayName,
    bio: user.bio,
    avatarUrl: user.avatarKey ? blobs.publicUrl(user.avatarKey) : '',
    emailConfirmed: user.emailConfirmedAt !== null,
  };
}
