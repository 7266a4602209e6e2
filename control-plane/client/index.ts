/**
 * The one gRPC client of the control plane, used by the edge, the media nodes and the
 * workers. Every generated ts-proto client is wrapped by the same two generic adapters
 * (unary -> Promise, server streaming -> async iterable), so a new rpc in a .proto file
 * needs no code here.
 *
 * Each call carries the service identity (`x-api-key`), the request id and, when the
 * call acts for a user, that user's token. Failures come back as the VezaError the
 * service threw (through the `veza-error-code` trailer), so a 409 stays a 409.
 */
import { randomUUID } from 'node:crypto';
import {
  type CallOptions,
  type Client,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ClientWritableStream,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { UnavailableError, VezaError } from '../../common/contracts/index.js';
import {
  type Breaker,
  createBreaker,
  createLogger,
  DEPENDENCY_DOWN,
  ERROR_CODE_KEY,
  fromGrpcError,
  injectTrace,
  inSpan,
  type Logger,
  REQUEST_ID_HEADER,
  SpanKind,
  tracingEnabled,
} from '../../common/index.js';
import { AnalyticsServiceClient } from '../../proto/gen/veza/analytics/analytics.js';
import { AuthServiceClient } from '../../proto/gen/veza/auth/auth.js';
import { ChatServiceClient } from '../../proto/gen/veza/chat/chat.js';
import { NotificationServiceClient } from '../../proto/gen/veza/notification/notification.js';
import { StreamServiceClient } from '../../proto/gen/veza/stream/stream.js';
import { balancedChannel, IDEMPOTENT_RPCS } from './balancing.js';
import {
  HealthClient,
  NO_CONTROL_PLANE_AVAILABLE,
  type RawHealthClient,
  type ServingStatus,
} from './health-checked.js';

/** Per-call options. */
export interface CallContext {
  /** The user's access token; sent as `authorization: Bearer <token>`. */
  token?: string;
  /** Propagated as `x-request-id` so edge and control-plane log lines join up; generated when absent. */
  requestId?: string;
  /** Relative deadline; the client default applies when absent. */
  deadlineMs?: number;
  /** Cancels the call, e.g. when the HTTP client went away. */
  signal?: AbortSignal;
  /**
   * The end client's IP when the caller is a gateway (the edge), sent as
   * `x-forwarded-for` so per-IP limits (e.g. registrations) see the user rather than the
   * edge. The control plane trusts it only from callers holding an API key.
   */
  clientIp?: string;
}

type UnaryCallback<Res> = (error: ServiceError | null, response: Res) => void;
/** The last overload ts-proto emits for a unary rpc, which is the one conditional types see. */
type RawUnary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: UnaryCallback<Res>,
) => ClientUnaryCall;
type RawServerStream<Req, Res> = (
  request: Req,
  metadata?: Metadata,
  options?: Partial<CallOptions>,
) => ClientReadableStream<Res>;

export type UnaryMethod<Req, Res> = (request: Req, context?: CallContext) => Promise<Res>;
export type ServerStreamMethod<Req, Res> = (request: Req, context?: CallContext) => ServerStream<Res>;

/** A server stream as an async iterable; `cancel()` ends it from this side. */
export interface ServerStream<Res> extends AsyncIterable<Res> {
  cancel(): void;
}

// Order matters: client and bidi streams (writable) also fit the server-stream shape, and
// server streams fit the unary one (fewer parameters; a ClientReadableStream is
// structurally a ClientUnaryCall).
type Promisified<F> = F extends (...args: never[]) => ClientWritableStream<infer _Req>
  ? never
  : F extends RawServerStream<infer Req, infer Res>
    ? ServerStreamMethod<Req, Res>
    : F extends RawUnary<infer Req, infer Res>
      ? UnaryMethod<Req, Res>
      : never;

/**
 * The promise-based view of a ts-proto grpc-js client: unary and server-streaming rpcs.
 * Client- and bidi-streaming rpcs are left out; use `raw` with `metadataFor()` for those.
 */
export type PromiseClient<C> = {
  [K in Exclude<keyof C, keyof Client> as Promisified<C[K]> extends never ? never : K]: Promisified<C[K]>;
};

export type { ServingStatus } from './health-checked.js';

