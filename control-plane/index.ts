/**
 * The control plane: the gRPC server with its five services, health and reflection, and
 * the email outbox dispatcher; the retention sweep of its database. This module is its
 * whole public surface.
 */

import type { Sql } from '../common/db/index.js';
import type { Config, DependencyMonitor, Logger } from '../common/index.js';
import type { BlobStorage, EventBus, JobQueue, RateLimiter, SessionStore } from '../common/ports/index.js';
import { AuthServiceService } from '../proto/gen/veza/auth/auth.js';
import {
  type AnalyticsIngest,
  createAnalytics,
  createAnalyticsService,
  createAudienceStore,
  createStreamAnalyticsRpc,
  startAnalyticsIngest,
} from './analytics/index.js';
import {
  createAuthService,
  createMailer,
  loadKeyEncryptionKey,
  loadSigningKeys,
  startOutboxDispatcher,
  startTokenCaching,
  type TokenCaching,
} from './auth/index.js';
import { type ChatModuleOptions, startChatModule } from './chat/index.js';
import { bindService, followDependencies, type HealthControl, startGrpcServer } from './grpc/index.js';
import { startRecordingsModule } from './recordings/index.js';
import { createStreamService } from './streams/index.js';
import { startUploadsModule, type UploadsModuleDeps } from './uploads/index.js';

export { createAdmin, loadKeyEncryptionKey, loadSigningKeys, setUserRole } from './auth/index.js';
export { startRetention } from './maintenance/index.js';

/** The ports the control plane uses (common/ports' `Ports` satisfies it). */
interface ControlPlanePorts {
  bus: EventBus;
  sessions: SessionStore;
  rateLimiter: RateLimiter;
  blobs: BlobStorage;
  jobs: JobQueue;
}

interface ControlPlaneDeps {
  config: Config;
  sql: Sql;
  ports: ControlPlanePorts;
  log: Logger;
  /** This process's service key, accepted as `x-api-key` besides config.SERVICE_API_KEYS. */
  apiKey: string;
  /** Chat and moderation settings: the external moderation service (MODERATION_URL), rate limits. */
  chat?: ChatModuleOptions;
  /** Upload tuning (staging directory, expiry of unfinished uploads, sweep period). */
  uploads?: UploadsModuleDeps['options'];
  /** The process's dependency probes: each service's health follows the ones it needs. */
  dependencies?: DependencyMonitor;
}

export interface ControlPlane {
  /** The bound gRPC port (the real one when config.GRPC_PORT is 0). */
  port: number;
  /** grpc.health.v1 statuses: '' and each of the five services. */
  health: HealthControl;
  /** Graceful: NOT_SERVING, streams ended, calls drained (then cut), outbox stopped. Idempotent. */
  close(): Promise<void>;
}

/** Room for an avatar (the largest request) plus the rest of its message. */
const MESSAGE_OVERHEAD_BYTES = 64 * 1024;

export async function startControlPlane(deps: ControlPlaneDeps): Promise<ControlPlane> {
  const { config, sql, ports } = deps;
  const log = deps.log.child({ role: 'control-plane' });
  // Fails here, before serving, when the stored keys do not decrypt with this secret.
  const keys = await loadSigningKeys(sql, log, await loadKeyEncryptionKey(config, log));
  const outbox = startOutboxDispatcher({ sql, mailer: createMailer(config, log), log });
  let tokens: TokenCaching | undefined;
  let ingest: AnalyticsIngest | undefined;
  try {
    // Token checks from memory, kept current by acknowledged invalidations (auth/invalidations.ts).
    tokens = await startTokenCaching({
      sql,
      sessions: ports.sessions,
      keys,
      blobs: ports.blobs,
      bus: ports.bus,
      log,
      nodeId: config.nodeId,
      intervalMs: config.PRESENCE_HEARTBEAT_MS,
    });
    const caching = tokens;
    const auth = createAuthService({
      config,
      sql,
      log,
      keys,
      sessions: ports.sessions,
      bus: ports.bus,
      rateLimiter: ports.rateLimiter,
      blobs: ports.blobs,
      outbox,
      checks: caching.checks,
      invalidations: caching.invalidations,
    });
    const chat = startChatModule({
      sql,
      bus: ports.bus,
      rateLimiter: ports.rateLimiter,
      log,
      ...deps.chat,
      limits: {
        burst: { points: config.CHAT_BURST_PER_5S, durationS: 5 },
        sustained: { points: config.CHAT_MESSAGES_PER_MIN, durationS: 60 },
        ...deps.chat?.limits,
      },
      moderation: { url: config.MODERATION_URL, ...deps.chat?.moderation },
    });
    const analytics = createAnalytics(sql);
    const audience = createAudienceStore(sql);
    ingest = startAnalyticsIngest({
      sql,
      bus: ports.bus,
      jobs: ports.jobs,
      store: audience,
      log,
      rollupIntervalMs: config.ANALYTICS_ROLLUP_INTERVAL_S * 1000,
    });
    await ingest.ready;
    const analyticsDeps = { analytics, audience, ingest, bus: ports.bus, config };
    const uploads = startUploadsModule({
      config,
      sql,
      ports,
      analytics,
      notifier: chat.notifier,
      log,
      ...(deps.uploads ? { options: deps.uploads } : {}),
    });
    const recordings = startRecordingsModule({
      sql,
      ports,
      log,
      sweep: {
        intervalMs: config.RECORDING_SWEEP_INTERVAL_S * 1000,
        graceMs: config.RECORDING_SWEEP_GRACE_S * 1000,
      },
    });
    const server = await startGrpcServer({
      host: config.GRPC_HOST,
      port: config.GRPC_PORT,
      log,
      apiKeys: [...config.SERVICE_API_KEYS, deps.apiKey],
      verifyToken: caching.checks.verifier,
      maxReceiveMessageBytes: Math.max(4 * 1024 * 1024, config.AVATAR_LIMIT_BYTES + MESSAGE_OVERHEAD_BYTES),
      services: [
        bindService(AuthServiceService, auth),
        chat.chatService,
        createStreamService({
          config,
          sql,
          bus: ports.bus,
          signingKey: keys,
          log,
          chatRooms: chat.streamRooms,
          uploadRpcs: { ...uploads.rpcs, ...recordings.rpcs },
          blobs: ports.blobs,
          dependencies: deps.dependencies,
          analyticsRpcs: createStreamAnalyticsRpc(analyticsDeps),
        }),
        createAnalyticsService(analyticsDeps),
        chat.notificationService,
      ],
    });
    const unfollow = deps.dependencies
      ? followDependencies(server.health, deps.dependencies, log)
      : () => undefined;
    const analyticsIngest = ingest;
    let closing: Promise<void> | undefined;
    return {
      port: server.port,
      health: server.health,
      close() {
        closing ??= (async () => {
          unfollow();
          await server.close();
          await recordings.close();
          await uploads.close();
          chat.close();
          await analyticsIngest.close();
          await outbox.stop();
          await caching.close();
        })();
        return closing;
      },
    };
  } catch (error) {
    await ingest?.close();
    await outbox.stop();
    await tokens?.close();
    throw error;
  }
}
