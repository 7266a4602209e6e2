/**
 * The breaker in front of another service: a failing target opens it, an open breaker answers at
 * once with a 503-class error carrying Retry-After, answers that are not failures never open it,
 * and a successful trial after the reset time closes it; every state shows in the gauge.
 */
import { describe, expect, it } from 'vitest';
import { createBreaker } from './circuit-breaker.js';
import { NotFoundError, UnavailableError, type VezaError } from './contracts/index.js';
import { createLogger } from './log.js';
import { metricsRegistry } from './metrics.js';

const log = createLogger({ level: 'silent' });

async function gaugeValue(name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = metricsRegistry().getSingleMetric(name);
  const data = await metric?.get();
  return data?.values.find((value) =>
    Object.entries(labels).every(([key, wanted]) => String(value.labels[key] ?? '') === wanted),
  )?.value;
}

function failure(): Promise<never> {
  return Promise.reject(new UnavailableError('target down'));
}

describe('createBreaker', () => {
  it('opens after failures, refuses at once with Retry-After, then closes after a good trial', async () => {
    const peer = `peer-${Math.random().toString(36).slice(2, 8)}`;
    const breaker = createBreaker({
      target: 'media-node',
      peer,
      resetTimeoutMs: 300,
      log,
      settings: { volumeThreshold: 3 },
      isFailure: (error) => error instanceof UnavailableError,
    });
    try {
      expect(await gaugeValue('veza_circuit_breaker_state', { target: 'media-node', peer })).toBe(0);
      for (let i = 0; i < 3; i++) await expect(breaker.run(failure)).rejects.toThrow('target down');
      expect(breaker.state()).toBe('open');
      expect(await gaugeValue('veza_circuit_breaker_state', { target: 'media-node', peer })).toBe(2);

      let called = false;
      const started = performance.now();
      const refused = await breaker
        .run(async () => {
          called = true;
          return 1;
        })
        .catch((error: unknown) => error);
      expect(performance.now() - started).toBeLessThan(50);
      expect(called).toBe(false);
      expect(refused).toBeInstanceOf(UnavailableError);
      expect((refused as VezaError).message).toMatch(/circuit open/);
      expect((refused as VezaError).details.retryAfterMs).toBeGreaterThanOrEqual(1000);
      expect(await gaugeValue('veza_circuit_breaker_rejections_total', { target: 'media-node', peer })).toBe(
        1,
      );

      // After the reset time one trial goes through; its success closes the breaker.
      await expect.poll(() => breaker.state(), { timeout: 2000, interval: 20 }).toBe('half_open');
      expect(await gaugeValue('veza_circuit_breaker_state', { target: 'media-node', peer })).toBe(1);
      await expect(breaker.run(async () => 'ok')).resolves.toBe('ok');
      expect(breaker.state()).toBe('closed');
      expect(await gaugeValue('veza_circuit_breaker_state', { target: 'media-node', peer })).toBe(0);
    } finally {
      breaker.close();
    }
  });

  it("never opens on the target's answers (errors that are not failures)", async () => {
    const breaker = createBreaker({
      target: 'control-plane',
      resetTimeoutMs: 10_000,
      log,
      settings: { volumeThreshold: 2 },
      isFailure: (error) => error instanceof UnavailableError,
    });
    try {
      for (let i = 0; i < 10; i++) {
        await expect(breaker.run(() => Promise.reject(new NotFoundError('no such stream')))).rejects.toThrow(
          NotFoundError,
        );
      }
      expect(breaker.state()).toBe('closed');
      await expect(breaker.run(async () => 42)).resolves.toBe(42);
    } finally {
      breaker.close();
    }
  });

  it('turns a call slower than the target timeout into an UnavailableError that counts', async () => {
    const breaker = createBreaker({
      target: 's3',
      peer: 'timeout-test',
      resetTimeoutMs: 10_000,
      log,
      settings: { timeoutMs: 50, volumeThreshold: 1 },
      isFailure: () => false,
    });
    try {
      const error = await breaker.run(() => new Promise(() => {})).catch((thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(UnavailableError);
      expect((error as Error).message).toMatch(/did not answer in time/);
      expect(breaker.state()).toBe('open');
    } finally {
      breaker.close();
    }
  });
});
