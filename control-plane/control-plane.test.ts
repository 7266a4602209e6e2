/**
 * End to end through a real gRPC server on port 0, the real standalone ports and a fresh
 * PostgreSQL database, with the generated ts-proto client (and, for the seed test, a
 * client built from the seed's proto text only).
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import {
  type Client,
  type ClientDuplexStream,
  type ClientReadableStream,
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  Metadata,
  makeGenericClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, metricsRegistry } from '../common/index.js';
import { AnalyticsServiceService } from '../proto/gen/veza/analytics/analytics.js';
import { AuthServiceService } from '../proto/gen/veza/auth/auth.js';
import { ChatServiceService } from '../proto/gen/veza/chat/chat.js';
import { NotificationServiceService } from '../proto/gen/veza/notification/notification.js';
import { StreamServiceService } from '../proto/gen/veza/stream/stream.js';
import { issueAccessToken, loadKeyEncryptionKey, loadSigningKeys } from './auth/index.js';
import { createAdmin } from './index.js';
import {
  authCalls,
  bearer,
  grpcError,
  type Harness,
  metadata,
  STRONG_PASSWORD,
  startHarness,
  tableDigest,
  unary,
} from './test-harness.js';

const FIVE_SERVICES = [
  'veza.auth.AuthService',
  'veza.chat.ChatService',
  'veza.stream.StreamService',
  'veza.analytics.AnalyticsService',
  'veza.notification.NotificationService',
];

const PNG = Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), Buffer.alloc(32, 7)]);

let h: Harness;
let api: ReturnType<typeof authCalls>;
let seq = 0;

/** A fresh account per test, so tests do not share rate limits or sessions. */
async function newAccount(prefix = 'user') {
  seq += 1;
  const email = `${prefix}${seq}@example.com`;
  const username = `${prefix}_${seq}`;
  const registered = await api.register({ email, username, password: STRONG_PASSWORD });
  return { email, username, userId: registered.userInfo?.userId ?? 0 };
}

async function login(email: string, extra: { deviceId?: string } = {}) {
  return api.authenticate({ email, password: STRONG_PASSWORD, ...extra });
}

/** Runs `action`, which must fail, and checks the account tables did not change. */
async function failsWithoutChanges(action: () => Promise<unknown>): Promise<ServiceError> {
  const before = await tableDigest(h.sql);
  const error = await grpcError(action());
  expect(await tableDigest(h.sql)).toBe(before);
  return error;
}

function trailer(error: ServiceError, key: string): string | undefined {
  const value = error.metadata.get(key)[0];
  return value === undefined ? undefined : String(value);
}

beforeAll(async () => {
  h = await startHarness({ LOGIN_LIMIT_PER_ACCOUNT: '3', AVATAR_LIMIT_BYTES: '4096' });
  api = authCalls(h.auth);
});
afterAll(() => h?.close());

