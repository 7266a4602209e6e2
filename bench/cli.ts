/**
 * `npm run bench -- <scenario> [options]`: the benchmarks of issue 6. Each scenario measures a
 * real path through the platform (started here in standalone mode unless --url is given) and a
 * baseline in the same invocation, then writes bench/results/<scenario>-<timestamp>.json and an
 * HTML report next to it. Exits non-zero on errors, never because a figure is slow.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { gitCommit, machineInfo } from './lib/machine.js';
import { type Progress, stderrProgress } from './lib/progress.js';
import { type BenchResult, type ScenarioOutput, writeResult } from './lib/results.js';
import type { TargetOptions } from './lib/target.js';

const SERVER_CPU_PROF_FLAGS = '--server-cpu-prof <dir>';
const SERVER_CPU_PROF_HELP =
  "write a V8 CPU profile of the standalone platform's process (one file per thread: edge, control plane, media node) into <dir>";

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEFAULT_RESULTS = path.join(ROOT, 'bench', 'results');

interface CommonOptions {
  duration: number;
  url?: string;
  grpc?: string;
  json: boolean;
  resultsDir: string;
  baseline: boolean;
  platformEnv: Record<string, string>;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError(`expected a positive number, got "${value}"`);
  return n;
}

function positiveInt(value: string): number {
  const n = positiveNumber(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`expected a whole number, got "${value}"`);
  return n;
}

function niceness(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 19)
    throw new InvalidArgumentError(`expected a niceness from 0 to 19, got "${value}"`);
  return n;
}

function intList(value: string): number[] {
  const list = value.split(',').map((part) => positiveInt(part.trim()));
  if (list.some((n, i) => i > 0 && n <= (list[i - 1] ?? 0))) {
    throw new InvalidArgumentError(`expected increasing steps, got "${value}"`);
  }
  return list;
}

function url(value: string): string {
  try {
    return new URL(value).origin;
  } catch {
    throw new InvalidArgumentError(`expected a URL like http://host:8080, got "${value}"`);
  }
}

/** `--platform-env KEY=VALUE`, repeatable: the standalone platform's settings (e.g. VEZA_THREADS=false). */
function envEntry(value: string, previous: Record<string, string>): Record<string, string> {
  const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(value);
  if (!match?.[1]) throw new InvalidArgumentError(`expected KEY=VALUE, got "${value}"`);
  return { ...previous, [match[1]]: match[2] ?? '' };
}

function target(options: CommonOptions): TargetOptions {
  return { url: options.url, grpc: options.grpc, env: options.platformEnv };
}

/** Adds the options every scenario takes, with the scenario's own default duration. */
function common(command: Command, defaultDuration: number): Command {
  return command
    .addOption(
      new Option('--duration <seconds>', 'seconds measured per step')
        .argParser(positiveNumber)
        .default(defaultDuration),
    )
    .option('--url <url>', 'an already running platform (its edge), instead of starting one', url)
    .option('--grpc <host:port>', 'with --url: the control plane gRPC address (default <url host>:9090)')
    .option('--json', 'print the result JSON on stdout', false)
    .option('--results-dir <dir>', 'where the JSON and HTML go', DEFAULT_RESULTS)
    .option('--no-baseline', 'skip the baseline run')
    .option(
      '--platform-env <KEY=VALUE>',
      'a setting of the standalone platform the run starts (repeatable), e.g. VEZA_THREADS=false for the single loop',
      envEntry,
      {},
    );
}

