/** The fanout scenario's part of the result: steps, the bare-mediasoup baseline, ratios, targets and charts. */
import type { Progress } from '../lib/progress.js';
import {
  type ComparedRun,
  type ReportTable,
  ratio,
  type ScenarioOutput,
  saturation,
  type TargetCheck,
} from '../lib/results.js';
import type { ChartSpec, Series } from '../lib/svg.js';
import {
  type FanoutOptions,
  type FanoutStep,
  type FanoutSystemResult,
  listenersPerNode,
  runFanout,
} from './run.js';

export type { FanoutOptions } from './run.js';

function stepAt(steps: FanoutStep[], listeners: number): FanoutStep | undefined {
  return steps.find((step) => step.listeners === listeners);
}

function check(
  name: string,
  target: string,
  value: number | null | undefined,
  met: (v: number) => boolean,
): TargetCheck {
  if (value === null || value === undefined || !Number.isFinite(value))
    return { name, target, value: null, met: null };
  return { name, target, value, met: met(value) };
}

/** The targets of issue "Audience scale" at the largest step, and the earlier ones where their step ran. */
function targets(measured: FanoutStep[], baseline: FanoutStep[] | null): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const largest = measured.at(-1);
  const bareLargest = largest && baseline ? stepAt(baseline, largest.listeners) : undefined;
  const at = `at ${largest?.listeners ?? '?'} listeners`;
  // Join times are taken in the load generators during the ramp, delays during the window.
  const rampLimit = largest
    ? saturation({
        loadgenLoopDelayP99Ms: largest.ramp_loadgen_loop_delay_p99_ms,
        machineBusyPct: largest.ramp_machine_busy_pct,
      })
    : undefined;
  const windowLimit = largest
    ? saturation({
        loadgenLoopDelayP99Ms: largest.loadgen_loop_delay_p99_ms,
        machineBusyPct: largest.machine_busy_pct,
      })
    : undefined;
  const limited = (check: TargetCheck, by: string | undefined): TargetCheck =>
    by ? { ...check, limited_by: by } : check;
  checks.push(
    limited(
      check(`join p95 (ms), ${at}`, '< 150 ms', largest?.join_ms.p95, (v) => v < 150),
      rampLimit,
    ),
    check(
      `join p95 vs bare mediasoup, ${at}`,
      '<= 2x',
      ratio(largest?.join_ms.p95, bareLargest?.join_ms.p95),
      (v) => v <= 2,
    ),
    check(
      `loss, ${at}`,
      'all joined, loss < 0.5%',
      largest ? (largest.joined === largest.listeners ? largest.loss_pct : 100) : null,
      (v) => v < 0.5,
    ),
    check(
      `SFU CPU per packet vs bare mediasoup, ${at}`,
      '<= 1.1x',
      ratio(largest?.cpu_us_per_packet, bareLargest?.cpu_us_per_packet),
      (v) => v <= 1.1,
    ),
    limited(
      check(
        `delay p99 vs bare mediasoup, ${at}`,
        '<= 1.5x',
        ratio(largest?.delay_ms.p99, bareLargest?.delay_ms.p99),
        (v) => v <= 1.5,
      ),
      windowLimit,
    ),
  );
  // The ratio's two halves ran at different times: either one's saturation makes it unfair.
  const bareRampLimit = bareLargest
    ? saturation({
        loadgenLoopDelayP99Ms: bareLargest.ramp_loadgen_loop_delay_p99_ms,
        machineBusyPct: bareLargest.ramp_machine_busy_pct,
      })
    : undefined;
  const joinRatio = checks.findIndex((c) => c.name.startsWith('join p95 vs bare'));
  const joinRatioLimit = [rampLimit, bareRampLimit && `in the baseline's ramp, ${bareRampLimit}`]
    .filter(Boolean)
    .join('; ');
  if (joinRatio >= 0 && joinRatioLimit)
    checks[joinRatio] = limited(checks[joinRatio] as TargetCheck, joinRatioLimit);
  const at1000 = stepAt(measured, 1000);
  if (at1000) {
    checks.push(
      check(
        '1,000 listeners, loss',
        'all 1,000 joined, loss < 0.5%',
        at1000.joined === 1000 ? at1000.loss_pct : 100,
        (v) => v < 0.5,
      ),
    );
  }
  const at200 = stepAt(measured, 200);
  if (at200)
    checks.push(check('200 listeners, delay p99 (ms)', '< 10 ms', at200.delay_ms.p99, (v) => v < 10));
  return checks;
}

