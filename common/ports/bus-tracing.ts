/**
 * Traces across the bus, the same way in its three adapters: a publish or request made inside a
 * trace is a producer (client) span whose W3C context travels with the message (NATS headers, a
 * thread bus frame, or alongside the payload in-process), and the subscriber or responder on the
 * other side runs in a consumer (server) span continuing it. Messages sent outside any trace
 * (presence heartbeats, timers) carry nothing and make no span. Off, each helper is one branch.
 */
import { type Attributes, context, trace } from '@opentelemetry/api';
import {
  contextOf,
  currentTraceCarrier,
  inSpan,
  SpanKind,
  type TraceCarrier,
  tracingEnabled,
} from '../tracing.js';

export type { TraceCarrier } from '../tracing.js';

/** Ids in subjects (`chat.room.42`) would make every span name unique; names keep the subject's shape. */
function subjectShape(subject: string): string {
  return subject
    .split('.')
    .map((token) => (/^[0-9]+$/.test(token) || /^[0-9a-f-]{16,}$/i.test(token) ? '*' : token))
    .join('.');
}

function attributesOf(subject: string, operation: string): Attributes {
  return {
    'messaging.system': 'veza-bus',
    'messaging.destination.name': subject,
    'messaging.operation.name': operation,
  };
}

/** Runs `send` with the carrier to put on the wire, inside a span when the caller is in a trace. */
export function tracedSend<T>(
  operation: 'publish' | 'request',
  subject: string,
  send: (carrier: TraceCarrier | undefined) => T,
): T {
  if (!tracingEnabled() || !trace.getSpan(context.active())) return send(undefined);
  return inSpan(
    `${operation} ${subjectShape(subject)}`,
    operation === 'publish' ? SpanKind.PRODUCER : SpanKind.CLIENT,
    () => send(currentTraceCarrier()),
    attributesOf(subject, operation),
  );
}

/** Runs a subscriber or responder for a received message, continuing the sender's trace if it sent one. */
export function tracedReceive<T>(
  operation: 'process' | 'answer',
  subject: string,
  carrier: TraceCarrier | undefined,
  run: () => T,
): T {
  if (!carrier || !tracingEnabled()) return run();
  return inSpan(
    `${operation} ${subjectShape(subject)}`,
    operation === 'process' ? SpanKind.CONSUMER : SpanKind.SERVER,
    run,
    attributesOf(subject, operation),
    contextOf(carrier),
  );
}

/** A carrier read from headers (NATS), or undefined when the message carries no trace. */
export function carrierFrom(get: (key: string) => string | undefined): TraceCarrier | undefined {
  const traceparent = get('traceparent');
  if (!traceparent) return undefined;
  const tracestate = get('tracestate');
  return tracestate ? { traceparent, tracestate } : { traceparent };
}