async function run(
  scenario: string,
  options: CommonOptions,
  measure: (progress: Progress) => Promise<ScenarioOutput>,
) {
  const progress = stderrProgress();
  const started = new Date();
  const machine = machineInfo();
  const { commit, dirty } = gitCommit(ROOT);
  progress.note(
    `${scenario}: ${machine.cores} cores (${machine.cpu_model}), load average ${machine.load_avg_1m_at_start}`,
  );
  const output = await measure(progress);
  const result: BenchResult = {
    scenario,
    commit,
    commit_dirty: dirty,
    machine,
    options: { duration_s: options.duration, ...output.options },
    started_at: started.toISOString(),
    finished_at: new Date().toISOString(),
    measured: output.measured,
    steps: output.steps,
    baseline: output.baseline,
    ...(output.single_node ? { single_node: output.single_node } : {}),
    targets: output.targets,
    notes: output.notes,
  };
  const files = await writeResult(options.resultsDir, result, output.charts, output.tables);
  for (const t of result.targets) {
    progress.note(
      `target ${t.name}: ${t.target}, measured ${t.value ?? 'n/a'} -> ${t.met === null ? 'n/a' : t.met ? 'met' : 'MISSED'}${t.limited_by && t.met === false ? ` (limited by ${t.limited_by})` : ''}${t.server ? ` [${t.server}]` : ''}`,
    );
  }
  progress.note(
    `wrote ${path.relative(process.cwd(), files.json)} and ${path.relative(process.cwd(), files.html)}`,
  );
  if (options.json) {
    // Written to a pipe, stdout is asynchronous: wait for it before the process exits.
    await new Promise<void>((resolve) =>
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`, () => resolve()),
    );
  }
}

const program = new Command('bench')
  .description('Veza Live benchmarks: each scenario against the platform and a baseline, in one invocation')
  .showHelpAfterError();

common(
  program
    .command('fanout')
    .description('one broadcaster to N listeners over WebRTC (node-datachannel load generator)'),
  20,
)
  .option('--listeners <list>', 'listener counts, one step each (increasing)', intList, [100, 500, 1000])
  .option('--ramp <per-second>', 'new listeners per second', positiveNumber, 100)
  .option('--per-process <n>', 'listeners per load-generator process', positiveInt, 500)
  .option('--packet-rate <per-second>', 'probe packets per second', positiveNumber, 50)
  .option('--settle <seconds>', 'pause between a ramp and its measurement', positiveNumber, 2)
  .option('--join-timeout <ms>', 'how long a listener may take to its first packet', positiveInt, 20_000)
  .option(
    '--nodes <n>',
    "media node processes: above 1, the platform in cluster mode (on the machine's PostgreSQL, Redis and NATS: TEST_DATABASE_URL, TEST_REDIS_URL, TEST_NATS_URL) is measured beside the single-node platform",
    positiveInt,
    1,
  )
  .option(
    '--per-node <n>',
    'with --nodes: MEDIA_NODE_MAX_LISTENERS of each node (default: the largest step / nodes, rounded up)',
    positiveInt,
  )
  .option(
    '--relay-fanout <n>',
    'with --nodes: MEDIA_RELAY_FANOUT, pipes per carrier before the tree adds a tier (1: a chain, one tier per node)',
    positiveInt,
    1,
  )
  .option(SERVER_CPU_PROF_FLAGS, SERVER_CPU_PROF_HELP)
  .action(
    async (
      options: CommonOptions & {
        serverCpuProf?: string;
        listeners: number[];
        ramp: number;
        perProcess: number;
        packetRate: number;
        settle: number;
        joinTimeout: number;
        nodes: number;
        perNode?: number;
        relayFanout: number;
      },
    ) => {
      if (options.nodes > 1 && options.url)
        throw new InvalidArgumentError('--nodes starts its own cluster: it does not combine with --url');
      const { fanoutScenario } = await import('./fanout/index.js');
      await run('fanout', options, (progress) =>
        fanoutScenario(
          {
            listeners: options.listeners,
            durationS: options.duration,
            rampPerSecond: options.ramp,
            perProcess: options.perProcess,
            packetsPerSecond: options.packetRate,
            joinTimeoutMs: options.joinTimeout,
            settleS: options.settle,
            baseline: options.baseline,
            target: { ...target(options), cpuProfileDir: options.serverCpuProf },
            nodes: options.nodes,
            perNode: options.perNode ?? null,
            relayFanout: options.relayFanout,
          },
          progress,
        ),
      );
    },
  );

common(
  program
    .command('latency')
    .description('glass-to-glass through the real codec: clicks from a wrtc broadcaster to wrtc listeners'),
  20,
)
  .option('--listeners <n>', 'wrtc listeners (real Opus decoding each)', positiveInt, 3)
  .option('--click-interval <ms>', 'time between clicks', positiveInt, 500)
  .action(async (options: CommonOptions & { listeners: number; clickInterval: number }) => {
    const { latencyScenario } = await import('./latency/index.js');
    await run('latency', options, (progress) =>
      latencyScenario(
        {
          listeners: options.listeners,
          durationS: options.duration,
          intervalMs: options.clickInterval,
          baseline: options.baseline,
          target: target(options),
        },
        progress,
      ),
    );
  });

common(
  program
    .command('grpc')
    .description('ValidateToken and GetMessages at concurrency K on the generated clients'),
  10,
)
  .option('--concurrency <list>', 'calls in flight, one step each', intList, [1, 16, 64])
  .option(
    '--requests <n>',
    'stop a step after this many requests (0: run for --duration)',
    (v) => (v === '0' ? 0 : positiveInt(v)),
    0,
  )
  .option('--warmup <seconds>', 'unmeasured warm-up per step', (v) => (v === '0' ? 0 : positiveNumber(v)), 1)
  .option(
    '--history <n>',
    'messages GetMessages returns (the room is seeded with this many)',
    positiveInt,
    50,
  )
  .action(
    async (
      options: CommonOptions & { concurrency: number[]; requests: number; warmup: number; history: number },
    ) => {
      const { grpcScenario } = await import('./grpc/index.js');
      await run('grpc', options, (progress) =>
        grpcScenario(
          {
            concurrency: options.concurrency,
            durationS: options.duration,
            maxRequests: options.requests,
            warmupS: options.warmup,
            seedMessages: options.history,
            historyLimit: options.history,
            baseline: options.baseline,
            target: target(options),
          },
          progress,
        ),
      );
    },
  );

/**
 * Senders of a chat run given --offered: at least 50, otherwise one per message/s offered, and no
 * more than a quarter of the room (100/s into 1,000 members: 100 at 1/s; 500/s into 200: 50 at
 * 10/s). Most of a busy room listens; the senders' processes time the acks and keep the server's
 * priority while the listeners' are niced (--members-nice), and a room made only of senders
 * (500/s from all 200 at 2.5/s) put 100k deliveries/s into the processes timing the acks, at the
 * server's priority. A connection's requests are answered one at a time, so a sender's acks wait
 * behind its own previous ones (edge_queue in the breakdown): at 10/s each that holds while an
 * ack takes under 100 ms.
 */
const chatSenders = (offered: number, clients: number) =>
  Math.max(50, Math.min(Math.ceil(offered), Math.ceil(clients / 4)));

common(
  program
    .command('chat')
    .description('C clients in R rooms sending M messages/s through the whole chat path'),
  20,
)
  .option('--clients <n>', 'chat clients, each its own account', positiveInt, 200)
  .option('--rooms <n>', 'rooms the clients are spread over', positiveInt, 2)
  .option(
    '--rate <per-second>',
    'messages per second per client (the chat limits allow 0.5)',
    positiveNumber,
    0.25,
  )
  .option(
    '--offered <per-second>',
    'messages per second offered by all clients together (instead of --rate: rate = offered / clients)',
    positiveNumber,
  )
  .option(
    '--senders <n>',
    `clients that send, in load processes of their own (the others only receive); default: all with --rate; with --offered, one per message/s offered, at most a quarter of the clients, at least 50`,
    positiveInt,
  )
  .option('--per-process <n>', 'clients per load process', positiveInt, 250)
  .option('--loadgen-cpu-prof <dir>', 'write a V8 CPU profile of each load process into <dir>')
  .option(SERVER_CPU_PROF_FLAGS, SERVER_CPU_PROF_HELP)
  .option(
    '--members-nice <n>',
    "niceness of the load processes that only receive (0-19; 0: the server's priority), platform and baseline alike",
    niceness,
    10,
  )
  .option(
    '--warmup <seconds>',
    'the same load, unmeasured, before the window (platform and baseline alike; 0: none)',
    (v) => (v === '0' ? 0 : positiveNumber(v)),
    5,
  )
  .option('--drain <seconds>', 'how long deliveries are awaited after the last send', positiveNumber, 3)
  .addOption(
    new Option(
      '--path <path>',
      'ws: the signaling WebSocket, as the web app chats; grpc: ChatService directly',
    )
      .choices(['ws', 'grpc'])
      .default('ws'),
  )
  .action(
    async (
      options: CommonOptions & {
        clients: number;
        rooms: number;
        rate: number;
        offered?: number;
        senders?: number;
        perProcess: number;
        loadgenCpuProf?: string;
        serverCpuProf?: string;
        membersNice: number;
        warmup: number;
        drain: number;
        path: 'ws' | 'grpc';
      },
    ) => {
      const { chatScenario } = await import('./chat/index.js');
      // With --offered the room's rate comes from a few senders, so the processes timing the acks
      // are not also absorbing every silent member's deliveries.
      const senders = Math.min(
        options.clients,
        options.senders ??
          (options.offered === undefined ? options.clients : chatSenders(options.offered, options.clients)),
      );
      await run('chat', options, (progress) =>
        chatScenario(
          {
            path: options.path,
            clients: options.clients,
            rooms: options.rooms,
            ratePerClient: options.offered === undefined ? options.rate : options.offered / senders,
            senders,
            durationS: options.duration,
            perProcess: options.perProcess,
            loadgenCpuProfileDir: options.loadgenCpuProf,
            membersNice: options.membersNice,
            warmupS: options.warmup,
            drainS: options.drain,
            baseline: options.baseline,
            target: { ...target(options), cpuProfileDir: options.serverCpuProf },
          },
          progress,
        ),
      );
    },
  );

// For transcode, --duration is the length of the test upload: the audio each job processes.
common(
  program
    .command('transcode')
    .description('J uploads transcoded in parallel, against the plain ffmpeg command line'),
  60,
)
  .option('--jobs <n>', 'uploads processed in parallel', positiveInt, 2)
  .action(async (options: CommonOptions & { jobs: number }) => {
    const { transcodeScenario } = await import('./transcode/index.js');
    await run('transcode', options, (progress) =>
      transcodeScenario(
        {
          jobs: options.jobs,
          fileSeconds: options.duration,
          baseline: options.baseline,
          target: target(options),
        },
        progress,
      ),
    );
  });

program
  .parseAsync()
  // A library handle left open (a gRPC channel, a timer) must not keep a finished run alive.
  .then(() => process.exit(0))
  .catch((error: unknown) => {
    process.stderr.write(
      `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  });
