/**
 * Where the key-encryption key of the signing keys comes from: SIGNING_KEYS_SECRET, or in
 * standalone mode, when it is unset, a file generated once in the data directory, so that
 * `npm start` needs no setup and the database alone still does not hold what signs tokens.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type Config, ConfigError, decodeSigningKeysSecret, type Logger } from '../../common/index.js';
import { type KeyEncryptionKey, keyEncryptionKey } from './key-encryption.js';

/** The standalone secret's file, under the data directory. */
export function signingKeysSecretFile(dataDir: string): string {
  return path.join(dataDir, 'secrets', 'signing-keys.key');
}

const isCode = (error: unknown, code: string) => (error as NodeJS.ErrnoException | null)?.code === code;

async function readSecretFile(file: string, log: Logger): Promise<Buffer> {
  const key = decodeSigningKeysSecret(await readFile(file, 'utf8'));
  if (!key) throw new Error(`${file} does not hold a signing keys secret (32 random bytes, base64 or hex)`);
  const { mode } = await stat(file);
  if ((mode & 0o077) !== 0) {
    log.warn(
      { file, mode: (mode & 0o777).toString(8) },
      'the signing keys secret file is readable by others: chmod 600 it',
    );
  }
  return key;
}

/** Reads the file, or creates it when missing: whole (written aside, then linked) and only once. */
async function readOrCreateSecretFile(file: string, log: Logger): Promise<Buffer> {
  try {
    return await readSecretFile(file, log);
  } catch (error) {
    if (!isCode(error, 'ENOENT')) throw error;
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(temp, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
    // link() fails if the file exists: a process that loses the race reads the winner's secret.
    await link(temp, file);
    log.info({ file }, 'generated the signing keys secret (SIGNING_KEYS_SECRET is unset; standalone mode)');
  } catch (error) {
    if (!isCode(error, 'EEXIST')) throw error;
  } finally {
    await rm(temp, { force: true });
  }
  return readSecretFile(file, log);
}

export async function loadKeyEncryptionKey(
  config: Pick<Config, 'VEZA_MODE' | 'SIGNING_KEYS_SECRET' | 'dataDir'>,
  log: Logger,
): Promise<KeyEncryptionKey> {
  if (config.SIGNING_KEYS_SECRET) {
    const secret = decodeSigningKeysSecret(config.SIGNING_KEYS_SECRET);
    if (!secret) {
      throw new ConfigError(
        'invalid configuration: SIGNING_KEYS_SECRET (value not shown): expected 32 random bytes, hex or base64 encoded',
      );
    }
    return withSecret(secret, 'SIGNING_KEYS_SECRET');
  }
  if (config.VEZA_MODE === 'cluster') {
    throw new ConfigError('invalid configuration: VEZA_MODE=cluster needs SIGNING_KEYS_SECRET');
  }
  const file = signingKeysSecretFile(config.dataDir);
  return withSecret(await readOrCreateSecretFile(file, log), file);
}

/** The KEK, and the decoded secret wiped: the derived key is all that stays in memory. */
function withSecret(secret: Buffer, source: string): KeyEncryptionKey {
  try {
    return keyEncryptionKey(secret, source);
  } finally {
    secret.fill(0);
  }
}
