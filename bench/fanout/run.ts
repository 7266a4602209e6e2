/**
 * The fanout scenario: one probe publisher to N listeners, stepped (`--listeners 200,1000`),
 * against the platform and then, in the same invocation, against bare mediasoup.
 *
 * Each step ramps the new listeners in (at `rampPerSecond`, spread over load-generator
 * processes of at most `perProcess` listeners), lets them settle, then measures a window of
 * `durationS` seconds delimited by probe sequence numbers: loss, delay and bitrate come from
 * exactly the packets sent inside it, SFU CPU from the worker processes over the same time.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChildRpc } from '../lib/ipc.js';
import { busyPercent, machineCpuTimes } from '../lib/proc.js';
import type { Progress } from '../lib/progress.js';
import {
  type CdfPoints,
  cdfOf,
  LogHistogram,
  type Percentiles,
  type PercentilesWithMax,
  round,
  summarize,
} from '../lib/stats.js';
import type { TargetOptions } from '../lib/target.js';
import { collectResult, emptyResult, joinResult, publishResult, seqResult } from './messages.js';
import { type FanoutNodeStep, type FanoutTierStep, splitPerNode } from './per-node.js';
import { bareMediasoupSystem, type FanoutSystem, platformSystem } from './systems.js';

const LOADGEN = new URL('./loadgen.ts', import.meta.url);
const PUBLISHER = new URL('./publisher.ts', import.meta.url);

export interface FanoutOptions {
  listeners: number[];
  durationS: number;
  rampPerSecond: number;
  perProcess: number;
  packetsPerSecond: number;
  joinTimeoutMs: number;
  settleS: number;
  /** Run the bare-mediasoup baseline too. */
  baseline: boolean;
  target: TargetOptions;
  /**
   * Media node processes: above 1, the platform in cluster mode is measured first, then the
   * single-node platform in the same invocation (bench/fanout/cluster.ts).
   */
  nodes: number;
  /** MEDIA_NODE_MAX_LISTENERS of each node (default: the largest step split evenly over the nodes). */
  perNode: number | null;
  /** MEDIA_RELAY_FANOUT of the cluster (1: a chain, one tier per node). */
  relayFanout: number;
}

/** One step of one system; the first block of fields is the stable JSON contract. */
export interface FanoutStep {
  listeners: number;
  joined: number;
  loss_pct: number;
  join_ms: Percentiles;
  delay_ms: PercentilesWithMax;
  bitrate_kbps: number;
  cpu_us_per_packet: number | null;
  /** Growth of the mediasoup workers' RSS per listener (null with --url: see server_rss_kb_per_listener). */
  rss_kb_per_listener: number | null;
  workers_used: number | null;

