/**
 * The Ed25519 keys that sign access tokens, kept in `signing_keys`.
 *
 * The first control plane to start generates a key while holding an advisory lock, so
 * several control planes starting together in cluster mode end up with the same one.
 * The newest unretired key signs; every unretired key is published in the JWKS.
 */
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
import { TOKEN_ALGORITHM } from '../../common/access-token.js';
import type { Sql } from '../../common/db/client.js';
import type { Logger } from '../../common/log.js';

/** Key of the advisory lock taken while the first key is generated (any constant shared by all processes). */
const SIGNING_KEY_LOCK = 7_360_432;
/**
 * A token naming an unknown kid reloads the keys (another node may have rotated), at
 * most this often, so a flood of made-up kids costs one query per interval.
 */
const RELOAD_INTERVAL_MS = 10_000;

export interface SigningKeys {
  /** The kid of the key that signs new tokens. */
  readonly kid: string;
  readonly privateKey: CryptoKey;
  /** Public keys only. */
  jwks(): JSONWebKeySet;
  /** For jose's jwtVerify: finds the key by kid among the published ones. */
  readonly getKey: JWTVerifyGetKey;
}

interface KeyRow {
  kid: string;
  private_jwk: JWK;
  public_jwk: JWK;
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

/** Returns the unretired keys, newest first, creating the first one if there is none. */
async function ensureKeys(sql: Sql, log: Logger): Promise<KeyRow[]> {
  const active = () => sql<KeyRow[]>`
    select kid, private_jwk, public_jwk from signing_keys
    where retired_at is null order by created_at desc, kid`;
  const existing = await active();
  if (existing.length > 0) return existing;
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${SIGNING_KEY_LOCK})`;
    const [current] = await tx<KeyRow[]>`
      select kid, private_jwk, public_jwk from signing_keys
      where retired_at is null order by created_at desc, kid limit 1`;
    if (current) return [current];
    const key = await generateKey();
    await tx`
      insert into signing_keys (kid, algorithm, private_jwk, public_jwk)
      values (${key.kid}, ${TOKEN_ALGORITHM}, ${tx.json(key.privateJwk as never)}, ${tx.json(key.publicJwk as never)})`;
    log.info({ kid: key.kid }, 'generated the token signing key (first start)');
    return [{ kid: key.kid, private_jwk: key.privateJwk, public_jwk: key.publicJwk }];
  });
}

export async function loadSigningKeys(sql: Sql, log: Logger): Promise<SigningKeys> {
  let rows = await ensureKeys(sql, log);
  const signing = rows[0];
  if (!signing) throw new Error('no signing key available');
  const privateKey = await importJWK(signing.private_jwk, TOKEN_ALGORITHM);
  if (!(privateKey instanceof CryptoKey))
    throw new Error(`signing key ${signing.kid} is not an asymmetric key`);

  const publicSet = (): JSONWebKeySet => ({ keys: rows.map((row) => row.public_jwk) });
  let localSet = createLocalJWKSet(publicSet());
  let lastReload = 0;

  const getKey: JWTVerifyGetKey = async (header, token) => {
    try {
      return await localSet(header, token);
    } catch (error) {
      if (!(error instanceof joseErrors.JWKSNoMatchingKey) || Date.now() - lastReload < RELOAD_INTERVAL_MS)
        throw error;
      lastReload = Date.now();
      rows = await ensureKeys(sql, log);
      localSet = createLocalJWKSet(publicSet());
      return localSet(header, token);
    }
  };

  return { kid: signing.kid, privateKey, jwks: publicSet, getKey };
}
