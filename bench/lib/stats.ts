/**
 * Summaries of latency samples: exact percentiles for small sample sets (join times) and a
 * mergeable log-bucket histogram for large ones (every packet's delay), so load-generator
 * processes can send a few hundred numbers instead of a million samples.
 */

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

export interface PercentilesWithMax extends Percentiles {
  max: number;
}

/** Nearest-rank percentile of ascending `sorted`; NaN when empty. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? Number.NaN;
}

export function summarize(samples: readonly number[]): PercentilesWithMax {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    p50: round(percentile(sorted, 0.5)),
    p95: round(percentile(sorted, 0.95)),
    p99: round(percentile(sorted, 0.99)),
    max: round(sorted.at(-1) ?? Number.NaN),
  };
}

/** Three significant decimals are plenty for milliseconds; NaN (no samples) becomes null in JSON. */
export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value)) return value;
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** A CDF as [value, fraction] points, for the report's charts. */
export type CdfPoints = Array<[number, number]>;

export function cdfOf(samples: readonly number[], maxPoints = 200): CdfPoints {
  const sorted = [...samples].sort((a, b) => a - b);
  const points: CdfPoints = [];
  if (sorted.length === 0) return points;
  const stride = Math.max(1, Math.floor(sorted.length / maxPoints));
  for (let i = 0; i < sorted.length; i += stride)
    points.push([round(sorted[i] ?? 0), round((i + 1) / sorted.length, 4)]);
  const last = sorted.at(-1) ?? 0;
  if (points.at(-1)?.[1] !== 1) points.push([round(last), 1]);
  return points;
}

/** Relative width of a bucket: a value is known to within 1%. */
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
/** Values below this (ms) share the first bucket. */
const FLOOR = 0.001;

export interface HistogramJson {
  /** [bucket index, count] pairs. */
  buckets: Array<[number, number]>;
  count: number;
  max: number;
}

/** Log-bucketed histogram (1% precision), mergeable across processes. */
export class LogHistogram {
  readonly #counts = new Map<number, number>();
  #count = 0;
  #max = Number.NEGATIVE_INFINITY;

  get count(): number {
    return this.#count;
  }

  get max(): number {
    return this.#count === 0 ? Number.NaN : this.#max;
  }

  add(value: number): void {
    const index = value <= FLOOR ? 0 : Math.ceil(Math.log(value / FLOOR) / LOG_GROWTH);
    this.#counts.set(index, (this.#counts.get(index) ?? 0) + 1);
    this.#count++;
    if (value > this.#max) this.#max = value;
  }

  merge(other: HistogramJson): void {
    for (const [index, count] of other.buckets)
      this.#counts.set(index, (this.#counts.get(index) ?? 0) + count);
    this.#count += other.count;
    if (other.count > 0 && other.max > this.#max) this.#max = other.max;
  }

  /** The upper edge of the bucket holding the q-quantile (never above the exact max). */
  quantile(q: number): number {
    if (this.#count === 0) return Number.NaN;
    const wanted = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    for (const [index, count] of this.#sorted()) {
      seen += count;
      if (seen >= wanted) return Math.min(this.#max, LogHistogram.#edge(index));
    }
    return this.#max;
  }

  summary(): PercentilesWithMax {
    return {
      p50: round(this.quantile(0.5)),
      p95: round(this.quantile(0.95)),
      p99: round(this.quantile(0.99)),
      max: round(this.max),
    };
  }

  cdf(maxPoints = 200): CdfPoints {
    const sorted = this.#sorted();
    const points: CdfPoints = [];
    if (this.#count === 0) return points;
    let seen = 0;
    const stride = Math.max(1, Math.floor(sorted.length / maxPoints));
    sorted.forEach(([index, count], i) => {
      seen += count;
      if (i % stride === 0 || i === sorted.length - 1) {
        points.push([round(Math.min(this.#max, LogHistogram.#edge(index))), round(seen / this.#count, 4)]);
      }
    });
    return points;
  }

  toJSON(): HistogramJson {
    return {
      buckets: [...this.#counts.entries()],
      count: this.#count,
      max: this.#count === 0 ? 0 : this.#max,
    };
  }

  #sorted(): Array<[number, number]> {
    return [...this.#counts.entries()].sort((a, b) => a[0] - b[0]);
  }

  static #edge(index: number): number {
    return index === 0 ? FLOOR : FLOOR * GROWTH ** index;
  }
}
