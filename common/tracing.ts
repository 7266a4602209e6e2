/**
 * OpenTelemetry tracing: the one place that starts the SDK, and the small helpers every role uses
 * to open spans and to carry a trace across a wire (gRPC metadata, bus headers, a job's payload).
 *
 * Off unless an OTLP endpoint is configured (Config.tracing). Off, no SDK is loaded, `enabled`
 * stays false and every helper returns at its first line: the hot paths (a chat send, a media
 * call over the bus) do no span work, allocate no attributes and touch no context. On, the
 * official NodeSDK reads the standard variables itself (OTEL_EXPORTER_OTLP_PROTOCOL picks
 * http/protobuf, http/json or grpc; OTEL_SERVICE_NAME; the batch processor's OTEL_BSP_*).
 *
 * The state is per event loop: each role thread of standalone mode starts its own SDK, with its
 * own service name, as a separate process would.
 */
import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  type SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  trace,
} from '@opentelemetry/api';
import type { Config } from './config.js';

export { type Span, SpanKind, SpanStatusCode } from '@opentelemetry/api';

/** What a trace needs to cross a wire: W3C trace context's two headers. */
export interface TraceCarrier {
  traceparent: string;
  tracestate?: string;
}

export interface Tracing {
  /** Exports what is still buffered, then stops the SDK (a no-op when tracing is off). */
  shutdown(): Promise<void>;
}

let enabled = false;
const tracer = trace.getTracer('veza-live');

/** True once startTracing started the SDK on this event loop. */
export function tracingEnabled(): boolean {
  return enabled;
}

/**
 * Starts the SDK when the config asks for it. Call it before the platform starts: the database
 * client and the gRPC services decide at creation whether to wrap themselves.
 */
export async function startTracing(config: Config, defaultServiceName: string): Promise<Tracing> {
  if (!config.tracing || enabled) return { shutdown: async () => {} };
  // Loaded only when wanted: the SDK and its exporters cost start-up time and memory.
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const sdk = new NodeSDK({
    ...(config.OTEL_SERVICE_NAME ? {} : { serviceName: defaultServiceName }),
    // Traces only: metrics are Prometheus's (/metrics), and logs go to stdout with the trace id.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
  });
  sdk.start();
  enabled = true;
  return {
    async shutdown() {
      enabled = false;
      // A collector that is down must not fail the process's shutdown: its spans are lost, no more.
      await sdk.shutdown().catch(() => undefined);
    },
  };
}

function isPromise(value: unknown): value is Promise<unknown> {
  return value instanceof Promise;
}

/** Marks a span failed with what was thrown (the message only: stacks stay in the logs). */
export function spanFailed(span: Span, error: unknown): void {
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: error instanceof Error ? error.message : String(error),
  });
  if (error instanceof Error) span.recordException(error);
}

/**
 * Runs `fn` inside a new span (a child of `parent`, the active context by default), ending it
 * when `fn` returns or its promise settles; a throw or rejection marks it failed. Off, it is `fn()`.
 */
export function inSpan<T>(
  name: string,
  kind: SpanKind,
  fn: () => T,
  attributes?: Attributes,
  parent?: Context,
): T {
  if (!enabled) return fn();
  const base = parent ?? context.active();
  const span = tracer.startSpan(name, { kind, ...(attributes ? { attributes } : {}) }, base);
  let result: T;
  try {
    result = context.with(trace.setSpan(base, span), fn);
  } catch (error) {
    spanFailed(span, error);
    span.end();
    throw error;
  }
  if (isPromise(result)) {
    result.then(
      () => span.end(),
      (error: unknown) => {
        spanFailed(span, error);
        span.end();
      },
    );
  } else {
    span.end();
  }
  return result;
}

/** inSpan for the first span of a trace (a request that arrived from a client). */
export function inRootSpan<T>(name: string, kind: SpanKind, fn: () => T, attributes?: Attributes): T {
  return inSpan(name, kind, fn, attributes, ROOT_CONTEXT);
}

/**
 * Starts a span the caller ends (a request whose end is reported elsewhere), and runs `start`
 * in its context. Off, it runs `start(undefined)`.
 */
export function withRootSpan<T>(
  name: string,
  kind: SpanKind,
  start: (span: Span | undefined) => T,
  parent: Context = ROOT_CONTEXT,
): T {
  if (!enabled) return start(undefined);
  const span = tracer.startSpan(name, { kind }, parent);
  return context.with(trace.setSpan(parent, span), () => start(span));
}

/** The span of the active context (to end it elsewhere, or to annotate it); undefined when off. */
export function activeSpan(): Span | undefined {
  return enabled ? trace.getSpan(context.active()) : undefined;
}

/** The active trace as W3C headers, to put on a wire; undefined when off or outside any trace. */
export function currentTraceCarrier(): TraceCarrier | undefined {
  if (!enabled) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  const { traceparent, tracestate } = carrier;
  if (!traceparent) return undefined;
  return tracestate ? { traceparent, tracestate } : { traceparent };
}

/** Writes the active trace's headers with `set` (gRPC metadata, NATS headers); nothing when off. */
export function injectTrace(set: (key: string, value: string) => void): void {
  if (!enabled) return;
  const carrier = currentTraceCarrier();
  if (!carrier) return;
  set('traceparent', carrier.traceparent);
  if (carrier.tracestate) set('tracestate', carrier.tracestate);
}

const carrierGetter: TextMapGetter<(key: string) => string | undefined> = {
  keys: () => ['traceparent', 'tracestate'],
  get: (read, key) => read(key),
};

/** The context a received wire's headers continue (root when they carry none); read with `get`. */
export function extractTrace(get: (key: string) => string | undefined): Context {
  return propagation.extract(ROOT_CONTEXT, get, carrierGetter);
}

/** The context a carrier continues (root when there is none). */
export function contextOf(carrier: TraceCarrier | undefined): Context {
  if (!carrier) return ROOT_CONTEXT;
  return extractTrace((key) => (key === 'traceparent' ? carrier.traceparent : carrier.tracestate));
}

/** What traceLogFields answers outside a trace: one shared object, never written to (log.ts). */
export const NO_TRACE_FIELDS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * The active span's ids for a log line (pino's mixin), so logs and traces join on `trace_id`.
 * Off, the same empty object every time (NO_TRACE_FIELDS), so a log line allocates nothing for it.
 */
export function traceLogFields(): Record<string, string> {
  if (!enabled) return NO_TRACE_FIELDS;
  const span = trace.getSpan(context.active());
  if (!span) return NO_TRACE_FIELDS;
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}
