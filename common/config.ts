/**
 * The one typed configuration of Veza Live, read once at start from the environment.
 *
 * Every variable has a default that makes standalone mode work with nothing set.
 * A bad value stops the process with an error naming the variable and what it expected.
 */
import { isIP } from 'node:net';
import { cpus, hostname } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { parseControlPlaneTarget } from './control-plane-target.js';

export const ROLES = ['control-plane', 'signaling', 'media', 'worker'] as const;
export type ProcessRole = (typeof ROLES)[number];

export const USER_ROLES = ['listener', 'broadcaster', 'moderator', 'admin'] as const;
export type UserRole = (typeof USER_ROLES)[number];

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const nonNegativeInt = z.coerce.number().int().min(0);
const csv = <T extends z.ZodType<string, string>>(item: T) =>
  z
    .string()
    .transform((value) =>
      value
        .split(',')
        .map((part) => part.trim())
        .filter((part) => part.length > 0),
    )
    .pipe(z.array(item));
const url = z.string().url();
/** An on/off switch: `true`/`false` (or `1`/`0`); z.coerce.boolean would read "false" as true. */
const flag = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');
const optionalString = z
  .string()
  .optional()
  .transform((value) => (value === '' ? undefined : value));

/** The OTLP transports the SDK offers (OTEL_EXPORTER_OTLP_PROTOCOL); unset means http/protobuf. */
const otlpProtocol = optionalString.pipe(z.enum(['http/protobuf', 'http/json', 'grpc']).optional());

/**
 * Variables whose value is a secret (or may embed one, as URLs with credentials do): an error
 * about them names the variable and never prints the value.
 */
const SECRET_VARIABLES = new Set([
  'SIGNING_KEYS_SECRET',
  'SERVICE_API_KEYS',
  'TURN_SECRET',
  'TURN_CREDENTIAL',
  'S3_SECRET_ACCESS_KEY',
  'METRICS_TOKEN',
  'SMTP_URL',
  'DATABASE_URL',
  'REDIS_URL',
  'NATS_URL',
]);

/**
 * SIGNING_KEYS_SECRET as its 32 bytes: 64 hex digits or base64/base64url (what
 * `openssl rand -hex 32` and `openssl rand -base64 32` print). No passphrases: a key that is
 * 32 random bytes needs no KDF, and one that is not cannot be told apart from a weak one.
 * Null when the text is not such a key, or is obviously not random (a placeholder such as all zeros).
 */
export function decodeSigningKeysSecret(text: string): Buffer | null {
  const value = text.trim();
  let key: Buffer | null = null;
  if (/^[0-9a-fA-F]{64}$/.test(value)) key = Buffer.from(value, 'hex');
  else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(value)) key = Buffer.from(value, 'base64');
  if (key?.length !== 32) return null;
  // 32 random bytes have about 30 distinct values; fewer than 16 happens by chance with
  // negligible probability, so it is a placeholder or a pattern typed by hand.
  return new Set(key).size < 16 ? null : key;
}

