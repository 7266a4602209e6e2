/**
 * An OTLP/HTTP trace receiver on loopback, for tests: what an OpenTelemetry collector (or Jaeger)
 * receives on `/v1/traces`, decoded from the protocol's JSON encoding (OTEL_EXPORTER_OTLP_PROTOCOL
 * =http/json), and kept as flat spans a test can query. The protocol's shape is parsed with zod, so
 * an exporter that sent something else fails the test rather than being read wrongly.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { z } from 'zod';

/** One span as received, with its resource's service name. */
export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  /** Empty for a trace's root. */
  parentSpanId: string;
  name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  /** OTLP's status code: 0 unset, 1 ok, 2 error. */
  statusCode: number;
}

export interface OtlpReceiver {
  /** `http://127.0.0.1:<port>`: OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly endpoint: string;
  readonly spans: readonly ReceivedSpan[];
  /** Export requests that could not be decoded (each fails the test that checks it is empty). */
  readonly rejected: readonly string[];
  close(): Promise<void>;
}

const anyValue = z.object({
  stringValue: z.string().optional(),
  intValue: z.union([z.string(), z.number()]).optional(),
  doubleValue: z.number().optional(),
  boolValue: z.boolean().optional(),
});
const keyValue = z.object({ key: z.string(), value: anyValue });
const exportRequest = z.object({
  resourceSpans: z.array(
    z.object({
      resource: z.object({ attributes: z.array(keyValue).default([]) }).optional(),
      scopeSpans: z.array(
        z.object({
          spans: z.array(
            z.object({
              traceId: z.string().regex(/^[0-9a-f]{32}$/),
              spanId: z.string().regex(/^[0-9a-f]{16}$/),
              parentSpanId: z.string().optional(),
              name: z.string(),
              kind: z.number().int(),
              attributes: z.array(keyValue).default([]),
              status: z.object({ code: z.number().int().optional() }).optional(),
            }),
          ),
        }),
      ),
    }),
  ),
});

function plainValue(value: z.infer<typeof anyValue>): string | number | boolean {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  if (value.boolValue !== undefined) return value.boolValue;
  return '';
}

function attributesOf(list: z.infer<typeof keyValue>[]): Record<string, string | number | boolean> {
  return Object.fromEntries(list.map((entry) => [entry.key, plainValue(entry.value)]));
}

async function bodyOf(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  return request.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const rejected: string[] = [];
  const server = createServer((request, response) => {
    const fail = (status: number, why: string) => {
      rejected.push(why);
      response.writeHead(status, { 'content-type': 'application/json' }).end('{}');
    };
    if (request.method !== 'POST' || request.url !== '/v1/traces') {
      fail(404, `${request.method} ${request.url}`);
      return;
    }
    if (!request.headers['content-type']?.startsWith('application/json')) {
      fail(415, `content-type ${request.headers['content-type']}`);
      return;
    }
    bodyOf(request).then(
      (body) => {
        let json: unknown;
        try {
          json = JSON.parse(body.toString('utf8'));
        } catch (error) {
          fail(400, `not JSON: ${String(error)}`);
          return;
        }
        const parsed = exportRequest.safeParse(json);
        if (!parsed.success) {
          fail(400, parsed.error.message);
          return;
        }
        for (const resourceSpans of parsed.data.resourceSpans) {
          const service = String(
            attributesOf(resourceSpans.resource?.attributes ?? [])['service.name'] ?? '',
          );
          for (const scope of resourceSpans.scopeSpans) {
            for (const span of scope.spans) {
              spans.push({
                service,
                traceId: span.traceId,
                spanId: span.spanId,
                parentSpanId: span.parentSpanId ?? '',
                name: span.name,
                kind: span.kind,
                attributes: attributesOf(span.attributes),
                statusCode: span.status?.code ?? 0,
              });
            }
          }
        }
        // An empty ExportTraceServiceResponse: everything accepted.
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      },
      (error: unknown) => fail(400, String(error)),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    rejected,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
