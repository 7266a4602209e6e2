import { describe, expect, it } from 'vitest';
import { metricsAccessAllowed } from './metrics-access.js';

describe('metricsAccessAllowed', () => {
  const token = 'a-metrics-token-of-24-chars';

  it('lets anyone in when no token is configured', () => {
    expect(metricsAccessAllowed(undefined, undefined)).toBe(true);
    expect(metricsAccessAllowed('Bearer whatever', undefined)).toBe(true);
  });

  it('needs exactly the configured bearer token when one is', () => {
    expect(metricsAccessAllowed(`Bearer ${token}`, token)).toBe(true);
    expect(metricsAccessAllowed(`bearer ${token}`, token)).toBe(true);
    expect(metricsAccessAllowed(undefined, token)).toBe(false);
    expect(metricsAccessAllowed('', token)).toBe(false);
    expect(metricsAccessAllowed(`Bearer ${token}x`, token)).toBe(false);
    expect(metricsAccessAllowed(`Bearer ${token.slice(0, -1)}`, token)).toBe(false);
    expect(metricsAccessAllowed(`Basic ${token}`, token)).toBe(false);
    expect(metricsAccessAllowed(token, token)).toBe(false);
  });
});
