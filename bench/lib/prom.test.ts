import { describe, expect, it } from 'vitest';
import { histogramQuantiles, parsePrometheus } from './prom.js';

const exposition = (counts: Record<string, number>, other = 0) =>
  parsePrometheus(
    [
      ...Object.entries(counts).map(([le, n]) => `veza_step_seconds_bucket{le="${le}",step="commit"} ${n}`),
      `veza_step_seconds_bucket{le="+Inf",step="commit"} ${Object.values(counts).at(-1) ?? 0}`,
      `veza_step_seconds_bucket{le="0.01",step="queue"} ${other}`,
      `veza_step_seconds_bucket{le="+Inf",step="queue"} ${other}`,
    ].join('\n'),
  );

describe('histogramQuantiles', () => {
  it('reads p50 and p99 of the observations between two scrapes, interpolating within a bucket', () => {
    // Before: 100 observations under 1 ms. Between the scrapes: 100 more, 50 in (1, 2] ms and
    // 50 in (2, 10] ms.
    const before = exposition({ '0.001': 100, '0.002': 100, '0.01': 100 }, 7);
    const after = exposition({ '0.001': 100, '0.002': 150, '0.01': 200 }, 9);
    const q = histogramQuantiles(before, after, 'veza_step_seconds', { step: 'commit' });
    expect(q.count).toBe(100);
    expect(q.p50_ms).toBeCloseTo(2, 5);
    expect(q.p99_ms).toBeCloseTo(2 + (8 * 49) / 50, 5);
  });

  it('gives the last finite bound for a quantile beyond it, and nothing without observations', () => {
    const before = exposition({ '0.001': 0 });
    const after = parsePrometheus(
      [
        'veza_step_seconds_bucket{le="0.001",step="commit"} 1',
        'veza_step_seconds_bucket{le="+Inf",step="commit"} 10',
      ].join('\n'),
    );
    expect(histogramQuantiles(before, after, 'veza_step_seconds', { step: 'commit' }).p99_ms).toBe(1);
    expect(histogramQuantiles(after, after, 'veza_step_seconds', { step: 'commit' })).toEqual({
      count: 0,
      p50_ms: null,
      p99_ms: null,
    });
  });
});
