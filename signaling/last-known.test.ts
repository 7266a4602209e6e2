/**
 * The edge's last known answers: served only when the live read is `unavailable`, never for the
 * control plane's own answers (404, 403), forgotten when a value may no longer be kept, and
 * counted in the fallback metric.
 */
import { describe, expect, it } from 'vitest';
import { NotFoundError, UnavailableError } from '../common/contracts/index.js';
import { metricsRegistry } from '../common/index.js';
import { LastKnown, staleHeaders } from './last-known.js';

async function fallbacks(name: string): Promise<number> {
  const data = await metricsRegistry().getSingleMetric('veza_circuit_breaker_fallbacks_total')?.get();
  return data?.values.find((value) => value.labels.fallback === name)?.value ?? 0;
}

const down = () => Promise.reject(new UnavailableError('the control plane is unavailable'));

describe('LastKnown', () => {
  it('answers the last value read for the key while the live read is unavailable', async () => {
    const known = new LastKnown<string, { n: number }>({ name: 'test-last-known' });
    const fresh = await known.read('a', async () => ({ n: 1 }));
    expect(fresh).toMatchObject({ value: { n: 1 }, stale: false });
    expect(staleHeaders(fresh)).toEqual({});

    const before = await fallbacks('test-last-known');
    const stale = await known.read('a', down);
    expect(stale).toMatchObject({ value: { n: 1 }, stale: true });
    expect(staleHeaders(stale)).toMatchObject({ 'x-veza-stale': 'true', age: '0' });
    expect(await fallbacks('test-last-known')).toBe(before + 1);

    // Another key was never read: the error stands.
    await expect(known.read('b', down)).rejects.toThrow(UnavailableError);
  });

  it("passes the control plane's own answers through", async () => {
    const known = new LastKnown<string, number>({ name: 'test-answers' });
    await known.read('a', async () => 1);
    await expect(
      known.read('a', () => Promise.reject(new NotFoundError('stream 1 not found'))),
    ).rejects.toThrow(NotFoundError);
  });

  it('forgets a value that may no longer be kept (a stream made private)', async () => {
    const known = new LastKnown<number, { public: boolean }>({ name: 'test-keep' });
    const keep = (value: { public: boolean }) => value.public;
    await known.read(7, async () => ({ public: true }), keep);
    await known.read(7, async () => ({ public: false }), keep);
    await expect(known.read(7, down, keep)).rejects.toThrow(UnavailableError);
  });
});
