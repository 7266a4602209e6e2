import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../common/contracts/index.js';
import { checkPasswordPolicy, hashPassword, verifyAgainstDecoy, verifyPassword } from './passwords.js';

describe('password hashing', () => {
  it('hashes with argon2id and the explicit parameters, salted per hash', async () => {
    const first = await hashPassword('Correct-Horse-42');
    const second = await hashPassword('Correct-Horse-42');
    expect(first).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(second).not.toBe(first);
    expect(await verifyPassword(first, 'Correct-Horse-42')).toBe(true);
    expect(await verifyPassword(first, 'correct-horse-42')).toBe(false);
  });

  it('treats an unparsable hash as a mismatch, and the decoy as never matching', async () => {
    expect(await verifyPassword('not-a-hash', 'anything')).toBe(false);
    expect(await verifyAgainstDecoy('decoy password that matches nothing')).toBe(false);
  });
});

describe('password policy', () => {
  const failure = (password: string, account = {}) => {
    try {
      checkPasswordPolicy(password, account);
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as InvalidArgumentError).details.field).toBe('password');
      return (error as Error).message;
    }
    return null;
  };

  it('accepts 10 to 128 characters mixing three classes', () => {
    expect(failure('Abcdefgh12')).toBeNull();
    expect(failure('abcdefgh1!')).toBeNull();
    expect(failure(`Aa1${'x'.repeat(125)}`)).toBeNull();
    expect(failure('Ünïcödé-Wörd')).toBeNull();
  });

  it('names what is wrong', () => {
    expect(failure('Ab1!')).toBe('password must be at least 10 characters');
    expect(failure(`Aa1${'x'.repeat(126)}`)).toBe('password must be at most 128 characters');
    expect(failure('abcdefghijkl')).toBe(
      'password must mix at least 3 of: lowercase letters, uppercase letters, digits, symbols (missing uppercase letters, digits, symbols)',
    );
    expect(failure('abcdefgh12')).toContain('missing uppercase letters, symbols');
  });

  it('refuses the email or the username as the password, ignoring case', () => {
    expect(failure('Dj.Ana-2024', { username: 'dj.ana-2024' })).toBe(
      'password must not be the same as the username',
    );
    expect(failure('Ana@Example.com', { email: 'ana@example.com' })).toBe(
      'password must not be the same as the email',
    );
  });
});
