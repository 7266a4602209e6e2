/**
 * The control plane's one way to parse a request with a zod schema: the first problem becomes an
 * InvalidArgumentError naming its field as the proto spells it (snake_case, the top-level field).
 */
import type { z } from 'zod';
import { InvalidArgumentError } from '../common/contracts/index.js';

const snake = (name: string): string => name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);

export interface ParseOptions {
  /** Start the message with `<field>: ` unless it already names the field. */
  prefixField?: boolean;
}

/** Parses `input`, or throws an InvalidArgumentError naming the first bad field. */
export function parseInput<S extends z.ZodType>(
  schema: S,
  input: unknown,
  options: ParseOptions = {},
): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue?.path.length ? snake(String(issue.path[0])) : undefined;
  const message = issue?.message ?? 'invalid request';
  const prefixed = options.prefixField && field && !message.includes(field);
  throw new InvalidArgumentError(prefixed ? `${field}: ${message}` : message, field);
}

/** parseInput whose messages start with the field (chat and auth answer that way). */
export function parseInputNamingField<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  return parseInput(schema, input, { prefixField: true });
}