function ratios(measured: FanoutStep[], baseline: FanoutStep[]): Array<Record<string, number | null>> {
  return measured.map((step) => {
    const bare = stepAt(baseline, step.listeners);
    return {
      listeners: step.listeners,
      cpu_us_per_packet: ratio(step.cpu_us_per_packet, bare?.cpu_us_per_packet),
      delay_p50: ratio(step.delay_ms.p50, bare?.delay_ms.p50),
      delay_p99: ratio(step.delay_ms.p99, bare?.delay_ms.p99),
      join_p95: ratio(step.join_ms.p95, bare?.join_ms.p95),
      rss_kb_per_listener: ratio(step.rss_kb_per_listener, bare?.rss_kb_per_listener),
      /** Percentage points, not a ratio: loss is often 0 on both sides. */
      loss_pct_difference:
        bare === undefined ? null : Math.round((step.loss_pct - bare.loss_pct) * 1000) / 1000,
    };
  });
}

/** The first result is what was measured (solid), the others what it is compared with (dashed). */
function curves(
  results: Array<FanoutSystemResult | null>,
  value: (step: FanoutStep) => number | null,
): Series[] {
  return results
    .filter((r): r is FanoutSystemResult => r !== null)
    .map((r, i) => ({
      name: r.system,
      dashed: i > 0,
      points: r.steps.map((step): [number, number] => [step.listeners, value(step) ?? Number.NaN]),
    }));
}

function cdfs(results: Array<FanoutSystemResult | null>, which: 'join_ms' | 'delay_ms'): Series[] {
  return results
    .filter((r): r is FanoutSystemResult => r !== null)
    .flatMap((r, i) =>
      r.steps.map((step) => ({
        name: `${r.system} @${step.listeners}`,
        dashed: i > 0,
        points: step.cdf[which],
      })),
    );
}

/** `--nodes`: every step's per-node and per-tier split, and the cluster beside the single node. */
function clusterTables(measured: FanoutSystemResult, single: FanoutSystemResult): ReportTable[] {
  const sideBySide = measured.steps.map((step) => {
    const one = stepAt(single.steps, step.listeners);
    return {
      listeners: step.listeners,
      nodes: step.nodes?.filter((node) => node.listeners > 0).length ?? null,
      joined: step.joined,
      single_node_joined: one?.joined ?? null,
      loss_pct: step.loss_pct,
      single_node_loss_pct: one?.loss_pct ?? null,
      delay_p50_ms: step.delay_ms.p50,
      single_node_delay_p50_ms: one?.delay_ms.p50 ?? null,
      delay_p99_ms: step.delay_ms.p99,
      single_node_delay_p99_ms: one?.delay_ms.p99 ?? null,
      join_p95_ms: step.join_ms.p95,
      single_node_join_p95_ms: one?.join_ms.p95 ?? null,
      cpu_us_per_packet: step.cpu_us_per_packet,
      single_node_cpu_us_per_packet: one?.cpu_us_per_packet ?? null,
    };
  });
  return [
    {
      title: 'Per media node',
      description:
        "Each node of the cluster at each step: listeners by the join answer (the UDP candidate is the node's own address), tier in the stream's tree (0: the origin), pipes down, packets its consumers forwarded in the window (its listeners' plus, per pipe, every packet sent), its worker's CPU per forwarded packet, and its listeners' delay.",
      rows: measured.steps.flatMap((step) =>
        (step.nodes ?? []).map((node) => ({ step: step.listeners, ...node })),
      ),
    },
    {
      title: 'Per tier',
      description:
        "Listeners' delay grouped by the tier of the node they sit on; added_ms is the tier's delay minus the tier above's (what one more pipe hop adds).",
      rows: measured.steps.flatMap((step) =>
        (step.tiers ?? []).map((tier) => ({ step: step.listeners, ...tier })),
      ),
    },
    { title: 'Cluster beside the single-node platform (same invocation)', rows: sideBySide },
  ];
}

