/**
 * The client's address and country: X-Forwarded-For only from a trusted proxy, its rightmost
 * untrusted hop, and the packaged GeoIP database read offline.
 */
import { describe, expect, it } from 'vitest';
import { clientAddress, openClientOrigin, trustedProxies } from './client-origin.js';

describe('client origin', () => {
  const loopback = trustedProxies(['127.0.0.1', '::1']);

  it('believes X-Forwarded-For only when the socket is a trusted proxy', () => {
    expect(clientAddress(loopback, '127.0.0.1', '81.169.145.1')).toBe('81.169.145.1');
    expect(clientAddress(loopback, '::ffff:127.0.0.1', '81.169.145.1')).toBe('81.169.145.1');
    expect(clientAddress(loopback, '203.0.113.9', '81.169.145.1')).toBe('203.0.113.9');
    expect(clientAddress(loopback, '127.0.0.1', '')).toBe('127.0.0.1');
  });

  it('takes the rightmost hop that is not a trusted proxy, ignoring what the client wrote before it', () => {
    const proxies = trustedProxies(['127.0.0.1', '10.0.0.0/8']);
    expect(clientAddress(proxies, '127.0.0.1', '1.2.3.4, 133.242.0.1, 10.1.2.3')).toBe('133.242.0.1');
    expect(clientAddress(proxies, '127.0.0.1', 'garbage, 200.147.67.142')).toBe('200.147.67.142');
    expect(clientAddress(proxies, '127.0.0.1', '200.147.67.142, garbage')).toBe('127.0.0.1');
  });

  it('maps addresses to countries offline, and private ones to none', async () => {
    const origin = await openClientOrigin({ trustedProxies: ['127.0.0.1'] });
    expect(origin.country('81.169.145.1')).toBe('DE');
    expect(origin.country('133.242.0.1')).toBe('JP');
    expect(origin.country('200.147.67.142')).toBe('BR');
    expect(origin.country('127.0.0.1')).toBeNull();
    expect(origin.country('not an address')).toBeNull();
    expect(origin.address('127.0.0.1', '8.8.8.8')).toBe('8.8.8.8');
  });
});
