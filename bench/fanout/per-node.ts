/**
 * A `--nodes` step split per media node and per tier of the stream's tree: which listeners each
 * node served (the load generators know it from each join answer's UDP candidate, the node's own
 * address), the delay they measured, the node's worker CPU per packet it forwarded, and what each
 * tier adds to the delay of the one above it.
 */
import type { HistogramJson } from '../lib/stats.js';
import { LogHistogram, type PercentilesWithMax, round } from '../lib/stats.js';
import type { MediaNodeLayout } from './cluster.js';

export interface FanoutNodeStep {
  node: string;
  address: string;
  /** Pipes from the origin (0: the origin, where the broadcaster produces); null: not in the stream's tree. */
  tier: number | null;
  /** Listeners receiving through this node (the load generators' count, by the join answer's address). */
  listeners: number;
  /** The node's own heartbeat count of the stream's listeners (null: it does not carry the stream). */
  reported_listeners: number | null;
  /** Nodes it pipes the stream to. */
  downstream: number;
  /**
   * Packets its consumers forwarded in the window: what its listeners received plus, per
   * downstream pipe, every packet sent (a pipe's loss, NACK-repaired, is not counted).
   */
  packets_forwarded: number;
  /** Its mediasoup worker's CPU, % of one core, over the window. */
  worker_cpu_pct: number | null;
  cpu_us_per_packet: number | null;
  /** Delay its listeners measured (publisher's send to the listener process's callback). */
  delay_ms: PercentilesWithMax;
}

export interface FanoutTierStep {
  tier: number;
  nodes: number;
  listeners: number;
  delay_ms: PercentilesWithMax;
  /** This tier's delay minus the tier above's, at p50 and p99: the delay the tier's hop adds (null at the origin). */
  added_ms: { p50: number; p99: number } | null;
  /** Delay CDF of the tier's listeners, for the report. */
  cdf_delay_ms: Array<[number, number]>;
}

export interface AddressShare {
  active: number;
  received: number;
  delay: HistogramJson;
}

export interface NodeSplitInput {
  layout: MediaNodeLayout[];
  /** Each node's worker CPU seconds at the window's start and end. */
  cpuFrom: Map<string, number>;
  cpuTo: Map<string, number>;
  wallS: number;
  windowS: number;
  /** Probe packets sent in the window. */
  sent: number;
  /** Every load generator's per-address share of the window. */
  shares: Array<Record<string, AddressShare>>;
}

export function splitPerNode(input: NodeSplitInput): { nodes: FanoutNodeStep[]; tiers: FanoutTierStep[] } {
  const histograms = new Map<string, LogHistogram>();
  const counts = new Map<string, { active: number; received: number }>();
  for (const share of input.shares) {
    for (const [address, part] of Object.entries(share)) {
      const histogram = histograms.get(address) ?? new LogHistogram();
      histogram.merge(part.delay);
      histograms.set(address, histogram);
      const count = counts.get(address) ?? { active: 0, received: 0 };
      count.active += part.active;
      count.received += part.received;
      counts.set(address, count);
    }
  }
  const nodes = input.layout.map((node): FanoutNodeStep => {
    const count = counts.get(node.address) ?? { active: 0, received: 0 };
    const forwarded = count.received + node.downstream * input.sent;
    const from = input.cpuFrom.get(node.nodeId);
    const to = input.cpuTo.get(node.nodeId);
    const cpuRate =
      from !== undefined && to !== undefined && input.wallS > 0 ? (to - from) / input.wallS : null;
    return {
      node: node.nodeId,
      address: node.address,
      tier: node.tier,
      listeners: count.active,
      reported_listeners: node.listeners,
      downstream: node.downstream,
      packets_forwarded: forwarded,
      worker_cpu_pct: cpuRate === null ? null : round(100 * cpuRate, 1),
      cpu_us_per_packet:
        cpuRate !== null && forwarded > 0 ? round((cpuRate / (forwarded / input.windowS)) * 1e6, 2) : null,
      delay_ms: (histograms.get(node.address) ?? new LogHistogram()).summary(),
    };
  });
  const byTier = new Map<number, { nodes: number; listeners: number; delays: LogHistogram }>();
  for (const node of input.layout) {
    if (node.tier === null) continue;
    const entry = byTier.get(node.tier) ?? { nodes: 0, listeners: 0, delays: new LogHistogram() };
    entry.nodes++;
    entry.listeners += counts.get(node.address)?.active ?? 0;
    const histogram = histograms.get(node.address);
    if (histogram) entry.delays.merge(histogram.toJSON());
    byTier.set(node.tier, entry);
  }
  const tiers: FanoutTierStep[] = [];
  for (const tier of [...byTier.keys()].sort((a, b) => a - b)) {
    const entry = byTier.get(tier);
    if (!entry) continue;
    const delay = entry.delays.summary();
    const above = tiers.at(-1);
    tiers.push({
      tier,
      nodes: entry.nodes,
      listeners: entry.listeners,
      delay_ms: delay,
      added_ms:
        above && above.tier === tier - 1 && above.listeners > 0 && entry.listeners > 0
          ? { p50: round(delay.p50 - above.delay_ms.p50), p99: round(delay.p99 - above.delay_ms.p99) }
          : null,
      cdf_delay_ms: entry.delays.cdf(),
    });
  }
  return { nodes, tiers };
}