  /** Growth of the server process's RSS per listener: edge and control plane, blurred by GC. */
  server_rss_kb_per_listener: number | null;
  window_s: number;
  packets_sent: number;
  packets_received: number;
  worst_listener_loss_pct: number;
  dropped: number;
  sfu_cpu_pct: number | null;
  /** Everything of the server but its SFU workers (its Node.js process and, for the platform, embedded PostgreSQL). */
  server_process_cpu_pct: number | null;
  /**
   * The server's Node.js process alone during the window (the platform: edge, control plane and
   * media node on today's single standalone event loop; bare: the stub), % of one core.
   */
  server_node_cpu_pct: number | null;
  loadgen_cpu_pct: number;
  loadgen_loop_delay_p99_ms: number;
  machine_busy_pct: number;
  publisher_late_packets: number;
  publisher_send_errors: number;
  /** ms in each step of the join (median and p95), to show where join time goes. */
  join_phase_p50_ms: Record<string, number>;
  join_phase_p95_ms: Record<string, number>;
  /** The ramp (joins) of this step: how long, and how busy the server process (edge, control plane) and the machine were. */
  ramp_s: number;
  ramp_server_process_cpu_pct: number | null;
  ramp_server_node_cpu_pct: number | null;
  /** The load generators during the ramp: CPU (% of one core, summed) and their worst event-loop delay p99. */
  ramp_loadgen_cpu_pct: number;
  ramp_loadgen_loop_delay_p99_ms: number;
  ramp_machine_busy_pct: number;
  /**
   * Mean time the server itself spent per signaling request (`ws:<method>`) and per control-plane
   * rpc (`grpc:<method>`) during the ramp; what a join took beyond these was queueing and transport.
   */
  ramp_server_handling_mean_ms: Record<string, number> | null;
  /** The server's event-loop delay p99 (ms) during the ramp and during the window (null without metrics). */
  ramp_server_loop_delay_p99_ms: number | null;
  server_loop_delay_p99_ms: number | null;
  errors: string[];
  cdf: { join_ms: CdfPoints; delay_ms: CdfPoints };
  /**
   * Listeners of this step's ramp whose join answered without a consumer (a relay node still
   * pulling the stream) and who consumed on `streamStarted`, as the client library does.
   */
  joins_waiting_for_audio: number;
  /** `--nodes`: the step per media node (listeners, tier, worker CPU per forwarded packet, delay); null with one node. */
  nodes: FanoutNodeStep[] | null;
  /** `--nodes`: listener delay per tier of the stream's tree, and what each tier adds; null with one node. */
  tiers: FanoutTierStep[] | null;
}

export interface FanoutSystemResult {
  system: string;
  cpu_source: string;
  workers: number | null;
  settings: Record<string, unknown>;
  steps: FanoutStep[];
}

interface Generator {
  rpc: ChildRpc;
  listeners: number;
}

