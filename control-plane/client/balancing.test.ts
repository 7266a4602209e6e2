/**
 * The client's balancing and retry policy against bare grpc-js servers that stand in for
 * control planes whose answers the test decides (an UNAVAILABLE first attempt, a server that
 * is stopped, a health status set by hand on the control plane's own health service), so each
 * behaviour is seen deterministically: what is retried, what is not, that calls move to the
 * live server when one goes away, and away from one that is not SERVING.
 */
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { VezaError } from '../../common/contracts/index.js';
import { loadConfig, parseControlPlaneTarget } from '../../common/index.js';
import {
  type AuthenticateResponse,
  AuthServiceService,
  type ValidateTokenResponse,
} from '../../proto/gen/veza/auth/auth.js';
import { createHealthService, type HealthControl } from '../grpc/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from './index.js';

interface FakeControlPlane {
  port: number;
  /** Attempts seen per method, with the `grpc-previous-rpc-attempts` header of each. */
  attempts: Record<string, number[]>;
  /** grpc.health.v1 of this server ('' SERVING at start). */
  health: HealthControl;
  stop(): Promise<void>;
}

type Behaviour = (method: string, attempt: number) => 'ok' | 'unavailable';

const opened: Array<{ stop(): Promise<void> }> = [];
const clients: ControlPlaneClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const server of opened.splice(0)) await server.stop();
});

