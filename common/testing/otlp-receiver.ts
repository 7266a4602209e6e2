/**
 * An OTLP trace receiver on loopback, for tests: what an OpenTelemetry collector (or Jaeger)
 * receives, in each of the protocols OTEL_EXPORTER_OTLP_PROTOCOL offers: `/v1/traces` over HTTP
 * with protobuf (`application/x-protobuf`) or JSON (`application/json`) bodies, and the gRPC
 * TraceService/Export. Protobuf is decoded with OTLP's own field numbers (otlp-trace.proto); both
 * encodings are then parsed with one zod schema and kept as flat spans a test can query, so an
 * exporter that sent something else fails the test rather than being read wrongly.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import {
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { z } from 'zod';

const TRACE_SERVICE = 'opentelemetry.proto.collector.trace.v1.TraceService';
const definitions = loadSync(fileURLToPath(new URL('./otlp-trace.proto', import.meta.url)), {
  longs: String,
  defaults: false,
  oneofs: false,
});
const traceService = definitions[TRACE_SERVICE] as ServiceDefinition;
const exportMethod = traceService.Export!;

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
  /** `http://127.0.0.1:<port>`: OTEL_EXPORTER_OTLP_ENDPOINT for http/protobuf and http/json. */
  readonly endpoint: string;
  /** `http://127.0.0.1:<port>`: OTEL_EXPORTER_OTLP_ENDPOINT for grpc. */
  readonly grpcEndpoint: string;
  /** How each export arrived: `http/protobuf`, `http/json` or `grpc`. */
  readonly protocols: readonly string[];
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
              parentSpanId: z
                .string()
                .regex(/^([0-9a-f]{16})?$/)
                .optional(),
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

/** Protobuf's bytes fields (ids) as the lowercase hex that OTLP/JSON uses. */
function hexIds(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return value.toString('hex');
  if (Array.isArray(value)) return value.map(hexIds);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, hexIds(inner)]));
  }
  return value;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const rejected: string[] = [];
  const protocols: string[] = [];

  /** Keeps the spans of one export request; returns why it is refused, or null. */
  const accept = (protocol: string, decoded: unknown): string | null => {
    const parsed = exportRequest.safeParse(decoded);
    if (!parsed.success) return `${protocol}: ${parsed.error.message}`;
    protocols.push(protocol);
    for (const resourceSpans of parsed.data.resourceSpans) {
      const service = String(attributesOf(resourceSpans.resource?.attributes ?? [])['service.name'] ?? '');
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
    return null;
  };

  const server = createServer((request, response) => {
    const type = request.headers['content-type'] ?? '';
    const json = type.startsWith('application/json');
    const fail = (status: number, why: string) => {
      rejected.push(why);
      response.writeHead(status, { 'content-type': type || 'application/json' }).end(json ? '{}' : '');
    };
    if (request.method !== 'POST' || request.url !== '/v1/traces') {
      fail(404, `${request.method} ${request.url}`);
      return;
    }
    if (!json && !type.startsWith('application/x-protobuf')) {
      fail(415, `content-type ${type}`);
      return;
    }
    bodyOf(request).then(
      (body) => {
        let decoded: unknown;
        try {
          decoded = json ? JSON.parse(body.toString('utf8')) : hexIds(exportMethod.requestDeserialize(body));
        } catch (error) {
          fail(400, `undecodable ${type} body: ${String(error)}`);
          return;
        }
        const refused = accept(json ? 'http/json' : 'http/protobuf', decoded);
        if (refused) {
          fail(400, refused);
          return;
        }
        // An empty ExportTraceServiceResponse (JSON `{}`, or zero protobuf bytes): all accepted.
        response.writeHead(200, { 'content-type': type }).end(json ? '{}' : '');
      },
      (error: unknown) => fail(400, String(error)),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const grpc = new Server();
  const implementation: UntypedServiceImplementation = {
    Export: (call: { request: unknown }, callback: (error: Error | null, response: object) => void) => {
      const refused = accept('grpc', hexIds(call.request));
      if (refused) rejected.push(refused);
      callback(refused ? new Error(refused) : null, {});
    },
  };
  grpc.addService(traceService, implementation);
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpc.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );

  return {
    endpoint: `http://127.0.0.1:${port}`,
    grpcEndpoint: `http://127.0.0.1:${grpcPort}`,
    protocols,
    spans,
    rejected,
    async close() {
      await new Promise<void>((resolve) => grpc.tryShutdown(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