/** Variable name -> schema. The keys are the environment variable names, documented in the README. */
const schema = z.object({
  VEZA_MODE: z.enum(['standalone', 'cluster']).default('standalone'),
  VEZA_ROLES: csv(z.enum(ROLES)).default([...ROLES]),
  /**
   * Standalone mode: run the edge, the control plane (with the worker role) and the media node each
   * on its own event loop (worker threads under one supervisor, app/supervisor.ts), so a join burst
   * on one does not queue behind the others. `false`: every role on the one main thread. Cluster
   * processes run their roles on one loop whatever this says (run one role per process there).
   */
  VEZA_THREADS: flag.default(true),
  VEZA_DATA_DIR: z.string().min(1).default('./data'),
  VEZA_NODE_ID: optionalString,
  /**
   * Cluster mode: the prefix of every NATS subject, JetStream stream and Redis key, so that
   * deployments (or test runs) sharing one NATS and one Redis never see each other.
   */
  VEZA_NAMESPACE: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, _ and - only, at most 32')
    .default('veza'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  HTTP_HOST: z.string().min(1).default('0.0.0.0'),
  HTTP_PORT: port.default(8080),
  PUBLIC_URL: url.optional(),
  BODY_LIMIT_BYTES: positiveInt.default(64 * 1024),
  AVATAR_LIMIT_BYTES: positiveInt.default(2 * 1024 * 1024),

  GRPC_HOST: z.string().min(1).default('0.0.0.0'),
  GRPC_PORT: port.default(9090),
  /**
   * Where edges and workers reach the control plane: host:port, a comma list of ip:port that
   * the client balances across, or dns:///name:port resolving to several (control-plane-target.ts).
   */
  CONTROL_PLANE_ADDRESS: optionalString.pipe(
    z
      .string()
      .superRefine((value, context) => {
        try {
          parseControlPlaneTarget(value);
        } catch (error) {
          context.addIssue({ code: 'custom', message: (error as Error).message });
        }
      })
      .optional(),
  ),
  /** HTTP port of a control-plane-only process, for /metrics, /healthz and the JWKS. */
  CONTROL_HTTP_PORT: port.default(9091),
  /**
   * Bearer token Prometheus must present on /metrics (the edge's public port and the ops port).
   * The metrics carry no personal data, but they tell anyone load, node ids and error rates, so a
   * public edge should set it; unset, /metrics is open (a standalone machine, a private network).
   */
  METRICS_TOKEN: optionalString.pipe(z.string().min(16, 'needs at least 16 characters').optional()),
  /** Shared secrets for service-to-service gRPC calls (x-api-key). Generated per run in standalone mode. */
  SERVICE_API_KEYS: csv(z.string().min(16, 'each key needs at least 16 characters')).default([]),
  /**
   * The key-encryption key of the JWT signing keys stored in PostgreSQL (control-plane/auth/key-encryption.ts).
   * Required by control planes in cluster mode (they all decrypt the same keys); in standalone mode,
   * when unset, one is generated once into <data dir>/secrets/signing-keys.key.
   */
  SIGNING_KEYS_SECRET: optionalString.pipe(
    z
      .string()
      .refine(
        (value) => decodeSigningKeysSecret(value) !== null,
        'expected 32 random bytes, hex or base64 encoded (e.g. the output of `openssl rand -base64 32`)',
      )
      .optional(),
  ),

  DATABASE_URL: optionalString.pipe(url.optional()),
  EMBEDDED_PG_PORT: port.default(54329),
  REDIS_URL: optionalString.pipe(url.optional()),
  NATS_URL: optionalString,

  ACCESS_TOKEN_TTL_S: positiveInt.default(900),
  REFRESH_TOKEN_TTL_S: positiveInt.default(30 * 24 * 3600),
  DEFAULT_USER_ROLES: csv(z.enum(USER_ROLES)).default(['listener', 'broadcaster']),
  LOGIN_LIMIT_PER_IP: positiveInt.default(20),
  LOGIN_LIMIT_PER_ACCOUNT: positiveInt.default(10),
  LOGIN_LIMIT_WINDOW_S: positiveInt.default(60),
  REGISTER_LIMIT_PER_IP: positiveInt.default(10),

  SMTP_URL: optionalString.pipe(url.optional()),
  MAIL_FROM: z.string().min(3).default('Veza Live <no-reply@veza.local>'),

  MEDIA_WORKERS: positiveInt.default(cpus().length),
  MEDIA_LISTEN_IP: z.string().min(1).default('0.0.0.0'),
  MEDIA_ANNOUNCED_ADDRESS: optionalString,
  MEDIA_RTC_MIN_PORT: port.default(40000),
  MEDIA_RTC_MAX_PORT: port.default(49999),
  MEDIA_CONSUMER_BUDGET: positiveInt.default(500),
  /** Length of a recording segment: a recorder crash loses at most this much audio. */
  RECORDING_SEGMENT_S: positiveInt.default(4),
  /** How long a recording job waits for a media node's last segments after its stream ended. */
  RECORDING_SETTLE_S: positiveInt.default(20),
  /**
   * The control plane's replay sweep (control-plane/recordings/sweep.ts): how often it looks for
   * recorded streams that ended more than RECORDING_SWEEP_GRACE_S ago and whose join was never
   * queued (a lost `stream.ended`, a control plane that died before queueing), and queues it.
   * 0 disables it.
   */
  RECORDING_SWEEP_INTERVAL_S: nonNegativeInt.default(60),
  RECORDING_SWEEP_GRACE_S: nonNegativeInt.default(60),
  /**
   * Listeners one media node takes, every stream together; beyond it a join is refused
   * (`resource_exhausted`) and placement sends listeners to another node. Unset: the capacity
   * model's figure for the node's size, MEDIA_WORKERS x LISTENERS_PER_WORKER (README, Capacity plan).
   */
  MEDIA_NODE_MAX_LISTENERS: optionalString.pipe(
    z.union([z.undefined(), z.string().transform(Number).pipe(z.number().int().positive())]),
  ),
  /** A zone or region label for the node (one subject token): placement keeps listeners in their zone when it can. */
  MEDIA_NODE_ZONE: optionalString.pipe(
    z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and - only')
      .optional(),
  ),
  /** Cascaded fan-out: most nodes one node pipes a stream to, so a big audience forms a tree, not a star. */
  MEDIA_RELAY_FANOUT: positiveInt.default(4),
  /** How long a relay node keeps a stream's pipe once nobody listens there (seconds). */
  MEDIA_RELAY_GRACE_S: nonNegativeInt.default(10),
  /**
   * The address other media nodes send a pulled stream to (cascaded fan-out), when it is not the
   * one announced to listeners: nodes that reach each other over a private network while listeners
   * come over a public one, or a link the operator routes through something of its own. Unset: the
   * listeners' address (MEDIA_ANNOUNCED_ADDRESS, else the listen IP).
   */
  MEDIA_PIPE_ANNOUNCED_ADDRESS: optionalString,
  /**
   * Cluster mode: the group media nodes announce themselves in, and control planes place streams
   * in (a bus subject token). Deployments sharing one NATS server set different names.
   */
  MEDIA_CLUSTER: optionalString.pipe(
    z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and - only (one bus subject token)')
      .optional(),
  ),
  TURN_URLS: csv(z.string().regex(/^turns?:/, 'TURN urls start with turn: or turns:')).default([]),
  TURN_USERNAME: optionalString,
  TURN_CREDENTIAL: optionalString,
  /**
   * coturn's `static-auth-secret` (its TURN REST API): each client gets its own credential,
   * valid for TURN_CREDENTIAL_TTL_S, instead of one shared username and password.
   */
  TURN_SECRET: optionalString,
  TURN_CREDENTIAL_TTL_S: positiveInt.default(86_400),
  STREAM_GRACE_S: nonNegativeInt.default(30),
  /**
   * Signaling connections opened without a token (anonymous listeners) one client address may hold
   * open on one edge at once; the next handshake gets HTTP 429 naming the limit. The address is the
   * one X-Forwarded-For gives when the socket's peer is in TRUSTED_PROXIES.
   */
  ANONYMOUS_CONNECTIONS_PER_IP: positiveInt.default(20),
  /**
   * Cluster mode: how often media nodes and edges announce themselves on the bus; one that misses
   * three of its heartbeats is taken for dead (its streams move, its peers are closed).
   */
  PRESENCE_HEARTBEAT_MS: z.coerce.number().int().min(50).max(60_000).default(2000),

  /**
   * Dependency health (common/dependency-health.ts): how often each process probes what it needs
   * (PostgreSQL, Redis, NATS, blob storage, the media-node registry), and how long one probe may
   * take before the dependency counts as down. /readyz and grpc.health.v1 answer from the last probe.
   */
  HEALTH_PROBE_INTERVAL_MS: z.coerce.number().int().min(50).max(60_000).default(2000),
  HEALTH_PROBE_TIMEOUT_MS: z.coerce.number().int().min(10).max(30_000).default(1000),
  /**
   * Circuit breakers (common/circuit-breaker.ts): how long an open breaker refuses calls before it
   * lets one trial call through; also the Retry-After of the 503 it answers meanwhile.
   */
  CIRCUIT_BREAKER_RESET_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),

  WORKER_CONCURRENCY: positiveInt.default(cpus().length),

  /** Largest accepted upload, in bytes (refused at creation and while the bytes stream in). */
  UPLOAD_MAX_BYTES: positiveInt.default(512 * 1024 * 1024),
  /** Longest accepted audio, in seconds; the worker's probe enforces it. */
  UPLOAD_MAX_DURATION_S: positiveInt.default(3 * 3600),
  /** Stored upload bytes per user (sources of live tracks plus uploads in progress). */
  UPLOAD_QUOTA_BYTES: positiveInt.default(5 * 1024 * 1024 * 1024),
  /** S3-compatible BlobStorage (MinIO, AWS...), used when S3_BUCKET is set; files under the data directory otherwise. */
  S3_ENDPOINT: optionalString.pipe(url.optional()),
  S3_BUCKET: optionalString,
  S3_REGION: z.string().min(1).default('us-east-1'),
  S3_ACCESS_KEY_ID: optionalString,
  S3_SECRET_ACCESS_KEY: optionalString,

  /** Optional external toxicity scorer (POST {text} -> {score, reasons}); the local scorer is the fallback. */
  MODERATION_URL: optionalString.pipe(url.optional()),
  /**
   * Chat messages per user and room: a burst per 5 s and a sustained rate per 60 s
   * (control-plane/chat/limits.ts). Benchmarks of the send path's own capacity raise them.
   */
  CHAT_BURST_PER_5S: positiveInt.default(6),
  CHAT_MESSAGES_PER_MIN: positiveInt.default(30),

  /**
   * The control plane's retention sweep (control-plane/maintenance): how often it deletes rows that
   * have outlived their use, and how many rows one statement deletes at most (short locks). 0 disables it.
   */
  RETENTION_SWEEP_INTERVAL_S: nonNegativeInt.default(3600),
  RETENTION_BATCH_SIZE: z.coerce.number().int().min(1).max(100_000).default(1000),
  /**
   * Login sessions (standalone) and refresh tokens are deleted this long after they expired or were
   * revoked; until then a spent refresh token presented again is still recognised as a reuse.
   */
  SESSION_RETENTION_DAYS: positiveInt.default(7),
  /** Finished jobs of the standalone queue; their job id deduplicates enqueues until then. */
  JOB_RETENTION_DAYS: positiveInt.default(7),
  /** Dead jobs, their dead letters, and emails given up on (outbox rows marked failed). */
  DEAD_JOB_RETENTION_DAYS: positiveInt.default(30),
  /** Delivered (or logged) outbox emails, and email confirmation tokens after their expiry. */
  EMAIL_RETENTION_DAYS: positiveInt.default(7),

  /**
   * Audience analytics (control-plane/analytics, the edge's audience reporter, the worker's roll-ups).
   * Raw events are kept ANALYTICS_RAW_RETENTION_DAYS; the per-minute roll-ups for good.
   */
  ANALYTICS_RAW_RETENTION_DAYS: positiveInt.default(90),
  /** How often the edge samples each listener's and broadcaster's delivery quality from the media node. */
  ANALYTICS_SAMPLE_S: z.coerce.number().int().min(1).max(300).default(5),
  /** How often each live stream's current hour is rolled up (0: only after the stream ends). */
  ANALYTICS_ROLLUP_INTERVAL_S: nonNegativeInt.default(60),
  /** The longest range one analytics query may cover. */
  ANALYTICS_MAX_RANGE_DAYS: z.coerce.number().int().min(1).max(3660).default(93),
  /** The GeoIP country database (MaxMind DB format); default: the one shipped in @ip-location-db/geolite2-country-mmdb. */
  GEOIP_COUNTRY_DB: z.string().min(1).optional(),
  /**
   * Socket addresses (IPs or CIDR ranges) of proxies trusted to say who the client is in
   * X-Forwarded-For. Default: the loopback addresses.
   */
  TRUSTED_PROXIES: csv(
    z
      .string()
      .refine(
        (value) => isIP(value.split('/')[0] ?? '') !== 0,
        'each entry is an IP address or a CIDR range',
      ),
  ).default(['127.0.0.1', '::1']),
  /**
   * OpenTelemetry tracing, with the SDK's own variables. Either endpoint turns it on; unset, no SDK
   * starts and every span call is the API's no-op. The SDK reads these and the rest of its variables
   * (OTEL_BSP_*, OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES, ...) from the environment
   * itself; they are declared here so a bad value stops the process naming the variable.
   */
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalString.pipe(url.optional()),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: optionalString.pipe(url.optional()),
  OTEL_EXPORTER_OTLP_PROTOCOL: otlpProtocol,
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: otlpProtocol,
  /** Default: `veza-<roles>` (e.g. `veza-signaling`), so each role is its own service in a trace. */
  OTEL_SERVICE_NAME: optionalString,
  OTEL_SDK_DISABLED: flag.default(false),
});