export interface ControlPlaneClient {
  auth: PromiseClient<AuthServiceClient>;
  chat: PromiseClient<ChatServiceClient>;
  stream: PromiseClient<StreamServiceClient>;
  notification: PromiseClient<NotificationServiceClient>;
  analytics: PromiseClient<AnalyticsServiceClient>;
  /** grpc.health.v1 Check for one service ('' is the whole server). Errors become VezaErrors. */
  health(service: string, context?: CallContext): Promise<ServingStatus>;
  /** The generated clients, for streaming shapes the promise view leaves out. */
  raw: {
    auth: AuthServiceClient;
    chat: ChatServiceClient;
    stream: StreamServiceClient;
    notification: NotificationServiceClient;
    analytics: AnalyticsServiceClient;
  };
  /** The metadata a call with this context sends (for `raw` calls). */
  metadataFor(context?: CallContext): Metadata;
  /** The circuit breaker every unary call goes through (streams are long-lived and stay outside). */
  readonly breaker: Breaker;
  close(): void;
}

export interface ControlPlaneClientOptions {
  /**
   * Where the control planes are: host:port, a comma list of ip:port, or dns:///name:port
   * (CONTROL_PLANE_ADDRESS). Calls are balanced across them (balancing.ts).
   */
  address: string;
  /** Service identity sent as `x-api-key` on every call. */
  apiKey: string;
  log?: Logger;
  /** Deadline for calls that give none; unary calls never wait forever. */
  defaultDeadlineMs?: number;
  /**
   * How long the circuit breaker in front of the control plane stays open before a trial call
   * (CIRCUIT_BREAKER_RESET_MS); default 10 s.
   */
  breakerResetMs?: number;
}

/** `/package.Service/Method` of every rpc whose repetition changes nothing (balancing.ts). */
const IDEMPOTENT_PATHS = new Set(
  Object.entries(IDEMPOTENT_RPCS).flatMap(([service, methods]) =>
    methods.map((method) => `/${service}/${method}`),
  ),
);

/** Why a call failed when the control plane itself (not the caller's request) is the problem. */
const CONTROL_PLANE_DOWN = 'control_plane_down';

/**
 * What opens the breaker: the control plane unreachable or silent, or a dependency of it down.
 * Every other error, `unavailable` ones included (no media node live, the caller cancelled), is an
 * answer about this request.
 */
function isControlPlaneFailure(error: unknown): boolean {
  return (
    error instanceof VezaError &&
    (error.details.reason === CONTROL_PLANE_DOWN || error.details.reason === DEPENDENCY_DOWN)
  );
}

/** Service descriptors: the generated `service` static lists each rpc's streaming shape. */
interface GeneratedClientConstructor<C> {
  new (
    address: string,
    creds: ReturnType<typeof credentials.createInsecure>,
    options?: Record<string, unknown>,
  ): C;
  service: Record<string, { requestStream: boolean; responseStream: boolean }>;
}

const DEFAULT_DEADLINE_MS = 10_000;

/** Metadata key carrying the end client's IP on calls made by a gateway. */
export const CLIENT_IP_HEADER = 'x-forwarded-for';

export { balancedServiceConfig, IDEMPOTENT_RPCS } from './balancing.js';

