/**
 * The token caches' building blocks: the bounded map (second-chance LRU) and the verified-token
 * cache, which keeps a verification for the exact string it was made for until the token expires.
 */
import { randomUUID } from 'node:crypto';
import { type CryptoKey, exportJWK, generateKeyPair, importJWK, type JWTVerifyGetKey, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { LruMap, TOKEN_AUDIENCE, TOKEN_ISSUER, VerifiedTokens } from './access-token.js';

describe('LruMap', () => {
  it('never holds more than its bound, and drops an entry not used since it was last passed over', () => {
    const map = new LruMap<string, number>(3);
    map.set('a', 1);
    map.set('b', 2);
    map.set('c', 3);
    expect(map.get('a')).toBe(1);
    map.set('d', 4);
    // b was the oldest entry not used again: a had its second chance.
    expect(map.size).toBe(3);
    expect(map.get('b')).toBeUndefined();
    expect([map.get('a'), map.get('c'), map.get('d')]).toEqual([1, 3, 4]);
    for (let i = 0; i < 100; i++) map.set(`k${i}`, i);
    expect(map.size).toBe(3);
    expect(map.get('k99')).toBe(99);
  });

  it('evicts even when every entry was used (one round unmarks them all)', () => {
    const map = new LruMap<number, number>(2);
    map.set(1, 1);
    map.set(2, 2);
    map.get(1);
    map.get(2);
    map.set(3, 3);
    expect(map.size).toBe(2);
    expect(map.get(3)).toBe(3);
  });
});

describe('VerifiedTokens', () => {
  let privateKey: CryptoKey;
  let getKey: JWTVerifyGetKey;
  let lookups = 0;

  beforeAll(async () => {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    privateKey = pair.privateKey;
    const publicJwk = await exportJWK(pair.publicKey);
    const key = await importJWK({ ...publicJwk, alg: 'EdDSA' }, 'EdDSA');
    getKey = async () => {
      lookups += 1;
      return key;
    };
  });

  const sign = (claims: Record<string, unknown>, expiresInS = 300) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({
      sid: randomUUID(),
      roles: ['listener'],
      email: 'a@example.com',
      username: 'a',
      typ: 'access',
      ...claims,
    })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k' })
      .setSubject('7')
      .setJti(randomUUID())
      .setIssuer(TOKEN_ISSUER)
      .setAudience(TOKEN_AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(now + expiresInS)
      .sign(privateKey);
  };

  it('verifies a string once and answers it from memory after that', async () => {
    const tokens = new VerifiedTokens(getKey);
    const token = await sign({});
    expect(tokens.peek(token)).toBeUndefined();
    const before = lookups;
    const first = await tokens.verify(token);
    expect(lookups).toBe(before + 1);
    expect(await tokens.verify(token)).toBe(first);
    expect(tokens.peek(token)).toBe(first);
    expect(lookups).toBe(before + 1);
  });

  it('does not lend a verification to another string carrying the same signature', async () => {
    const tokens = new VerifiedTokens(getKey);
    const token = await sign({ username: 'a' });
    await tokens.verify(token);
    const [, payload, signature] = token.split('.');
    const forgedPayload = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()), roles: ['admin'] }),
    ).toString('base64url');
    const forged = `${token.split('.')[0]}.${forgedPayload}.${signature}`;
    expect(tokens.peek(forged)).toBeUndefined();
    await expect(tokens.verify(forged)).rejects.toThrow('invalid token: bad signature');
  });

  it('refuses a kept token once it has expired, with the verifier’s message', async () => {
    const tokens = new VerifiedTokens(getKey);
    const token = await sign({}, 2);
    const { claims } = await tokens.verify(token);
    // A deadline to pass, not a readiness: the token's own expiry.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, claims.exp * 1000 - Date.now()) + 20));
    expect(tokens.peek(token)).toBeUndefined();
    await expect(tokens.verify(token)).rejects.toThrow('invalid token: expired');
  });
});
