/**
 * Input validation for the account rpcs. Every message names the field, and the field
 * travels with the error (`veza-error-field`) so the edge can point at it.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { InvalidArgumentError } from '../../common/contracts/index.js';
import { USER_ROLES } from '../../common/index.js';
import { parseInputNamingField as parseInput } from '../parse-input.js';
import { checkPasswordPolicy } from './passwords.js';

const required = (field: string) =>
  z
    .string()
    .trim()
    .min(1, { error: `${field} is required` });
const atMost = (field: string, max: number) =>
  z.string().max(max, { error: `${field} must be at most ${max} characters` });

export const emailSchema = required('email')
  .max(254, { error: 'email must be at most 254 characters' })
  .pipe(z.email({ error: 'email must be a valid email address' }));

export const usernameSchema = required('username').regex(/^[a-zA-Z0-9_.-]{3,32}$/, {
  error: 'username must be 3 to 32 characters of letters, digits, "_", "." or "-"',
});

const nameSchema = (field: string) => atMost(field, 64).trim();

export const registrationSchema = z.object({
  email: emailSchema,
  username: usernameSchema,
  password: z.string().min(1, { error: 'password is required' }),
  first_name: nameSchema('first_name'),
  last_name: nameSchema('last_name'),
});

export const loginSchema = z.object({
  email: required('email').max(254, { error: 'email must be at most 254 characters' }),
  // Longer than any password the policy accepts; bounds the hashing work per attempt.
  password: z
    .string()
    .min(1, { error: 'password is required' })
    .max(1024, { error: 'password must be at most 1024 characters' }),
  device_id: atMost('device_id', 128),
});

export const profileSchema = z.object({
  display_name: nameSchema('display_name').optional(),
  bio: atMost('bio', 500).optional(),
  first_name: nameSchema('first_name').optional(),
  last_name: nameSchema('last_name').optional(),
});

export const roleInputSchema = z.object({
  role: z.enum(USER_ROLES, { error: `role must be one of ${USER_ROLES.join(', ')}` }),
});

// The schemas here are flat and already snake_case, so the shared parser names fields as before.
export { parseInput };

export function parseRegistration(input: {
  email: string;
  username: string;
  password: string;
  first_name: string;
  last_name: string;
}) {
  const value = parseInput(registrationSchema, input);
  checkPasswordPolicy(value.password, { email: value.email, username: value.username });
  return value;
}

/** An IP address a trusted caller reports for its client; empty means "not given". */
export function parseClientIp(value: string, field: string): string | null {
  if (!value) return null;
  if (isIP(value) === 0) throw new InvalidArgumentError(`${field} must be an IPv4 or IPv6 address`, field);
  return value;
}