describe('accounts and tokens', () => {
  it('registers, logs in, validates, refreshes, detects refresh reuse and revokes', async () => {
    const registered = await api.register({
      email: '  Ana.Flow@Example.COM ',
      username: 'ana.flow',
      password: STRONG_PASSWORD,
      firstName: 'Ana',
    });
    const userId = registered.userInfo?.userId;
    expect(userId).toBeGreaterThan(0);
    expect(registered.userInfo).toMatchObject({
      email: 'Ana.Flow@Example.COM',
      username: 'ana.flow',
      firstName: 'Ana',
      roles: ['listener', 'broadcaster'],
      emailConfirmed: false,
    });
    expect(registered.userInfo?.permissions).toEqual(
      expect.arrayContaining(['stream:publish', 'stream:listen']),
    );
    expect(registered.userInfo?.permissions).not.toContain('roles:grant');

    // Login normalises the email.
    const first = await api.authenticate({
      email: 'ana.flow@example.com',
      password: STRONG_PASSWORD,
      deviceId: 'web',
    });
    expect(first).toMatchObject({ success: true, expiresIn: h.config.ACCESS_TOKEN_TTL_S });
    expect(first.userInfo?.userId).toBe(userId);

    const validated = await api.validateToken(first.accessToken);
    expect(validated.valid).toBe(true);
    expect(validated.userInfo?.userId).toBe(userId);
    expect(validated.userInfo?.permissions).toContain('stream:publish');
    const ttlMs = (validated.expiresAt?.getTime() ?? 0) - Date.now();
    expect(ttlMs).toBeGreaterThan((h.config.ACCESS_TOKEN_TTL_S - 60) * 1000);
    expect(ttlMs).toBeLessThanOrEqual(h.config.ACCESS_TOKEN_TTL_S * 1000);
    const sessionId = validated.sessionId;

    const second = await api.refreshToken({ refreshToken: first.refreshToken });
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(second.accessToken).not.toBe(first.accessToken);
    expect((await api.validateToken(second.accessToken)).sessionId).toBe(sessionId);
    const [{ tokens } = { tokens: 0 }] = await h.sql<{ tokens: number }[]>`
      select count(*)::int as tokens from refresh_tokens where session_id = ${sessionId}`;
    expect(tokens).toBe(2);

    // The spent token comes back: the whole family is revoked, nothing new is issued.
    const reuse = await grpcError(api.refreshToken({ refreshToken: first.refreshToken }));
    expect(reuse.code).toBe(status.UNAUTHENTICATED);
    expect(reuse.details).toBe('refresh token reuse detected; session revoked');
    const [{ live } = { live: -1 }] = await h.sql<{ live: number }[]>`
      select count(*)::int as live from refresh_tokens where session_id = ${sessionId} and revoked_at is null`;
    expect(live).toBe(0);
    const [{ total } = { total: 0 }] = await h.sql<{ total: number }[]>`
      select count(*)::int as total from refresh_tokens where session_id = ${sessionId}`;
    expect(total).toBe(2);
    const afterReuse = await grpcError(api.validateToken(second.accessToken));
    expect(afterReuse).toMatchObject({
      code: status.UNAUTHENTICATED,
      details: 'invalid token: session revoked',
    });
    const successor = await grpcError(api.refreshToken({ refreshToken: second.refreshToken }));
    expect(successor).toMatchObject({
      code: status.UNAUTHENTICATED,
      details: 'invalid refresh token: revoked',
    });

    // Logout with the access token ends the session at once.
    const third = await login('ana.flow@example.com');
    const revoked = await api.revokeToken({ token: third.accessToken });
    expect(revoked.success).toBe(true);
    const afterRevoke = await failsWithoutChanges(() => api.validateToken(third.accessToken));
    expect(afterRevoke).toMatchObject({
      code: status.UNAUTHENTICATED,
      details: 'invalid token: session revoked',
    });
    const refreshAfterRevoke = await grpcError(api.refreshToken({ refreshToken: third.refreshToken }));
    expect(refreshAfterRevoke.code).toBe(status.UNAUTHENTICATED);

    // Logout with the refresh token works too.
    const fourth = await login('ana.flow@example.com');
    expect(
      (await api.revokeToken({ token: fourth.refreshToken, tokenTypeHint: 'refresh_token' })).sessionId,
    ).toBe(
      (
        await h.sql<{ session_id: string }[]>`
        select session_id from refresh_tokens where user_id = ${userId ?? 0} order by issued_at desc limit 1`
      )[0]?.session_id,
    );
    expect((await grpcError(api.validateToken(fourth.accessToken))).details).toBe(
      'invalid token: session revoked',
    );
  });

  it('sends the confirmation link through the outbox and confirms the email', async () => {
    const account = await newAccount('confirm');
    const [mail] = await h.sql<{ body_text: string; to_address: string; kind: string }[]>`
      select body_text, to_address, kind from email_outbox where to_address = ${account.email}`;
    expect(mail?.kind).toBe('email_confirmation');
    const link = /http:\/\/veza\.test\/auth\/confirm\?token=([A-Za-z0-9_-]+)/.exec(mail?.body_text ?? '');
    expect(link?.[1]).toBeTruthy();

    const confirmed = await api.confirmEmail(link?.[1] ?? '');
    expect(confirmed.userInfo).toMatchObject({ userId: account.userId, emailConfirmed: true });
    // Following the link again is harmless.
    expect((await api.confirmEmail(link?.[1] ?? '')).userInfo?.emailConfirmed).toBe(true);

    const unknown = await failsWithoutChanges(() => api.confirmEmail('not-a-real-token'));
    expect(unknown).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'unknown confirmation token' });
    expect(trailer(unknown, 'veza-error-field')).toBe('token');
  });

  it('answers a wrong password and an unknown email alike, changing nothing', async () => {
    const account = await newAccount('wrongpw');
    const wrong = await failsWithoutChanges(() =>
      api.authenticate({ email: account.email, password: 'Nope-nope-1' }),
    );
    const unknown = await failsWithoutChanges(() =>
      api.authenticate({ email: 'nobody@example.com', password: STRONG_PASSWORD }),
    );
    for (const error of [wrong, unknown]) {
      expect(error).toMatchObject({ code: status.UNAUTHENTICATED, details: 'invalid email or password' });
    }
    const missing = await failsWithoutChanges(() => api.authenticate({ email: account.email }));
    expect(missing).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'password is required' });
  });

  it('limits a burst of logins per account with RESOURCE_EXHAUSTED, changing nothing', async () => {
    const account = await newAccount('burst');
    const before = await tableDigest(h.sql);
    for (let attempt = 0; attempt < 3; attempt++) {
      const error = await grpcError(api.authenticate({ email: account.email, password: 'Wrong-pass-123' }));
      expect(error.code).toBe(status.UNAUTHENTICATED);
    }
    // Even the right password is refused now.
    const limited = await grpcError(api.authenticate({ email: account.email, password: STRONG_PASSWORD }));
    expect(limited.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(limited.details).toMatch(/^too many login attempts; retry in \d+ s$/);
    expect(Number(trailer(limited, 'veza-retry-after-ms'))).toBeGreaterThan(0);
    expect(await tableDigest(h.sql)).toBe(before);
  });

  it('refuses bad registrations naming the field, changing nothing', async () => {
    const taken = await newAccount('dup');
    const cases: Array<[Record<string, string>, status, string, string]> = [
      [
        { email: taken.email.toUpperCase() },
        status.ALREADY_EXISTS,
        'email',
        'an account with this email already exists',
      ],
      [
        { username: taken.username.toUpperCase() },
        status.ALREADY_EXISTS,
        'username',
        'this username is already taken',
      ],
      [{ email: 'not-an-email' }, status.INVALID_ARGUMENT, 'email', 'email must be a valid email address'],
      [{ email: '' }, status.INVALID_ARGUMENT, 'email', 'email is required'],
      [{ username: 'a' }, status.INVALID_ARGUMENT, 'username', 'username must be 3 to 32 characters'],
      [
        { password: 'short1A!' },
        status.INVALID_ARGUMENT,
        'password',
        'password must be at least 10 characters',
      ],
      [
        { password: 'alllowercaseletters' },
        status.INVALID_ARGUMENT,
        'password',
        'password must mix at least 3',
      ],
      [{ firstName: 'x'.repeat(65) }, status.INVALID_ARGUMENT, 'first_name', 'first_name must be at most 64'],
    ];
    for (const [override, code, field, message] of cases) {
      seq += 1;
      const request = {
        email: `fresh${seq}@example.com`,
        username: `fresh_${seq}`,
        password: STRONG_PASSWORD,
        ...override,
      };
      const error = await failsWithoutChanges(() => api.register(request));
      expect(error.code, JSON.stringify(override)).toBe(code);
      expect(error.details).toContain(message);
      expect(trailer(error, 'veza-error-field')).toBe(field);
    }
  });

  it('rejects expired, foreign, unsigned and HS256 tokens, changing nothing', async () => {
    const account = await newAccount('tokens');
    const session = await login(account.email);
    const { sessionId } = await api.validateToken(session.accessToken);
    // The control plane's own keys: its data directory's secret opens them.
    const silent = createLogger({ level: 'silent' });
    const keys = await loadSigningKeys(h.sql, silent, await loadKeyEncryptionKey(h.config, silent));
    const subject = {
      userId: account.userId,
      sessionId,
      roles: ['listener' as const],
      email: account.email,
      username: account.username,
    };

    const expired = await issueAccessToken(keys, subject, 60, new Date(Date.now() - 3600_000));
    expect((await failsWithoutChanges(() => api.validateToken(expired.token))).details).toBe(
      'invalid token: expired',
    );

    const other = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const claims = {
      sid: sessionId,
      roles: ['listener'],
      email: account.email,
      username: account.username,
      typ: 'access',
    };
    const sign = (header: Record<string, string>, key: CryptoKey | Uint8Array) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'EdDSA', ...header })
        .setSubject(String(account.userId))
        .setJti('jti-foreign-1')
        .setIssuer('veza-live')
        .setAudience('veza-live')
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(key);
    const foreign = await sign({ kid: 'someone-else' }, other.privateKey);
    expect((await failsWithoutChanges(() => api.validateToken(foreign))).details).toBe(
      'invalid token: signed by an unknown key',
    );
    const sameKid = await sign({ kid: keys.kid }, other.privateKey);
    expect((await failsWithoutChanges(() => api.validateToken(sameKid))).details).toBe(
      'invalid token: bad signature',
    );

    const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const payload = {
      ...claims,
      sub: String(account.userId),
      jti: 'jti-none-1',
      iss: 'veza-live',
      aud: 'veza-live',
      iat: now,
      exp: now + 300,
    };
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`;
    const noneError = await failsWithoutChanges(() => api.validateToken(none));
    expect(noneError.code).toBe(status.UNAUTHENTICATED);
    expect(noneError.details).toMatch(/^invalid token/);

    const publicJwk = JSON.stringify(await exportJWK(other.publicKey));
    const hs256 = await new SignJWT(payload)
      .setProtectedHeader({ alg: 'HS256', kid: keys.kid })
      .sign(new TextEncoder().encode(publicJwk));
    expect((await failsWithoutChanges(() => api.validateToken(hs256))).details).toBe(
      'invalid token: algorithm not allowed',
    );
    expect((await failsWithoutChanges(() => api.validateToken('garbage'))).details).toBe(
      'invalid token: not a JWT',
    );

    // None of this touched the real session.
    expect((await api.validateToken(session.accessToken)).valid).toBe(true);
  });
});

describe('caller authentication', () => {
  it('serves GetUserInfo to the user, and to services by API key', async () => {
    const account = await newAccount('info');
    const session = await login(account.email);
    const mine = await api.getUserInfo(0, bearer(session.accessToken));
    expect(mine.userInfo).toMatchObject({ userId: account.userId, email: account.email });

    const byService = await api.getUserInfo(account.userId, metadata({ 'x-api-key': h.apiKey }));
    expect(byService.userInfo?.username).toBe(account.username);
    const noUser = await grpcError(api.getUserInfo(0, metadata({ 'x-api-key': h.apiKey })));
    expect(noUser.code).toBe(status.INVALID_ARGUMENT);
    expect(trailer(noUser, 'veza-error-field')).toBe('user_id');

    const other = await newAccount('info_other');
    const denied = await grpcError(api.getUserInfo(other.userId, bearer(session.accessToken)));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    const missing = await grpcError(api.getUserInfo(999_999, metadata({ 'x-api-key': h.apiKey })));
    expect(missing).toMatchObject({ code: status.NOT_FOUND, details: 'user 999999 not found' });
  });

  it('answers missing or garbage credentials with the seed messages', async () => {
    const expectations: Array<[Metadata, string]> = [
      [new Metadata(), 'missing authorization header'],
      [
        metadata({ authorization: 'Token abc' }),
        'invalid authorization header format: expected "Bearer <token>"',
      ],
      [
        metadata({ authorization: 'Bearer' }),
        'invalid authorization header format: expected "Bearer <token>"',
      ],
      [metadata({ authorization: 'Bearer not.a.jwt' }), 'invalid token'],
      [metadata({ authorization: 'Bearer garbage' }), 'invalid token: not a JWT'],
      [metadata({ 'x-api-key': 'definitely-not-the-key' }), 'invalid API key'],
    ];
    for (const [md, message] of expectations) {
      const error = await failsWithoutChanges(() => api.getUserInfo(0, md));
      expect(error.code).toBe(status.UNAUTHENTICATED);
      expect(error.details).toBe(message);
    }
    const profile = await failsWithoutChanges(() =>
      api.updateProfile({ bio: 'x' }, metadata({ 'x-api-key': h.apiKey })),
    );
    expect(profile).toMatchObject({ code: status.UNAUTHENTICATED, details: 'missing authorization header' });
  });

  it('echoes the request id and logs the call under it', async () => {
    const requestId = 'test-request-0001';
    const headers = await new Promise<Metadata>((resolve, reject) => {
      const call = h.auth.getJwks(
        {},
        metadata({ 'x-request-id': requestId }),
        (error) => error && reject(error),
      );
      call.on('metadata', resolve);
    });
    expect(headers.get('x-request-id')).toEqual([requestId]);
    expect(h.logs.lines).toContainEqual(
      expect.objectContaining({ requestId, method: 'veza.auth.AuthService/GetJwks', code: 'OK' }),
    );
    // A value that does not look like an id is replaced, so logs cannot be forged.
    const error = await grpcError(api.getUserInfo(0, metadata({ 'x-request-id': 'bad id; forged=1' })));
    const echoed = String(error.metadata.get('x-request-id')[0]);
    expect(echoed).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('profile and roles', () => {
  it('stores a valid avatar by content and rejects bad ones, changing nothing', async () => {
    const account = await newAccount('avatar');
    const token = (await login(account.email)).accessToken;
    const updated = await api.updateProfile(
      { displayName: 'DJ Ana', bio: 'techno', avatarData: PNG },
      bearer(token),
    );
    const digest = createHash('sha256').update(PNG).digest('hex');
    const key = `avatars/${account.userId}/${digest}.png`;
    expect(updated.userInfo).toMatchObject({
      displayName: 'DJ Ana',
      bio: 'techno',
      avatarUrl: h.ports.blobs.publicUrl(key),
    });
    expect(await h.ports.blobs.stat(key)).toMatchObject({ size: PNG.length, contentType: 'image/png' });

    const text = await failsWithoutChanges(() =>
      api.updateProfile({ avatarData: Buffer.from('<svg onload=alert(1)>') }, bearer(token)),
    );
    expect(text).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: 'avatar_data must be a PNG, JPEG, WebP or GIF image',
    });
    const huge = Buffer.concat([PNG, Buffer.alloc(h.config.AVATAR_LIMIT_BYTES)]);
    const tooLarge = await failsWithoutChanges(() => api.updateProfile({ avatarData: huge }, bearer(token)));
    expect(tooLarge.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(trailer(tooLarge, 'veza-error-code')).toBe('payload_too_large');
    expect(tooLarge.details).toMatch(/limit is 4096 bytes/);

    const longBio = await failsWithoutChanges(() =>
      api.updateProfile({ bio: 'b'.repeat(501) }, bearer(token)),
    );
    expect(trailer(longBio, 'veza-error-field')).toBe('bio');
  });

  it('lets only an admin change roles, with an audit row', async () => {
    const target = await newAccount('target');
    const plain = await login(target.email);
    const notAdmin = await failsWithoutChanges(() =>
      api.setUserRole({ userId: target.userId, role: 'moderator', granted: true }, bearer(plain.accessToken)),
    );
    expect(notAdmin).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: 'changing roles needs the admin role',
    });

    const admin = await createAdmin(
      { sql: h.sql },
      { email: 'root@example.com', username: 'root', password: STRONG_PASSWORD },
    );
    expect(admin.roles).toEqual(['listener', 'broadcaster', 'moderator', 'admin']);
    const adminToken = (await login('root@example.com')).accessToken;
    const granted = await api.setUserRole(
      { userId: target.userId, role: 'moderator', granted: true },
      bearer(adminToken),
    );
    expect(granted.userInfo?.roles).toEqual(['listener', 'broadcaster', 'moderator']);
    expect(granted.userInfo?.permissions).toContain('chat:moderate');
    const audit = await h.sql<{ actor_id: number; action: string; details: { role: string } }[]>`
      select actor_id, action, details from audit_log where target_type = 'user' and target_id = ${String(target.userId)}`;
    expect(audit).toEqual([
      { actor_id: admin.userId, action: 'role.granted', details: { role: 'moderator', actor: 'user:root' } },
    ]);

    const badRole = await failsWithoutChanges(() =>
      api.setUserRole({ userId: target.userId, role: 'superuser', granted: true }, bearer(adminToken)),
    );
    expect(badRole.code).toBe(status.INVALID_ARGUMENT);
    expect(trailer(badRole, 'veza-error-field')).toBe('role');
    const lastAdmin = await failsWithoutChanges(() =>
      api.setUserRole({ userId: admin.userId, role: 'admin', granted: false }, bearer(adminToken)),
    );
    expect(lastAdmin.code).toBe(status.FAILED_PRECONDITION);
  });

  it('publishes the public signing keys only', async () => {
    const { jwksJson } = await api.getJwks();
    const jwks = JSON.parse(jwksJson) as { keys: Array<Record<string, string>> };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    expect(jwks.keys[0]).not.toHaveProperty('d');
  });
});

describe('StreamUserSessions', () => {
  it('sends a snapshot of open sessions, then live events, and ends when its own session is revoked', async () => {
    const account = await newAccount('streamer');
    const mine = await login(account.email, { deviceId: 'laptop' });
    const phone = await login(account.email, { deviceId: 'phone' });
    const mySession = (await api.validateToken(mine.accessToken)).sessionId;
    const phoneSession = (await api.validateToken(phone.accessToken)).sessionId;

    const reader = api.streamUserSessions(0, bearer(mine.accessToken));
    const snapshot = await reader.waitFor(2);
    expect(snapshot.map((event) => event.eventType)).toEqual(['snapshot', 'snapshot']);
    expect(new Set(snapshot.map((event) => event.sessionId))).toEqual(new Set([mySession, phoneSession]));
    expect(snapshot.find((event) => event.sessionId === phoneSession)?.deviceId).toBe('phone');

    await api.revokeToken({ token: phone.refreshToken });
    const [revoked] = (await reader.waitFor(3)).slice(2);
    expect(revoked).toMatchObject({
      eventType: 'revoked',
      sessionId: phoneSession,
      revoked: true,
      revokedReason: 'logout',
    });

    const tablet = await login(account.email, { deviceId: 'tablet' });
    const [created] = (await reader.waitFor(4)).slice(3);
    expect(created).toMatchObject({ eventType: 'created', deviceId: 'tablet', userId: account.userId });
    await api.refreshToken({ refreshToken: tablet.refreshToken });
    expect((await reader.waitFor(5))[4]?.eventType).toBe('refreshed');

    await api.revokeToken({ token: mine.accessToken });
    await reader.finished();
    expect(reader.messages.at(-1)).toMatchObject({ eventType: 'revoked', sessionId: mySession });
    expect(reader.error).toMatchObject({
      code: status.UNAUTHENTICATED,
      details: 'invalid token: session revoked',
    });
  });

  it("needs the admin role for another user's sessions", async () => {
    const account = await newAccount('nosy');
    const token = (await login(account.email)).accessToken;
    const reader = api.streamUserSessions(1, bearer(token));
    await reader.finished();
    expect(reader.error?.code).toBe(status.PERMISSION_DENIED);
  });
});

describe('server surface', () => {
  it('answers no rpc of the five services UNIMPLEMENTED, whatever its call shape', async () => {
    // An empty message is a valid request of every type; the answers are refusals
    // (unauthenticated, invalid argument, ...) or a deadline, never UNIMPLEMENTED.
    const client = new (makeGenericClientConstructor({}, 'Probe'))(h.address, credentials.createInsecure());
    const same = (value: Buffer) => value;
    const codeOf = (path: string, requestStream: boolean, responseStream: boolean) =>
      new Promise<number>((resolve) => {
        const options = { deadline: Date.now() + 3000 };
        const done = (error: ServiceError | null) => resolve(error?.code ?? status.OK);
        if (!requestStream && !responseStream) {
          client.makeUnaryRequest(path, same, same, Buffer.alloc(0), new Metadata(), options, done);
        } else if (requestStream && !responseStream) {
          client.makeClientStreamRequest(path, same, same, new Metadata(), options, done).end();
        } else {
          const call = requestStream
            ? client.makeBidiStreamRequest(path, same, same, new Metadata(), options)
            : client.makeServerStreamRequest(path, same, same, Buffer.alloc(0), new Metadata(), options);
          call.on('data', () => undefined);
          call.on('error', () => undefined);
          call.on('status', (s: { code: number }) => resolve(s.code));
          if (requestStream) (call as ClientDuplexStream<Buffer, Buffer>).end();
        }
      });
    try {
      const unimplemented: string[] = [];
      const codes = new Set<number>();
      for (const service of [
        AuthServiceService,
        ChatServiceService,
        StreamServiceService,
        AnalyticsServiceService,
        NotificationServiceService,
      ]) {
        for (const method of Object.values(service)) {
          const code = await codeOf(method.path, method.requestStream, method.responseStream);
          codes.add(code);
          if (code === status.UNIMPLEMENTED) unimplemented.push(method.path);
        }
      }
      expect(unimplemented).toEqual([]);
      // The calls did reach the services: the ones that need a user said so.
      expect(codes).toContain(status.UNAUTHENTICATED);
    } finally {
      client.close();
    }
  });

  it('maps an internal failure to "internal server error" and logs the cause', async () => {
    // Break the schema under the running server: registration's insert then fails inside PostgreSQL.
    const before = await tableDigest(h.sql);
    await h.sql`alter table email_outbox rename to email_outbox_hidden`;
    let error: ServiceError;
    try {
      error = await grpcError(
        api.register({ email: 'internal@example.com', username: 'internal_user', password: STRONG_PASSWORD }),
      );
    } finally {
      await h.sql`alter table email_outbox_hidden rename to email_outbox`;
    }
    expect(await tableDigest(h.sql)).toBe(before);
    expect(error).toMatchObject({ code: status.INTERNAL, details: 'internal server error' });
    expect(JSON.stringify(error.metadata.getMap())).not.toContain('email_outbox');
    const logged = h.logs.lines.find(
      (line) => line.msg === 'grpc call failed' && line.method === 'veza.auth.AuthService/Register',
    );
    expect(JSON.stringify(logged)).toContain('email_outbox');
    expect((logged?.err as { stack?: string } | undefined)?.stack).toMatch(/at /);
  });

  it('counts calls and their latency per method and code', async () => {
    await api.getJwks();
    await grpcError(api.getUserInfo(0));
    const text = await metricsRegistry().metrics();
    expect(text).toMatch(
      /veza_grpc_requests_total\{method="veza\.auth\.AuthService\/GetJwks",code="OK"\} [1-9]/,
    );
    expect(text).toMatch(
      /veza_grpc_requests_total\{method="veza\.auth\.AuthService\/GetUserInfo",code="UNAUTHENTICATED"\} [1-9]/,
    );
    expect(text).toMatch(
      /veza_grpc_request_duration_seconds_count\{method="veza\.auth\.AuthService\/GetJwks",code="OK"\} [1-9]/,
    );
  });

  it('reports SERVING for the server and each of the five services', async () => {
    const health = healthClient(h.address);
    try {
      for (const service of ['', ...FIVE_SERVICES]) {
        const response = await unary(health.check.bind(health), { service });
        expect(response, service).toEqual({ status: 'SERVING' });
      }
      const unknown = await grpcError(unary(health.check.bind(health), { service: 'veza.nope.Nope' }));
      expect(unknown.code).toBe(status.NOT_FOUND);
    } finally {
      health.close();
    }
  });

  it('lists the five services through reflection', async () => {
    const require = createRequire(import.meta.url);
    const protoDir = path.resolve(path.dirname(require.resolve('@grpc/reflection')), '../proto');
    const definition = loadSync('grpc/reflection/v1/reflection.proto', {
      includeDirs: [protoDir],
      keepCase: true,
    });
    const ReflectionClient = (loadPackageDefinition(definition).grpc as GrpcObject).reflection as GrpcObject;
    const Constructor = (ReflectionClient.v1 as GrpcObject).ServerReflection as unknown as new (
      address: string,
      creds: ReturnType<typeof credentials.createInsecure>,
    ) => Client & { ServerReflectionInfo(): ClientDuplexStream<object, ReflectionResponse> };
    const client = new Constructor(h.address, credentials.createInsecure());
    try {
      const call = client.ServerReflectionInfo();
      const response = await new Promise<ReflectionResponse>((resolve, reject) => {
        call.on('data', resolve);
        call.on('error', reject);
        call.write({ list_services: '' });
      });
      call.end();
      const names = response.list_services_response?.service.map((service) => service.name) ?? [];
      expect(names).toEqual(expect.arrayContaining([...FIVE_SERVICES, 'grpc.health.v1.Health']));

      // A described service resolves to its file, as grpcurl's "describe" needs.
      const file = await new Promise<ReflectionResponse>((resolve, reject) => {
        const describe = client.ServerReflectionInfo();
        describe.on('data', resolve);
        describe.on('error', reject);
        describe.write({ file_containing_symbol: 'veza.auth.AuthService' });
        describe.end();
      });
      expect(file.file_descriptor_response?.file_descriptor_proto.length).toBeGreaterThan(0);
    } finally {
      client.close();
    }
  });

  it('serves a client built only from the seed proto text', async () => {
    const account = await newAccount('seed');
    const definition = loadSync(path.join(import.meta.dirname, 'grpc/testdata/seed-auth.proto'), {
      keepCase: true,
      longs: String,
      defaults: true,
    });
    const veza = loadPackageDefinition(definition).veza as GrpcObject;
    const AuthService = (veza.auth as GrpcObject).AuthService as unknown as new (
      address: string,
      creds: ReturnType<typeof credentials.createInsecure>,
    ) => SeedAuthClient;
    const client = new AuthService(h.address, credentials.createInsecure());
    try {
      const seedCall = <Res>(method: 'Authenticate' | 'ValidateToken', request: object) =>
        new Promise<Res>((resolve, reject) =>
          client[method](request, (error: ServiceError | null, response: unknown) =>
            error ? reject(error) : resolve(response as Res),
          ),
        );
      const authenticated = await seedCall<SeedAuthResponse>('Authenticate', {
        email: account.email,
        password: STRONG_PASSWORD,
        device_id: 'seed-client',
      });
      expect(authenticated.success).toBe(true);
      expect(authenticated.user_info.user_id).toBe(String(account.userId));
      const validated = await seedCall<SeedValidateResponse>('ValidateToken', {
        token: authenticated.access_token,
      });
      expect(validated.valid).toBe(true);
      expect(validated.user_info).toMatchObject({
        user_id: String(account.userId),
        email: account.email,
        username: account.username,
        roles: ['listener', 'broadcaster'],
      });
      expect(Number(validated.expires_at.seconds)).toBeGreaterThan(Date.now() / 1000);
    } finally {
      client.close();
    }
  });
});

interface SeedUserInfo {
  user_id: string;
  email: string;
  username: string;
  roles: string[];
}
interface SeedAuthResponse {
  success: boolean;
  access_token: string;
  user_info: SeedUserInfo;
}
interface SeedValidateResponse {
  valid: boolean;
  user_info: SeedUserInfo;
  expires_at: { seconds: string };
}
type SeedAuthClient = Client & {
  Authenticate(request: object, callback: (error: ServiceError | null, response: unknown) => void): void;
  ValidateToken(request: object, callback: (error: ServiceError | null, response: unknown) => void): void;
};

interface ReflectionResponse {
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
}

type HealthCallback = (error: ServiceError | null, response: { status: string }) => void;
interface HealthClient extends Client {
  check(request: { service: string }, md: Metadata, options: object, callback: HealthCallback): void;
  watch(request: { service: string }): ClientReadableStream<{ status: string }>;
}

function healthClient(address: string): HealthClient {
  const definition = loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true });
  const Health = makeGenericClientConstructor(
    definition['grpc.health.v1.Health'] as Parameters<typeof makeGenericClientConstructor>[0],
    'Health',
  );
  return new Health(address, credentials.createInsecure()) as unknown as HealthClient;
}

describe('shutdown', () => {
  it('turns health NOT_SERVING, ends open streams and closes promptly', async () => {
    const own = await startHarness();
    const ownApi = authCalls(own.auth);
    const health = healthClient(own.address);
    try {
      await ownApi.register({ email: 'closer@example.com', username: 'closer', password: STRONG_PASSWORD });
      const session = await ownApi.authenticate({ email: 'closer@example.com', password: STRONG_PASSWORD });
      const sessions = ownApi.streamUserSessions(0, bearer(session.accessToken));
      await sessions.waitFor(1);

      const watch = health.watch({ service: 'veza.auth.AuthService' });
      const statuses: string[] = [];
      const notServing = new Promise<void>((resolve) =>
        watch.on('data', (message: { status: string }) => {
          statuses.push(message.status);
          if (message.status === 'NOT_SERVING') {
            watch.cancel();
            resolve();
          }
        }),
      );
      watch.on('error', () => {});
      await new Promise<void>((resolve) => watch.once('data', () => resolve()));

      const closing = own.controlPlane.close();
      await notServing;
      await closing;
      await sessions.finished();
      expect(statuses).toEqual(['SERVING', 'NOT_SERVING']);
      expect(own.controlPlane.health.status()).toBe('NOT_SERVING');
      expect(sessions.error).toBeNull();
      expect(sessions.ended).toBe(true);
    } finally {
      health.close();
      await own.close();
    }
  });
});

describe('per-IP login limit', () => {
  it('keys on the peer address, or on ip_address only for a caller with a valid API key', async () => {
    const own = await startHarness({ LOGIN_LIMIT_PER_IP: '2', LOGIN_LIMIT_PER_ACCOUNT: '100' });
    const ownApi = authCalls(own.auth);
    try {
      const attempt = (ip: string, md?: Metadata) =>
        grpcError(
          ownApi.authenticate({ email: 'ghost@example.com', password: 'Whatever-123', ipAddress: ip }, md),
        );
      // Without a key the made-up addresses are ignored: all three count against 127.0.0.1.
      expect((await attempt('198.51.100.1')).code).toBe(status.UNAUTHENTICATED);
      expect((await attempt('198.51.100.2')).code).toBe(status.UNAUTHENTICATED);
      expect((await attempt('198.51.100.3')).code).toBe(status.RESOURCE_EXHAUSTED);

      const asService = metadata({ 'x-api-key': own.apiKey });
      expect((await attempt('203.0.113.5', asService)).code).toBe(status.UNAUTHENTICATED);
      expect((await attempt('203.0.113.5', asService)).code).toBe(status.UNAUTHENTICATED);
      const limited = await attempt('203.0.113.5', asService);
      expect(limited.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(limited.details).toMatch(/^too many login attempts; retry in \d+ s$/);
      expect((await attempt('203.0.113.6', asService)).code).toBe(status.UNAUTHENTICATED);
      const badIp = await attempt('not-an-ip', asService);
      expect(badIp.code).toBe(status.INVALID_ARGUMENT);
      expect(trailer(badIp, 'veza-error-field')).toBe('ip_address');
    } finally {
      await own.close();
    }
  });
});