async function fakeControlPlane(behaviour: Behaviour): Promise<FakeControlPlane> {
  const server = new Server();
  const attempts: Record<string, number[]> = {};
  const handler =
    <Res>(method: string, response: Res) =>
    (call: ServerUnaryCall<unknown, Res>, callback: sendUnaryData<Res>) => {
      const previous = Number(call.metadata.get('grpc-previous-rpc-attempts')[0] ?? 0);
      const seen = attempts[method] ?? [];
      seen.push(previous);
      attempts[method] = seen;
      if (behaviour(method, seen.length) === 'unavailable') {
        callback({ code: status.UNAVAILABLE, details: 'test: not now' });
      } else {
        callback(null, response);
      }
    };
  server.addService(AuthServiceService, {
    validateToken: handler<Partial<ValidateTokenResponse>>('ValidateToken', { valid: true }),
    authenticate: handler<Partial<AuthenticateResponse>>('Authenticate', { accessToken: 'issued' }),
  });
  const health = createHealthService([]);
  server.addService(health.definition, health.handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  const fake = {
    port,
    attempts,
    health: health.control,
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
  opened.push({ stop: async () => server.forceShutdown() });
  return fake;
}

const clientOf = (address: string) => {
  const client = createControlPlaneClient({ address, apiKey: 'balancing-test-key-0123456789' });
  clients.push(client);
  return client;
};

describe('CONTROL_PLANE_ADDRESS', () => {
  it('reads one address, a list of IPs, or a dns: name, and refuses a list of host names', () => {
    expect(parseControlPlaneTarget('cp.internal:9090').channelTarget).toBe('cp.internal:9090');
    expect(parseControlPlaneTarget('10.0.0.1:9090, 10.0.0.2:9090')).toEqual({
      channelTarget: 'ipv4:10.0.0.1:9090,10.0.0.2:9090',
      addresses: ['10.0.0.1:9090', '10.0.0.2:9090'],
    });
    expect(parseControlPlaneTarget('[::1]:9090,[::2]:9091').channelTarget).toBe('ipv6:[::1]:9090,[::2]:9091');
    expect(parseControlPlaneTarget('dns:///control-plane:9090').channelTarget).toBe(
      'dns:///control-plane:9090',
    );
    expect(() => parseControlPlaneTarget('cp1:9090,cp2:9090')).toThrow(/one DNS name/);
    expect(() => loadConfig({ CONTROL_PLANE_ADDRESS: 'cp1:9090,cp2:9090' })).toThrow(
      /CONTROL_PLANE_ADDRESS=.*: a list of control planes must hold IP addresses/,
    );
    expect(() => loadConfig({ CONTROL_PLANE_ADDRESS: '10.0.0.1' })).toThrow(/CONTROL_PLANE_ADDRESS/);
  });
});

describe('the balanced client', () => {
  it('retries an idempotent call that met UNAVAILABLE, and never a login', async () => {
    const plane = await fakeControlPlane((method, attempt) =>
      method === 'Authenticate' || attempt === 1 ? 'unavailable' : 'ok',
    );
    const client = clientOf(`127.0.0.1:${plane.port}`);

    expect((await client.auth.validateToken({ token: 't' })).valid).toBe(true);
    expect(plane.attempts.ValidateToken).toEqual([0, 1]);

    await expect(
      client.auth.authenticate({ email: 'a@b.c', password: 'p', deviceId: '', ipAddress: '' }),
    ).rejects.toMatchObject({ code: 'unavailable' });
    expect(plane.attempts.Authenticate).toEqual([0]);
  });

  it('spreads calls over every listed control plane, and only over the live one once the other stops', async () => {
    const [a, b] = await Promise.all([fakeControlPlane(() => 'ok'), fakeControlPlane(() => 'ok')]);
    if (!a || !b) throw new Error('servers did not start');
    const client = clientOf(`127.0.0.1:${a.port},127.0.0.1:${b.port}`);
    for (let i = 0; i < 20; i += 1) await client.auth.validateToken({ token: 't' });
    // round_robin: both took a share (the first calls may all go to the first ready one).
    expect(a.attempts.ValidateToken?.length ?? 0).toBeGreaterThan(0);
    expect(b.attempts.ValidateToken?.length ?? 0).toBeGreaterThan(0);

    await a.stop();
    const before = a.attempts.ValidateToken?.length ?? 0;
    const started = performance.now();
    for (let i = 0; i < 20; i += 1) await client.auth.validateToken({ token: 't' });
    expect(a.attempts.ValidateToken?.length ?? 0).toBe(before);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe('health-aware balancing', () => {
  const served = (plane: FakeControlPlane) => plane.attempts.ValidateToken?.length ?? 0;
  /** Two control planes behind one client, each having served a call. */
  const twoServing = async () => {
    const [a, b] = await Promise.all([fakeControlPlane(() => 'ok'), fakeControlPlane(() => 'ok')]);
    if (!a || !b) throw new Error('servers did not start');
    const client = clientOf(`127.0.0.1:${a.port},127.0.0.1:${b.port}`);
    await expect
      .poll(
        async () => {
          await client.auth.validateToken({ token: 't' });
          return served(a) > 0 && served(b) > 0;
        },
        { timeout: 10_000, interval: 0 },
      )
      .toBe(true);
    return { a, b, client };
  };

  it('stops sending to a control plane that turns NOT_SERVING within 2 s, and sends to it again once SERVING', async () => {
    const { a, client } = await twoServing();

    a.health.set('NOT_SERVING');
    const flipped = performance.now();
    // Every call keeps succeeding (on B); the last one A receives comes within the bound.
    let lastOnA = flipped;
    while (performance.now() - flipped < 3_000) {
      const before = served(a);
      expect((await client.auth.validateToken({ token: 't' })).valid).toBe(true);
      if (served(a) > before) lastOnA = performance.now();
    }
    expect(lastOnA - flipped).toBeLessThan(2_000);
    const whileDown = served(a);
    for (let i = 0; i < 20; i += 1) await client.auth.validateToken({ token: 't' });
    expect(served(a)).toBe(whileDown);

    a.health.set('SERVING');
    await expect
      .poll(
        async () => {
          await client.auth.validateToken({ token: 't' });
          return served(a) > whileDown;
        },
        { timeout: 5_000, interval: 0 },
      )
      .toBe(true);
  });

  it('sends to the connected ones when none is SERVING, and fails a call at once naming every address and its state when none is connected', async () => {
    const { a, b, client } = await twoServing();
    // NOT_SERVING says a dependency is down, not that every call fails: each control plane
    // still answers what it can (a real one refuses what needs the missing dependency itself).
    a.health.set('NOT_SERVING');
    b.health.set('NOT_SERVING');
    const before = served(a) + served(b);
    for (let i = 0; i < 10; i += 1)
      expect((await client.auth.validateToken({ token: 't' })).valid).toBe(true);
    expect(served(a) + served(b)).toBe(before + 10);

    await Promise.all([a.stop(), b.stop()]);
    const refused = async () => {
      const started = performance.now();
      const error = await client.auth.validateToken({ token: 't' }).then(
        () => null,
        (thrown: unknown) => thrown as VezaError,
      );
      return { error, ms: performance.now() - started };
    };
    await expect
      .poll(async () => (await refused()).error?.message, { timeout: 5_000 })
      .toMatch(/none can take calls/);
    const { error, ms } = await refused();
    // Fast: no waiting for a connection (the retry policy's three attempts included).
    expect(ms).toBeLessThan(1_000);
    expect(error).toMatchObject({ code: 'unavailable', details: { reason: 'control_plane_down' } });
    const details = (error?.cause as { details?: string } | undefined)?.details ?? '';
    expect(details).toMatch(/^no control plane can take the call: /);
    for (const plane of [a, b]) {
      expect(details).toMatch(
        new RegExp(`127\\.0\\.0\\.1:${plane.port} (TRANSIENT_FAILURE|CONNECTING|IDLE)`),
      );
    }
  });
});
