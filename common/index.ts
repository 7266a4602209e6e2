/**
 * The ground floor every role stands on (it imports no role): the one config loader, logging,
 * metrics, tracing, presence on the bus, access-token verification and roles, and the gRPC mapping of the
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
  BREAKER_DEFAULTS,
  BREAKER_STATE_VALUE,
  BREAKER_TARGETS,
  type Breaker,
  type BreakerOptions,
  type BreakerSettings,
  type BreakerState,
  type BreakerTarget,
  createBreaker,
  noteFallback,
  reportBreakerState,
} from './circuit-breaker.js';
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
export { type ControlPlaneTarget, parseControlPlaneTarget } from './control-plane-target.js';
export { asDependencyFailure, DEPENDENCY_DOWN } from './dependency-errors.js';
export {
  DEPENDENCIES,
  type DependencyMonitor,
  type DependencyMonitorOptions,
  type DependencyName,
  type DependencyProbe,
  type DependencyStatus,
  dependencyReadiness,
  startDependencyMonitor,
} from './dependency-health.js';
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
  STEP_BUCKETS_S,
} from './metrics.js';
export { metricsAccessAllowed } from './metrics-access.js';
export { type OpsServer, type OpsServerOptions, type Readiness, startOpsServer } from './ops-server.js';
export { hasPermission, permissionsFor } from './permissions.js';
export { portAcceptsConnections } from './port-probe.js';
export {
  announcePresence,
  newBootId,
  type PresenceLeaveCause,
  type PresenceWatch,
  watchPresence,
} from './presence.js';
export { type ReadinessEndpoint, reportReadiness } from './readiness-metric.js';
export { startThread } from './threads.js';
export {
  activeSpan,
  contextOf,
  currentTraceCarrier,
  extractTrace,
  injectTrace,
  inRootSpan,
  inSpan,
  type Span,
  SpanKind,
  SpanStatusCode,
  spanFailed,
  startTracing,
  type TraceCarrier,
  type Tracing,
  traceLogFields,
  tracingEnabled,
  withRootSpan,
} from './tracing.js';
