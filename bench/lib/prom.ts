/** Reads Prometheus text exposition: enough to pick gauges and counters out of a server's /metrics. */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const match = LINE.exec(line);
    if (!match?.[1] || match[3] === undefined) continue;
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(LABEL)) if (label[1]) labels[label[1]] = label[2] ?? '';
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

export async function scrape(url: string): Promise<Sample[]> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return parsePrometheus(await response.text());
}

export function sumOf(samples: readonly Sample[], name: string): number | null {
  const matching = samples.filter((sample) => sample.name === name);
  return matching.length === 0 ? null : matching.reduce((sum, sample) => sum + sample.value, 0);
}

export interface HistogramQuantiles {
  /** Observations between the two scrapes. */
  count: number;
  p50_ms: number | null;
  p99_ms: number | null;
}

/**
 * p50 and p99 (ms) of a prom-client histogram (seconds) over the observations made between two
 * scrapes, from its cumulative `_bucket` deltas, interpolating linearly within the bucket a
 * quantile falls in (as PromQL's histogram_quantile does). A quantile in the +Inf bucket is
 * reported as the last finite bound. `labels` select the series (summed over the others).
 */
export function histogramQuantiles(
  before: readonly Sample[],
  after: readonly Sample[],
  metric: string,
  labels: Record<string, string>,
): HistogramQuantiles {
  const cumulative = (samples: readonly Sample[]) => {
    const byBound = new Map<number, number>();
    for (const sample of samples) {
      if (sample.name !== `${metric}_bucket`) continue;
      if (!Object.entries(labels).every(([key, value]) => sample.labels[key] === value)) continue;
      const le = sample.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(sample.labels.le);
      byBound.set(le, (byBound.get(le) ?? 0) + sample.value);
    }
    return byBound;
  };
  const start = cumulative(before);
  const buckets = [...cumulative(after)]
    .map(([le, count]) => [le, count - (start.get(le) ?? 0)] as const)
    .sort((a, b) => a[0] - b[0]);
  const count = buckets.at(-1)?.[1] ?? 0;
  const quantile = (q: number): number | null => {
    if (count <= 0) return null;
    const rank = q * count;
    let lower = 0;
    let below = 0;
    for (const [le, cum] of buckets) {
      if (cum >= rank) {
        if (!Number.isFinite(le)) return lower * 1000;
        const within = cum - below;
        const share = within > 0 ? (rank - below) / within : 1;
        return (lower + (le - lower) * share) * 1000;
      }
      lower = Number.isFinite(le) ? le : lower;
      below = cum;
    }
    return lower * 1000;
  };
  const rounded = (value: number | null) => (value === null ? null : Math.round(value * 100) / 100);
  return { count, p50_ms: rounded(quantile(0.5)), p99_ms: rounded(quantile(0.99)) };
}
