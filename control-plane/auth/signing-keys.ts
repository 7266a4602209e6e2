/**
 * The Ed25519 keys that sign access tokens, kept in `signing_keys`, their private halves
 * encrypted with the key-encryption key (SIGNING_KEYS_SECRET, see key-encryption.ts).
 *
 * At start, a control plane takes an advisory lock and, in one transaction: checks that every
 * stored key decrypts with its secret (else it refuses to start), encrypts the plaintext
 * keys earlier versions wrote, and generates the first key if there is none; so several
 * control planes starting together in cluster mode end up with the same one.
 * The newest unretired key signs; every unretired key is published in the JWKS.
 */
import type { webcrypto } from 'node:crypto';
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  type JWTVerifyGetKey,
  errors as joseErrors,
} from 'jose';
import type { Sql } from '../../common/db/index.js';
import { type Logger, TOKEN_ALGORITHM } from '../../common/index.js';
import { type KeyEncryptionKey, seal, UnsealError, unseal } from './key-encryption.js';

/** Key of the advisory lock taken while keys are checked, converted or generated (any constant shared by all processes). */
const SIGNING_KEY_LOCK = 7_360_432;
/**
 * A token naming an unknown kid reloads the keys (another node may have rotated), at
 * most this often, so a flood of made-up kids costs one query per interval.
 */
const RELOAD_INTERVAL_MS = 10_000;

export interface SigningKeys {
  /** The kid of the key that signs new tokens. */
  readonly kid: string;
  readonly privateKey: webcrypto.CryptoKey;
  /** Public keys only. */
  jwks(): JSONWebKeySet;
  /** For jose's jwtVerify: finds the key by kid among the published ones. */
  readonly getKey: JWTVerifyGetKey;
}

/** The stored keys do not open with this control plane's secret: it must not start. */
export class SigningKeysDecryptionError extends Error {
  override readonly name = 'SigningKeysDecryptionError';
}

interface KeyRow {
  kid: string;
  public_jwk: JWK;
  /** Plaintext, as versions before encryption at rest wrote it; null once sealed. */
  private_jwk: JWK | null;
  private_key_sealed: string | null;
  retired_at: Date | null;
}

interface ActiveKey {
  kid: string;
  publicJwk: JWK;
  privateJwk: JWK;
}

async function generateKey(): Promise<{ kid: string; privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(TOKEN_ALGORITHM, {
    crv: 'Ed25519',
    extractable: true,
  });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  const decorate = (jwk: JWK): JWK => ({ ...jwk, kid, alg: TOKEN_ALGORITHM, use: 'sig' });
  return { kid, privateJwk: decorate(await exportJWK(privateKey)), publicJwk: decorate(publicJwk) };
}

/** A private JWK must be the private half of its row's public key (and name the row's kid). */
function isPairOf(row: KeyRow, privateJwk: unknown): privateJwk is JWK {
  if (typeof privateJwk !== 'object' || privateJwk === null) return false;
  const jwk = privateJwk as JWK;
  return (
    typeof jwk.d === 'string' &&
    jwk.x === row.public_jwk.x &&
    jwk.crv === row.public_jwk.crv &&
    (jwk.kid === undefined || jwk.kid === row.kid)
  );
}

function openRow(kek: KeyEncryptionKey, row: KeyRow & { private_key_sealed: string }): JWK {
  const fail = (reason: string) =>
    new SigningKeysDecryptionError(
      `signing keys cannot be decrypted with SIGNING_KEYS_SECRET: was it changed? ` +
        `(key ${row.kid}: ${reason}; the secret was read from ${kek.source})`,
    );
  let plaintext: string;
  try {
    plaintext = unseal(kek, row.kid, row.private_key_sealed);
  } catch (error) {
    if (error instanceof UnsealError) throw fail(error.message);
    throw error;
  }
  let jwk: unknown;
  try {
    jwk = JSON.parse(plaintext);
  } catch {
    throw fail('not a JWK');
  }
  if (!isPairOf(row, jwk)) throw fail('not the private half of its public key');
  return jwk;
}

