/**
 * W3C trace context (https://www.w3.org/TR/trace-context/) where a trace crosses a role inside a
 * payload rather than in headers: a durable job, whose consumer may run much later and elsewhere.
 * Bounded and shaped here so a forged value is refused at the schema, not by the tracing SDK.
 */
import { z } from 'zod';

export const traceContextSchema = z.object({
  traceparent: z.string().regex(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/),
  tracestate: z.string().max(512).optional(),
});

export type TraceContext = z.infer<typeof traceContextSchema>;
