/**
 * Encryption at rest of the private signing keys: AES-256-GCM under a key-encryption key
 * (KEK) derived from SIGNING_KEYS_SECRET, so a dump of the database alone cannot mint tokens.
 *
 * A sealed value is `v1:<nonce>:<ciphertext>:<tag>` (base64url): the version lets the scheme
 * change later, the nonce is 96 random bits per seal, and the key's kid is authenticated
 * data, so a ciphertext moved to another row does not open.
 */
import {
  createCipheriv,
  createDecipheriv,
  createSecretKey,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';

const VERSION = 'v1';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** HKDF info: the secret keys this one purpose, should it ever be used for another. */
const KEK_INFO = 'veza-live/signing-keys/aes-256-gcm/v1';

export interface KeyEncryptionKey {
  readonly key: KeyObject;
  /** Where the secret came from, for error messages (never the secret itself). */
  readonly source: string;
}

/** The KEK for 32 secret bytes (SIGNING_KEYS_SECRET decoded). */
export function keyEncryptionKey(secret: Uint8Array, source: string): KeyEncryptionKey {
  if (secret.length !== 32) throw new Error('the signing keys secret must be 32 bytes');
  const derived = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), KEK_INFO, 32));
  const key = createSecretKey(derived);
  derived.fill(0);
  return { key, source };
}

/** Bound into every seal: which key this is, under which scheme. */
function additionalData(kid: string): Buffer {
  return Buffer.from(`signing_keys/${VERSION}/${kid}`, 'utf8');
}

export function seal(kek: KeyEncryptionKey, kid: string, plaintext: string): string {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', kek.key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(additionalData(kid));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  const tag = cipher.getAuthTag();
  return [VERSION, nonce, ciphertext, tag]
    .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
    .join(':');
}

/** Why a sealed value did not open; the message never carries key material. */
export class UnsealError extends Error {
  override readonly name = 'UnsealError';
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** The plaintext of `sealed`, or UnsealError (wrong KEK, another row's ciphertext, tampering, unknown version). */
export function unseal(kek: KeyEncryptionKey, kid: string, sealed: string): string {
  const parts = sealed.split(':');
  if (parts[0] !== VERSION) throw new UnsealError(`unsupported envelope version ${JSON.stringify(parts[0])}`);
  if (parts.length !== 4 || !parts.every((part) => BASE64URL.test(part)))
    throw new UnsealError('malformed envelope');
  const [nonce, ciphertext, tag] = parts.slice(1).map((part) => Buffer.from(part, 'base64url')) as [
    Buffer,
    Buffer,
    Buffer,
  ];
  if (nonce.length !== NONCE_BYTES || tag.length !== TAG_BYTES) throw new UnsealError('malformed envelope');
  const decipher = createDecipheriv('aes-256-gcm', kek.key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(additionalData(kid));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
  } catch {
    throw new UnsealError('authentication failed');
  }
}
