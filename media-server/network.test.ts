import { describe, expect, it } from 'vitest';
import { assertWorkerBinary } from './load-mediasoup.js';
import { firstNonInternalIPv4, transportListenIp } from './network.js';

const interfaces = {
  lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '', internal: true, cidr: null }],
  eth0: [
    {
      address: 'fd00::2',
      netmask: 'ffff::',
      family: 'IPv6',
      mac: '',
      internal: false,
      cidr: null,
      scopeid: 0,
    },
    { address: '192.0.2.2', netmask: '255.255.255.0', family: 'IPv4', mac: '', internal: false, cidr: null },
  ],
} as const;

describe('transport listen addresses', () => {
  it('announces the first non-internal IPv4 address when listening on all interfaces', () => {
    const dict = structuredClone(interfaces) as unknown as NodeJS.Dict<
      import('node:os').NetworkInterfaceInfo[]
    >;
    expect(firstNonInternalIPv4(dict)).toBe('192.0.2.2');
    expect(transportListenIp({ listenIp: '0.0.0.0' }, dict)).toEqual({
      ip: '0.0.0.0',
      announcedIp: '192.0.2.2',
    });
    expect(transportListenIp({ listenIp: '0.0.0.0' }, {})).toEqual({
      ip: '0.0.0.0',
      announcedIp: '127.0.0.1',
    });
  });

  it('uses the configured announced address, and a specific listen IP as is', () => {
    expect(transportListenIp({ listenIp: '0.0.0.0', announcedAddress: '203.0.113.7' })).toEqual({
      ip: '0.0.0.0',
      announcedIp: '203.0.113.7',
    });
    expect(transportListenIp({ listenIp: '10.1.2.3' })).toEqual({ ip: '10.1.2.3' });
  });
});

describe('worker binary check', () => {
  it('names the missing binary and the fix', () => {
    expect(() => assertWorkerBinary('/nonexistent/mediasoup-worker')).toThrow(
      /mediasoup worker binary not found or not executable at \/nonexistent\/mediasoup-worker: run `npm run setup`/,
    );
  });
});
