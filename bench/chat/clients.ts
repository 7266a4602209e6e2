/**
 * A chat load process: its share of the C clients, each joined to its room, each sending M
 * messages per second (evenly spaced, random phase) for the window, and counting what it
 * receives. Forked by the chat scenario.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { serveParent } from '../lib/ipc.js';
import { LogHistogram } from '../lib/stats.js';
import {
  bareUwsTransport,
  type ChatClient,
  type ChatMode,
  type ChatTransport,
  type ClientSpec,
  grpcTransport,
  wsTransport,
} from './transports.js';

export interface SetupParams {
  mode: ChatMode;
  /** The signaling WebSocket URL (ws), the gRPC address (grpc) or ws://host:port (bare-uws). */
  address: string;
  clients: ClientSpec[];
}

export interface RunParams {
  /** Messages per second per client; 0 for a process of members that only receive. */
  ratePerClient: number;
  durationS: number;
  /** How long after the last send deliveries are still awaited. */
  drainS: number;
}

let transport: ChatTransport | undefined;
const clients: ChatClient[] = [];
let window = { startNs: 0n, endNs: 0n };
let deliveries = 0;
let strays = 0;
let delivery = new LogHistogram();
/** performance.now() of the last counted delivery. */
let lastDeliveryAt = 0;
/** After the cut-off nothing more is counted: a backlog shows as missing deliveries. */
let counting = false;
/**
 * Runs so far (the warm-up is one): part of every clientMessageId, since the platform answers a
 * reused one as a retry (the first message again, not broadcast again).
 */
let runs = 0;

function onDelivery(sentNs: bigint | null): void {
  if (!counting) return;
  if (sentNs === null || sentNs < window.startNs || sentNs >= window.endNs) {
    strays++;
    return;
  }
  deliveries++;
  lastDeliveryAt = performance.now();
  delivery.add(Number(process.hrtime.bigint() - sentNs) / 1e6);
}

async function setup(params: SetupParams) {
  transport =
    params.mode === 'ws'
      ? wsTransport(params.address)
      : params.mode === 'grpc'
        ? grpcTransport(params.address)
        : bareUwsTransport(params.address);
  const t = transport;
  const joined = await Promise.allSettled(
    params.clients.map(async (spec) => {
      const client = t.client(spec, onDelivery);
      await client.join();
      clients.push(client);
    }),
  );
  const failures = joined.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  return {
    joined: clients.length,
    errors: [...new Set(failures.map((f) => String(f.reason?.message ?? f.reason)))].slice(0, 5),
  };
}

/**
 * Sends for `durationS`, then counts for `drainS` more and stops: what arrived by then is what
 * the system delivered; throughput is taken over the span from the first send to the last
 * counted delivery (or ack), so a backlog drained slowly shows as a low rate, not a high one.
 */
async function run(params: RunParams) {
  deliveries = 0;
  strays = 0;
  delivery = new LogHistogram();
  lastDeliveryAt = 0;
  counting = true;
  const runNumber = ++runs;
  let lastAckAt = 0;
  const acks = new LogHistogram();
  const errors = new Map<string, number>();
  let sent = 0;
  let acked = 0;
  const durationMs = params.durationS * 1000;
  const intervalMs = 1000 / params.ratePerClient;
  const now = process.hrtime.bigint();
  window = { startNs: now, endNs: now + BigInt(Math.round(durationMs * 1e6)) };
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  // This process's own event-loop delay: deliveries and acks are timestamped in its callbacks,
  // so a busy load generator inflates them, and the result must say so.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const sending = params.ratePerClient > 0 ? clients : [];
  await Promise.all(
    sending.map(async (client, index) => {
      const phase = Math.random() * intervalMs;
      const pending: Array<Promise<void>> = [];
      for (let n = 0; phase + n * intervalMs < durationMs; n++) {
        const wait = started + phase + n * intervalMs - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        const sentNs = process.hrtime.bigint();
        const t = performance.now();
        sent++;
        pending.push(
          client
            .send(
              `listener ${index} says hello for the ${n + 1}th time, what a set`,
              `b.${process.pid}.${runNumber}.${index}.${n}`,
              sentNs,
            )
            .then(() => {
              if (!counting) return;
              acked++;
              lastAckAt = performance.now();
              acks.add(lastAckAt - t);
            })
            .catch((error: unknown) => {
              const key = error instanceof Error ? error.message.slice(0, 120) : String(error);
              errors.set(key, (errors.get(key) ?? 0) + 1);
            }),
        );
      }
      // Acks still outstanding at the cut-off are counted as missing, not awaited.
      void Promise.all(pending);
    }),
  );
  const sendingS = (performance.now() - started) / 1000;
  // Members that only receive count over the same window as the senders.
  const left = started + durationMs - performance.now();
  if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
  await new Promise((resolve) => setTimeout(resolve, params.drainS * 1000));
  counting = false;
  const cpu = process.cpuUsage(cpu0);
  loopDelay.disable();
  return {
    sent,
    acked,
    deliveries,
    strays,
    sendingS,
    deliverySpanS: lastDeliveryAt > 0 ? (lastDeliveryAt - started) / 1000 : 0,
    ackSpanS: lastAckAt > 0 ? (lastAckAt - started) / 1000 : 0,
    ack: acks.toJSON(),
    delivery: delivery.toJSON(),
    errors: [...errors.entries()].slice(0, 5).map(([message, count]) => `${count}x ${message}`),
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    wallS: (performance.now() - started) / 1000,
    loopDelayP99Ms: loopDelay.count > 0 ? loopDelay.percentile(99) / 1e6 : 0,
    loopDelayMaxMs: loopDelay.count > 0 ? loopDelay.max / 1e6 : 0,
  };
}

serveParent(
  {
    setup: (params) => setup(params as SetupParams),
    run: (params) => run(params as RunParams),
  },
  () => {
    for (const client of clients) client.close();
    transport?.close();
  },
);
