/**
 * The whole platform as `npm start` runs it (standalone, a real child process: its roles on
 * threads under a supervisor by default, or on one loop with VEZA_THREADS=false) and as a
 * cluster deployment runs it (separate control-plane and edge processes' worth of wiring on the
 * machine's PostgreSQL, Redis and NATS).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger, loadConfig } from '../common/index.js';
import {
  clusterServices,
  createTestDatabase,
  freePort,
  type TestDatabase,
  testNamespace,
} from '../common/testing/index.js';
import { type Platform, startPlatform } from './platform.js';

const ROOT = path.resolve(import.meta.dirname, '..');

interface RunningPlatform {
  child: ChildProcess;
  httpPort: number;
  exited: Promise<number | null>;
  /** Log lines at level error (50) or above, so far. */
  errors: string[];
  /** Every log line so far, parsed. */
  lines: Array<Record<string, unknown>>;
  /** The first line (so far or to come) that `matches`: a line is written after its response is sent. */
  line(matches: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

/** The platforms this file started, so a failed test does not leave one running. */
const started: RunningPlatform[] = [];

async function stopLeftovers(): Promise<void> {
  for (const platform of started) {
    if (platform.child.exitCode !== null || platform.child.signalCode !== null) continue;
    platform.child.kill('SIGTERM');
    await platform.exited;
  }
}

/** Starts `node app/main.ts` like `npm start` does and waits for its "ready" log line. */
async function startProcess(env: Record<string, string>): Promise<RunningPlatform> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stderr: string[] = [];
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  const lines = createInterface({ input: child.stdout! });
  const errors: string[] = [];
  const parsed: Array<Record<string, unknown>> = [];
  const waiting = new Set<(line: Record<string, unknown>) => void>();
  lines.on('line', (line) => {
    if (/"level":(5|6)0/.test(line)) errors.push(line);
    // Every line is one JSON object, whichever thread wrote it: lines never interleave.
    const entry = JSON.parse(line) as Record<string, unknown>;
    parsed.push(entry);
    for (const wait of waiting) wait(entry);
  });
  const line = (matches: (line: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolve) => {
      const found = parsed.find(matches);
      if (found) return resolve(found);
      const wait = (entry: Record<string, unknown>) => {
        if (!matches(entry)) return;
        waiting.delete(wait);
        resolve(entry);
      };
      waiting.add(wait);
    });
  const httpPort = await new Promise<number>((resolve, reject) => {
    lines.on('line', (line) => {
      if (!line.includes('Veza Live is ready')) return;
      resolve((JSON.parse(line) as { httpPort: number }).httpPort);
    });
    exited.then((code) => reject(new Error(`platform exited with ${code} before ready: ${stderr.join('')}`)));
  });
  const platform = { child, httpPort, exited, errors, lines: parsed, line };
  started.push(platform);
  return platform;
}

async function post(
  base: string,
  route: string,
  body: unknown,
  token?: string,
  headers: Record<string, string> = {},
) {
  const response = await fetch(`${base}${route}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    body: (await response.json().catch(() => null)) as Record<string, unknown>,
  };
}

async function validate(base: string, token: string) {
  const response = await fetch(`${base}/auth/validate`, { headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const account = { email: 'ada@example.com', password: 'Analytical-Engine-1843', username: 'ada' };

describe('standalone mode, as npm start runs it', () => {
  const dataDirs: string[] = [];
  afterAll(async () => {
    // Before their data directories go: a platform of a failed test is still running on one.
    await stopLeftovers();
    for (const dir of dataDirs) await rm(dir, { recursive: true, force: true });
  });

  it('serves register, login and validate, exits 0 on SIGTERM, and keeps everything across a restart', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'veza-standalone-'));
    dataDirs.push(dataDir);
    const env = {
      VEZA_DATA_DIR: dataDir,
      HTTP_PORT: '0',
      GRPC_PORT: '0',
      EMBEDDED_PG_PORT: String(await freePort()),
      // Every role, as npm start runs it: the drain must close them all before PostgreSQL.
      MEDIA_WORKERS: '1',
      WORKER_CONCURRENCY: '1',
      LOG_LEVEL: 'info',
    };

    const first = await startProcess(env);
    const ready = first.lines.find((line) => line.msg === 'Veza Live is ready');
    expect(ready?.loops).toEqual([
      { thread: 'control-plane', roles: ['control-plane', 'worker'] },
      { thread: 'media', roles: ['media'] },
      { thread: 'edge', roles: ['signaling'] },
    ]);
    const base = `http://127.0.0.1:${first.httpPort}`;
    expect((await post(base, '/auth/register', account)).status).toBe(201);
    const requestId = 'platform-test-login-1';
    const login = await post(
      base,
      '/auth/login',
      { email: account.email, password: account.password },
      undefined,
      { 'x-request-id': requestId },
    );
    expect(login.status).toBe(200);
    // One request across two threads, followed by its request id; each line names its thread.
    expect(await first.line((line) => line.requestId === requestId && line.msg === 'request')).toMatchObject({
      thread: 'edge',
      route: '/auth/login',
      status: 200,
    });
    expect(
      await first.line((line) => line.requestId === requestId && line.msg === 'grpc call'),
    ).toMatchObject({
      thread: 'control-plane',
      role: 'control-plane',
      method: 'veza.auth.AuthService/Authenticate',
      code: 'OK',
    });
    const checked = await validate(base, String(login.body.access_token));
    expect(checked.status).toBe(200);
    expect(checked.body.user).toMatchObject({ email: account.email, roles: ['listener', 'broadcaster'] });
    expect((checked.body.user as { permissions: string[] }).permissions).toContain('stream:publish');

    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(first.errors).toEqual([]);
    // Zero-config: the signing keys secret was generated into the data directory, owner-only.
    const secretFile = path.join(dataDir, 'secrets', 'signing-keys.key');
    expect((await stat(secretFile)).mode & 0o777).toBe(0o600);

    // Same data directory: the account, the session and the signing key survive.
    const second = await startProcess(env);
    const base2 = `http://127.0.0.1:${second.httpPort}`;
    expect((await validate(base2, String(login.body.access_token))).status).toBe(200);
    const again = await post(base2, '/auth/login', { email: account.email, password: account.password });
    expect(again.status).toBe(200);
    const refreshed = await post(base2, '/auth/refresh', { refresh_token: login.body.refresh_token });
    expect(refreshed.status).toBe(200);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    expect(second.errors).toEqual([]);
  }, 90_000);

  it('runs every role on the one main loop with VEZA_THREADS=false, and exits 0 on SIGTERM', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'veza-single-loop-'));
    dataDirs.push(dataDir);
    const platform = await startProcess({
      VEZA_DATA_DIR: dataDir,
      VEZA_THREADS: 'false',
      HTTP_PORT: '0',
      GRPC_PORT: '0',
      EMBEDDED_PG_PORT: String(await freePort()),
      MEDIA_WORKERS: '1',
      WORKER_CONCURRENCY: '1',
      LOG_LEVEL: 'info',
    });
    const ready = platform.lines.find((line) => line.msg === 'Veza Live is ready');
    expect(ready?.loops).toEqual([
      { thread: 'main', roles: ['control-plane', 'signaling', 'media', 'worker'] },
    ]);
    const base = `http://127.0.0.1:${platform.httpPort}`;
    expect((await post(base, '/auth/register', account)).status).toBe(201);
    platform.child.kill('SIGTERM');
    expect(await platform.exited).toBe(0);
    expect(platform.errors).toEqual([]);
  }, 60_000);

  it('refuses a bad configuration naming the variable', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'app/main.ts'], {
      cwd: ROOT,
      env: { ...process.env, HTTP_PORT: 'eighty' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toMatch(/HTTP_PORT="eighty"/);
  });
});

