/**
 * The control-plane client against a real control plane (gRPC on port 0, a fresh
 * embedded PostgreSQL database, the standalone ports).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { VezaError } from '../../common/contracts/index.js';
import { loadConfig } from '../../common/index.js';
import { createPorts, type Ports } from '../../common/ports/index.js';
import { createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import type {
  AuthenticateRequest,
  AuthenticateResponse,
  UserSession,
} from '../../proto/gen/veza/auth/auth.js';
import { type ControlPlane, startControlPlane } from '../index.js';
import {
  type ControlPlaneClient,
  createControlPlaneClient,
  type ServerStream,
  type UnaryMethod,
} from './index.js';

const PASSWORD = 'Correct-Horse-42';

let dataDir: string;
let db: TestDatabase;
let ports: Ports;
let controlPlane: ControlPlane;
let client: ControlPlaneClient;
let address: string;
const logLines: Array<Record<string, unknown>> = [];
let seq = 0;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'veza-cp-client-'));
  const config = loadConfig({
    VEZA_DATA_DIR: dataDir,
    GRPC_HOST: '127.0.0.1',
    GRPC_PORT: '0',
    PUBLIC_URL: 'http://veza.test',
    REGISTER_LIMIT_PER_IP: '2',
  });
  const log = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) logLines.push(JSON.parse(line));
        done();
      },
    }),
  );
  db = await createTestDatabase('embedded');
  ports = await createPorts(config, { sql: db.sql, log });
  const apiKey = randomBytes(24).toString('base64url');
  controlPlane = await startControlPlane({ config, sql: db.sql, ports, log, apiKey });
  address = `127.0.0.1:${controlPlane.port}`;
  client = createControlPlaneClient({ address, apiKey });
});

afterAll(async () => {
  client?.close();
  await controlPlane?.close();
  await ports?.close();
  await db?.drop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** Registers from a fresh client IP each time, so the per-IP registration limit is not shared. */
async function register(prefix = 'client') {
  seq += 1;
  const email = `${prefix}${seq}@example.com`;
  const response = await client.auth.register(
    { email, password: PASSWORD, username: `${prefix}${seq}`, firstName: '', lastName: '' },
    { clientIp: `198.51.100.${seq}` },
  );
  return { email, user: response.userInfo! };
}

async function rejection(promise: Promise<unknown>): Promise<VezaError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(VezaError);
    return error as VezaError;
  }
  throw new Error('expected the call to fail');
}

const login = (email: string) =>
  client.auth.authenticate({ email, password: PASSWORD, deviceId: 'test', ipAddress: '203.0.113.7' });

