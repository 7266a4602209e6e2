/**
 * Encryption at rest of the signing keys, on real PostgreSQL: what is stored, what survives a
 * restart, and what stops a control plane at start (wrong secret, rows swapped, a cluster
 * without a secret). The secret file of standalone mode is checked on a real directory.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair, type JWK, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, createLogger, loadConfig } from '../../common/index.js';
import { createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import { captureLogs } from '../test-harness.js';
import { issueAccessToken } from './access-tokens.js';
import { keyEncryptionKey, UnsealError, unseal } from './key-encryption.js';
import { loadSigningKeys, SigningKeysDecryptionError } from './signing-keys.js';
import { loadKeyEncryptionKey, signingKeysSecretFile } from './signing-keys-secret.js';

const log = createLogger({ level: 'silent' });
const newKek = () => keyEncryptionKey(randomBytes(32), 'a test secret');
const WRONG_SECRET = /^signing keys cannot be decrypted with SIGNING_KEYS_SECRET: was it changed\?/;
const subject = {
  userId: 1,
  sessionId: '00000000-0000-4000-8000-000000000001',
  roles: ['listener' as const],
  email: 'keys@example.com',
  username: 'keys',
};

interface StoredRow {
  kid: string;
  private_jwk: JWK | null;
  private_key_sealed: string | null;
  text: string;
}

let db: TestDatabase;
let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'veza-signing-keys-'));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});
// Every test starts from an empty table, as a first start does.
beforeEach(async () => {
  db = await createTestDatabase('embedded');
  return () => db.drop();
});

const storedRows = () =>
  db.sql<StoredRow[]>`
    select kid, private_jwk, private_key_sealed, t::text as text from signing_keys t order by created_at, kid`;

/** An Ed25519 key as a version before encryption at rest stored it: private JWK in plaintext. */
async function insertLegacyKey(kid: string, createdAt = 'now()') {
  const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const decorate = async (key: CryptoKey) => ({ ...(await exportJWK(key)), kid, alg: 'EdDSA', use: 'sig' });
  const privateJwk = await decorate(pair.privateKey);
  await db.sql`
    insert into signing_keys (kid, algorithm, private_jwk, public_jwk, created_at)
    values (${kid}, 'EdDSA', ${db.sql.json(privateJwk)}, ${db.sql.json(await decorate(pair.publicKey))},
      ${db.sql.unsafe(createdAt)})`;
  return { privateKey: pair.privateKey, d: String(privateJwk.d) };
}

const tokenSignedBy = (privateKey: CryptoKey, kid: string) =>
  new SignJWT({ sub: '1' })
    .setProtectedHeader({ alg: 'EdDSA', kid })
    .setExpirationTime('5m')
    .sign(privateKey);