export async function measureFanout(
  system: FanoutSystem,
  options: FanoutOptions,
  progress: Progress,
): Promise<FanoutSystemResult> {
  const generators: Generator[] = [];
  const publisher = new ChildRpc(PUBLISHER, [], { onOutput: (line) => progress.child('publisher', line) });
  const steps: FanoutStep[] = [];
  try {
    await publisher.request(
      'publish',
      { target: system.publisher, packetsPerSecond: options.packetsPerSecond },
      publishResult,
    );
    progress.note(`${system.name}: publisher live at ${options.packetsPerSecond} packets/s`);
    await sleep(500);
    const rssBefore = await system.rssKb();
    let current = 0;
    for (const target of options.listeners) {
      const errors = new Set<string>();
      const toAdd = Math.max(0, target - current);
      progress.note(
        `${system.name}: ramping ${current} -> ${target} listeners at ${options.rampPerSecond}/s`,
      );
      const shares = share(generators, toAdd, options.perProcess, (index) => {
        const rpc = new ChildRpc(LOADGEN, [], {
          onOutput: (line) => progress.child(`loadgen-${index}`, line),
          // A Buffer per received packet: a larger young generation means far fewer scavenges.
          nodeFlags: ['--max-semi-space-size=64'],
        });
        const generator = { rpc, listeners: 0 };
        generators.push(generator);
        return generator;
      });
      const rampHandling0 = await system.handlingSeconds().catch(() => null);
      const rampServer0 = system.serverCpuSeconds();
      const rampNode0 = system.serverProcessCpuSeconds();
      const rampMachine0 = machineCpuTimes();
      const rampT0 = performance.now();
      const joins = await Promise.all(
        shares.map(({ generator, count }) =>
          generator.rpc.request(
            'join',
            {
              target: system.listeners,
              count,
              rampPerSecond: (options.rampPerSecond * count) / toAdd,
              joinTimeoutMs: options.joinTimeoutMs,
            },
            joinResult,
          ),
        ),
      );
      shares.forEach(({ generator, count }) => {
        generator.listeners += count;
      });
      const rampS = (performance.now() - rampT0) / 1000;
      const rampServer1 = system.serverCpuSeconds();
      const rampNode1 = system.serverProcessCpuSeconds();
      const rampMachineBusy = busyPercent(rampMachine0, machineCpuTimes());
      const rampHandling1 = await system.handlingSeconds().catch(() => null);
      for (const join of joins) for (const error of join.errors) errors.add(error);
      current = target;
      await sleep(options.settleS * 1000);

      const pps = options.packetsPerSecond;
      const now = await publisher.request('seq', {}, seqResult);
      // A second ahead: the window must be set in every generator before its first packet arrives.
      const fromSeq = now.seq + Math.ceil(pps);
      await Promise.all(
        generators.map((g) =>
          g.rpc.request(
            'window',
            { fromSeq, capacity: Math.ceil((options.durationS + 10) * pps) },
            emptyResult,
          ),
        ),
      );
      while ((await publisher.request('seq', {}, seqResult)).seq < fromSeq) await sleep(20);
      // A scrape now starts the server's event-loop delay interval of the window (see ServerMetrics).
      await system.handlingSeconds().catch(() => null);
      const cpu0 = await system.sfuCpu();
      const nodeCpu0 = system.mediaNodes?.workerCpuSeconds();
      const server0 = system.serverCpuSeconds();
      const node0 = system.serverProcessCpuSeconds();
      const machine0 = machineCpuTimes();
      const t0 = performance.now();
      progress.note(`${system.name}: measuring ${target} listeners for ${options.durationS} s`);
      await sleep(options.durationS * 1000);
      const end = await publisher.request('seq', {}, seqResult);
      const cpu1 = await system.sfuCpu();
      const nodeCpu1 = system.mediaNodes?.workerCpuSeconds();
      const window1 = await system.handlingSeconds().catch(() => null);
      const server1 = system.serverCpuSeconds();
      const node1 = system.serverProcessCpuSeconds();
      const machine1 = machineCpuTimes();
      const t1 = performance.now();
      // Packets still in flight at the window's end get a moment to land.
      await sleep(1000);
      const collects = await Promise.all(
        generators.map((g) => g.rpc.request('collect', { toSeq: end.seq }, collectResult)),
      );
      const rss = await system.rssKb();
      const workersUsed = await system.workersUsed().catch(() => null);

      const expected = end.seq - fromSeq;
      const windowS = expected / pps;
      const active = sum(collects.map((c) => c.active));
      const received = sum(collects.map((c) => c.received));
      const delays = new LogHistogram();
      for (const c of collects) delays.merge(c.delay);
      const joinMs = collects.flatMap((c) => c.joinMs);
      const wallS = (t1 - t0) / 1000;
      let cpuUsPerPacket: number | null = null;
      let sfuCpuPct: number | null = null;
      if (cpu0 && cpu1 && cpu1.at > cpu0.at && received > 0) {
        const cpuRate = (cpu1.seconds - cpu0.seconds) / ((cpu1.at - cpu0.at) / 1000);
        sfuCpuPct = round(100 * cpuRate, 1);
        cpuUsPerPacket = round((cpuRate / (received / windowS)) * 1e6, 2);
      }
      const perNode =
        system.mediaNodes && nodeCpu0 && nodeCpu1
          ? splitPerNode({
              layout: system.mediaNodes.layout(system.streamId),
              cpuFrom: nodeCpu0,
              cpuTo: nodeCpu1,
              wallS,
              windowS,
              sent: expected,
              shares: collects.map((c) => c.byAddress),
            })
          : null;
      if (active < target) errors.add(`${target - active} of ${target} listeners not receiving`);
      if (end.sendErrors > now.sendErrors) {
        errors.add(
          `publisher: ${end.sendErrors - now.sendErrors} packets not sent (${end.lastError ?? 'track not open'})`,
        );
      }
      const step: FanoutStep = {
        listeners: target,
        joined: active,
        loss_pct: active > 0 && expected > 0 ? round(100 * (1 - received / (expected * active)), 4) : 100,
        join_ms: pick(summarize(joinMs)),
        delay_ms: delays.summary(),
        bitrate_kbps:
          active > 0 ? round((sum(collects.map((c) => c.bytes)) * 8) / 1000 / windowS / active, 2) : 0,
        cpu_us_per_packet: cpuUsPerPacket,
        rss_kb_per_listener: perListener(rssBefore.sfu, rss.sfu, active),
        server_rss_kb_per_listener: perListener(rssBefore.server, rss.server, active),
        workers_used: workersUsed,
        window_s: round(windowS, 2),
        packets_sent: expected,
        packets_received: received,
        worst_listener_loss_pct: round(Math.max(0, ...collects.map((c) => c.worstLossPct)), 2),
        dropped: sum(collects.map((c) => c.dropped)),
        sfu_cpu_pct: sfuCpuPct,
        server_process_cpu_pct:
          server0 !== null && server1 !== null ? round((100 * (server1 - server0)) / wallS, 1) : null,
        server_node_cpu_pct:
          node0 !== null && node1 !== null ? round((100 * (node1 - node0)) / wallS, 1) : null,
        loadgen_cpu_pct: round((100 * sum(collects.map((c) => c.cpuSeconds))) / wallS, 1),
        loadgen_loop_delay_p99_ms: round(Math.max(0, ...collects.map((c) => c.loopDelayP99Ms)), 1),
        machine_busy_pct: round(busyPercent(machine0, machine1), 1),
        publisher_late_packets: end.late - now.late,
        publisher_send_errors: end.sendErrors - now.sendErrors,
        join_phase_p50_ms: phaseQuantile(
          collects.map((c) => c.phaseMs),
          'p50',
        ),
        join_phase_p95_ms: phaseQuantile(
          collects.map((c) => c.phaseMs),
          'p95',
        ),
        joins_waiting_for_audio: sum(joins.map((j) => j.waitedForAudio)),
        ramp_s: round(rampS, 1),
        ramp_server_process_cpu_pct:
          rampServer0 !== null && rampServer1 !== null
            ? round((100 * (rampServer1 - rampServer0)) / rampS, 1)
            : null,
        ramp_server_node_cpu_pct:
          rampNode0 !== null && rampNode1 !== null ? round((100 * (rampNode1 - rampNode0)) / rampS, 1) : null,
        ramp_loadgen_cpu_pct: round((100 * sum(joins.map((j) => j.cpuSeconds))) / rampS, 1),
        ramp_loadgen_loop_delay_p99_ms: round(Math.max(0, ...joins.map((j) => j.loopDelayP99Ms)), 1),
        ramp_machine_busy_pct: round(rampMachineBusy, 1),
        ramp_server_handling_mean_ms: handlingMeans(
          rampHandling0?.handling ?? null,
          rampHandling1?.handling ?? null,
        ),
        ramp_server_loop_delay_p99_ms: rampHandling1?.loopDelayP99Ms ?? null,
        server_loop_delay_p99_ms: window1?.loopDelayP99Ms ?? null,
        errors: [...errors].slice(0, 10),
        cdf: { join_ms: cdfOf(joinMs), delay_ms: delays.cdf() },
        nodes: perNode?.nodes ?? null,
        tiers: perNode?.tiers ?? null,
      };
      steps.push(step);
      progress.note(
        `${system.name} @${target}: joined ${step.joined}, loss ${step.loss_pct}%, delay p99 ${step.delay_ms.p99} ms, ` +
          `join p95 ${step.join_ms.p95} ms, ${step.cpu_us_per_packet ?? '?'} us/packet, workers ${step.sfu_cpu_pct ?? '?'}% ` +
          `server process ${step.server_node_cpu_pct ?? '?'}% of a core, machine ${step.machine_busy_pct}% busy`,
      );
      for (const node of step.nodes ?? []) {
        progress.note(
          `  ${node.node} (tier ${node.tier ?? '?'}): ${node.listeners} listeners, ${node.downstream} pipe(s) down, ` +
            `delay p50 ${node.delay_ms.p50} ms p99 ${node.delay_ms.p99} ms, ${node.cpu_us_per_packet ?? '?'} us/forwarded packet`,
        );
      }
    }
  } finally {
    await Promise.all(generators.map((g) => g.rpc.close()));
    await publisher.close();
  }
  return {
    system: system.name,
    cpu_source: system.cpuSource,
    workers: system.workerCount,
    settings: system.settings,
    steps,
  };
}