export type Env = z.infer<typeof schema>;

export interface Config extends Env {
  /** Absolute data directory. */
  dataDir: string;
  /** The control plane's address as host:port, derived when not set. */
  controlPlaneAddress: string;
  publicUrl: string;
  nodeId: string;
  /** An OTLP endpoint is set and the SDK is not disabled: common/tracing.ts starts the SDK. */
  tracing: boolean;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Parses an environment (process.env by default) into the typed config, or throws naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const known = Object.fromEntries(Object.keys(schema.shape).map((key) => [key, env[key]]));
  const parsed = schema.safeParse(known);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? 'config');
      if (SECRET_VARIABLES.has(name)) return `${name} (value not shown): ${issue.message}`;
      return `${name}=${JSON.stringify(env[name] ?? '')}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const value = parsed.data;
  if (value.VEZA_MODE === 'cluster') {
    const missing: string[] = (['DATABASE_URL', 'REDIS_URL', 'NATS_URL'] as const).filter(
      (name) => !value[name],
    );
    // Every control plane decrypts the same signing keys, so none may make up its own secret.
    if (value.VEZA_ROLES.includes('control-plane') && !value.SIGNING_KEYS_SECRET) {
      missing.push('SIGNING_KEYS_SECRET');
    }
    if (missing.length > 0) {
      const hint = missing.includes('SIGNING_KEYS_SECRET')
        ? ' (SIGNING_KEYS_SECRET: the same 32 random bytes on every control plane, e.g. `openssl rand -base64 32`)'
        : '';
      throw new ConfigError(`invalid configuration: VEZA_MODE=cluster needs ${missing.join(', ')}${hint}`);
    }
    if (value.SERVICE_API_KEYS.length === 0 && value.VEZA_ROLES.length < ROLES.length) {
      throw new ConfigError(
        'invalid configuration: SERVICE_API_KEYS must be set when roles run as separate processes',
      );
    }
  }
  const s3Set = (['S3_ENDPOINT', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY'] as const).filter(
    (name) => value[name],
  );
  if (s3Set.length > 0 && !value.S3_BUCKET) {
    throw new ConfigError(`invalid configuration: ${s3Set.join(', ')} set without S3_BUCKET`);
  }
  if (!value.S3_ACCESS_KEY_ID !== !value.S3_SECRET_ACCESS_KEY) {
    throw new ConfigError('invalid configuration: S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together');
  }
  if (value.TURN_SECRET && (value.TURN_USERNAME || value.TURN_CREDENTIAL)) {
    throw new ConfigError(
      'invalid configuration: TURN_SECRET (per-client credentials) replaces TURN_USERNAME and TURN_CREDENTIAL: set one or the other',
    );
  }
  if (value.TURN_SECRET && value.TURN_URLS.length === 0) {
    throw new ConfigError('invalid configuration: TURN_SECRET is set without TURN_URLS');
  }
  if (value.MEDIA_RTC_MIN_PORT > value.MEDIA_RTC_MAX_PORT) {
    throw new ConfigError('invalid configuration: MEDIA_RTC_MIN_PORT must not exceed MEDIA_RTC_MAX_PORT');
  }
  const grpcHost = value.GRPC_HOST === '0.0.0.0' ? '127.0.0.1' : value.GRPC_HOST;
  return {
    ...value,
    dataDir: path.resolve(value.VEZA_DATA_DIR),
    controlPlaneAddress: value.CONTROL_PLANE_ADDRESS ?? `${grpcHost}:${value.GRPC_PORT}`,
    publicUrl: (value.PUBLIC_URL ?? `http://localhost:${value.HTTP_PORT}`).replace(/\/$/, ''),
    // The hostname keeps replicas apart in containers, where every process is pid 1.
    nodeId: value.VEZA_NODE_ID ?? `${hostname()}-${process.pid}`,
    tracing:
      !value.OTEL_SDK_DISABLED &&
      (value.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined ||
        value.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT !== undefined),
  };
}
