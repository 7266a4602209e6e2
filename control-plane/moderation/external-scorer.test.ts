/**
 * The external scorer against a real local HTTP service: its answers are used while it is
 * healthy; when it fails or hangs the breaker opens, the local scorer answers and the
 * metrics show it; once it is back the breaker closes again.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, metricsRegistry } from '../../common/index.js';
import { ExternalScorer } from './external-scorer.js';
import { LocalScorer } from './local-scorer.js';
import { startTestScorer, type TestScorerServer } from './test-scorer-server.js';

const log = createLogger({ level: 'silent', name: 'external-scorer-test' });

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const found = metricsRegistry().getSingleMetric(name);
  if (!found) return 0;
  const data = await found.get();
  const value = data.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return value?.value ?? 0;
}

const opened = (scorer: ExternalScorer) =>
  new Promise<void>((resolve) => {
    if (scorer.breaker.opened) resolve();
    else scorer.breaker.once('open', () => resolve());
  });

let server: TestScorerServer | undefined;
let scorer: ExternalScorer | undefined;

afterEach(async () => {
  scorer?.close();
  await server?.stop();
});

describe('ExternalScorer', () => {
  it('uses the service while it is healthy, never below the local lists', async () => {
    server = await startTestScorer();
    scorer = new ExternalScorer({ url: server.url, local: new LocalScorer(), log });
    expect(await scorer.score('I love banana')).toMatchObject({
      score: 0.95,
      reasons: ['external: fruit abuse'],
    });
    expect((await scorer.score('hello')).score).toBe(0.05);
    // The service misses disguised words; the local lists still apply.
    expect((await scorer.score('f.u.c.k')).score).toBeGreaterThan(0.9);
    expect(server.texts).toEqual(['I love banana', 'hello', 'f.u.c.k']);
  });

  it('opens the breaker when the service fails, falls back to the local scorer and counts it', async () => {
    server = await startTestScorer();
    scorer = new ExternalScorer({
      url: server.url,
      local: new LocalScorer(),
      log,
      volumeThreshold: 3,
      resetTimeoutMs: 60_000,
    });
    const fallbacks = await metric('veza_moderation_fallback_total');
    const failures = await metric('veza_moderation_external_failures_total');
    server.mode = 'error';
    const isOpen = opened(scorer);
    for (let n = 0; n < 3; n++) {
      // The service would have refused "banana"; the local scorer does not know it.
      expect((await scorer.score('banana')).score).toBe(0);
    }
    await isOpen;
    expect(await metric('veza_moderation_breaker_state', { state: 'open' })).toBe(1);
    expect(await metric('veza_moderation_breaker_state', { state: 'closed' })).toBe(0);
    const calls = server.texts.length;
    expect((await scorer.score('fuck')).score).toBeGreaterThan(0.9);
    expect(server.texts.length).toBe(calls);
    expect(await metric('veza_moderation_fallback_total')).toBe(fallbacks + 4);
    expect(await metric('veza_moderation_external_failures_total')).toBe(failures + 3);
  });

  it('gives up on a hanging service at the timeout', async () => {
    server = await startTestScorer();
    server.mode = 'hang';
    scorer = new ExternalScorer({ url: server.url, local: new LocalScorer(), log, timeoutMs: 100 });
    const started = Date.now();
    expect((await scorer.score('hello')).score).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('closes again once the service is back (half-open trial)', async () => {
    server = await startTestScorer();
    scorer = new ExternalScorer({
      url: server.url,
      local: new LocalScorer(),
      log,
      volumeThreshold: 1,
      resetTimeoutMs: 200,
    });
    server.mode = 'error';
    const isOpen = opened(scorer);
    await scorer.score('hello');
    await isOpen;
    server.mode = 'ok';
    const breaker = scorer.breaker;
    await new Promise<void>((resolve) => breaker.once('halfOpen', () => resolve()));
    expect((await scorer.score('banana')).score).toBe(0.95);
    expect(breaker.closed).toBe(true);
    expect(await metric('veza_moderation_breaker_state', { state: 'closed' })).toBe(1);
  });
});
