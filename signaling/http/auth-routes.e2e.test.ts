/**
 * The REST flows end to end: fetch -> the real uWS edge -> the real control-plane client
 * -> the real gRPC control plane -> a fresh embedded PostgreSQL database and the
 * standalone ports. Every refused request is also checked to have changed nothing.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  base64url,
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  generateKeyPair,
  SignJWT,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sql } from '../../common/db/index.js';
import {
  type Config,
  createLogger,
  loadConfig,
  metricsRegistry,
  verifyAccessToken,
} from '../../common/index.js';
import { createPorts, type Ports } from '../../common/ports/index.js';
import { createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../../control-plane/client/index.js';
import {
  type ControlPlane,
  createAdmin,
  loadKeyEncryptionKey,
  loadSigningKeys,
  startControlPlane,
} from '../../control-plane/index.js';
import { type Edge, startEdge } from '../index.js';

const PASSWORD = 'Correct-Horse-42';
/** A real 1x1 PNG. */
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=',
  'base64',
);
// Every login from 127.0.0.1 in this file counts against this (about 20 today); the
// per-IP burst test uses another loopback address.
const LOGIN_LIMIT_PER_IP = 30;
const LOGIN_LIMIT_PER_ACCOUNT = 3;

let dataDir: string;
let config: Config;
let db: TestDatabase;
let sql: Sql;
let ports: Ports;
let controlPlane: ControlPlane;
let client: ControlPlaneClient;
let edge: Edge;
let base: string;
let seq = 0;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'veza-edge-e2e-'));
  config = loadConfig({
    VEZA_DATA_DIR: dataDir,
    GRPC_HOST: '127.0.0.1',
    GRPC_PORT: '0',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    PUBLIC_URL: 'http://veza.test',
    LOG_LEVEL: 'silent',
    LOGIN_LIMIT_PER_IP: String(LOGIN_LIMIT_PER_IP),
    LOGIN_LIMIT_PER_ACCOUNT: String(LOGIN_LIMIT_PER_ACCOUNT),
    REGISTER_LIMIT_PER_IP: '1000',
  });
  const log = createLogger({ level: 'silent' });
  db = await createTestDatabase('embedded');
  sql = db.sql;
  ports = await createPorts(config, { sql, log });
  const apiKey = randomBytes(24).toString('base64url');
  controlPlane = await startControlPlane({ config, sql, ports, log, apiKey });
  client = createControlPlaneClient({ address: `127.0.0.1:${controlPlane.port}`, apiKey, log });
  edge = await startEdge({ config, log, controlPlane: client, blobs: ports.blobs });
  base = `http://127.0.0.1:${edge.port}`;
});