export function createControlPlaneClient(options: ControlPlaneClientOptions): ControlPlaneClient {
  const defaultDeadlineMs = options.defaultDeadlineMs ?? DEFAULT_DEADLINE_MS;
  const insecure = credentials.createInsecure();
  const channel = balancedChannel(options.address);
  const auth = new AuthServiceClient(channel.target, insecure, channel.options);
  // One channel for every service: sharing it keeps one connection per control plane per process.
  const shared = { channelOverride: auth.getChannel() };
  const make = <C>(ctor: GeneratedClientConstructor<C>): C => new ctor(channel.target, insecure, shared);

  const raw = {
    auth,
    chat: make(ChatServiceClient as unknown as GeneratedClientConstructor<ChatServiceClient>),
    stream: make(StreamServiceClient as unknown as GeneratedClientConstructor<StreamServiceClient>),
    notification: make(
      NotificationServiceClient as unknown as GeneratedClientConstructor<NotificationServiceClient>,
    ),
    analytics: make(AnalyticsServiceClient as unknown as GeneratedClientConstructor<AnalyticsServiceClient>),
  };
  const healthClient = make(HealthClient as unknown as GeneratedClientConstructor<RawHealthClient>);

  const metadataFor = (context: CallContext = {}): Metadata => {
    const metadata = new Metadata();
    metadata.set('x-api-key', options.apiKey);
    metadata.set(REQUEST_ID_HEADER, context.requestId ?? randomUUID());
    if (context.token) metadata.set('authorization', `Bearer ${context.token}`);
    if (context.clientIp) metadata.set(CLIENT_IP_HEADER, context.clientIp);
    // W3C trace context: the control plane's span continues the caller's trace.
    injectTrace((key, value) => metadata.set(key, value));
    return metadata;
  };
  const callOptions = (context: CallContext = {}): Partial<CallOptions> => ({
    deadline: Date.now() + (context.deadlineMs ?? defaultDeadlineMs),
  });
  const breaker = createBreaker({
    target: 'control-plane',
    resetTimeoutMs: options.breakerResetMs ?? 10_000,
    log: options.log ?? createLogger({ name: 'control-plane-client' }),
    isFailure: isControlPlaneFailure,
  });
  const adapters: Adapters = { metadataFor, callOptions, log: options.log, breaker };

  const healthCheck = unary<{ service: string }, { status: ServingStatus }>(
    healthClient,
    'check',
    'grpc.health.v1.Health/Check',
    adapters,
  );

  return {
    auth: promisify(auth, AuthServiceClient, adapters),
    chat: promisify(raw.chat, ChatServiceClient, adapters),
    stream: promisify(raw.stream, StreamServiceClient, adapters),
    notification: promisify(raw.notification, NotificationServiceClient, adapters),
    analytics: promisify(raw.analytics, AnalyticsServiceClient, adapters),
    async health(service, context) {
      const response = await healthCheck({ service }, context);
      return response.status;
    },
    raw,
    metadataFor,
    breaker,
    close() {
      breaker.close();
      // The channel is shared, so closing any client closes it; close all for clarity.
      for (const client of [...Object.values(raw), healthClient]) client.close();
    },
  };
}

interface Adapters {
  metadataFor(context?: CallContext): Metadata;
  callOptions(context?: CallContext): Partial<CallOptions>;
  log: Logger | undefined;
  breaker: Breaker;
}

/** Builds the promise view of a generated client from its service descriptor. */
function promisify<C extends Client>(
  client: C,
  ctor: { service: Record<string, { requestStream: boolean; responseStream: boolean; path: string }> },
  adapters: Adapters,
): PromiseClient<C> {
  const view: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(ctor.service)) {
    if (!method.requestStream && !method.responseStream) {
      view[name] = unary(client, name, method.path, adapters);
    } else if (!method.requestStream && method.responseStream) {
      view[name] = serverStream(client, name, method.path, adapters);
    }
  }
  return view as PromiseClient<C>;
}

function isServiceError(error: unknown): error is ServiceError {
  return typeof error === 'object' && error !== null && 'code' in error && 'metadata' in error;
}

function methodOf<F>(client: Client, name: string): F {
  const method = (client as unknown as Record<string, unknown>)[name];
  if (typeof method !== 'function') throw new Error(`gRPC client has no method ${name}`);
  return method.bind(client) as F;
}

/**
 * The VezaError for a failed call. Errors a Veza service threw carry their code in the
 * trailers and pass through; transport failures (no connection, deadline) say only that
 * the control plane is unavailable, since grpc-js's text names internal addresses.
 */
function clientError(error: ServiceError, path: string, context: CallContext): VezaError {
  const fromService = error.metadata?.get(ERROR_CODE_KEY).length > 0;
  if (error.code === status.CANCELLED && context.signal?.aborted) {
    return new UnavailableError(`${path} cancelled by the caller`, { cause: error, reason: 'cancelled' });
  }
  if (!fromService && error.code === status.UNAVAILABLE) {
    // The balancer's own refusal names the addresses and their states: that goes to the log (below),
    // not to whoever the caller passes this message on to.
    const noneAvailable = error.details?.startsWith(NO_CONTROL_PLANE_AVAILABLE);
    return new UnavailableError(
      `the control plane is unavailable${noneAvailable ? ': none can take calls' : ''}`,
      {
        cause: error,
        reason: CONTROL_PLANE_DOWN,
      },
    );
  }
  if (!fromService && error.code === status.DEADLINE_EXCEEDED) {
    return new UnavailableError('the control plane did not answer in time', {
      cause: error,
      reason: CONTROL_PLANE_DOWN,
    });
  }
  return fromGrpcError(error);
}

