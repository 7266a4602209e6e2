/**
 * The grpc scenario: ValidateToken and GetMessages on the generated clients at concurrency K,
 * through the real control plane (interceptors, JWT and session checks, PostgreSQL), and the
 * same calls against a bare grpc-js server answering a recorded response.
 */
import { availableParallelism } from 'node:os';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { z } from 'zod';
import { ChatServiceClient, type SendMessageResponse } from '../../proto/gen/veza/chat/chat.js';
import { ChildRpc } from '../lib/ipc.js';
import { busyPercent, machineCpuTimes, processTree, totalCpuSeconds } from '../lib/proc.js';
import type { Progress } from '../lib/progress.js';
import { type BenchUser, createUser, startStream } from '../lib/rest.js';
import { ratio, type ScenarioOutput } from '../lib/results.js';
import { type CdfPoints, LogHistogram, type PercentilesWithMax, round } from '../lib/stats.js';
import { openPlatform, SERVER_HOST, type TargetOptions } from '../lib/target.js';
import { type CallSpec, caller, GRPC_METHODS, type GrpcMethod } from './calls.js';
import type { LoadParams } from './client.js';

const CLIENT = new URL('./client.ts', import.meta.url);

export interface GrpcOptions {
  concurrency: number[];
  durationS: number;
  maxRequests: number;
  warmupS: number;
  seedMessages: number;
  historyLimit: number;
  baseline: boolean;
  target: TargetOptions;
}

export interface GrpcStep {
  method: GrpcMethod;
  concurrency: number;
  requests: number;
  errors: number;
  req_per_s: number;
  latency_ms: PercentilesWithMax;
  server_cpu_pct: number | null;
  /** The load generator's CPU (one thread: 100 is a whole core). */
  client_cpu_pct: number;
  /** The load generator's event-loop delay while it measured. */
  client_loop_delay_ms: { p50: number; p99: number; max: number };
  /**
   * The load generator was the ceiling of this step: its thread near a whole core, so the server
   * could have answered more than it was asked.
   */
  loadgen_limited: boolean;
  machine_busy_pct: number;
  /**
   * CPU the rest of the machine used meanwhile (100 is a whole core): the machine's busy time
   * less the load generator's and the server's (null without the server's pid). On shared cores a
   * large share means the ratio to the baseline says more about the neighbours than the server.
   */
  others_cpu_pct: number | null;
  error_samples: string[];
  cdf: { latency_ms: CdfPoints };
}

const loadResult = z.object({
  completed: z.number(),
  failed: z.number(),
  errors: z.array(z.string()),
  elapsedS: z.number(),
  latency: z.object({
    buckets: z.array(z.tuple([z.number(), z.number()])),
    count: z.number(),
    max: z.number(),
  }),
  cpuSeconds: z.number(),
  loopDelayMs: z.object({ p50: z.number(), p99: z.number(), max: z.number() }),
});

/** A load generator at this share of its one thread or more set the pace itself. */
const LOADGEN_LIMIT_PCT = 85;

async function measure(
  spec: CallSpec,
  concurrency: number,
  options: GrpcOptions,
  serverPid: number | null,
  progress: Progress,
): Promise<GrpcStep> {
  const client = new ChildRpc(CLIENT, [], { onOutput: (line) => progress.child('grpc-client', line) });
  try {
    const tree = serverPid === null ? [] : processTree(serverPid);
    const machine0 = machineCpuTimes();
    const server0 = totalCpuSeconds(tree);
    const t0 = performance.now();
    const params: LoadParams = {
      spec,
      concurrency,
      durationS: options.durationS,
      maxRequests: options.maxRequests,
      warmupS: options.warmupS,
    };
    const result = await client.request('load', params, loadResult);
    // CPU over warm-up plus measurement; both ran the same load.
    const wallS = (performance.now() - t0) / 1000;
    const histogram = new LogHistogram();
    histogram.merge(result.latency);
    const clientCpuPct = round((100 * result.cpuSeconds) / result.elapsedS, 1);
    const machineBusyPct = busyPercent(machine0, machineCpuTimes());
    const serverCpuPct =
      serverPid === null ? null : round((100 * (totalCpuSeconds(tree) - server0)) / wallS, 1);
    return {
      method: spec.method,
      concurrency,
      requests: result.completed,
      errors: result.failed,
      req_per_s: round(result.completed / result.elapsedS, 0),
      latency_ms: histogram.summary(),
      server_cpu_pct: serverCpuPct,
      client_cpu_pct: clientCpuPct,
      client_loop_delay_ms: {
        p50: round(result.loopDelayMs.p50, 2),
        p99: round(result.loopDelayMs.p99, 2),
        max: round(result.loopDelayMs.max, 2),
      },
      loadgen_limited: clientCpuPct >= LOADGEN_LIMIT_PCT,
      machine_busy_pct: round(machineBusyPct, 1),
      others_cpu_pct:
        serverCpuPct === null
          ? null
          : round(Math.max(0, machineBusyPct * availableParallelism() - clientCpuPct - serverCpuPct), 1),
      error_samples: result.errors,
      cdf: { latency_ms: histogram.cdf() },
    };
  } finally {
    await client.close();
  }
}