describe('signing keys at rest', () => {
  it('are stored encrypted: no private JWK, no `d`, a versioned envelope', async () => {
    const kek = newKek();
    const keys = await loadSigningKeys(db.sql, log, kek);
    const [row, ...others] = await storedRows();
    expect(others).toEqual([]);
    expect(row?.kid).toBe(keys.kid);
    expect(row?.private_jwk).toBeNull();
    expect(row?.private_key_sealed).toMatch(/^v1:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]+:[A-Za-z0-9_-]{22}$/);
    const privateJwk = JSON.parse(unseal(kek, keys.kid, String(row?.private_key_sealed))) as JWK;
    expect(privateJwk.d).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(row?.text).not.toContain(String(privateJwk.d));
    expect(row?.text).not.toMatch(/"d"\s*:/);
    expect(row?.text).not.toContain('PRIVATE KEY');
    // Nonces are random per seal: the same key sealed twice differs.
    const twice = await db.sql`
      update signing_keys set private_jwk = ${db.sql.json(privateJwk)}, private_key_sealed = null
      returning kid`;
    expect(twice).toHaveLength(1);
    await loadSigningKeys(db.sql, log, kek);
    const [resealed] = await storedRows();
    expect(resealed?.private_key_sealed).not.toBe(row?.private_key_sealed);
  });

  it('verify tokens signed before a restart, with the same secret', async () => {
    // Each start derives its own KEK from the same 32 bytes.
    const secret = randomBytes(32);
    const before = await loadSigningKeys(db.sql, log, keyEncryptionKey(secret, 'a test secret'));
    const token = (await issueAccessToken(before, subject, 60)).token;
    const after = await loadSigningKeys(db.sql, log, keyEncryptionKey(secret, 'a test secret'));
    expect(after.kid).toBe(before.kid);
    await expect(jwtVerify(token, after.getKey)).resolves.toBeTruthy();
    // And the restarted one signs with the same key.
    const next = (await issueAccessToken(after, subject, 60)).token;
    await expect(jwtVerify(next, before.getKey)).resolves.toBeTruthy();
  });

  it('stop a control plane started with another secret, at start, changing nothing', async () => {
    await loadSigningKeys(db.sql, log, newKek());
    await insertLegacyKey('legacy-key');
    const before = await storedRows();
    const failure = loadSigningKeys(db.sql, log, newKek());
    await expect(failure).rejects.toBeInstanceOf(SigningKeysDecryptionError);
    await expect(failure).rejects.toThrow(WRONG_SECRET);
    await expect(failure).rejects.toThrow(/the secret was read from a test secret/);
    // The plaintext key was not sealed with the wrong secret.
    expect(await storedRows()).toEqual(before);
  });

  it('written by an earlier version in plaintext are encrypted at start, once, and still verify old tokens', async () => {
    const legacy = await insertLegacyKey('legacy-key');
    const oldToken = await tokenSignedBy(legacy.privateKey, 'legacy-key');
    const logs = captureLogs();
    const kek = newKek();
    const keys = await loadSigningKeys(db.sql, logs.log, kek);
    expect(keys.kid).toBe('legacy-key');
    await expect(jwtVerify(oldToken, keys.getKey)).resolves.toBeTruthy();
    const [row] = await storedRows();
    expect(row?.private_jwk).toBeNull();
    expect(row?.text).not.toContain(legacy.d);
    expect(logs.lines.filter((line) => line.converted !== undefined)).toEqual([
      expect.objectContaining({
        converted: 1,
        msg: 'encrypted plaintext signing keys with SIGNING_KEYS_SECRET',
      }),
    ]);
    expect(logs.text()).not.toContain(legacy.d);
    expect(logs.text()).not.toContain(String(row?.private_key_sealed));

    // Idempotent: the next start converts nothing and reseals nothing.
    const again = await loadSigningKeys(db.sql, logs.log, kek);
    await expect(jwtVerify(oldToken, again.getKey)).resolves.toBeTruthy();
    expect(await storedRows()).toEqual([row]);
    expect(logs.lines.filter((line) => line.converted !== undefined)).toHaveLength(1);
  });

  it('are converted by exactly one of several control planes starting together', async () => {
    await insertLegacyKey('legacy-a', "now() - interval '1 minute'");
    await insertLegacyKey('legacy-b');
    const kek = newKek();
    const logs = captureLogs();
    const loaded = await Promise.all([1, 2, 3].map(() => loadSigningKeys(db.sql, logs.log, kek)));
    expect(new Set(loaded.map((keys) => keys.kid))).toEqual(new Set(['legacy-b']));
    const converted = logs.lines.filter((line) => line.converted !== undefined);
    expect(converted).toEqual([expect.objectContaining({ converted: 2 })]);
    expect((await storedRows()).map((row) => row.private_jwk)).toEqual([null, null]);
  });

  it('do not open when a ciphertext is moved to another key (the kid is authenticated)', async () => {
    await insertLegacyKey('key-a', "now() - interval '1 minute'");
    await insertLegacyKey('key-b');
    const kek = newKek();
    await loadSigningKeys(db.sql, log, kek);
    const [a, b] = await storedRows();
    // One statement: FROM reads the rows as they were before it, so the two sealed values trade places.
    await db.sql`
      update signing_keys t set private_key_sealed = o.private_key_sealed
      from signing_keys o where t.kid <> o.kid`;
    const rows = await storedRows();
    expect(rows.map((row) => row.private_key_sealed)).toEqual([b?.private_key_sealed, a?.private_key_sealed]);
    await expect(loadSigningKeys(db.sql, log, kek)).rejects.toThrow(WRONG_SECRET);
    expect(() => unseal(kek, 'key-a', String(b?.private_key_sealed))).toThrow(UnsealError);
    expect(unseal(kek, 'key-b', String(b?.private_key_sealed))).toContain('"key-b"');
  });
});

