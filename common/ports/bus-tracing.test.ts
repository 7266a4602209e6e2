/**
 * Traces across each EventBus adapter, with the SDK on and exporting to a real OTLP receiver (over
 * OTLP/gRPC here, OTEL_EXPORTER_OTLP_PROTOCOL=grpc): a
 * publish or request made inside a trace reaches the other side (another connection on NATS,
 * another bus on the thread hub) in a consumer span whose parent is the producer span, while a
 * message sent outside any trace makes no span at all. Also here, since they need the SDK on:
 * the PostgreSQL client's query spans, and the trace ids in log lines.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { types } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase } from '../db/index.js';
import {
  activeSpan,
  createLogger,
  inRootSpan,
  loadConfig,
  SpanKind,
  startTracing,
  type Tracing,
} from '../index.js';
import {
  clusterServices,
  createTestDatabase,
  type OtlpReceiver,
  type ReceivedSpan,
  startOtlpReceiver,
  type TestDatabase,
} from '../testing/index.js';
import type { EventBus } from './event-bus.js';
import { MemoryEventBus } from './memory-event-bus.js';
import { NatsEventBus } from './nats-event-bus.js';
import { ThreadBusHub } from './thread-bus-hub.js';
import { ThreadEventBus } from './thread-event-bus.js';

const P = `t${randomBytes(6).toString('hex')}`;
const log = createLogger({ level: 'silent' });
const OTEL_ENV = ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_PROTOCOL', 'OTEL_BSP_SCHEDULE_DELAY'];

let receiver: OtlpReceiver;
let tracing: Tracing;
const saved = new Map<string, string | undefined>();

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  const env: Record<string, string> = {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.grpcEndpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
    OTEL_BSP_SCHEDULE_DELAY: '20',
  };
  for (const name of OTEL_ENV) {
    saved.set(name, process.env[name]);
    process.env[name] = env[name];
  }
  tracing = await startTracing(loadConfig(env), 'bus-tracing-test');
});

afterAll(async () => {
  await tracing?.shutdown();
  for (const [name, value] of saved) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await receiver?.close();
});

/** Waits until the receiver holds a span matching `match` (the batch processor sends every 20 ms). */
async function received(match: (span: ReceivedSpan) => boolean): Promise<ReceivedSpan> {
  for (;;) {
    const found = receiver.spans.find(match);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Pair {
  bus: EventBus;
  peer: EventBus;
  close(): Promise<void>;
}

const adapters: { name: string; create(): Promise<Pair> }[] = [
  {
    name: 'memory',
    async create() {
      const bus = new MemoryEventBus({ log });
      return { bus, peer: bus, close: () => bus.close() };
    },
  },
  {
    name: 'threads',
    async create() {
      const hub = new ThreadBusHub();
      const bus = new ThreadEventBus(hub.connect(), { log });
      const peer = new ThreadEventBus(hub.connect(), { log });
      return {
        bus,
        peer,
        async close() {
          await Promise.all([bus.close(), peer.close()]);
          await hub.close();
        },
      };
    },
  },
  {
    name: 'nats',
    async create() {
      const bus = await NatsEventBus.connect(clusterServices.natsUrl, { log, namespace: `ns${P}` });
      const peer = await NatsEventBus.connect(clusterServices.natsUrl, { log, namespace: `ns${P}` });
      return { bus, peer, close: async () => void (await Promise.all([bus.close(), peer.close()])) };
    },
  },
];

describe.each(adapters)('the $name bus carries the trace', (adapter) => {
  it('a publish inside a trace: the subscriber runs in a consumer span of the producer span', async () => {
    const { bus, peer, close } = await adapter.create();
    try {
      const subject = `traced.${adapter.name}.event`;
      const seen: Array<{ traceId: string; spanId: string } | undefined> = [];
      let wake: () => void = () => {};
      const arrived = new Promise<void>((resolve) => {
        wake = resolve;
      });
      const sub = peer.subscribe(`traced.${adapter.name}.*`, () => {
        seen.push(activeSpan()?.spanContext());
        if (seen.length === 2) wake();
      });
      await sub.ready;
      // Outside any trace (a heartbeat, a timer): nothing to carry, no span.
      await bus.publish(subject, { n: 0 });
      const root = inRootSpan('test root', SpanKind.INTERNAL, () => {
        const ids = activeSpan()!.spanContext();
        return bus.publish(subject, { n: 1 }).then(() => ids);
      });
      const rootIds = await root;
      await arrived;
      sub.unsubscribe();

      expect(seen[0]).toBeUndefined();
      expect(seen[1]?.traceId).toBe(rootIds.traceId);
      const producer = await received(
        (s) => s.name === `publish ${subject}` && s.traceId === rootIds.traceId,
      );
      expect(producer).toMatchObject({ kind: 4, parentSpanId: rootIds.spanId });
      const consumer = await received(
        (s) => s.name === `process ${subject}` && s.traceId === rootIds.traceId,
      );
      expect(consumer).toMatchObject({ kind: 5, parentSpanId: producer.spanId, spanId: seen[1]?.spanId });
      expect(consumer.attributes['messaging.destination.name']).toBe(subject);
      // The untraced publish made no span.
      expect(receiver.spans.filter((s) => s.name === `publish ${subject}`)).toHaveLength(1);
    } finally {
      await close();
    }
  });

  it('a request inside a trace: the responder answers in a server span of the client span', async () => {
    const { bus, peer, close } = await adapter.create();
    try {
      const subject = `traced.${adapter.name}.ask`;
      const responder = peer.respond(subject, async () => activeSpan()?.spanContext().spanId ?? null);
      await responder.ready;
      const { traceId, answeredIn } = await inRootSpan('asker', SpanKind.INTERNAL, async () => ({
        traceId: activeSpan()!.spanContext().traceId,
        answeredIn: await bus.request(subject, {}),
      }));
      responder.unsubscribe();
      const client = await received((s) => s.name === `request ${subject}` && s.traceId === traceId);
      const server = await received((s) => s.name === `answer ${subject}` && s.traceId === traceId);
      expect(client.kind).toBe(3);
      expect(server).toMatchObject({ kind: 2, parentSpanId: client.spanId, spanId: answeredIn });
    } finally {
      await close();
    }
  });
});

describe('PostgreSQL queries', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase('cluster');
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('are spans of the caller, with the statement and never its values', async () => {
    const sql = connectDatabase(db.url);
    try {
      expect(types.isProxy(sql)).toBe(true);
      const secret = `value-${P}`;
      const traceId = await inRootSpan('caller', SpanKind.INTERNAL, async () => {
        await sql`select ${secret}::text as echoed`;
        await sql.begin(async (tx) => {
          await tx`select 1 as inside`;
        });
        return activeSpan()!.spanContext().traceId;
      });
      const root = await received((s) => s.name === 'caller' && s.traceId === traceId);
      const select = await received(
        (s) => s.traceId === traceId && String(s.attributes['db.query.text']).includes('echoed'),
      );
      expect(select).toMatchObject({ name: 'postgres SELECT', kind: 3, parentSpanId: root.spanId });
      expect(select.attributes['db.query.text']).toBe('select $?::text as echoed');
      expect(JSON.stringify(receiver.spans)).not.toContain(secret);
      const transaction = await received((s) => s.name === 'postgres transaction' && s.traceId === traceId);
      const inside = await received(
        (s) => s.traceId === traceId && String(s.attributes['db.query.text']).includes('inside'),
      );
      expect(inside.parentSpanId).toBe(transaction.spanId);
      expect(transaction.parentSpanId).toBe(root.spanId);
    } finally {
      await sql.end();
    }
  });
});

it('exported everything over the protocol the variable chose', () => {
  expect(receiver.rejected).toEqual([]);
  expect(receiver.protocols.length).toBeGreaterThan(0);
  expect(new Set(receiver.protocols)).toEqual(new Set(['grpc']));
});

describe('log lines', () => {
  it('carry the trace and span ids inside a trace, and nothing outside one', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
        done();
      },
    });
    const logger = createLogger({ level: 'info', destination });
    const ids = await inRootSpan('request', SpanKind.SERVER, async () => {
      logger.child({ requestId: 'req-00000001' }).info({ step: 1 }, 'before an await');
      await new Promise((resolve) => setTimeout(resolve, 1));
      logger.info('after an await');
      return activeSpan()!.spanContext();
    });
    logger.info({ own: 'field' }, 'outside');
    logger.info('outside again');
    expect(lines.map((line) => [line.msg, line.trace_id, line.span_id])).toEqual([
      ['before an await', ids.traceId, ids.spanId],
      ['after an await', ids.traceId, ids.spanId],
      ['outside', undefined, undefined],
      ['outside again', undefined, undefined],
    ]);
    // A line's own fields stay on that line.
    expect(lines[3]).not.toHaveProperty('own');
  });
});