function unary<Res>(
  invoke: (callback: (error: ServiceError | null, response: Res) => void) => void,
): Promise<Res> {
  return new Promise((resolve, reject) =>
    invoke((error, response) => (error ? reject(error) : resolve(response))),
  );
}

/**
 * Gives GetMessages something to read: `count` messages in the stream's chat room, sent through
 * ChatService by several users (each joins the room first; the per-user burst limit is 6 per 5 s).
 */
async function seedRoom(address: string, users: BenchUser[], roomId: number, count: number): Promise<void> {
  const client = new ChatServiceClient(address, credentials.createInsecure());
  try {
    let sent = 0;
    for (const [u, user] of users.entries()) {
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${user.accessToken}`);
      await unary((cb) => client.joinRoom({ roomId }, metadata, cb));
      for (let i = 0; i < SEED_PER_USER && sent < count; i++, sent++) {
        const response = await unary<SendMessageResponse>((cb) =>
          client.sendMessage(
            {
              roomId,
              content: `history line ${sent + 1} from listener ${u + 1}, about the set so far`,
              messageType: 'text',
              metadata: Buffer.alloc(0),
              replyToId: 0,
              clientMessageId: `seed-${sent}`,
            },
            metadata,
            cb,
          ),
        );
        if (!response.success) throw new Error(`SendMessage refused: ${response.errorMessage}`);
      }
    }
  } finally {
    client.close();
  }
}

const TARGET_CONCURRENCY = 64;
const TARGET_RATIO = 0.8;
/** Other processes using this much of a core make a step's ratio unreliable. */
const CONTENDED_PCT = 50;

/** What a step's processes used, for the progress lines. */
function usage(step: GrpcStep): string {
  const server = step.server_cpu_pct === null ? '' : `server ${step.server_cpu_pct}% CPU, `;
  const limited = step.loadgen_limited ? ' (load generator limited)' : '';
  const others = step.others_cpu_pct === null ? '' : `, others ${step.others_cpu_pct}% CPU`;
  return `${server}load generator ${step.client_cpu_pct}% CPU, loop delay p99 ${step.client_loop_delay_ms.p99} ms${limited}, machine ${step.machine_busy_pct}% busy${others}`;
}

/** Under the per-user burst limit (6 messages per 5 s). */
const SEED_PER_USER = 5;

const echoReady = z.object({ pid: z.number().int(), port: z.number().int() });

export async function grpcScenario(options: GrpcOptions, progress: Progress): Promise<ScenarioOutput> {
  const target = await openPlatform(options.target, progress);
  const steps: GrpcStep[] = [];
  const baselineSteps: GrpcStep[] = [];
  let echo: ChildRpc | undefined;
  const notes: string[] = [];
  try {
    const user = await createUser(target.baseUrl, 'grpc');
    const { chatRoomId } = await startStream(target.baseUrl, user, 'grpc benchmark');
    const writers = [user];
    while (writers.length * SEED_PER_USER < options.seedMessages)
      writers.push(await createUser(target.baseUrl, 'grpc'));
    await seedRoom(target.grpcAddress, writers, chatRoomId, options.seedMessages);
    const specs: Record<GrpcMethod, CallSpec> = {
      ValidateToken: {
        address: target.grpcAddress,
        method: 'ValidateToken',
        token: user.accessToken,
        roomId: 0,
        limit: 0,
      },
      GetMessages: {
        address: target.grpcAddress,
        method: 'GetMessages',
        token: user.accessToken,
        roomId: chatRoomId,
        limit: options.historyLimit,
      },
    };
    // One real answer of each, replayed by the baseline so both send the same bytes.
    const recorded = {
      validateToken: await caller(specs.ValidateToken).call(),
      getMessages: await caller(specs.GetMessages).call(),
    };
    let echoAddress: string | null = null;
    if (options.baseline) {
      echo = new ChildRpc(SERVER_HOST, [], { onOutput: (line) => progress.child('grpc-echo', line) });
      const ready = await echo.request('grpcEcho', recorded, echoReady);
      echoAddress = `127.0.0.1:${ready.port}`;
    }
    const echoPid = echo?.pid ?? null;
    for (const method of GRPC_METHODS) {
      for (const concurrency of options.concurrency) {
        progress.note(`${method} at concurrency ${concurrency}: platform`);
        const step = await measure(specs[method], concurrency, options, target.serverPid, progress);
        steps.push(step);
        progress.note(
          `  ${step.req_per_s} req/s, p50 ${step.latency_ms.p50} ms, p99 ${step.latency_ms.p99} ms, ${step.errors} errors; ${usage(step)}`,
        );
        if (echoAddress) {
          const bare = await measure(
            { ...specs[method], address: echoAddress },
            concurrency,
            options,
            echoPid,
            progress,
          );
          baselineSteps.push(bare);
          progress.note(
            `  baseline: ${bare.req_per_s} req/s, p50 ${bare.latency_ms.p50} ms, p99 ${bare.latency_ms.p99} ms; ${usage(bare)}`,
          );
        }
      }
    }
  } finally {
    await echo?.close();
    await target.close();
  }
  // The issue's target: ValidateToken at K=64 against the echo of the same invocation.
  const platform64 = steps.find((s) => s.method === 'ValidateToken' && s.concurrency === TARGET_CONCURRENCY);
  const echo64 = baselineSteps.find(
    (s) => s.method === 'ValidateToken' && s.concurrency === TARGET_CONCURRENCY,
  );
  const validateRatio =
    platform64 && echo64 && platform64.errors === 0 && echo64.req_per_s > 0
      ? round(platform64.req_per_s / echo64.req_per_s, 2)
      : null;
  const contended = [platform64, echo64].filter((step) => (step?.others_cpu_pct ?? 0) >= CONTENDED_PCT);
  if (contended.length > 0) {
    notes.push(
      `ValidateToken at K=${TARGET_CONCURRENCY}: other processes used ${contended.map((step) => `${step?.others_cpu_pct}%`).join(' and ')} of a core during ${contended.length === 2 ? 'both steps' : 'one of the steps'} (others_cpu_pct): the ratio reflects the neighbours as much as the server.`,
    );
  }
  if (platform64?.loadgen_limited || echo64?.loadgen_limited) {
    notes.push(
      `ValidateToken at K=${TARGET_CONCURRENCY}: the load generator was near a whole core (platform step ${platform64?.client_cpu_pct}%, echo ${echo64?.client_cpu_pct}%): the figure it limited is a floor, not the server's ceiling.`,
    );
  }
  return {
    measured:
      'ValidateToken and GetMessages on the generated grpc-js clients (proto/gen), K calls in flight on one channel from a separate process, through the control plane (interceptors, the JWT and session checks answered from the token cache, PostgreSQL for GetMessages); baseline: the same client against a bare grpc-js server replaying a recorded response.',
    options: {
      concurrency: options.concurrency,
      max_requests: options.maxRequests,
      warmup_s: options.warmupS,
      seed_messages: options.seedMessages,
      history_limit: options.historyLimit,
      url: options.target.url ?? null,
      grpc: target.grpcAddress,
      platform: target.settings,
    },
    steps,
    baseline: options.baseline
      ? {
          system: 'grpc-echo',
          description:
            'A bare @grpc/grpc-js server with the same two methods answering one recorded platform response: no interceptors, no auth, no database.',
          steps: baselineSteps,
          ratios: steps.map((step, i) => {
            const bare = baselineSteps[i];
            return {
              method: step.method,
              concurrency: step.concurrency,
              req_per_s: ratio(step.req_per_s, bare?.req_per_s),
              latency_p50: ratio(step.latency_ms.p50, bare?.latency_ms.p50),
              latency_p99: ratio(step.latency_ms.p99, bare?.latency_ms.p99),
            };
          }),
        }
      : null,
    targets: [
      {
        name: `ValidateToken req/s at concurrency ${TARGET_CONCURRENCY}, against the echo baseline of the same run`,
        target: `>= ${TARGET_RATIO}x`,
        value: validateRatio,
        met: validateRatio === null ? null : validateRatio >= TARGET_RATIO,
      },
    ],
    notes: [
      ...notes,
      "Client and server share the machine's cores: a client process near 100% CPU (client_cpu_pct, loadgen_limited) or with a long event-loop delay (client_loop_delay_ms) means the load generator, not the server, set the ceiling.",
    ],
    charts: [
      ...GRPC_METHODS.map((method) => ({
        title: `${method} latency CDF`,
        xLabel: 'ms (log)',
        yLabel: 'fraction of calls',
        logX: true,
        yRange: [0, 1] as [number, number],
        series: [
          ...steps
            .filter((s) => s.method === method)
            .map((s) => ({ name: `platform K=${s.concurrency}`, points: s.cdf.latency_ms })),
          ...baselineSteps
            .filter((s) => s.method === method)
            .map((s) => ({ name: `echo K=${s.concurrency}`, dashed: true, points: s.cdf.latency_ms })),
        ],
      })),
      {
        title: 'Throughput against concurrency',
        xLabel: 'calls in flight',
        yLabel: 'req/s',
        series: GRPC_METHODS.flatMap((method) => [
          { name: `${method} platform`, points: throughput(steps, method) },
          { name: `${method} echo`, dashed: true, points: throughput(baselineSteps, method) },
        ]),
      },
    ],
  };
}

function throughput(steps: GrpcStep[], method: GrpcMethod): Array<[number, number]> {
  return steps.filter((s) => s.method === method).map((s) => [s.concurrency, s.req_per_s]);
}