/**
 * Under the lock, in one transaction: every sealed key must open (checked before anything is
 * written with this secret), plaintext keys are sealed in place, and the first key is
 * generated if no key is active. Returns the active keys, newest first.
 */
async function prepareKeys(sql: Sql, log: Logger, kek: KeyEncryptionKey): Promise<ActiveKey[]> {
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${SIGNING_KEY_LOCK})`;
    const rows = await tx<KeyRow[]>`
      select kid, public_jwk, private_jwk, private_key_sealed, retired_at from signing_keys
      order by created_at desc, kid`;
    const privateJwks = new Map<string, JWK>();
    for (const row of rows) {
      if (row.private_key_sealed !== null)
        privateJwks.set(row.kid, openRow(kek, { ...row, private_key_sealed: row.private_key_sealed }));
    }
    let converted = 0;
    for (const row of rows) {
      if (row.private_jwk === null) continue;
      if (!isPairOf(row, row.private_jwk))
        throw new Error(`signing key ${row.kid}: the stored private key does not match its public key`);
      const sealed = seal(kek, row.kid, JSON.stringify(row.private_jwk));
      await tx`
        update signing_keys set private_key_sealed = ${sealed}, private_jwk = null where kid = ${row.kid}`;
      privateJwks.set(row.kid, row.private_jwk);
      converted += 1;
    }
    if (converted > 0) log.info({ converted }, 'encrypted plaintext signing keys with SIGNING_KEYS_SECRET');

    const active = rows
      .filter((row) => row.retired_at === null)
      .map((row) => ({ kid: row.kid, publicJwk: row.public_jwk, privateJwk: privateJwks.get(row.kid) }))
      .filter((key): key is ActiveKey => key.privateJwk !== undefined);
    if (active.length > 0) return active;
    const key = await generateKey();
    await tx`
      insert into signing_keys (kid, algorithm, private_key_sealed, public_jwk)
      values (${key.kid}, ${TOKEN_ALGORITHM}, ${seal(kek, key.kid, JSON.stringify(key.privateJwk))},
        ${tx.json(key.publicJwk as never)})`;
    log.info({ kid: key.kid }, 'generated the token signing key (first start)');
    return [key];
  });
}

/** The public keys of the active keys, newest first (what a reload needs: no private material). */
async function activePublicKeys(sql: Sql): Promise<JWK[]> {
  const rows = await sql<{ public_jwk: JWK }[]>`
    select public_jwk from signing_keys where retired_at is null order by created_at desc, kid`;
  return rows.map((row) => row.public_jwk);
}

export async function loadSigningKeys(sql: Sql, log: Logger, kek: KeyEncryptionKey): Promise<SigningKeys> {
  const active = await prepareKeys(sql, log, kek);
  const signing = active[0];
  if (!signing) throw new Error('no signing key available');
  const privateKey = await importJWK(signing.privateJwk, TOKEN_ALGORITHM);
  // importJWK gives bytes for a symmetric (oct) key and a CryptoKey for an asymmetric one.
  if (privateKey instanceof Uint8Array)
    throw new Error(`signing key ${signing.kid} is not an asymmetric key`);

  let publicJwks = active.map((key) => key.publicJwk);
  const publicSet = (): JSONWebKeySet => ({ keys: publicJwks });
  let localSet = createLocalJWKSet(publicSet());
  let lastReload = 0;

  const getKey: JWTVerifyGetKey = async (header, token) => {
    try {
      return await localSet(header, token);
    } catch (error) {
      if (!(error instanceof joseErrors.JWKSNoMatchingKey) || Date.now() - lastReload < RELOAD_INTERVAL_MS)
        throw error;
      lastReload = Date.now();
      publicJwks = await activePublicKeys(sql);
      localSet = createLocalJWKSet(publicSet());
      return localSet(header, token);
    }
  };

  return { kid: signing.kid, privateKey, jwks: publicSet, getKey };
}
