/**
 * The seed's "Signalement de contenu": POST /moderation/report stores a report on a
 * message, a user or a stream and notifies the moderators. The control plane's
 * ReportContent owns the rules (what exists, who may see it); this is the REST face.
 */
import { z } from 'zod';
import { json } from '../reply.js';
import type { RouteRegistrar } from '../server.js';
import { callContext, type RouteDeps, requireBearer } from './shared.js';

const reportSchema = z
  .object({
    target_type: z.enum(['message', 'user', 'stream']),
    target_id: z.number().int().positive(),
    reason: z.string().trim().min(1).max(200),
    details: z.string().max(2000).optional(),
  })
  .strict();

export function registerModerationRoutes(
  routes: RouteRegistrar,
  deps: Pick<RouteDeps, 'config' | 'controlPlane'>,
): void {
  routes.route(
    'POST',
    '/moderation/report',
    async (request) => {
      const token = requireBearer(request);
      const input = request.json(reportSchema);
      const response = await deps.controlPlane.chat.reportContent(
        {
          targetType: input.target_type,
          targetId: input.target_id,
          reason: input.reason,
          details: input.details ?? '',
        },
        callContext(request, token),
      );
      return json({ report_id: response.reportId }, 201);
    },
    { body: { json: deps.config.BODY_LIMIT_BYTES } },
  );
}
