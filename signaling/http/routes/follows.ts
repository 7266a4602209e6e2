/**
 * Following broadcasters from the web app: the REST face of NotificationService's Follow,
 * Unfollow and ListFollowing. The control plane owns the rules (you cannot follow yourself,
 * the broadcaster must exist) and sends followers the "stream.live" notification.
 *
 * - PUT    /users/:id/follow → 204 (following; idempotent, so PUT rather than POST)
 * - DELETE /users/:id/follow → 204 (not following any more; idempotent too)
 * - GET    /me/following     → { following: [{ user_id, username, followed_at }] }
 */
import { InvalidArgumentError } from '../../../common/contracts/index.js';
import type { EdgeRequest } from '../context.js';
import { json, noContent } from '../reply.js';
import type { RouteRegistrar } from '../server.js';
import { callContext, type RouteDeps, requireBearer } from './shared.js';

const NO_STORE = { 'cache-control': 'no-store' };

function userIdParam(request: EdgeRequest): number {
  const raw = request.params.id ?? '';
  const id = Number(raw);
  if (!/^[1-9]\d*$/.test(raw) || !Number.isSafeInteger(id)) {
    throw new InvalidArgumentError(`invalid path parameter "id": "${raw}" is not a user id`, 'id');
  }
  return id;
}

export function registerFollowRoutes(routes: RouteRegistrar, deps: Pick<RouteDeps, 'controlPlane'>): void {
  const notification = deps.controlPlane.notification;

  routes.route('PUT', '/users/:id/follow', async (request) => {
    const token = requireBearer(request);
    const broadcasterId = userIdParam(request);
    await notification.follow({ broadcasterId }, callContext(request, token));
    return noContent(NO_STORE);
  });

  routes.route('DELETE', '/users/:id/follow', async (request) => {
    const token = requireBearer(request);
    const broadcasterId = userIdParam(request);
    await notification.unfollow({ broadcasterId }, callContext(request, token));
    return noContent(NO_STORE);
  });

  routes.route('GET', '/me/following', async (request) => {
    const token = requireBearer(request);
    const response = await notification.listFollowing({}, callContext(request, token));
    return json(
      {
        following: response.following.map((followed) => ({
          user_id: followed.userId,
          username: followed.username,
          followed_at: followed.followedAt ? followed.followedAt.toISOString() : null,
        })),
      },
      200,
      NO_STORE,
    );
  });
}
