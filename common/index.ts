/**
 * The ground floor every role stands on (it imports no role): the one config loader, logging,
 * metrics, presence on the bus, access-token verification and roles, and the gRPC mapping of the
 * error codes. Its other modules have their own entries: contracts/ (what crosses a role),
 * db/ (PostgreSQL and migrations), ports/ (the bus, queue, sessions, rate limits and blobs, with
 * their adapters) and testing/ (for tests only).
 */
export {
  type AccessTokenClaims,
  bearerToken,
  DEFAULT_VERIFIED_TOKENS,
  holdTokenCache,
  LruMap,
  TOKEN_ALGORITHM,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  type TokenCacheHolder,
  type TokenCacheHolderOptions,
  type VerifiedAccessToken,
  VerifiedTokens,
  verifyAccessToken,
} from './access-token.js';
export {
  type Config,
  ConfigError,
  decodeSigningKeysSecret,
  loadConfig,
  type ProcessRole,
  ROLES,
  USER_ROLES,
  type UserRole,
} from './config.js';
export {
  checkFfmpeg,
  errorLines,
  FFMPEG_PATH,
  FFPROBE_PATH,
  FfmpegAbortedError,
  FfmpegError,
  type FfmpegOutput,
  type FfmpegResult,
  type FfmpegRun,
  ffprobe,
  type ProbeData,
  type ProbeStream,
  runFfmpeg,
} from './ffmpeg.js';
export { ERROR_CODE_KEY, fromGrpcError, type GrpcStatusObject, toGrpcStatus } from './grpc-errors.js';
export { createLogger, type Logger, REQUEST_ID_HEADER, requestIdFrom } from './log.js';
export {
  counter,
  gauge,
  histogram,
  metricsRegistry,
  type RenderedMetrics,
  renderMetrics,
  renderMetricsWith,
} from './metrics.js';
export { type OpsServer, startOpsServer } from './ops-server.js';
export { hasPermission, permissionsFor } from './permissions.js';
export {
  announcePresence,
  newBootId,
  type PresenceLeaveCause,
  type PresenceWatch,
  watchPresence,
} from './presence.js';
export { startThread } from './threads.js';
