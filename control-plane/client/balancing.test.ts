/**
 * The client's balancing and retry policy against bare grpc-js servers that stand in for
 * control planes whose answers the test decides (an UNAVAILABLE first attempt, a server that
 * is stopped), so each behaviour is seen deterministically: what is retried, what is not, and
 * that calls move to the live server when one goes away.
 */
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, parseControlPlaneTarget } from '../../common/index.js';
import {
  type AuthenticateResponse,
  AuthServiceService,
  type ValidateTokenResponse,
} from '../../proto/gen/veza/auth/auth.js';
import { type ControlPlaneClient, createControlPlaneClient } from './index.js';

interface FakeControlPlane {
  port: number;
  /** Attempts seen per method, with the `grpc-previous-rpc-attempts` header of each. */
  attempts: Record<string, number[]>;
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
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  const fake = {
    port,
    attempts,
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
