import { describe, expect, it } from 'vitest';
import { loadConfig } from '../common/config.js';
import { iceServers } from './ice-servers.js';
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

describe('ICE servers', () => {
  it('hands out the configured TURN servers with their credentials', () => {
    expect(iceServers(loadConfig({}))).toEqual([]);
    const config = loadConfig({
      TURN_URLS: 'turn:turn.example.org:3478?transport=udp, turns:turn.example.org:5349',
      TURN_USERNAME: 'veza',
      TURN_CREDENTIAL: 's3cret',
    });
    expect(iceServers(config)).toEqual([
      {
        urls: ['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:5349'],
        username: 'veza',
        credential: 's3cret',
      },
    ]);
  });
});

describe('TURN REST credentials (TURN_SECRET)', () => {
  const config = loadConfig({
    TURN_URLS: 'turn:turn.example.org:3478',
    TURN_SECRET: 'north',
    TURN_CREDENTIAL_TTL_S: '3600',
  });

  it("gives each user a credential coturn's use-auth-secret accepts, expiring after the TTL", () => {
    const now = Date.UTC(2026, 0, 1) - 3600 * 1000;
    const [server] = iceServers(config, { userId: 42, now });
    // Computed independently: printf '%s' '1767225600:user-42' | openssl dgst -sha1 -hmac north -binary | base64
    expect(server).toEqual({
      urls: ['turn:turn.example.org:3478'],
      username: '1767225600:user-42',
      credential: 'iT5J/lFAGfh1hGtiXz6yAokYbzc=',
    });
    expect(iceServers(config, { now })[0]?.username).toBe('1767225600:anonymous');
    expect(iceServers(config, { userId: 7, now })[0]?.credential).not.toBe(server?.credential);
  });

  it('refuses a secret together with a static username or without TURN urls', () => {
    expect(() =>
      loadConfig({ TURN_URLS: 'turn:t.example:3478', TURN_SECRET: 'x', TURN_USERNAME: 'u' }),
    ).toThrow(/TURN_SECRET .* replaces TURN_USERNAME and TURN_CREDENTIAL/);
    expect(() => loadConfig({ TURN_SECRET: 'x' })).toThrow(/TURN_SECRET is set without TURN_URLS/);
  });
});

describe('worker binary check', () => {
  it('names the missing binary and the fix', () => {
    expect(() => assertWorkerBinary('/nonexistent/mediasoup-worker')).toThrow(
      /mediasoup worker binary not found or not executable at \/nonexistent\/mediasoup-worker: run `npm run setup`/,
    );
  });
});
