/**
 * The typed wrapper every service implementation goes through. Per call it provides the
 * request id (taken from `x-request-id` when it looks like one, echoed in the response
 * headers and trailers), a child logger, the method's auth policy, the mapping of thrown
 * errors to gRPC statuses and the per-rpc metrics, for all four call shapes.
 *
 * A method an implementation leaves out answers UNIMPLEMENTED naming itself, so each
 * service can be registered whole before a later issue fills it in.
 */
import {
  Metadata,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { UnimplementedError } from '../../common/contracts/index.js';
import {
  activeSpan,
  asDependencyFailure,
  extractTrace,
  type GrpcStatusObject,
  type Logger,
  REQUEST_ID_HEADER,
  requestIdFrom,
  type Span,
  SpanKind,
  SpanStatusCode,
  toGrpcStatus,
  tracingEnabled,
  withRootSpan,
} from '../../common/index.js';
import { recordCall, statusName } from './call-metrics.js';
import { type ApiKeyMatcher, authenticateCaller, type CallerIdentity } from './caller-auth.js';
import type { AuthPolicy, CallContext, TokenVerifier } from './context.js';

/** The shape of one rpc in a ts-proto `outputServices=grpc-js` service definition. */
export interface MethodShape {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestDeserialize: (bytes: Buffer) => unknown;
  responseSerialize: (value: never) => Buffer;
}

type RequestOf<M> = M extends { requestDeserialize: (bytes: Buffer) => infer Q } ? Q : never;
type ResponseOf<M> = M extends { responseSerialize: (value: infer R) => Buffer } ? R : never;

export type UnaryHandler<Q, R> = (request: Q, ctx: CallContext) => Promise<R>;
/** Writes to `stream`; the wrapper ends the stream when the promise settles. */
export type ServerStreamHandler<Q, R> = (
  request: Q,
  stream: ServerWritableStream<Q, R>,
  ctx: CallContext,
) => Promise<void>;
export type ClientStreamHandler<Q, R> = (requests: AsyncIterable<Q>, ctx: CallContext) => Promise<R>;
/**
 * Reads `requests` (ends when the client half-closes) and writes to `stream`; the wrapper
 * ends the stream when the promise settles. Iterate `requests`, not `stream`: a stream's
 * own async iterator destroys it on completion, and a destroyed call never sends its status.
 */
export type BidiStreamHandler<Q, R> = (
  requests: AsyncIterable<Q>,
  stream: ServerDuplexStream<Q, R>,
  ctx: CallContext,
) => Promise<void>;

export type HandlerOf<M> = M extends { requestStream: true; responseStream: true }
  ? BidiStreamHandler<RequestOf<M>, ResponseOf<M>>
  : M extends { requestStream: true }
    ? ClientStreamHandler<RequestOf<M>, ResponseOf<M>>
    : M extends { responseStream: true }
      ? ServerStreamHandler<RequestOf<M>, ResponseOf<M>>
      : UnaryHandler<RequestOf<M>, ResponseOf<M>>;

export interface MethodImplementation<M> {
  policy: AuthPolicy;
  handler: HandlerOf<M>;
}

/** Keyed like the generated service definition; missing methods answer UNIMPLEMENTED. */
export type ServiceImplementation<S> = { [K in keyof S]?: MethodImplementation<S[K]> };

/** What the wrapper needs from the server that hosts it. */
export interface CallRuntime {
  apiKeys: ApiKeyMatcher;
  verifyToken: TokenVerifier;
  log: Logger;
  /** Aborted when the server shuts down, so long-lived streams end and shutdown can complete. */
  shutdown: AbortSignal;
}

export interface ServiceBinding {
  /** The fully qualified service name, e.g. `veza.auth.AuthService`. */
  readonly name: string;
  readonly definition: ServiceDefinition;
  implement(runtime: CallRuntime): UntypedServiceImplementation;
}

/** A TCP peer as grpc-js reports it (`1.2.3.4:5678`, `::1:5678`, `::ffff:1.2.3.4:5678`) -> the IP. */
export function peerIpOf(peer: string): string {
  let address = peer.replace(/^ipv[46]:/, '');
  const bracketed = /^\[(.+)\]:\d+$/.exec(address);
  if (bracketed?.[1]) address = bracketed[1];
  else {
    const withPort = /^(.+):(\d+)$/.exec(address);
    if (withPort?.[1] && (withPort[1].includes('.') || withPort[1].includes(':'))) address = withPort[1];
  }
  return address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
}

/** Inside the wrapper the handler's exact type is known only from the call shape. */
interface AnyImplementation {
  policy: AuthPolicy;
  handler: unknown;
}

interface AnyServerCall {
  metadata: Metadata;
  cancelled: boolean;
  getPeer(): string;
  sendMetadata(metadata: Metadata): void;
  on(event: 'cancelled', listener: () => void): unknown;
}

interface CallTracker {
  /** Sends the response headers (with the request id), once. */
  sendHeaders(): void;
  /** At once when authenticating the caller needs no waiting; throws or rejects with its refusal. */
  context(policy: AuthPolicy): CallContext | Promise<CallContext>;
  succeed(): void;
  /** Maps the error, logs it and records the call; returns the status to send. */
  fail(error: unknown): GrpcStatusObject;
  /** The client went away: nothing can be sent any more. */
  cancelled(): void;
}

function firstValue(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return typeof value === 'string' ? value : undefined;
}

/** The call's context as a promise, whether it came at once, late, or as a thrown refusal. */
function contextPromise(tracker: CallTracker, policy: AuthPolicy): Promise<CallContext> {
  return new Promise((resolve) => resolve(tracker.context(policy)));
}

/**
 * One call's bookkeeping. Classes, not closures: under tsx (esbuild's keepNames) every named
 * closure made per call is wrapped in `__name`, an Object.defineProperty that turns the
 * function into a dictionary-mode object; the five a call made cost several times the answer
 * of a cached ValidateToken in garbage collection.
 *
 * The call's child logger and its abort signal are made when first used: for a call answered
 * from memory pino's child bindings and an abort (grpc-js reports every ended call as
 * cancelled, and each abort builds a DOMException) would cost more than the answer itself.
 */
class TrackedCall implements CallTracker {
  readonly #call: AnyServerCall;
  readonly #method: string;
  readonly #runtime: CallRuntime;
  readonly #started = process.hrtime.bigint();
  readonly requestId: string;
  #headersSent = false;
  #finished = false;
  #log: Logger | undefined;
  #clientGone = false;
  #cancellation: AbortController | undefined;
  #signal: AbortSignal | undefined;
  /** The call's server span (tracing on: made by `traced` around this call), ended with the call. */
  readonly #span: Span | undefined;

  constructor(call: AnyServerCall, method: string, runtime: CallRuntime) {
    this.#call = call;
    this.#method = method;
    this.#runtime = runtime;
    this.requestId = requestIdFrom(firstValue(call.metadata, REQUEST_ID_HEADER));
    this.#span = activeSpan();
    this.#span?.setAttribute('veza.request_id', this.requestId);
    call.on('cancelled', () => this.#gone());
  }

  get log(): Logger {
    this.#log ??= this.#runtime.log.child({ requestId: this.requestId, method: this.#method });
    return this.#log;
  }

  get signal(): AbortSignal {
    if (!this.#signal) {
      this.#cancellation = new AbortController();
      if (this.#clientGone) this.#cancellation.abort();
      this.#signal = AbortSignal.any([this.#cancellation.signal, this.#runtime.shutdown]);
    }
    return this.#signal;
  }

  get call(): AnyServerCall {
    return this.#call;
  }

  sendHeaders(): void {
    if (this.#headersSent) return;
    this.#headersSent = true;
    const headers = new Metadata();
    headers.set(REQUEST_ID_HEADER, this.requestId);
    this.#call.sendMetadata(headers);
  }

  context(policy: AuthPolicy): CallContext | Promise<CallContext> {
    const { metadata } = this.#call;
    const identity = authenticateCaller(metadata, policy, this.#runtime.apiKeys, this.#runtime.verifyToken);
    return identity instanceof Promise
      ? identity.then((known) => new WrappedContext(this, this.#method, known))
      : new WrappedContext(this, this.#method, identity);
  }

  succeed(): void {
    const seconds = this.#finish(status.OK);
    if (seconds !== undefined && this.#logsInfo())
      this.log.info({ code: 'OK', durationMs: Math.round(seconds * 1000) }, 'grpc call');
  }

  fail(error: unknown): GrpcStatusObject {
    // A dependency that is down is the caller's "try again later", not our bug.
    const result = toGrpcStatus(asDependencyFailure(error));
    result.metadata.set(REQUEST_ID_HEADER, this.requestId);
    const seconds = this.#finish(result.code);
    const fields = { code: statusName(result.code), durationMs: Math.round((seconds ?? 0) * 1000) };
    if (result.code === status.INTERNAL) this.log.error({ ...fields, err: error }, 'grpc call failed');
    else if (result.code === status.UNAVAILABLE) this.log.warn({ ...fields, err: error }, 'grpc call failed');
    else if (this.#logsInfo()) this.log.info({ ...fields, error: result.details }, 'grpc call');
    return result;
  }

  cancelled(): void {
    const seconds = this.#finish(status.CANCELLED);
    if (seconds !== undefined && this.#logsInfo())
      this.log.info({ code: 'CANCELLED', durationMs: Math.round(seconds * 1000) }, 'grpc call');
  }

  #gone(): void {
    this.#clientGone = true;
    this.#cancellation?.abort();
  }

  #logsInfo(): boolean {
    return this.#runtime.log.isLevelEnabled('info');
  }

  #finish(code: status): number | undefined {
    if (this.#finished) return undefined;
    this.#finished = true;
    const seconds = Number(process.hrtime.bigint() - this.#started) / 1e9;
    recordCall(this.#method, code, seconds);
    if (this.#span) endServerSpan(this.#span, code);
    return seconds;
  }
}

/** What a handler sees; the logger, the signal and the peer address are made when read. */
class WrappedContext implements CallContext {
  readonly method: string;
  readonly requestId: string;
  readonly user: CallerIdentity['user'];
  readonly service: boolean;
  readonly metadata: Metadata;
  readonly #tracked: TrackedCall;
  #userLog: Logger | undefined;
  #peerIp: string | undefined;

  constructor(tracked: TrackedCall, method: string, identity: CallerIdentity) {
    this.#tracked = tracked;
    this.method = method;
    this.requestId = tracked.requestId;
    this.user = identity.user;
    this.service = identity.service;
    this.metadata = tracked.call.metadata;
  }

  get log(): Logger {
    if (!this.user) return this.#tracked.log;
    this.#userLog ??= this.#tracked.log.child({ userId: this.user.userId });
    return this.#userLog;
  }

  /** Read from the socket while the call is open: handlers that want it read it first. */
  get peerIp(): string {
    this.#peerIp ??= peerIpOf(this.#tracked.call.getPeer());
    return this.#peerIp;
  }

  get signal(): AbortSignal {
    return this.#tracked.signal;
  }
}

/** Statuses that say the server failed (the others are the caller's mistakes or choices). */
const SERVER_FAULTS = new Set<status>([
  status.UNKNOWN,
  status.INTERNAL,
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.DATA_LOSS,
  status.UNIMPLEMENTED,
]);

function endServerSpan(span: Span, code: status): void {
  span.setAttribute('rpc.grpc.status_code', code);
  if (SERVER_FAULTS.has(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: statusName(code) });
  span.end();
}

/**
 * With tracing on, each call runs inside a server span continuing the caller's W3C trace context
 * (`traceparent` in the metadata); TrackedCall ends it. Off, the handler is returned as it is.
 */
function traced<C extends AnyServerCall, R extends unknown[]>(
  method: string,
  handler: (call: C, ...rest: R) => void,
): (call: C, ...rest: R) => void {
  if (!tracingEnabled()) return handler;
  const name = `grpc ${method}`;
  return (call, ...rest) => {
    const parent = extractTrace((key) => firstValue(call.metadata, key));
    withRootSpan(
      name,
      SpanKind.SERVER,
      (span) => {
        span?.setAttributes({ 'rpc.system': 'grpc', 'rpc.method': method });
        handler(call, ...rest);
      },
      parent,
    );
  };
}

function trackCall(call: AnyServerCall, method: string, runtime: CallRuntime): CallTracker {
  return new TrackedCall(call, method, runtime);
}

function unaryCall(
  method: string,
  impl: AnyImplementation,
  runtime: CallRuntime,
): (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => void {
  const handler = impl.handler as UnaryHandler<unknown, unknown>;
  return (call, callback) => {
    const tracker = trackCall(call, method, runtime);
    // Headers go with the answer, in the same tick: grpc-js then writes headers, message and
    // trailers at once instead of the headers in a write of their own (a syscall, and more
    // garbage, per call).
    // The handler starts at once when the caller is known at once (a token answered from memory).
    let answer: Promise<unknown>;
    try {
      const ctx = tracker.context(impl.policy);
      answer =
        ctx instanceof Promise
          ? ctx.then((known) => handler(call.request, known))
          : handler(call.request, ctx);
    } catch (error) {
      answer = Promise.reject(error);
    }
    answer.then(
      (response) => {
        tracker.succeed();
        tracker.sendHeaders();
        callback(null, response);
      },
      (error: unknown) => {
        const failure = tracker.fail(error);
        tracker.sendHeaders();
        callback(failure);
      },
    );
  };
}

function clientStreamCall(
  method: string,
  impl: AnyImplementation,
  runtime: CallRuntime,
): (call: ServerReadableStream<unknown, unknown>, callback: sendUnaryData<unknown>) => void {
  const handler = impl.handler as ClientStreamHandler<unknown, unknown>;
  return (call, callback) => {
    const tracker = trackCall(call, method, runtime);
    contextPromise(tracker, impl.policy)
      .then((ctx) => handler(call, ctx))
      .then(
        (response) => {
          if (call.cancelled) return tracker.cancelled();
          tracker.succeed();
          tracker.sendHeaders();
          callback(null, response);
        },
        (error: unknown) => {
          if (call.cancelled) return tracker.cancelled();
          const failure = tracker.fail(error);
          tracker.sendHeaders();
          callback(failure);
        },
      );
  };
}

type WritableCall = AnyServerCall & {
  writableEnded: boolean;
  end(): unknown;
  emit(event: 'error', error: GrpcStatusObject): boolean;
};

/** Server-streaming and bidi calls end the same way: OK when the handler returns, an error status when it throws. */
function settleStream(call: WritableCall, tracker: CallTracker, run: Promise<void>): void {
  run.then(
    () => {
      if (call.cancelled) return tracker.cancelled();
      tracker.succeed();
      if (!call.writableEnded) call.end();
    },
    (error: unknown) => {
      if (call.cancelled) return tracker.cancelled();
      call.emit('error', tracker.fail(error));
    },
  );
}

function serverStreamCall(
  method: string,
  impl: AnyImplementation,
  runtime: CallRuntime,
): (call: ServerWritableStream<unknown, unknown>) => void {
  const handler = impl.handler as ServerStreamHandler<unknown, unknown>;
  return (call) => {
    const tracker = trackCall(call, method, runtime);
    // A stream's client learns the request id before the first message.
    tracker.sendHeaders();
    settleStream(
      call,
      tracker,
      contextPromise(tracker, impl.policy).then((ctx) => handler(call.request, call, ctx)),
    );
  };
}

function bidiStreamCall(
  method: string,
  impl: AnyImplementation,
  runtime: CallRuntime,
): (call: ServerDuplexStream<unknown, unknown>) => void {
  const handler = impl.handler as BidiStreamHandler<unknown, unknown>;
  return (call) => {
    const tracker = trackCall(call, method, runtime);
    tracker.sendHeaders();
    settleStream(
      call,
      tracker,
      contextPromise(tracker, impl.policy).then((ctx) =>
        handler(call.iterator({ destroyOnReturn: false }) as AsyncIterable<unknown>, call, ctx),
      ),
    );
  };
}

function unimplemented(method: string): AnyImplementation {
  const fail = async (): Promise<never> => {
    throw new UnimplementedError(`${method} is not implemented yet`);
  };
  return { policy: 'public', handler: fail };
}

/** Pairs a generated service definition with its (possibly partial) implementation. */
export function bindService<S extends Record<string, MethodShape>>(
  definition: S,
  implementation: ServiceImplementation<S>,
): ServiceBinding {
  const methods = Object.entries(definition);
  const first = methods[0]?.[1];
  if (!first) throw new Error('a service definition needs at least one method');
  const name = first.path.slice(1, first.path.lastIndexOf('/'));
  return {
    name,
    definition: definition as unknown as ServiceDefinition,
    implement(runtime) {
      const wrapped: UntypedServiceImplementation = {};
      for (const [key, shape] of methods) {
        const method = shape.path.slice(1);
        const impl = (implementation[key] as AnyImplementation | undefined) ?? unimplemented(method);
        if (shape.requestStream && shape.responseStream)
          wrapped[key] = traced(method, bidiStreamCall(method, impl, runtime));
        else if (shape.requestStream) wrapped[key] = traced(method, clientStreamCall(method, impl, runtime));
        else if (shape.responseStream) wrapped[key] = traced(method, serverStreamCall(method, impl, runtime));
        else wrapped[key] = traced(method, unaryCall(method, impl, runtime));
      }
      return wrapped;
    },
  };
}