describe('cluster mode on the machine PostgreSQL, Redis and NATS', () => {
  let db: TestDatabase;
  const platforms: Platform[] = [];
  afterAll(async () => {
    for (const platform of platforms.reverse()) await platform.close();
    await db?.drop();
  });

  it('splits roles across processes and revokes sessions everywhere at once', async () => {
    db = await createTestDatabase('cluster');
    const log = createLogger({ level: 'warn', name: 'cluster-test' });
    const shared = {
      VEZA_MODE: 'cluster',
      DATABASE_URL: db.url,
      REDIS_URL: clusterServices.redisUrl,
      NATS_URL: clusterServices.natsUrl,
      VEZA_NAMESPACE: testNamespace('platform'),
      SERVICE_API_KEYS: 'cluster-test-service-key-0123456789',
      // Both control planes decrypt the one signing key with it.
      SIGNING_KEYS_SECRET: randomBytes(32).toString('base64'),
      HTTP_PORT: '0',
      GRPC_PORT: '0',
      CONTROL_HTTP_PORT: '0',
    };
    // Two control planes (as two processes would be) and one edge per control plane.
    const controlA = await startPlatform(loadConfig({ ...shared, VEZA_ROLES: 'control-plane' }), log);
    platforms.push(controlA);
    const controlB = await startPlatform(loadConfig({ ...shared, VEZA_ROLES: 'control-plane' }), log);
    platforms.push(controlB);
    const edgeA = await startPlatform(
      loadConfig({
        ...shared,
        VEZA_ROLES: 'signaling',
        CONTROL_PLANE_ADDRESS: `127.0.0.1:${controlA.grpcPort}`,
      }),
      log,
    );
    platforms.push(edgeA);
    const edgeB = await startPlatform(
      loadConfig({
        ...shared,
        VEZA_ROLES: 'signaling',
        CONTROL_PLANE_ADDRESS: `127.0.0.1:${controlB.grpcPort}`,
      }),
      log,
    );
    platforms.push(edgeB);

    const a = `http://127.0.0.1:${edgeA.httpPort}`;
    const b = `http://127.0.0.1:${edgeB.httpPort}`;
    expect((await post(a, '/auth/register', account)).status).toBe(201);
    // Both control planes sign with the same key (generated once, kept in PostgreSQL).
    const login = await post(b, '/auth/login', { email: account.email, password: account.password });
    expect(login.status).toBe(200);
    const token = String(login.body.access_token);
    expect((await validate(a, token)).status).toBe(200);

    // Logging out through one side is seen by the other immediately (sessions in Redis).
    const logout = await fetch(`${a}/auth/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(logout.status).toBe(204);
    const after = await validate(b, token);
    expect(after.status).toBe(401);
    expect(after.body).toMatchObject({ error: { code: 'unauthenticated' } });

    // A process without the edge still exposes metrics and health.
    expect(controlA.opsPort).toBeGreaterThan(0);
    const ops = await fetch(`http://127.0.0.1:${controlA.opsPort}/metrics`);
    expect(await ops.text()).toMatch(
      /veza_grpc_requests_total\{method="veza\.auth\.AuthService\/Authenticate"/,
    );
    expect((await fetch(`http://127.0.0.1:${controlA.opsPort}/healthz`)).status).toBe(200);
  }, 60_000);
});
