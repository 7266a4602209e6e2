/**
 * Two control planes behind the edge's gRPC client (control-plane/client/, balancing.ts): each a
 * separate cluster-mode process (`app/main.ts`, VEZA_ROLES=control-plane) on the machine's
 * PostgreSQL, Redis and NATS, sharing one S3 bucket (an in-process S3 server). The client is
 * given both addresses, as CONTROL_PLANE_ADDRESS gives them to an edge.
 *
 * Under a steady load of logins, token validations and chat sends, one control plane is
 * killed (SIGKILL: no drain, connections reset):
 * - every call the client was told succeeded is there afterwards (sessions validate, chat
 *   messages are in PostgreSQL);
 * - idempotent calls (ValidateToken) never fail: a call cut by the kill is retried on the other;
 * - the client stops sending to the dead one within 2 s: no call started later fails;
 * - an upload whose first bytes went to the killed control plane completes on the other.
 *
 * Which control plane served a call is read from its own log ("grpc call" lines carry the
 * request id the client sent). Runs on this machine share NATS and Redis: the namespace is
 * this run's own (clusterTestEnv).
 *
 * Health (client/health-checked.ts): one control plane loses its Redis for real (its connection
 * goes through a TCP proxy the test cuts), turns NOT_SERVING, and within 2 s receives no new call
 * (counted on its own /metrics) while every call keeps succeeding on the other; once Redis is back
 * it is SERVING and takes calls again. Then it is stopped gracefully (SIGTERM) under load: it turns
 * NOT_SERVING first, so no call fails, not even a login (never retried).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  clusterServices,
  clusterTestEnv,
  createTestDatabase,
  freePort,
  type S3TestServer,
  startS3TestServer,
  startTcpProxy,
  type TcpProxy,
  type TestDatabase,
} from '../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../control-plane/client/index.js';
import { AudioChunk, type UploadAudioResponse } from '../proto/gen/veza/stream/stream.js';
import { signUpAndIn, TEST_PASSWORD, type TestAccount } from './testing/index.js';

const SERVICE_KEY = 'balancer-test-service-key-0123456789';
const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The acceptance bound: no call started this long after the kill may fail. */
const STOP_SENDING_WITHIN_MS = 2_000;

interface ControlPlaneProcess {
  name: string;
  child: ChildProcess;
  grpcPort: number;
  /** Request ids of the calls this process logged as served. */
  served: Set<string>;
  /** Its whole-server grpc.health.v1 changes, as it logged them (performance.now() of the line's arrival). */
  health: Array<{ status: string; at: number }>;
  exited: Promise<void>;
  exitCode: Promise<number | null>;
}

let db: TestDatabase;
let s3: S3TestServer;
let env: Record<string, string>;
const processes: ControlPlaneProcess[] = [];
const clients: ControlPlaneClient[] = [];
const proxies: TcpProxy[] = [];

/** Starts `app/main.ts` as a control-plane process; resolves once it logged that it is ready. */
function startControlPlane(
  name: string,
  extraEnv: Record<string, string> = {},
): Promise<ControlPlaneProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...env,
      VEZA_ROLES: 'control-plane',
      VEZA_NODE_ID: `balancer-${name}-${randomUUID().slice(0, 8)}`,
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const served = new Set<string>();
  const health: ControlPlaneProcess['health'] = [];
  const exitCode = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const exited = exitCode.then(() => undefined);
  let stderr = '';
  child.stderr?.on('data', (data: Buffer) => {
    stderr = (stderr + data.toString()).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) =>
      reject(new Error(`control plane ${name} exited with ${code} before it was ready: ${stderr}`)),
    );
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      let entry: { msg?: string; grpcPort?: number; requestId?: string; service?: string; status?: string };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.msg === 'grpc call' && entry.requestId) served.add(entry.requestId);
      if (entry.msg === 'grpc health status changed' && entry.service === '(server)' && entry.status) {
        health.push({ status: entry.status, at: performance.now() });
      }
      if (entry.msg === 'Veza Live is ready' && typeof entry.grpcPort === 'number') {
        const started = { name, child, grpcPort: entry.grpcPort, served, health, exited, exitCode };
        processes.push(started);
        resolve(started);
      }
    });
  });
}

const client = (address: string) => {
  const created = createControlPlaneClient({ address, apiKey: SERVICE_KEY });
  clients.push(created);
  return created;
};

