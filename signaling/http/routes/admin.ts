/**
 * Administration over REST: granting and taking roles, and ending a user's login sessions (the
 * control plane checks the caller is an admin). Both apply on every control plane and edge
 * before the response is sent.
 */
import { z } from 'zod';
import { InvalidArgumentError } from '../../../common/contracts/index.js';
import { USER_ROLES } from '../../../common/index.js';
import { json } from '../reply.js';
import type { RouteRegistrar } from '../server.js';
import { presentUser } from './present.js';
import { callContext, type RouteDeps, requireBearer } from './shared.js';

const roleChangeSchema = z.strictObject({
  role: z.enum(USER_ROLES, { error: `must be one of ${USER_ROLES.join(', ')}` }),
  granted: z.boolean(),
});

function userIdParam(raw: string | undefined): number {
  const id = Number(raw);
  if (!raw || !/^[1-9]\d*$/.test(raw) || !Number.isSafeInteger(id)) {
    throw new InvalidArgumentError(`invalid path parameter "id": "${raw ?? ''}" is not a user id`, 'id');
  }
  return id;
}

export function registerAdminRoutes(
  routes: RouteRegistrar,
  deps: Pick<RouteDeps, 'config' | 'controlPlane'>,
): void {
  routes.route(
    'POST',
    '/admin/users/:id/roles',
    async (request) => {
      const token = requireBearer(request);
      const userId = userIdParam(request.params.id);
      const input = request.json(roleChangeSchema);
      const response = await deps.controlPlane.auth.setUserRole(
        { userId, role: input.role, granted: input.granted },
        callContext(request, token),
      );
      return json({ user: presentUser(response.userInfo) }, 200, { 'cache-control': 'no-store' });
    },
    { body: { json: deps.config.BODY_LIMIT_BYTES } },
  );

  routes.route('POST', '/admin/users/:id/sessions/revoke', async (request) => {
    const token = requireBearer(request);
    const userId = userIdParam(request.params.id);
    const response = await deps.controlPlane.auth.revokeUserSessions({ userId }, callContext(request, token));
    return json({ revoked_session_ids: response.sessionIds }, 200, { 'cache-control': 'no-store' });
  });
}
