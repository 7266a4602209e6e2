import { describe, expect, it } from 'vitest';
import { loadConfig } from '../common/index.js';
import { iceServers } from './ice-servers.js';

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
