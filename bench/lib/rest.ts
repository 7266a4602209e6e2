/**
 * The REST calls a benchmark makes to set up its actors, as a user's browser would: register,
 * log in, go live, fetch a listener token. Responses are validated (zod) at this boundary.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';

export interface BenchUser {
  userId: number;
  username: string;
  email: string;
  password: string;
  accessToken: string;
}

const loginReply = z.object({
  access_token: z.string().min(1),
  user: z.object({ id: z.number().int() }).loose(),
});
const startReply = z
  .object({ stream_id: z.number().int().positive(), chat_room_id: z.number().int() })
  .loose();

async function call(
  baseUrl: string,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
): Promise<unknown> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${what}: unexpected reply at ${issue?.path.join('.') || '(root)'}: ${issue?.message}`);
  }
  return parsed.data;
}

/** A fresh account (the default roles include broadcaster), logged in. */
export async function createUser(baseUrl: string, prefix = 'bench'): Promise<BenchUser> {
  const suffix = randomUUID().replaceAll('-', '').slice(0, 12);
  const username = `${prefix}_${suffix}`;
  const email = `${username}@bench.veza.test`;
  const password = `Bench-${suffix}-42`;
  await call(baseUrl, 'POST', '/auth/register', { email, password, username });
  return login(baseUrl, { email, password, username });
}

export async function login(
  baseUrl: string,
  account: { email: string; password: string; username: string },
): Promise<BenchUser> {
  const reply = parse(
    loginReply,
    await call(baseUrl, 'POST', '/auth/login', { email: account.email, password: account.password }),
    'POST /auth/login',
  );
  return { ...account, userId: reply.user.id, accessToken: reply.access_token };
}

export async function startStream(
  baseUrl: string,
  owner: BenchUser,
  title = 'benchmark',
): Promise<{ streamId: number; chatRoomId: number }> {
  const reply = parse(
    startReply,
    await call(
      baseUrl,
      'POST',
      '/stream/start',
      { title, allow_anonymous: true, is_public: true },
      owner.accessToken,
    ),
    'POST /stream/start',
  );
  return { streamId: reply.stream_id, chatRoomId: reply.chat_room_id };
}

export async function stopStream(baseUrl: string, owner: BenchUser, streamId: number): Promise<void> {
  await call(baseUrl, 'POST', `/stream/${streamId}/stop`, {}, owner.accessToken);
}

/** ws://host:port/ws for an http(s) base URL. */
export function signalingWsUrl(baseUrl: string): string {
  const url = new URL(baseUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.pathname = `${url.pathname.replace(/\/$/, '')}/ws`;
  return url.toString();
}