/** The one unary adapter: metadata, deadline, cancellation and error mapping. */
function unary<Req, Res>(
  client: Client,
  name: string,
  path: string,
  adapters: Adapters,
): UnaryMethod<Req, Res> {
  const call = methodOf<RawUnary<Req, Res>>(client, name);
  // Made once per method: a call with tracing off allocates nothing for it.
  // Named as the server names its span (`package.Service/Method`), so both sides read alike.
  const rpc = path.replace(/^\//, '');
  const spanName = `grpc ${rpc}`;
  const spanAttributes = { 'rpc.system': 'grpc', 'rpc.method': rpc };
  const idempotent = IDEMPOTENT_PATHS.has(path);
  const guarded = (request: Req, context: CallContext) => adapters.breaker.run(() => send(request, context));
  return (request, context = {}) =>
    tracingEnabled()
      ? inSpan(spanName, SpanKind.CLIENT, () => guarded(request, context), spanAttributes)
      : guarded(request, context);
  /** `options` carries the deadline: a call asked again keeps the first one's. */
  function send(
    request: Req,
    context: CallContext,
    options = adapters.callOptions(context),
    reissued = false,
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      if (context.signal?.aborted) {
        reject(new UnavailableError(`${path} cancelled before it started`));
        return;
      }
      const started = performance.now();
      let answered = false;
      const pending = call(request, adapters.metadataFor(context), options, (error, response) => {
        context.signal?.removeEventListener('abort', cancel);
        if (error && answered && !reissued && idempotent && isDroppedConnection(error)) {
          // grpc-js retries an idempotent call only until the server's headers arrive: the
          // connection lost after them (a control plane killed between its answer and its
          // status, seen at 60 ms apart on a busy one) fails the call. Asked again once, on a
          // live connection, within what is left of the same deadline.
          adapters.log?.debug(
            { rpc: path, requestId: context.requestId },
            'connection dropped after the headers: asking again',
          );
          send(request, context, options, true).then(resolve, reject);
          return;
        }
        if (error) {
          const veza = clientError(error, path, context);
          adapters.log?.[veza.code === 'unavailable' ? 'warn' : 'debug'](
            {
              rpc: path,
              code: veza.code,
              requestId: context.requestId,
              ms: Math.round(performance.now() - started),
              ...(veza.cause === error && veza.details.reason !== CONTROL_PLANE_DOWN
                ? {}
                : { grpcCode: error.code, grpcDetails: error.details }),
            },
            'control-plane call failed',
          );
          reject(veza);
          return;
        }
        resolve(response);
      });
      pending.once('metadata', () => {
        answered = true;
      });
      const cancel = () => pending.cancel();
      context.signal?.addEventListener('abort', cancel, { once: true });
    });
  }
}

/** The transport lost the connection mid-call: no status came from any service. */
function isDroppedConnection(error: ServiceError): boolean {
  return error.code === status.UNAVAILABLE && error.metadata?.get(ERROR_CODE_KEY).length === 0;
}

/** The one server-streaming adapter: an async iterable whose errors are VezaErrors. */
function serverStream<Req, Res>(
  client: Client,
  name: string,
  path: string,
  adapters: Adapters,
): ServerStreamMethod<Req, Res> {
  const call = methodOf<RawServerStream<Req, Res>>(client, name);
  return (request, context = {}) => {
    // Streams live as long as their consumer wants: only an explicit deadline applies.
    const streamOptions: Partial<CallOptions> =
      context.deadlineMs === undefined ? {} : adapters.callOptions(context);
    const stream = call(request, adapters.metadataFor(context), streamOptions);
    const cancel = () => stream.cancel();
    context.signal?.addEventListener('abort', cancel, { once: true });
    return {
      cancel,
      async *[Symbol.asyncIterator]() {
        try {
          for await (const message of stream) yield message as Res;
        } catch (error) {
          // A cancel we asked for is the normal end of the stream, not a failure.
          if ((error as { code?: number }).code === status.CANCELLED) return;
          throw isServiceError(error) ? clientError(error, path, context) : fromGrpcError(error);
        } finally {
          context.signal?.removeEventListener('abort', cancel);
          stream.cancel();
        }
      },
    };
  };
}