export async function fanoutScenario(options: FanoutOptions, progress: Progress): Promise<ScenarioOutput> {
  const { measured, singleNode, baseline } = await runFanout(options, progress);
  if (singleNode) printComparison(measured, singleNode, progress);
  const notes = [
    "Publisher, listeners and SFU share this machine's cores: the load generator (node-datachannel, one JS callback per packet) costs more CPU than the SFU, so at high counts it and the shared cores, not the SFU, are usually what saturates (see loadgen_cpu_pct, loadgen_loop_delay_p99_ms and machine_busy_pct).",
    "Delay is measured in the listener process when its JavaScript callback runs, so it includes the load generator's own event-loop delay.",
    "join_ms runs from the listener opening its WebSocket (anonymously, as a browser listens: no token to fetch) to its first probe packet: the WebSocket and the routers' capabilities pushed on open, the one-request join (transport and consumer in its answer), connectTransport and resumeConsumer pipelined, ICE, DTLS (join_phase_*_ms split it). The bare stub takes the same requests.",
    "cpu_us_per_packet: the mediasoup worker processes' CPU over the window divided by the probe packets the listeners received in it.",
    "server_node_cpu_pct: the server's own Node.js process alone over the window, % of one core (the platform: edge, control plane and the media node's JavaScript on today's single standalone event loop; bare: the stub); server_process_cpu_pct adds the platform's embedded PostgreSQL. sfu_cpu_pct is the mediasoup workers'.",
    'ramp_loadgen_cpu_pct and ramp_loadgen_loop_delay_p99_ms: the load generators during the joins; a saturated generator inflates join times.',
    "rss_kb_per_listener: growth of the mediasoup workers' RSS per listener; server_rss_kb_per_listener: the same for the server process (edge, control plane), blurred by garbage collection (it can be negative).",
    "ramp_server_handling_mean_ms: the server's own handling time per signaling request and control-plane rpc during the ramp (from its histograms); the rest of a join phase is queueing and transport.",
  ];
  if (singleNode)
    notes.push(
      `--nodes ${options.nodes}: steps are the platform in cluster mode (${options.nodes} media node processes on loopback addresses of their own, one mediasoup worker each, MEDIA_NODE_MAX_LISTENERS=${listenersPerNode(options)}, MEDIA_RELAY_FANOUT=${options.relayFanout}; a control plane and edge process; the machine's PostgreSQL, Redis and NATS); single_node is the standalone platform in the same invocation (its default worker count), and its ratios are cluster / single node.`,
      "Per node (steps[].nodes): a listener's node is the address of the UDP candidate in its join answer; cpu_us_per_packet is the node's worker CPU (/proc) over the window divided by the packets its consumers forwarded (what its listeners received plus, per pipe down, every packet sent). Per tier (steps[].tiers): the delay of the listeners on the tier's nodes; added_ms is tier k's minus tier k-1's.",
      "In cluster mode server_process_cpu_pct is the control plane and edge process plus the media node processes' JavaScript (not their workers); server_node_cpu_pct the control plane and edge process alone.",
    );
  if (options.target.url)
    notes.push(
      "--url: SFU CPU comes from the server's veza_media_worker_cpu_seconds, which it samples every few seconds (polled twice a second here); RSS is the server process only.",
    );
  return {
    measured: `One probe publisher (node-datachannel, ${options.packetsPerSecond} packets/s of 100-byte payloads) to N node-datachannel listeners over WebRTC (ICE, DTLS, SRTP) through the platform's REST API (account, go live) and signaling WebSocket protocol; baseline: the same load generator against bare mediasoup behind a minimal signaling stub.`,
    options: {
      listeners: options.listeners,
      ramp_per_s: options.rampPerSecond,
      per_process: options.perProcess,
      packets_per_s: options.packetsPerSecond,
      join_timeout_ms: options.joinTimeoutMs,
      settle_s: options.settleS,
      url: options.target.url ?? null,
      nodes: options.nodes,
      per_node: options.nodes > 1 ? listenersPerNode(options) : null,
      relay_fanout: options.nodes > 1 ? options.relayFanout : null,
      platform: measured.settings,
      ...(singleNode ? { single_node_platform: singleNode.settings } : {}),
    },
    steps: measured.steps,
    baseline: baseline
      ? {
          system: 'bare-mediasoup',
          description: `mediasoup 3.12.16 with the platform's worker binary, ${baseline.workers} worker(s), listeners on the origin router up to the same consumer budget then piped (pipeToRouter) to the least-loaded other worker; a uWS WebSocket stub speaking the same methods, no auth, no control plane.`,
          steps: baseline.steps,
          ratios: ratios(measured.steps, baseline.steps),
        }
      : null,
    ...(singleNode ? { single_node: singleNodeRun(measured, singleNode) } : {}),
    targets: targets(measured.steps, baseline?.steps ?? null),
    notes,
    ...(singleNode ? { tables: clusterTables(measured, singleNode) } : {}),
    charts: [
      ...(singleNode ? tierCharts(measured) : []),
      {
        title: 'Forwarding delay CDF',
        xLabel: 'delay (ms, log)',
        yLabel: 'fraction of packets',
        logX: true,
        yRange: [0, 1],
        series: cdfs([measured, singleNode, baseline], 'delay_ms'),
      },
      {
        title: 'Join time CDF',
        xLabel: 'join to first packet (ms, log)',
        yLabel: 'fraction of listeners',
        logX: true,
        yRange: [0, 1],
        series: cdfs([measured, singleNode, baseline], 'join_ms'),
      },
      {
        title: 'Loss against listeners',
        xLabel: 'listeners',
        yLabel: 'loss %',
        series: curves([measured, singleNode, baseline], (s) => s.loss_pct),
      },
      {
        title: 'SFU CPU per forwarded packet',
        xLabel: 'listeners',
        yLabel: 'µs of worker CPU per packet',
        series: curves([measured, singleNode, baseline], (s) => s.cpu_us_per_packet),
      },
      {
        title: 'SFU CPU against listeners',
        xLabel: 'listeners',
        yLabel: '% of one core (all workers)',
        series: curves([measured, singleNode, baseline], (s) => s.sfu_cpu_pct),
      },
      {
        title: 'Delay p99 against listeners',
        xLabel: 'listeners',
        yLabel: 'ms',
        series: curves([measured, singleNode, baseline], (s) => s.delay_ms.p99),
      },
    ],
  };
}