beforeAll(async () => {
  db = await createTestDatabase('cluster');
  s3 = await startS3TestServer();
  env = {
    ...clusterTestEnv('balancer', db.url, SERVICE_KEY),
    ...s3.env,
    LOG_LEVEL: 'info',
    LOGIN_LIMIT_PER_ACCOUNT: '100000',
    CHAT_BURST_PER_5S: '100000',
    CHAT_MESSAGES_PER_MIN: '100000',
  };
}, 60_000);

afterAll(async () => {
  for (const created of clients) created.close();
  for (const { child, exited } of processes) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  }
  for (const proxy of proxies) await proxy.close();
  await s3?.close();
  await db?.drop();
});

interface Outcome {
  kind: 'login' | 'validate' | 'chat';
  requestId: string;
  startedAt: number;
  ok: boolean;
  error?: string;
  messageId?: number;
  token?: string;
}

describe('two control planes behind the edge client', () => {
  it('survives the loss of one under load: nothing acknowledged is lost, reads retry, sending stops within 2 s, an upload completes on the other', async () => {
    const [a, b] = await Promise.all([startControlPlane('a'), startControlPlane('b')]);
    if (!a || !b) throw new Error('control planes did not start');
    const balanced = client(`127.0.0.1:${a.grpcPort},127.0.0.1:${b.grpcPort}`);
    const onlyA = client(`127.0.0.1:${a.grpcPort}`);

    const users: TestAccount[] = [];
    for (let i = 0; i < 4; i += 1) users.push(await signUpAndIn(balanced, 'balancer'));
    const owner = users[0] as TestAccount;
    const room = await balanced.chat.createRoom(
      { name: `balancer ${randomUUID().slice(0, 8)}`, description: '', isPrivate: false },
      { token: owner.token },
    );
    const roomId = room.room?.roomId ?? 0;
    for (const user of users) await balanced.chat.joinRoom({ roomId }, { token: user.token });

    // An upload whose first half goes to control plane A.
    const file = Buffer.alloc(300_000);
    for (let i = 0; i < file.length; i += 1) file[i] = (i * 31) % 251;
    const checksum = createHash('sha256').update(file).digest('hex');
    const created = await onlyA.stream.uploadAudio(
      {
        userId: owner.userId,
        title: 'Resumed elsewhere',
        description: '',
        genre: '',
        metadata: Buffer.from(JSON.stringify({ checksum })),
        duration: 0,
        fileSize: file.length,
        fileFormat: 'wav',
      },
      { token: owner.token },
    );
    const trackId = created.trackId;
    const sendChunks = (via: ControlPlaneClient, offset: number, bytes: Buffer) =>
      new Promise<UploadAudioResponse>((resolve, reject) => {
        const call = via.raw.stream.uploadAudioChunks(
          via.metadataFor({ token: owner.token }),
          { deadline: Date.now() + 20_000 },
          (error, response) => (error ? reject(error) : resolve(response)),
        );
        for (let at = 0, index = 0; at < bytes.length; at += 64 * 1024, index += 1) {
          call.write(
            AudioChunk.fromPartial({
              streamId: trackId,
              chunkIndex: index,
              audioData: bytes.subarray(at, at + 64 * 1024),
              ...(index === 0 ? { offset } : {}),
            }),
          );
        }
        call.end();
      });
    const half = 150_000;
    const first = await sendChunks(onlyA, 0, file.subarray(0, half));
    expect(first.track?.bytesReceived).toBe(half);

    // The steady load: each worker loops a login, a validation and a chat send.
    const outcomes: Outcome[] = [];
    let running = true;
    let sequence = 0;
    async function timed(kind: Outcome['kind'], run: (requestId: string) => Promise<Partial<Outcome>>) {
      const requestId = randomUUID();
      const startedAt = performance.now();
      try {
        outcomes.push({ kind, requestId, startedAt, ok: true, ...(await run(requestId)) });
      } catch (error) {
        outcomes.push({ kind, requestId, startedAt, ok: false, error: (error as Error).message });
      }
    }
    async function worker(user: TestAccount) {
      while (running) {
        await timed('login', async (requestId) => {
          const session = await balanced.auth.authenticate(
            { email: user.email, password: TEST_PASSWORD, deviceId: 'balancer', ipAddress: '127.0.0.1' },
            { requestId, deadlineMs: 5_000 },
          );
          return { token: session.accessToken };
        });
        await timed('validate', async (requestId) => {
          const answer = await balanced.auth.validateToken(
            { token: user.token },
            { requestId, deadlineMs: 5_000 },
          );
          if (!answer.valid) throw new Error('token reported invalid');
          return {};
        });
        sequence += 1;
        const clientMessageId = `lb-${sequence}-${randomUUID().slice(0, 8)}`;
        await timed('chat', async (requestId) => {
          const sent = await balanced.chat.sendMessage(
            {
              roomId,
              content: `load ${clientMessageId}`,
              messageType: '',
              metadata: Buffer.alloc(0),
              replyToId: 0,
              clientMessageId,
            },
            { token: user.token, requestId, deadlineMs: 5_000 },
          );
          return { messageId: sent.message?.messageId ?? 0 };
        });
      }
    }
    const workers = users.map((user) => worker(user));

    // Both control planes take calls before the kill.
    const deadline = Date.now() + 20_000;
    while (a.served.size < 20 || b.served.size < 20) {
      if (Date.now() > deadline) throw new Error(`calls not spread: A ${a.served.size}, B ${b.served.size}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const killedAt = performance.now();
    a.child.kill('SIGKILL');
    await a.exited;
    // Load keeps running on B alone until 3 s of it follow the 2 s bound.
    const afterKill = () => outcomes.filter((o) => o.startedAt > killedAt + STOP_SENDING_WITHIN_MS);
    while (afterKill().length < 60 || performance.now() < killedAt + STOP_SENDING_WITHIN_MS + 3_000) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    running = false;
    await Promise.all(workers);

    const failed = outcomes.filter((o) => !o.ok);
    const lastFailureMs = failed.length === 0 ? 0 : Math.max(...failed.map((o) => o.startedAt)) - killedAt;
    console.info(
      `balancer: ${outcomes.length} calls (${outcomes.filter((o) => o.startedAt > killedAt).length} after the kill), ` +
        `${failed.length} failed (${failed.map((o) => `${o.kind}: ${o.error}`).join('; ') || 'none'}); ` +
        `last failed call started ${Math.round(lastFailureMs)} ms after the kill; ` +
        `A served ${a.served.size}, B served ${b.served.size}`,
    );
    // Idempotent calls are retried on the other control plane: none fails.
    expect(failed.filter((o) => o.kind === 'validate')).toEqual([]);
    // Only calls cut by the kill may fail, and they say the control plane was unavailable.
    for (const failure of failed) {
      expect(failure.startedAt - killedAt).toBeLessThan(STOP_SENDING_WITHIN_MS);
      expect(failure.error).toMatch(/control plane (is unavailable|did not answer in time)/);
    }
    // Every call started after the bound went to B. B's log lines reach us through its stdout
    // pipe, possibly after the call's answer: wait (bounded) for the last ones to be read.
    const unserved = () => afterKill().filter((call) => !b.served.has(call.requestId));
    const logDeadline = Date.now() + 5_000;
    while (unserved().length > 0 && Date.now() < logDeadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(unserved().map((call) => `${call.kind} ${call.requestId}`)).toEqual([]);

    // Nothing acknowledged is lost: every acked chat message is in PostgreSQL, every login's session validates.
    const acked = outcomes.filter((o) => o.kind === 'chat' && o.ok).map((o) => o.messageId ?? 0);
    expect(acked.length).toBeGreaterThan(20);
    const stored = await db.sql<
      { id: number }[]
    >`select id from chat_messages where id = any(${acked}::bigint[])`;
    expect(stored.map((row) => Number(row.id)).sort()).toEqual([...acked].sort());
    for (const login of outcomes.filter((o) => o.kind === 'login' && o.ok)) {
      const answer = await balanced.auth.validateToken({ token: login.token ?? '' });
      expect(answer.valid).toBe(true);
    }

    // The upload started on A completes on B, from the committed offset.
    const second = await sendChunks(balanced, half, file.subarray(half));
    expect(second.track).toMatchObject({ bytesReceived: file.length, checksum });
    const [track] = await db.sql<{ source_key: string; source_checksum: string }[]>`
      select source_key, source_checksum from tracks where id = ${trackId}`;
    expect(track).toEqual({ source_key: `uploads/${trackId}/source`, source_checksum: checksum });
    expect(await s3.keys(`uploads/${trackId}/`)).toEqual([`uploads/${trackId}/source`]);
    expect(await s3.keys(`staging/${trackId}/`)).toEqual([]);
  }, 120_000);
  it('moves calls away from a control plane that is not SERVING (its Redis gone, then draining at shutdown) within 2 s, and back once it serves', async () => {
    const redis = new URL(clusterServices.redisUrl);
    const proxy = await startTcpProxy({ host: redis.hostname, port: Number(redis.port || 6379) });
    proxies.push(proxy);
    const [metricsA, metricsB] = await Promise.all([freePort(), freePort()]);
    // Probes every 250 ms, so the outage shows quickly; the 2 s bound is counted from NOT_SERVING.
    const probes = { HEALTH_PROBE_INTERVAL_MS: '250', HEALTH_PROBE_TIMEOUT_MS: '250' };
    const [a, b] = await Promise.all([
      startControlPlane('health-a', {
        ...probes,
        REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
        CONTROL_HTTP_PORT: String(metricsA),
      }),
      startControlPlane('health-b', { ...probes, CONTROL_HTTP_PORT: String(metricsB) }),
    ]);
    if (!a || !b) throw new Error('control planes did not start');
    const balanced = client(`127.0.0.1:${a.grpcPort},127.0.0.1:${b.grpcPort}`);
    const user = await signUpAndIn(balanced, 'health');

    /** ValidateToken calls a control plane handled, from its own /metrics. */
    const validations = async (metricsPort: number) => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      let total = 0;
      for (const line of text.split('\n')) {
        if (line.startsWith('veza_grpc_requests_total{') && line.includes('ValidateToken')) {
          total += Number(line.slice(line.lastIndexOf(' ') + 1));
        }
      }
      return total;
    };

    // A steady load of validations (retried when cut) and logins (never retried).
    const failures: Array<{ startedAt: number; error: string }> = [];
    let running = true;
    const loop = async () => {
      while (running) {
        const startedAt = performance.now();
        try {
          // A short deadline: a validation A took just before its probe saw Redis gone hangs there,
          // and its metric counts it when it ends; it must have ended by the time A is measured.
          const answer = await balanced.auth.validateToken({ token: user.token }, { deadlineMs: 1_000 });
          if (!answer.valid) throw new Error('token reported invalid');
          await balanced.auth.authenticate(
            { email: user.email, password: TEST_PASSWORD, deviceId: 'health', ipAddress: '127.0.0.1' },
            { deadlineMs: 5_000 },
          );
        } catch (error) {
          failures.push({ startedAt, error: (error as Error).message });
          // A failure can be immediate: let timers and I/O run before the next call.
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    };
    const loops = [loop(), loop()];
    let cut = false;
    try {
      const bothServe = async () => (await validations(metricsA)) > 5 && (await validations(metricsB)) > 5;
      await expect.poll(bothServe, { timeout: 20_000, interval: 100 }).toBe(true);

      // A loses Redis: it turns NOT_SERVING, and 2 s later receives nothing more.
      await proxy.cut();
      cut = true;
      await expect.poll(() => a.health.at(-1)?.status, { timeout: 10_000, interval: 50 }).toBe('NOT_SERVING');
      const notServingAt = a.health.at(-1)?.at ?? 0;
      await new Promise((resolve) =>
        setTimeout(resolve, Math.max(0, notServingAt + 2_000 - performance.now())),
      );
      const settled = await validations(metricsA);
      const onB = await validations(metricsB);
      await expect
        .poll(() => validations(metricsB), { timeout: 10_000, interval: 100 })
        .toBeGreaterThan(onB + 20);
      expect(await validations(metricsA)).toBe(settled);
      // Calls that reached A before its probe saw Redis gone may fail (it answers "store unavailable");
      // none started after it said NOT_SERVING (with 0.5 s for its log line to arrive here).
      const failedLate = (since: number) =>
        failures.filter((failure) => failure.startedAt > since).map((failure) => failure.error);
      expect(failedLate(notServingAt + 500)).toEqual([]);

      // Redis is back: A says SERVING and takes calls again.
      await proxy.restore();
      cut = false;
      await expect.poll(() => a.health.at(-1)?.status, { timeout: 15_000, interval: 50 }).toBe('SERVING');
      await expect
        .poll(() => validations(metricsA), { timeout: 10_000, interval: 100 })
        .toBeGreaterThan(settled);

      // A stops gracefully under load: NOT_SERVING first, so no call fails, and it exits cleanly.
      const stoppedAt = performance.now();
      a.child.kill('SIGTERM');
      expect(await a.exitCode).toBe(0);
      const afterStop = await validations(metricsB);
      await expect
        .poll(() => validations(metricsB), { timeout: 10_000, interval: 100 })
        .toBeGreaterThan(afterStop + 20);
      console.info(
        `balancer health: A took ${settled} validations until 2 s after NOT_SERVING, none after; ` +
          `failed calls: ${failures.map((failure) => `${Math.round(failure.startedAt - notServingAt)} ms: ${failure.error}`).join('; ') || 'none'}`,
      );
      expect(failedLate(stoppedAt)).toEqual([]);
    } finally {
      running = false;
      await Promise.all(loops);
      if (cut) await proxy.restore();
    }
  }, 120_000);
});
