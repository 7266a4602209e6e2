/** Test accounts made through the real control plane (registration, optional roles, then a login session). */
import { randomUUID } from 'node:crypto';
import type { Sql } from '../../common/db/index.js';
import type { UserRole } from '../../common/index.js';
import type { ControlPlaneClient } from '../../control-plane/client/index.js';
import { setUserRole } from '../../control-plane/index.js';

export const TEST_PASSWORD = 'Correct-Horse-42';

export interface TestAccount {
  userId: number;
  email: string;
  username: string;
  /** The access token of its first login session. */
  token: string;
}

/**
 * Registers a fresh account (`<prefix>-<random>@veza.test`, username `<prefix>_<random>`),
 * grants `roles` through the database `sql` (before signing in, so the token carries them),
 * and signs it in.
 */
export async function signUpAndIn(
  client: ControlPlaneClient,
  prefix: string,
  options: { roles?: readonly UserRole[]; sql?: Sql } = {},
): Promise<TestAccount> {
  const suffix = randomUUID().slice(0, 8);
  const email = `${prefix}-${suffix}@veza.test`;
  const username = `${prefix}_${suffix}`.replaceAll('-', '_');
  await client.auth.register({
    email,
    password: TEST_PASSWORD,
    username,
    firstName: 'Test',
    lastName: 'Account',
  });
  const roles = options.roles ?? [];
  if (roles.length > 0 && !options.sql) throw new Error('granting roles needs the database (options.sql)');
  for (const role of roles) {
    await setUserRole({ sql: options.sql! }, { email, role, granted: true, actor: 'test' });
  }
  const session = await client.auth.authenticate({
    email,
    password: TEST_PASSWORD,
    deviceId: 'test',
    ipAddress: '127.0.0.1',
  });
  return { userId: session.userInfo?.userId ?? 0, email, username, token: session.accessToken };
}
