/**
 * Password hashing (argon2id) and the password policy.
 *
 * Parameters follow OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane); they
 * are written out so a library default changing cannot silently weaken stored hashes.
 */
import { type Algorithm, hash, verify } from '@node-rs/argon2';
import { InvalidArgumentError } from '../../common/contracts/index.js';

/** Algorithm.Argon2id; the enum is a `const enum`, which isolated modules cannot read. */
const ARGON2ID = 2 as Algorithm;

export const ARGON2_OPTIONS = {
  algorithm: ARGON2ID,
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
  outputLen: 32,
} as const;

export const PASSWORD_MIN_LENGTH = 10;
export const PASSWORD_MAX_LENGTH = 128;

export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2_OPTIONS);
}

/** False for a wrong password and for a hash that cannot be parsed. */
export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await verify(passwordHash, password);
  } catch {
    return false;
  }
}

let decoyHash: Promise<string> | undefined;

/**
 * Spends the same time as checking a real account, so a login for an unknown email
 * cannot be told apart by its latency.
 */
export async function verifyAgainstDecoy(password: string): Promise<false> {
  decoyHash ??= hashPassword('decoy password that matches nothing');
  await verifyPassword(await decoyHash, password);
  return false;
}

const CLASSES: ReadonlyArray<[string, RegExp]> = [
  ['lowercase letters', /\p{Ll}/u],
  ['uppercase letters', /\p{Lu}/u],
  ['digits', /\p{Nd}/u],
  ['symbols', /[^\p{L}\p{Nd}]/u],
];

/** Throws an InvalidArgumentError on the `password` field saying what is wrong. */
export function checkPasswordPolicy(
  password: string,
  account: { email?: string; username?: string } = {},
): void {
  const length = [...password].length;
  if (length < PASSWORD_MIN_LENGTH) {
    throw new InvalidArgumentError(`password must be at least ${PASSWORD_MIN_LENGTH} characters`, 'password');
  }
  if (length > PASSWORD_MAX_LENGTH) {
    throw new InvalidArgumentError(`password must be at most ${PASSWORD_MAX_LENGTH} characters`, 'password');
  }
  const present = CLASSES.filter(([, pattern]) => pattern.test(password));
  if (present.length < 3) {
    const missing = CLASSES.filter((entry) => !present.includes(entry)).map(([name]) => name);
    throw new InvalidArgumentError(
      `password must mix at least 3 of: lowercase letters, uppercase letters, digits, symbols (missing ${missing.join(', ')})`,
      'password',
    );
  }
  const lowered = password.toLowerCase();
  for (const [field, value] of Object.entries(account)) {
    if (value && lowered === value.trim().toLowerCase()) {
      throw new InvalidArgumentError(`password must not be the same as the ${field}`, 'password');
    }
  }
}