afterAll(async () => {
  await edge?.close();
  client?.close();
  await controlPlane?.close();
  await ports?.close();
  await db?.drop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------
// helpers

interface ErrorJson {
  error: { code: string; message: string; field?: string };
}

interface UserJson {
  id: number;
  email: string;
  username: string;
  display_name: string;
  bio: string;
  first_name: string;
  avatar_url: string | null;
  roles: string[];
  permissions: string[];
  email_confirmed: boolean;
}

interface TokensJson {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  token_type: string;
  user: UserJson;
}

function post(route: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${base}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function expectError(response: Response, status: number, code: string, message: string | RegExp) {
  const body = (await response.json()) as ErrorJson;
  expect({ status: response.status, code: body.error.code }).toEqual({ status, code });
  if (typeof message === 'string') expect(body.error.message).toBe(message);
  else expect(body.error.message).toMatch(message);
  return body.error;
}

/** Everything the account flows write, minus the outbox's delivery bookkeeping (it runs in the background). */
async function databaseState() {
  const [row] = await sql<Record<string, string | null>[]>`
    select
      (select count(*) from users)::text as users,
      (select count(*) from sessions)::text as sessions,
      (select count(*) from refresh_tokens)::text as refresh_tokens,
      (select md5(string_agg(t::text, '|' order by t::text)) from users t) as users_digest,
      (select md5(string_agg(t::text, '|' order by t::text)) from sessions t) as sessions_digest,
      (select md5(string_agg(t::text, '|' order by t::text)) from refresh_tokens t) as refresh_digest,
      (select md5(string_agg(t::text, '|' order by t::text)) from email_confirmations t) as confirmations_digest,
      (select md5(string_agg(concat_ws('/', id, to_address, subject, body_text), '|' order by id)) from email_outbox)
        as outbox_digest,
      (select md5(string_agg(t::text, '|' order by t::text)) from signing_keys t) as keys_digest,
      (select md5(string_agg(t::text, '|' order by t::text)) from audit_log t) as audit_digest`;
  return row;
}

/** Runs a refused request and checks it changed nothing in the database. */
async function unchanged<T>(action: () => Promise<T>): Promise<T> {
  const before = await databaseState();
  const result = await action();
  expect(await databaseState()).toEqual(before);
  return result;
}

async function register(prefix = 'user') {
  seq += 1;
  const email = `${prefix}${seq}@example.com`;
  const username = `${prefix}${seq}`;
  const response = await post('/auth/register', { email, password: PASSWORD, username, first_name: 'Ada' });
  expect(response.status).toBe(201);
  const { user } = (await response.json()) as { user: UserJson };
  return { email, username, user };
}

async function login(email: string, password = PASSWORD): Promise<TokensJson> {
  const response = await post('/auth/login', { email, password, device_id: 'e2e' });
  expect(response.status).toBe(200);
  return (await response.json()) as TokensJson;
}

const validate = (token: string) => fetch(`${base}/auth/validate`, { headers: bearer(token) });

/** The edge sees the socket address: requests from another loopback address count as another client IP. */
function postFrom(localAddress: string, route: string, body: unknown) {
  const payload = JSON.stringify(body);
  return new Promise<{
    status: number;
    headers: Record<string, string | string[] | undefined>;
    body: ErrorJson;
  }>((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: edge.port,
        localAddress,
        method: 'POST',
        path: route,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) }),
        );
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** The control plane's signing key, decrypted as the control plane does (its data directory's secret). */
async function realSigningKey(): Promise<{ kid: string; key: CryptoKey }> {
  const log = createLogger({ level: 'silent' });
  const keys = await loadSigningKeys(sql, log, await loadKeyEncryptionKey(config, log));
  return { kid: keys.kid, key: keys.privateKey };
}

/** A token with the claims of `valid` (a real session) but signed with `key` and the given header and expiry. */
async function forge(valid: string, key: CryptoKey, kid: string, exp?: number) {
  const claims = decodeJwt(valid);
  return new SignJWT({ ...claims, ...(exp === undefined ? {} : { exp, iat: exp - 900 }) })
    .setProtectedHeader({ alg: 'EdDSA', kid, typ: 'JWT' })
    .sign(key);
}

/** GetJwks calls the control plane has served (its metrics share this process's registry). */
async function getJwksCalls(): Promise<number> {
  const metric = metricsRegistry().getSingleMetric('veza_grpc_requests_total');
  if (!metric) return 0;
  const { values } = await metric.get();
  return values
    .filter((value) => String(value.labels.method ?? '').endsWith('/GetJwks'))
    .reduce((sum, value) => sum + value.value, 0);
}

// ---------------------------------------------------------------------------------------

describe('edge REST flows', () => {
  it('registers, mails a confirmation link that confirms the address, and answers in HTML for browsers', async () => {
    const { email, user } = await register('confirm');
    expect(user).toMatchObject({
      email,
      first_name: 'Ada',
      email_confirmed: false,
      roles: ['listener', 'broadcaster'],
      avatar_url: null,
    });
    expect(user.permissions).toContain('stream:publish');

    const [mail] = await sql<{ body_text: string }[]>`
      select body_text from email_outbox where to_address = ${email} and kind = 'email_confirmation'`;
    const link = /https?:\/\/\S+\/auth\/confirm\?token=\S+/.exec(mail?.body_text ?? '')?.[0];
    expect(link).toBeDefined();
    const { pathname, search } = new URL(link!);

    const confirmed = await fetch(`${base}${pathname}${search}`);
    expect(confirmed.status).toBe(200);
    expect(await confirmed.json()).toMatchObject({ confirmed: true, user: { email, email_confirmed: true } });

    const page = await fetch(`${base}${pathname}${search}`, {
      headers: { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' },
    });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await page.text()).toContain('your email address is confirmed');

    await unchanged(async () => {
      await expectError(
        await fetch(`${base}/auth/confirm?token=nope`),
        400,
        'invalid_argument',
        /unknown confirmation token/,
      );
      await expectError(
        await fetch(`${base}/auth/confirm`),
        400,
        'invalid_argument',
        'missing field "token" in query string',
      );
      const badPage = await fetch(`${base}/auth/confirm?token=nope`, { headers: { accept: 'text/html' } });
      expect(badPage.status).toBe(400);
      expect(await badPage.text()).toContain(
        'This confirmation link cannot be used: unknown confirmation token',
      );
    });
  });

  it('logs in and validates: the user comes back with roles and permissions', async () => {
    const { email, user } = await register('login');
    const tokens = await login(email);
    expect(tokens).toMatchObject({
      token_type: 'Bearer',
      expires_in: config.ACCESS_TOKEN_TTL_S,
      user: { id: user.id },
    });
    expect(tokens.refresh_token.length).toBeGreaterThan(20);

    const response = await validate(tokens.access_token);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const body = (await response.json()) as { valid: boolean; user: UserJson; expires_at: string };
    expect(body.valid).toBe(true);
    expect(body.user).toMatchObject({ id: user.id, email, roles: ['listener', 'broadcaster'] });
    expect(body.user.permissions).toEqual(
      expect.arrayContaining(['stream:listen', 'chat:send', 'stream:publish']),
    );
    expect(new Date(body.expires_at).getTime()).toBeGreaterThan(Date.now());

    // The session records the client's address as the edge saw it.
    const [session] = await sql<{ ip_address: string; device_id: string }[]>`
      select ip_address, device_id from sessions where user_id = ${user.id}`;
    expect(session).toEqual({ ip_address: '127.0.0.1', device_id: 'e2e' });
  });

  it('rotates refresh tokens; reusing one is refused and revokes the session', async () => {
    const { email } = await register('refresh');
    const first = await login(email);
    const rotated = await post('/auth/refresh', { refresh_token: first.refresh_token });
    expect(rotated.status).toBe(200);
    const second = (await rotated.json()) as TokensJson;
    expect(second.refresh_token).not.toBe(first.refresh_token);
    expect(second.access_token).not.toBe(first.access_token);
    expect((await validate(second.access_token)).status).toBe(200);

    await expectError(
      await post('/auth/refresh', { refresh_token: first.refresh_token }),
      401,
      'unauthenticated',
      /refresh token/,
    );
    // The whole family is gone: the tokens issued by the rotation no longer work either.
    await expectError(
      await validate(second.access_token),
      401,
      'unauthenticated',
      'invalid token: session revoked',
    );
    await expectError(
      await post('/auth/refresh', { refresh_token: second.refresh_token }),
      401,
      'unauthenticated',
      /refresh token/,
    );
  });

  it('logs out: the session is revoked and its tokens stop working', async () => {
    const { email } = await register('logout');
    const tokens = await login(email);
    const response = await fetch(`${base}/auth/logout`, {
      method: 'POST',
      headers: bearer(tokens.access_token),
    });
    expect(response.status).toBe(204);
    expect(await response.text()).toBe('');
    await expectError(
      await validate(tokens.access_token),
      401,
      'unauthenticated',
      'invalid token: session revoked',
    );
    await expectError(
      await post('/auth/refresh', { refresh_token: tokens.refresh_token }),
      401,
      'unauthenticated',
      /./,
    );

    // With a refresh token of another session of the same user in the body, that one ends too.
    const a = await login(email);
    const b = await login(email);
    const both = await post('/auth/logout', { refresh_token: b.refresh_token }, bearer(a.access_token));
    expect(both.status).toBe(204);
    expect((await validate(a.access_token)).status).toBe(401);
    expect((await validate(b.access_token)).status).toBe(401);
    const c = await login(email);
    await unchanged(async () => {
      await expectError(
        await fetch(`${base}/auth/logout`, { method: 'POST' }),
        401,
        'unauthenticated',
        'missing authorization header',
      );
      await expectError(
        await post('/auth/logout', { refresh_token: 'not-a-refresh-token' }, bearer(c.access_token)),
        401,
        'unauthenticated',
        'invalid token',
      );
      await expectError(
        await post('/auth/logout', { refresh_token: 7 }, bearer(c.access_token)),
        400,
        'invalid_argument',
        /^invalid field "refresh_token": /,
      );
    });
    expect((await validate(c.access_token)).status).toBe(200);
  });

  it('updates the profile from JSON and from multipart with an avatar, served back byte for byte', async () => {
    const { email } = await register('profile');
    const { access_token: token } = await login(email);

    const fromJson = await fetch(`${base}/auth/profile`, {
      method: 'PUT',
      headers: { ...bearer(token), 'content-type': 'application/json' },
      body: JSON.stringify({ display_name: 'Ada L.', bio: 'Plays the Analytical Engine' }),
    });
    expect(fromJson.status).toBe(200);
    expect(await fromJson.json()).toMatchObject({
      user: { display_name: 'Ada L.', bio: 'Plays the Analytical Engine' },
    });

    const form = new FormData();
    form.append('display_name', 'Ada Lovelace');
    form.append('avatar', new Blob([PNG], { type: 'image/png' }), 'me.png');
    const fromForm = await fetch(`${base}/auth/profile`, {
      method: 'PUT',
      headers: bearer(token),
      body: form,
    });
    expect(fromForm.status).toBe(200);
    const { user } = (await fromForm.json()) as { user: UserJson };
    expect(user).toMatchObject({ display_name: 'Ada Lovelace', bio: 'Plays the Analytical Engine' });
    expect(user.avatar_url).toMatch(/^http:\/\/veza\.test\/media\/avatars\/\d+\/[0-9a-f]{64}\.png$/);

    const avatarPath = new URL(user.avatar_url!).pathname;
    const avatar = await fetch(`${base}${avatarPath}`);
    expect(avatar.status).toBe(200);
    expect(avatar.headers.get('content-type')).toBe('image/png');
    expect(avatar.headers.get('content-length')).toBe(String(PNG.length));
    expect(avatar.headers.get('x-content-type-options')).toBe('nosniff');
    expect(Buffer.from(await avatar.arrayBuffer()).equals(PNG)).toBe(true);

    const partial = await fetch(`${base}${avatarPath}`, { headers: { range: 'bytes=1-3' } });
    expect(partial.status).toBe(206);
    expect(partial.headers.get('content-range')).toBe(`bytes 1-3/${PNG.length}`);
    expect(Buffer.from(await partial.arrayBuffer()).equals(PNG.subarray(1, 4))).toBe(true);

    const head = await fetch(`${base}${avatarPath}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(PNG.length));

    const beyond = await fetch(`${base}${avatarPath}`, { headers: { range: `bytes=${PNG.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${PNG.length}`);
    await expectError(
      await fetch(`${base}/media/avatars/none.png`),
      404,
      'not_found',
      'no media at /media/avatars/none.png',
    );
    await expectError(await fetch(`${base}/media/../etc/passwd`), 404, 'not_found', /no (media|route)/);
  });

  it('refuses bad profile updates and changes nothing', async () => {
    const { email } = await register('badprofile');
    const { access_token: token } = await login(email);
    const put = (body: BodyInit, headers: Record<string, string> = {}) =>
      fetch(`${base}/auth/profile`, { method: 'PUT', headers: { ...bearer(token), ...headers }, body });

    await unchanged(async () => {
      const notImage = new FormData();
      notImage.append('avatar', new Blob([Buffer.from('GIF? no, text')], { type: 'image/gif' }), 'x.gif');
      const e1 = await expectError(
        await put(notImage),
        400,
        'invalid_argument',
        /must be a PNG, JPEG, WebP or GIF image/,
      );
      expect(e1.field).toBe('avatar_data');

      const huge = new FormData();
      huge.append(
        'avatar',
        new Blob([Buffer.concat([PNG, Buffer.alloc(config.AVATAR_LIMIT_BYTES)])]),
        'big.png',
      );
      await expectError(
        await put(huge),
        413,
        'payload_too_large',
        /avatar is \d+ bytes; the limit is 2097152 bytes/,
      );

      const tooHuge = new FormData();
      tooHuge.append('avatar', new Blob([Buffer.alloc(config.AVATAR_LIMIT_BYTES + 200_000)]), 'huge.png');
      await expectError(
        await put(tooHuge),
        413,
        'payload_too_large',
        /request body too large: the limit for multipart\/form-data/,
      );

      const unknown = new FormData();
      unknown.append('nickname', 'x');
      await expectError(await put(unknown), 400, 'invalid_argument', 'unknown field "nickname" in form data');

      await expectError(
        await put(JSON.stringify({ bio: 'x'.repeat(501) }), { 'content-type': 'application/json' }),
        400,
        'invalid_argument',
        'invalid field "bio": must be at most 500 characters',
      );
      await expectError(
        await put('bio=x', { 'content-type': 'text/plain' }),
        400,
        'invalid_argument',
        'unsupported content type "text/plain": expected application/json or multipart/form-data',
      );
      await expectError(
        await fetch(`${base}/auth/profile`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: '{"bio":"x"}',
        }),
        401,
        'unauthenticated',
        'missing authorization header',
      );
    });
  });

  it('answers every bad input with the right status, code and message, and changes nothing', async () => {
    const { email, username } = await register('bad');

    await unchanged(async () => {
      await expectError(
        await post('/auth/register', '{"email": "a@b.co", '),
        400,
        'invalid_argument',
        /^malformed JSON body: .+/,
      );
      await expectError(
        await post('/auth/login', 'not json'),
        400,
        'invalid_argument',
        /^malformed JSON body: /,
      );

      const missing = await expectError(
        await post('/auth/register', { email: 'new@example.com', password: PASSWORD }),
        400,
        'invalid_argument',
        'missing field "username" in request body',
      );
      expect(missing.field).toBe('username');
      await expectError(
        await post('/auth/login', { email }),
        400,
        'invalid_argument',
        'missing field "password" in request body',
      );

      const oversize = await post('/auth/register', {
        email: 'big@example.com',
        password: PASSWORD,
        username: 'big',
        first_name: 'x'.repeat(config.BODY_LIMIT_BYTES),
      });
      await expectError(
        oversize,
        413,
        'payload_too_large',
        'request body too large: the limit for application/json is 65536 bytes',
      );

      const badEmail = await expectError(
        await post('/auth/register', { email: 'not-an-email', password: PASSWORD, username: 'fresh1' }),
        400,
        'invalid_argument',
        'invalid field "email": must be a valid email address',
      );
      expect(badEmail.field).toBe('email');

      const weak = await expectError(
        await post('/auth/register', { email: 'weak@example.com', password: 'password', username: 'fresh2' }),
        400,
        'invalid_argument',
        /^password must /,
      );
      expect(weak.field).toBe('password');

      const duplicate = await expectError(
        await post('/auth/register', {
          email: email.toUpperCase(),
          password: PASSWORD,
          username: `${username}x`,
        }),
        409,
        'already_exists',
        /email/,
      );
      expect(duplicate.field).toBe('email');

      await expectError(
        await post('/auth/login', { email, password: 'Wrong-Horse-42' }),
        401,
        'unauthenticated',
        'invalid email or password',
      );
      await expectError(
        await post('/auth/login', { email: 'nobody@example.com', password: PASSWORD }),
        401,
        'unauthenticated',
        'invalid email or password',
      );
      await expectError(
        await post('/auth/login', 'email=a', { 'content-type': 'application/x-www-form-urlencoded' }),
        400,
        'invalid_argument',
        'unsupported content type "application/x-www-form-urlencoded": expected application/json',
      );
      await expectError(
        await post('/auth/login', { email, password: PASSWORD, remember: true }),
        400,
        'invalid_argument',
        'unknown field "remember" in request body',
      );
    });
  });

  it('refuses expired, foreign, unsigned, malformed and revoked access tokens', async () => {
    const { email } = await register('tokens');
    const tokens = await login(email);
    const { kid, key } = await realSigningKey();
    expect(decodeProtectedHeader(tokens.access_token).kid).toBe(kid);

    const expired = await forge(tokens.access_token, key, kid, Math.floor(Date.now() / 1000) - 60);
    const { privateKey: otherKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const foreign = await forge(tokens.access_token, otherKey, kid);
    const foreignKid = await forge(tokens.access_token, otherKey, 'some-other-kid');
    const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }));
    const unsigned = `${header}.${tokens.access_token.split('.')[1]}.`;

    await unchanged(async () => {
      await expectError(await validate(expired), 401, 'unauthenticated', 'invalid token: expired');
      await expectError(await validate(foreign), 401, 'unauthenticated', 'invalid token: bad signature');
      await expectError(
        await validate(foreignKid),
        401,
        'unauthenticated',
        'invalid token: signed by an unknown key',
      );
      await expectError(
        await validate(unsigned),
        401,
        'unauthenticated',
        'invalid token: algorithm not allowed',
      );
      await expectError(await validate('garbage'), 401, 'unauthenticated', 'invalid token: not a JWT');
      await expectError(
        await fetch(`${base}/auth/validate`, { headers: { authorization: `Basic ${tokens.access_token}` } }),
        401,
        'unauthenticated',
        'invalid authorization header format: expected "Bearer <token>"',
      );
      await expectError(
        await fetch(`${base}/auth/validate`),
        401,
        'unauthenticated',
        'missing authorization header',
      );
      // A forged token changes no profile either.
      await expectError(
        await fetch(`${base}/auth/profile`, {
          method: 'PUT',
          headers: { ...bearer(expired), 'content-type': 'application/json' },
          body: '{"bio":"hacked"}',
        }),
        401,
        'unauthenticated',
        'invalid token: expired',
      );
    });

    // The genuine token still works; once revoked, it does not.
    expect((await validate(tokens.access_token)).status).toBe(200);
    expect(
      (await fetch(`${base}/auth/logout`, { method: 'POST', headers: bearer(tokens.access_token) })).status,
    ).toBe(204);
    await unchanged(async () => {
      await expectError(
        await validate(tokens.access_token),
        401,
        'unauthenticated',
        'invalid token: session revoked',
      );
    });
  });

  it('rate-limits a burst of logins per account, with Retry-After', async () => {
    const { email } = await register('burst');
    await unchanged(async () => {
      for (let i = 0; i < LOGIN_LIMIT_PER_ACCOUNT; i++) {
        await expectError(
          await post('/auth/login', { email, password: 'Wrong-Horse-42' }),
          401,
          'unauthenticated',
          /./,
        );
      }
      const limited = await post('/auth/login', { email, password: PASSWORD });
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      await expectError(limited, 429, 'resource_exhausted', /^too many login attempts; retry in \d+ s$/);
    });
  });

  it('rate-limits a burst of logins per client IP, with Retry-After', async () => {
    // Another loopback address is another client IP; these attempts do not use up 127.0.0.1's budget.
    const ip = '127.0.0.2';
    await unchanged(async () => {
      for (let i = 0; i < LOGIN_LIMIT_PER_IP; i++) {
        const attempt = await postFrom(ip, '/auth/login', {
          email: `ghost${i}@example.com`,
          password: PASSWORD,
        });
        expect(attempt.status).toBe(401);
      }
      const limited = await postFrom(ip, '/auth/login', {
        email: 'ghost-last@example.com',
        password: PASSWORD,
      });
      expect(limited.status).toBe(429);
      expect(limited.body.error.code).toBe('resource_exhausted');
      expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    });
    // The same burst did not limit anyone else.
    const { email } = await register('afterburst');
    await login(email);
  });

  it('lets an admin grant roles; others get 403', async () => {
    const admin = await createAdmin(
      { sql },
      { email: 'root@example.com', username: 'root', password: PASSWORD },
    );
    const adminTokens = await login(admin.email);
    const { user, email } = await register('promote');
    const grant = await post(
      `/admin/users/${user.id}/roles`,
      { role: 'moderator', granted: true },
      bearer(adminTokens.access_token),
    );
    expect(grant.status).toBe(200);
    const granted = (await grant.json()) as { user: UserJson };
    expect(granted.user.roles).toContain('moderator');
    expect(granted.user.permissions).toContain('chat:moderate');

    const userTokens = await login(email);
    await unchanged(async () => {
      await expectError(
        await post(
          `/admin/users/${user.id}/roles`,
          { role: 'admin', granted: true },
          bearer(userTokens.access_token),
        ),
        403,
        'permission_denied',
        'changing roles needs the admin role',
      );
      await expectError(
        await post(
          '/admin/users/abc/roles',
          { role: 'admin', granted: true },
          bearer(adminTokens.access_token),
        ),
        400,
        'invalid_argument',
        'invalid path parameter "id": "abc" is not a user id',
      );
      await expectError(
        await post(
          `/admin/users/${user.id}/roles`,
          { role: 'king', granted: true },
          bearer(adminTokens.access_token),
        ),
        400,
        'invalid_argument',
        'invalid field "role": must be one of listener, broadcaster, moderator, admin',
      );
      await expectError(
        await post(
          '/admin/users/999999/roles',
          { role: 'admin', granted: true },
          bearer(adminTokens.access_token),
        ),
        404,
        'not_found',
        /./,
      );
    });
  });

  it('publishes the JWKS, which verifies the access tokens, with caching headers', async () => {
    const { email } = await register('jwks');
    const tokens = await login(email);
    const response = await fetch(`${base}/.well-known/jwks.json`);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toMatch(/^public, max-age=(60|[1-5]\d|\d)$/);
    const jwks = (await response.json()) as { keys: Array<{ kid: string; d?: string }> };
    expect(jwks.keys.length).toBeGreaterThan(0);
    expect(jwks.keys.every((k) => k.d === undefined)).toBe(true);
    const verified = await verifyAccessToken(tokens.access_token, createLocalJWKSet(jwks as never));
    expect(verified.userId).toBe(tokens.user.id);

    // Within the minute, further requests are served from the edge's cache, not the control plane.
    const before = await getJwksCalls();
    expect(before).toBeGreaterThan(0);
    for (let i = 0; i < 3; i++) expect((await fetch(`${base}/.well-known/jwks.json`)).status).toBe(200);
    expect(await getJwksCalls()).toBe(before);
  });

  it('serves metrics, liveness and readiness that follows the control plane', async () => {
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready' });

    controlPlane.health.set('NOT_SERVING', 'veza.auth.AuthService');
    try {
      await expectError(
        await fetch(`${base}/readyz`),
        503,
        'unavailable',
        'control plane reports veza.auth.AuthService NOT_SERVING',
      );
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    } finally {
      controlPlane.health.set('SERVING', 'veza.auth.AuthService');
    }
    expect((await fetch(`${base}/readyz`)).status).toBe(200);

    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(
      /veza_http_requests_total\{method="POST",route="\/auth\/login",status="200"\} \d+/,
    );
    expect(metrics).toMatch(
      /veza_http_request_duration_seconds_bucket\{le="[^"]+",method="GET",route="\/auth\/validate",status="401"\}/,
    );
  });

  it('answers unknown routes and wrong methods with JSON errors', async () => {
    await expectError(await fetch(`${base}/nope`), 404, 'not_found', 'no route for GET /nope');
    const wrong = await fetch(`${base}/auth/login`);
    expect(wrong.headers.get('allow')).toBe('POST');
    await expectError(wrong, 405, 'not_found', 'method GET is not allowed on /auth/login (allowed: POST)');
  });
});
