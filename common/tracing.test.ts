/**
 * Tracing off (no OTLP endpoint): no SDK starts, and the helpers the hot paths call return at
 * once, with no span, no carrier and nothing added to log lines. The config decides on/off from
 * the SDK's own variables. (With the SDK on: common/ports/bus-tracing.test.ts and
 * app/tracing.test.ts.)
 */
import { types } from 'node:util';
import { trace } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { connectDatabase } from './db/index.js';
import {
  activeSpan,
  ConfigError,
  currentTraceCarrier,
  inRootSpan,
  inSpan,
  loadConfig,
  SpanKind,
  startTracing,
  traceLogFields,
  tracingEnabled,
} from './index.js';
import { NO_TRACE_FIELDS } from './tracing.js';

describe('tracing off', () => {
  it('starts no SDK when no OTLP endpoint is set', async () => {
    const config = loadConfig({});
    expect(config.tracing).toBe(false);
    const tracing = await startTracing(config, 'veza-test');
    expect(tracingEnabled()).toBe(false);
    // The API's no-op provider stays: nothing records.
    expect(trace.getTracer('x').startSpan('y').isRecording()).toBe(false);
    await tracing.shutdown();
  });

  it('runs the wrapped work as it is: no span, no carrier, no log fields, a plain database client', async () => {
    const result = { value: 1 };
    expect(inSpan('a', SpanKind.INTERNAL, () => result)).toBe(result);
    const pending = Promise.resolve(2);
    expect(inRootSpan('b', SpanKind.SERVER, () => pending)).toBe(pending);
    expect(inRootSpan('c', SpanKind.SERVER, () => [activeSpan(), currentTraceCarrier()])).toEqual([
      undefined,
      undefined,
    ]);
    expect(traceLogFields()).toBe(NO_TRACE_FIELDS);
    expect(() =>
      inSpan('d', SpanKind.INTERNAL, () => {
        throw new Error('passes through');
      }),
    ).toThrow('passes through');
    // postgres builds no connection until the first query: nothing to end.
    const sql = connectDatabase('postgres://nobody@127.0.0.1:1/none');
    expect(types.isProxy(sql)).toBe(false);
  });
});

describe('tracing config', () => {
  it('is on with either OTLP endpoint, off when the SDK is disabled', () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).tracing).toBe(true);
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }).tracing,
    ).toBe(true);
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }).tracing,
    ).toBe(false);
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: '' }).tracing).toBe(false);
  });

  it('refuses a protocol the SDK does not speak, or an endpoint that is not a URL, naming the variable', () => {
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'thrift' })).toThrow(ConfigError);
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'thrift' })).toThrow(
      /OTEL_EXPORTER_OTLP_PROTOCOL/,
    );
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector' })).toThrow(
      /OTEL_EXPORTER_OTLP_ENDPOINT/,
    );
    for (const protocol of ['http/protobuf', 'http/json', 'grpc']) {
      expect(
        loadConfig({ OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: protocol }).OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
      ).toBe(protocol);
    }
  });
});
