/**
 * Access tokens as issued here and checked as every protected call checks them (the shared
 * verifier of common/access-token.ts, then the session, through the token checks' cache):
 * every forgery must fail before any claim is trusted.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnauthenticatedError } from '../../common/contracts/index.js';
import { createLogger } from '../../common/index.js';
import { FsBlobStorage, MemoryEventBus, PgSessionStore } from '../../common/ports/index.js';
import { createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import { issueAccessToken } from './access-tokens.js';
import { keyEncryptionKey } from './key-encryption.js';
import { closeSession } from './sessions.js';
import { loadSigningKeys, type SigningKeys } from './signing-keys.js';
import { startTokenCaching, type TokenCaching } from './token-checks.js';
import { createUser } from './users.js';

const log = createLogger({ level: 'silent' });
const kek = keyEncryptionKey(randomBytes(32), 'a test secret');
let db: TestDatabase;
let keys: SigningKeys;
let sessions: PgSessionStore;
let bus: MemoryEventBus;
let caching: TokenCaching;
let subject: {
  userId: number;
  sessionId: string;
  roles: ['listener', 'broadcaster'];
  email: string;
  username: string;
};

beforeAll(async () => {
  db = await createTestDatabase('embedded');
  keys = await loadSigningKeys(db.sql, log, kek);
  sessions = new PgSessionStore(db.sql);
  bus = new MemoryEventBus({ log });
  caching = await startTokenCaching({
    sql: db.sql,
    sessions,
    keys,
    blobs: new FsBlobStorage({ root: '/nonexistent', baseUrl: 'http://127.0.0.1' }),
    bus,
    log,
    nodeId: 'access-tokens-test',
    intervalMs: 20,
  });
  const user = await createUser(db.sql, {
    email: 'tok@example.com',
    username: 'tok',
    passwordHash: 'unused',
    roles: ['listener', 'broadcaster'],
  });
  const now = new Date();
  const sessionId = randomUUID();
  await sessions.save({
    sessionId,
    userId: user.id,
    deviceId: '',
    ipAddress: '',
    createdAt: now,
    lastUsedAt: now,
    expiresAt: new Date(now.getTime() + 3600_000),
    revokedAt: null,
    revokedReason: null,
  });
  subject = {
    userId: user.id,
    sessionId,
    roles: ['listener', 'broadcaster'],
    email: user.email,
    username: user.username,
  };
});
afterAll(async () => {
  await caching?.close();
  await bus?.close();
  await db?.drop();
});

async function rejection(token: string): Promise<string> {
  try {
    await caching.checks.check(token);
  } catch (error) {
    expect(error).toBeInstanceOf(UnauthenticatedError);
    return (error as Error).message;
  }
  throw new Error('token was accepted');
}

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

function claimsFor(overrides: Record<string, unknown> = {}) {
  const now = Math.floor(Date.now() / 1000);
  return {
    sub: String(subject.userId),
    sid: subject.sessionId,
    jti: randomUUID(),
    roles: subject.roles,
    email: subject.email,
    username: subject.username,
    typ: 'access',
    iss: 'veza-live',
    aud: 'veza-live',
    iat: now,
    exp: now + 300,
    ...overrides,
  };
}

describe('issued access tokens', () => {
  it('are EdDSA JWTs with the kid and exactly the agreed claims', async () => {
    const issued = await issueAccessToken(keys, subject, 900);
    expect(decodeProtectedHeader(issued.token)).toEqual({ alg: 'EdDSA', kid: keys.kid, typ: 'JWT' });
    const claims = decodeJwt(issued.token);
    expect(Object.keys(claims).sort()).toEqual(
      ['aud', 'email', 'exp', 'iat', 'iss', 'jti', 'roles', 'sid', 'sub', 'typ', 'username'].sort(),
    );
    expect(claims).toMatchObject({
      sub: String(subject.userId),
      sid: subject.sessionId,
      typ: 'access',
      iss: 'veza-live',
    });
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(900);
    expect(issued.expiresIn).toBe(900);

    const verified = await caching.checks.check(issued.token);
    expect(verified).toMatchObject({ userId: subject.userId, sessionId: subject.sessionId });
    const user = await caching.checks.verifier(issued.token);
    expect(user).toMatchObject({
      userId: subject.userId,
      roles: ['listener', 'broadcaster'],
      username: 'tok',
    });
  });

  it('are also verifiable from the published JWKS alone', async () => {
    const issued = await issueAccessToken(keys, subject, 60);
    const jwks = keys.jwks();
    expect(jwks.keys.map((key) => key.kid)).toEqual([keys.kid]);
    expect(jwks.keys[0]).not.toHaveProperty('d');
    const { createLocalJWKSet, jwtVerify } = await import('jose');
    const { payload } = await jwtVerify(issued.token, createLocalJWKSet(jwks), { algorithms: ['EdDSA'] });
    expect(payload.sub).toBe(String(subject.userId));
  });
});

describe('rejected tokens', () => {
  it('expired', async () => {
    const issued = await issueAccessToken(keys, subject, 60, new Date(Date.now() - 120_000));
    expect(await rejection(issued.token)).toBe('invalid token: expired');
  });

  it('signed by another key, with an unknown kid or with ours', async () => {
    const other = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const sign = (kid: string) =>
      new SignJWT(claimsFor()).setProtectedHeader({ alg: 'EdDSA', kid }).sign(other.privateKey);
    expect(await rejection(await sign('not-our-kid'))).toBe('invalid token: signed by an unknown key');
    expect(await rejection(await sign(keys.kid))).toBe('invalid token: bad signature');
  });

  it('alg none', async () => {
    expect(await rejection(`${b64({ alg: 'none' })}.${b64(claimsFor())}.`)).toMatch(/^invalid token/);
    expect(await rejection(`${b64({ alg: 'none', kid: keys.kid })}.${b64(claimsFor())}.`)).toMatch(
      /^invalid token/,
    );
  });

  it('HS256 with our public key as the HMAC secret', async () => {
    const publicJwk = keys.jwks().keys[0] ?? {};
    const secrets = [
      JSON.stringify(publicJwk),
      String(publicJwk.x),
      Buffer.from(String(publicJwk.x), 'base64url'),
    ];
    for (const secret of secrets) {
      const key = typeof secret === 'string' ? new TextEncoder().encode(secret) : new Uint8Array(secret);
      const forged = await new SignJWT(claimsFor())
        .setProtectedHeader({ alg: 'HS256', kid: keys.kid })
        .sign(key);
      expect(await rejection(forged)).toBe('invalid token: algorithm not allowed');
    }
  });

  it('malformed', async () => {
    const valid = (await issueAccessToken(keys, subject, 60)).token;
    const [header, payload, signature] = valid.split('.');
    expect(await rejection('')).toBe('invalid token: not a JWT');
    expect(await rejection('abc.def')).toBe('invalid token: not a JWT');
    expect(await rejection('a.b.c')).toBe('invalid token');
    expect(await rejection(`${header}.${b64(claimsFor({ sub: '2' }))}.${signature}`)).toBe(
      'invalid token: bad signature',
    );
    expect(await rejection(`${header}.${payload}.${signature?.slice(0, -4)}AAAA`)).toBe(
      'invalid token: bad signature',
    );
  });

  it('with wrong claims, even when properly signed', async () => {
    const sign = (claims: Record<string, unknown>) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: keys.kid }).sign(keys.privateKey);
    expect(await rejection(await sign(claimsFor({ iss: 'someone-else' })))).toBe(
      'invalid token: iss claim rejected',
    );
    expect(await rejection(await sign(claimsFor({ aud: 'other-app' })))).toBe(
      'invalid token: aud claim rejected',
    );
    expect(await rejection(await sign(claimsFor({ sid: 'not-a-uuid' })))).toBe(
      'invalid token: malformed claims',
    );
    expect(await rejection(await sign(claimsFor({ roles: ['root'] })))).toBe(
      'invalid token: malformed claims',
    );
    expect(await rejection(await sign(claimsFor({ typ: 'listener', stream_id: 1 })))).toBe(
      'invalid token: not a user access token',
    );
    expect(await rejection(await sign(claimsFor({ sid: randomUUID() })))).toBe(
      'invalid token: unknown session',
    );
    expect(await rejection(await sign(claimsFor({ sub: String(subject.userId + 1) })))).toBe(
      'invalid token: unknown session',
    );
  });

  it('of a revoked session, at once', async () => {
    const now = new Date();
    const sessionId = randomUUID();
    await sessions.save({
      ...(await sessions.get(subject.sessionId))!,
      sessionId,
      createdAt: now,
      lastUsedAt: now,
    });
    const issued = await issueAccessToken(keys, { ...subject, sessionId }, 300);
    // Twice: the second answer comes from the cache, which the revocation must reach.
    expect((await caching.checks.check(issued.token)).sessionId).toBe(sessionId);
    expect((await caching.checks.check(issued.token)).sessionId).toBe(sessionId);
    const deps = {
      config: { ACCESS_TOKEN_TTL_S: 300, REFRESH_TOKEN_TTL_S: 3600 },
      sql: db.sql,
      sessions,
      bus,
      keys,
      log,
      invalidations: caching.invalidations,
    };
    expect(await closeSession(deps, sessionId, 'test')).toBe(true);
    expect(await rejection(issued.token)).toBe('invalid token: session revoked');
  });
});

describe('signing keys', () => {
  it('are generated once: concurrent first starts agree on one key, later starts reuse it', async () => {
    const fresh = await createTestDatabase('embedded');
    try {
      const loaded = await Promise.all([1, 2, 3, 4].map(() => loadSigningKeys(fresh.sql, log, kek)));
      expect(new Set(loaded.map((k) => k.kid)).size).toBe(1);
      const [{ n } = { n: 0 }] = await fresh.sql<
        { n: number }[]
      >`select count(*)::int as n from signing_keys`;
      expect(n).toBe(1);
      const again = await loadSigningKeys(fresh.sql, log, kek);
      expect(again.kid).toBe(loaded[0]?.kid);
      // A token signed after a restart verifies with the keys loaded before it.
      const token = (await issueAccessToken(again, subject, 60)).token;
      const { jwtVerify } = await import('jose');
      await expect(jwtVerify(token, loaded[0]!.getKey)).resolves.toBeTruthy();
    } finally {
      await fresh.drop();
    }
  });

  it('pick up a key another node added when a token names it', async () => {
    const fresh = await createTestDatabase('embedded');
    try {
      const early = await loadSigningKeys(fresh.sql, log, kek);
      // Another control plane rotates: a newer key signs from now on.
      const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
      const publicJwk = {
        ...(await exportJWK(pair.publicKey)),
        kid: 'rotated-key',
        alg: 'EdDSA',
        use: 'sig',
      };
      const privateJwk = {
        ...(await exportJWK(pair.privateKey)),
        kid: 'rotated-key',
        alg: 'EdDSA',
        use: 'sig',
      };
      await fresh.sql`
        insert into signing_keys (kid, algorithm, private_jwk, public_jwk, created_at)
        values ('rotated-key', 'EdDSA', ${fresh.sql.json(privateJwk)}, ${fresh.sql.json(publicJwk)}, now() + interval '1 second')`;
      const rotated = await loadSigningKeys(fresh.sql, log, kek);
      expect(rotated.kid).toBe('rotated-key');
      const token = (await issueAccessToken(rotated, subject, 60)).token;
      const { jwtVerify } = await import('jose');
      await expect(jwtVerify(token, early.getKey)).resolves.toBeTruthy();
    } finally {
      await fresh.drop();
    }
  });
});
