/** Test accounts made through the real control plane (registration, then a login session). */
import { randomUUID } from 'node:crypto';
import type { ControlPlaneClient } from '../../control-plane/client/index.js';

export const TEST_PASSWORD = 'Correct-Horse-42';

/** Registers a fresh account (`<prefix>-<random>@veza.test`) and signs it in; returns its access token. */
export async function signUpAndIn(client: ControlPlaneClient, prefix: string): Promise<{ token: string }> {
  const suffix = randomUUID().slice(0, 8);
  const email = `${prefix}-${suffix}@veza.test`;
  await client.auth.register({
    email,
    password: TEST_PASSWORD,
    username: `${prefix}_${suffix}`.replaceAll('-', '_'),
    firstName: 'Test',
    lastName: 'Account',
  });
  const session = await client.auth.authenticate({
    email,
    password: TEST_PASSWORD,
    deviceId: 'test',
    ipAddress: '127.0.0.1',
  });
  return { token: session.accessToken };
}