describe('createControlPlaneClient', () => {
  it('types every unary and server-streaming rpc, and leaves out client and bidi streams', () => {
    expectTypeOf(client.auth.authenticate).toEqualTypeOf<
      UnaryMethod<AuthenticateRequest, AuthenticateResponse>
    >();
    expectTypeOf(client.auth.streamUserSessions).returns.toEqualTypeOf<ServerStream<UserSession>>();
    // @ts-expect-error bidi streams are not part of the promise view
    expect(client.chat.chatStream).toBeUndefined();
    // @ts-expect-error nor are client streams
    expect(client.stream.uploadAudioChunks).toBeUndefined();
    expectTypeOf(client.stream.streamAudio).returns.toExtend<AsyncIterable<unknown>>();
    expect(typeof client.chat.sendMessage).toBe('function');
    expect(typeof client.stream.startStream).toBe('function');
    expect('chatStream' in client.chat).toBe(false);
  });

  it('calls unary rpcs with the service key and a user token', async () => {
    const { email, user } = await register();
    expect(user.email).toBe(email);
    const session = await login(email);
    expect(session.accessToken).toMatch(/^ey/);
    const validated = await client.auth.validateToken({ token: session.accessToken });
    expect(validated.userInfo?.userId).toBe(user.userId);
    // UpdateProfile acts for the user of the bearer token.
    const updated = await client.auth.updateProfile(
      { displayName: 'Client Test', avatarData: Buffer.alloc(0) },
      { token: session.accessToken },
    );
    expect(updated.userInfo?.displayName).toBe('Client Test');
  });

  it('returns the VezaError the service threw, field and retry delay included', async () => {
    const { email } = await register();
    const duplicate = await rejection(
      client.auth.register(
        { email, password: PASSWORD, username: `other${seq}`, firstName: '', lastName: '' },
        { clientIp: '198.51.100.250' },
      ),
    );
    expect(duplicate.code).toBe('already_exists');
    expect(duplicate.details.field).toBe('email');

    const wrong = await rejection(
      client.auth.authenticate({ email, password: 'Wrong-Horse-42', deviceId: '', ipAddress: '' }),
    );
    expect(wrong).toMatchObject({ code: 'unauthenticated', message: 'invalid email or password' });

    const noToken = await rejection(client.auth.updateProfile({ avatarData: Buffer.alloc(0) }));
    expect(noToken.code).toBe('unauthenticated');
  });

  it('sends the end client IP as x-forwarded-for, which per-IP limits count', async () => {
    const ip = '192.0.2.77';
    const attempt = (n: number) =>
      client.auth.register(
        {
          email: `ip${n}@example.com`,
          password: PASSWORD,
          username: `ipuser${n}`,
          firstName: '',
          lastName: '',
        },
        { clientIp: ip },
      );
    await attempt(1);
    await attempt(2);
    const limited = await rejection(attempt(3));
    expect(limited.code).toBe('resource_exhausted');
    expect(limited.details.retryAfterMs).toBeGreaterThan(0);
    // Another client IP through the same edge is not affected.
    await expect(
      client.auth.register(
        { email: 'ip4@example.com', password: PASSWORD, username: 'ipuser4', firstName: '', lastName: '' },
        { clientIp: '192.0.2.78' },
      ),
    ).resolves.toBeDefined();
  });

  it('propagates the request id to the control plane logs', async () => {
    const requestId = `client-test-${randomBytes(6).toString('hex')}`;
    await client.auth.getJwks({}, { requestId });
    expect(logLines.some((line) => line.requestId === requestId)).toBe(true);
  });

  it('refuses a wrong service key', async () => {
    const impostor = createControlPlaneClient({ address, apiKey: 'not-the-key-0123456789' });
    try {
      const error = await rejection(impostor.auth.getJwks({}));
      expect(error).toMatchObject({ code: 'unauthenticated', message: 'invalid API key' });
    } finally {
      impostor.close();
    }
  });

  it('applies deadlines and cancellation', async () => {
    const { email } = await register();
    // Password hashing alone takes longer than a millisecond.
    const late = await rejection(
      client.auth.authenticate({ email, password: PASSWORD, deviceId: '', ipAddress: '' }, { deadlineMs: 1 }),
    );
    expect(late.code).toBe('unavailable');

    const controller = new AbortController();
    const pending = client.auth.authenticate(
      { email, password: PASSWORD, deviceId: '', ipAddress: '' },
      { signal: controller.signal },
    );
    controller.abort();
    const cancelled = await rejection(pending);
    expect(cancelled).toMatchObject({
      code: 'unavailable',
      message: expect.stringMatching(/cancelled by the caller/),
    });
    expect((await rejection(client.auth.getJwks({}, { signal: controller.signal }))).code).toBe(
      'unavailable',
    );
  });

  it('reports grpc.health.v1 status per service', async () => {
    await expect(client.health('veza.auth.AuthService')).resolves.toBe('SERVING');
    await expect(client.health('')).resolves.toBe('SERVING');
    expect((await rejection(client.health('veza.nope.NoService'))).code).toBe('not_found');
  });

  it('streams server-streaming rpcs as async iterables, ending on cancel', async () => {
    const { email } = await register();
    const first = await login(email);
    const stream = client.auth.streamUserSessions({ userId: 0 }, { token: first.accessToken });
    const seen: UserSession[] = [];
    for await (const event of stream) {
      seen.push(event);
      // The snapshot lists the open session; a second login arrives live.
      if (seen.length === 1) await login(email);
      if (seen.length === 2) stream.cancel();
    }
    expect(seen.map((event) => event.eventType)).toEqual(['snapshot', 'created']);
    expect(seen[0]?.sessionId).not.toBe(seen[1]?.sessionId);
  });

  it('maps stream failures to VezaErrors', async () => {
    const stream = client.auth.streamUserSessions({ userId: 0 }, { token: 'not-a-token' });
    const iterate = async () => {
      for await (const _ of stream) {
        // no events expected
      }
    };
    expect((await rejection(iterate())).code).toBe('unauthenticated');
  });
});
