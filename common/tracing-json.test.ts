/**
 * OTEL_EXPORTER_OTLP_PROTOCOL=http/json picks the SDK's JSON exporter: spans arrive as OTLP/JSON
 * at a real receiver, with the service name OTEL_SERVICE_NAME gives. (The default, http/protobuf:
 * app/tracing.test.ts; grpc: common/ports/bus-tracing.test.ts.)
 */
import { afterAll, expect, it } from 'vitest';
import { activeSpan, inRootSpan, loadConfig, SpanKind, startTracing } from './index.js';
import { startOtlpReceiver } from './testing/index.js';

const NAMES = ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_PROTOCOL', 'OTEL_SERVICE_NAME'];
const saved = new Map(NAMES.map((name) => [name, process.env[name]]));
afterAll(() => {
  for (const [name, value] of saved) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

it('exports over http/json, named by OTEL_SERVICE_NAME', async () => {
  const receiver = await startOtlpReceiver();
  try {
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: 'veza-json-test',
    };
    Object.assign(process.env, env);
    const tracing = await startTracing(loadConfig(env), 'not-this-name');
    const traceId = inRootSpan('json span', SpanKind.SERVER, () => activeSpan()!.spanContext().traceId);
    // Shutting down exports what the batch processor holds.
    await tracing.shutdown();
    expect(receiver.rejected).toEqual([]);
    expect(receiver.protocols).toEqual(['http/json']);
    expect(receiver.spans).toEqual([
      expect.objectContaining({
        service: 'veza-json-test',
        name: 'json span',
        traceId,
        kind: 2,
        parentSpanId: '',
      }),
    ]);
  } finally {
    await receiver.close();
  }
});
