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
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  clusterTestEnv,
  createTestDatabase,
  type S3TestServer,
  startS3TestServer,
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
  exited: Promise<void>;
}

let db: TestDatabase;
let s3: S3TestServer;
let env: Record<string, string>;
const processes: ControlPlaneProcess[] = [];
const clients: ControlPlaneClient[] = [];

/** Starts `app/main.ts` as a control-plane process; resolves once it logged that it is ready. */
function startControlPlane(name: string): Promise<ControlPlaneProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...env,
      VEZA_ROLES: 'control-plane',
      VEZA_NODE_ID: `balancer-${name}-${randomUUID().slice(0, 8)}`,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const served = new Set<string>();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stderr = '';
  child.stderr?.on('data', (data: Buffer) => {
    stderr = (stderr + data.toString()).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) =>
      reject(new Error(`control plane ${name} exited with ${code} before it was ready: ${stderr}`)),
    );
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      let entry: { msg?: string; grpcPort?: number; requestId?: string };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.msg === 'grpc call' && entry.requestId) served.add(entry.requestId);
      if (entry.msg === 'Veza Live is ready' && typeof entry.grpcPort === 'number') {
        const started = { name, child, grpcPort: entry.grpcPort, served, exited };
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
    // Every call started after the bound went to B.
    for (const call of afterKill()) expect(b.served.has(call.requestId)).toBe(true);

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
});