function phaseQuantile(parts: Array<Record<string, number[]>>, q: 'p50' | 'p95'): Record<string, number> {
  const merged = new Map<string, number[]>();
  for (const part of parts) {
    for (const [phase, values] of Object.entries(part))
      merged.set(phase, [...(merged.get(phase) ?? []), ...values]);
  }
  return Object.fromEntries([...merged].map(([phase, values]) => [phase, summarize(values)[q]]));
}

function handlingMeans(
  from: Record<string, { sum: number; count: number }> | null,
  to: Record<string, { sum: number; count: number }> | null,
): Record<string, number> | null {
  if (!from || !to) return null;
  const means: Record<string, number> = {};
  for (const [key, after] of Object.entries(to)) {
    const before = from[key] ?? { sum: 0, count: 0 };
    const count = after.count - before.count;
    if (count > 0) means[key] = round((1000 * (after.sum - before.sum)) / count, 2);
  }
  return means;
}

function perListener(before: number | null, after: number | null, listeners: number): number | null {
  return before !== null && after !== null && listeners > 0 ? round((after - before) / listeners, 1) : null;
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function pick(summary: PercentilesWithMax): Percentiles {
  return { p50: summary.p50, p95: summary.p95, p99: summary.p99 };
}

/** Splits `count` new listeners over generator processes, filling existing ones first. */
function share(
  generators: Generator[],
  count: number,
  perProcess: number,
  spawn: (index: number) => Generator,
): Array<{ generator: Generator; count: number }> {
  const shares: Array<{ generator: Generator; count: number }> = [];
  let left = count;
  for (const generator of generators) {
    const room = perProcess - generator.listeners;
    if (left <= 0 || room <= 0) continue;
    const n = Math.min(room, left);
    shares.push({ generator, count: n });
    left -= n;
  }
  while (left > 0) {
    const n = Math.min(perProcess, left);
    shares.push({ generator: spawn(generators.length), count: n });
    left -= n;
  }
  return shares;
}

/** MEDIA_NODE_MAX_LISTENERS for a `--nodes` run: the largest step split evenly over the nodes, unless set. */
export function listenersPerNode(options: Pick<FanoutOptions, 'listeners' | 'nodes' | 'perNode'>): number {
  return options.perNode ?? Math.ceil(Math.max(...options.listeners) / options.nodes);
}

export async function runFanout(options: FanoutOptions, progress: Progress) {
  let cluster: FanoutSystemResult | null = null;
  if (options.nodes > 1) {
    const system = await platformSystem(options.target, progress, {
      nodes: options.nodes,
      perNode: listenersPerNode(options),
      relayFanout: options.relayFanout,
      ...(options.target.env ? { env: options.target.env } : {}),
    });
    try {
      cluster = await measureFanout(system, options, progress);
    } finally {
      await system.close();
    }
  }
  const platform = await platformSystem(options.target, progress);
  let single: FanoutSystemResult;
  const workers = platform.workerCount;
  const budget = Number(platform.settings.MEDIA_CONSUMER_BUDGET ?? 500);
  try {
    single = await measureFanout(platform, options, progress);
  } finally {
    await platform.close();
  }
  let baseline: FanoutSystemResult | null = null;
  if (options.baseline) {
    const bare = await bareMediasoupSystem({ workers: workers ?? 2, consumerBudget: budget }, progress);
    try {
      baseline = await measureFanout(bare, options, progress);
    } finally {
      await bare.close();
    }
  }
  // With --nodes the cluster is what is measured, the single-node platform what it is set beside.
  return cluster
    ? { measured: cluster, singleNode: single, baseline }
    : { measured: single, singleNode: null, baseline };
}