function singleNodeRun(measured: FanoutSystemResult, single: FanoutSystemResult): ComparedRun {
  return {
    system: 'platform (one media node)',
    description: `The standalone platform (the path without --nodes), ${single.workers ?? '?'} worker(s), measured after the cluster with the same ramp and load generator.`,
    steps: single.steps,
    ratios: ratios(measured.steps, single.steps),
  };
}

/** The largest step's delay CDF per tier, and each tier's added delay per step. */
function tierCharts(measured: FanoutSystemResult): ChartSpec[] {
  const largest = measured.steps.at(-1);
  const tiers = [...new Set(measured.steps.flatMap((step) => (step.tiers ?? []).map((t) => t.tier)))];
  return [
    {
      title: `Delay CDF per tier (${largest?.listeners ?? '?'} listeners)`,
      xLabel: 'delay (ms, log)',
      yLabel: 'fraction of packets',
      logX: true,
      yRange: [0, 1],
      series: (largest?.tiers ?? []).map((tier) => ({
        name: `tier ${tier.tier} (${tier.listeners} listeners)`,
        points: tier.cdf_delay_ms,
      })),
    },
    {
      title: 'Delay p99 per tier',
      xLabel: 'listeners',
      yLabel: 'ms',
      series: tiers.map((tier) => ({
        name: `tier ${tier}`,
        points: measured.steps.map((step): [number, number] => [
          step.listeners,
          step.tiers?.find((t) => t.tier === tier)?.delay_ms.p99 ?? Number.NaN,
        ]),
      })),
    },
  ];
}

/** The cluster's figures beside the single node's, per step, and each tier's added delay, on stderr. */
function printComparison(measured: FanoutSystemResult, single: FanoutSystemResult, progress: Progress): void {
  for (const step of measured.steps) {
    const one = stepAt(single.steps, step.listeners);
    const both = (a: number | null | undefined, b: number | null | undefined) =>
      `${a ?? '?'} vs ${b ?? '?'} (${ratio(a, b) ?? '?'}x)`;
    progress.note(
      `@${step.listeners} cluster vs single node: joined ${step.joined} vs ${one?.joined ?? '?'}, loss ${step.loss_pct}% vs ${one?.loss_pct ?? '?'}%, ` +
        `delay p50 ${both(step.delay_ms.p50, one?.delay_ms.p50)} ms, p99 ${both(step.delay_ms.p99, one?.delay_ms.p99)} ms, ` +
        `join p95 ${both(step.join_ms.p95, one?.join_ms.p95)} ms, worker CPU/packet ${both(step.cpu_us_per_packet, one?.cpu_us_per_packet)} us`,
    );
    for (const tier of step.tiers ?? []) {
      progress.note(
        `  tier ${tier.tier} (${tier.nodes} node(s), ${tier.listeners} listeners): delay p50 ${tier.delay_ms.p50} ms, p99 ${tier.delay_ms.p99} ms` +
          (tier.added_ms ? `, adds p50 ${tier.added_ms.p50} ms, p99 ${tier.added_ms.p99} ms` : ''),
      );
    }
  }
}