describe('the envelope', () => {
  it('refuses tampering, truncation and unknown versions', async () => {
    const kek = newKek();
    const keys = await loadSigningKeys(db.sql, log, kek);
    const [row] = await storedRows();
    const sealed = String(row?.private_key_sealed);
    const [version, nonce, ciphertext, tag] = sealed.split(':') as [string, string, string, string];
    const flip = (part: string) => {
      const bytes = Buffer.from(part, 'base64url');
      bytes[0] = (bytes[0] ?? 0) ^ 1;
      return bytes.toString('base64url');
    };
    expect(unseal(kek, keys.kid, sealed)).toContain('"d"');
    for (const bad of [
      [version, nonce, flip(ciphertext), tag],
      [version, flip(nonce), ciphertext, tag],
      [version, nonce, ciphertext, flip(tag)],
      [version, nonce, ciphertext, tag.slice(0, 8)],
      ['v2', nonce, ciphertext, tag],
      [version, nonce, ciphertext],
    ]) {
      expect(() => unseal(kek, keys.kid, bad.join(':'))).toThrow(UnsealError);
    }
  });
});

describe('the signing keys secret', () => {
  const standalone = (dir: string) => loadConfig({ VEZA_DATA_DIR: dir });

  it('is generated once in standalone mode, owner-only, and reused by the next start', async () => {
    const dir = path.join(dataDir, 'standalone');
    const file = signingKeysSecretFile(path.resolve(dir));
    expect(file).toBe(path.join(path.resolve(dir), 'secrets', 'signing-keys.key'));
    const logs = captureLogs();
    // Two starts racing for the first one agree on one file.
    const [first, second] = await Promise.all([
      loadKeyEncryptionKey(standalone(dir), logs.log),
      loadKeyEncryptionKey(standalone(dir), logs.log),
    ]);
    const content = await readFile(file, 'utf8');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    expect(
      logs.lines.filter((line) => String(line.msg).startsWith('generated the signing keys secret')),
    ).toHaveLength(1);
    expect(logs.text()).not.toContain(content.trim());

    const keys = await loadSigningKeys(db.sql, log, first!);
    const token = (await issueAccessToken(keys, subject, 60)).token;
    for (const kek of [second!, await loadKeyEncryptionKey(standalone(dir), logs.log)]) {
      await expect(jwtVerify(token, (await loadSigningKeys(db.sql, log, kek)).getKey)).resolves.toBeTruthy();
    }
    expect(await readFile(file, 'utf8')).toBe(content);
  });

  it('comes from SIGNING_KEYS_SECRET when set (no file), and a lost secret file stops the start', async () => {
    const dir = path.join(dataDir, 'configured');
    const secret = randomBytes(32);
    const fromHex = await loadKeyEncryptionKey(
      loadConfig({ VEZA_DATA_DIR: dir, SIGNING_KEYS_SECRET: secret.toString('hex') }),
      log,
    );
    const fromBase64 = await loadKeyEncryptionKey(
      loadConfig({ VEZA_DATA_DIR: dir, SIGNING_KEYS_SECRET: secret.toString('base64') }),
      log,
    );
    await expect(stat(signingKeysSecretFile(path.resolve(dir)))).rejects.toMatchObject({ code: 'ENOENT' });
    const keys = await loadSigningKeys(db.sql, log, fromHex);
    const token = (await issueAccessToken(keys, subject, 60)).token;
    await expect(
      jwtVerify(token, (await loadSigningKeys(db.sql, log, fromBase64)).getKey),
    ).resolves.toBeTruthy();
    // Unset later: a fresh secret file is generated, and it does not open the stored keys.
    const generated = await loadKeyEncryptionKey(standalone(dir), log);
    await expect(loadSigningKeys(db.sql, log, generated)).rejects.toThrow(WRONG_SECRET);
    await expect(loadSigningKeys(db.sql, log, generated)).rejects.toThrow(
      `the secret was read from ${signingKeysSecretFile(path.resolve(dir))}`,
    );
  });

  it('is required in cluster mode, even for a hand-built config', async () => {
    const cluster = {
      ...loadConfig({ VEZA_DATA_DIR: path.join(dataDir, 'cluster') }),
      VEZA_MODE: 'cluster' as const,
    };
    await expect(loadKeyEncryptionKey(cluster, log)).rejects.toBeInstanceOf(ConfigError);
    await expect(loadKeyEncryptionKey(cluster, log)).rejects.toThrow(
      /VEZA_MODE=cluster needs SIGNING_KEYS_SECRET/,
    );
    await expect(stat(path.join(dataDir, 'cluster'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
