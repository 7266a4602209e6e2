/**
 * Threaded standalone mode (supervisor.ts) in this process, as `npm start` runs it by default:
 * the roles on three threads wired as in cluster mode, one /metrics for all of them, the
 * control plane's rate limits whole, and what happens when a role thread fails. (app/platform.test.ts
 * runs it as a child process: readiness, exit code 0 on SIGTERM, log fields.)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, loadConfig } from '../common/index.js';
import { createTestDatabase, type TestDatabase } from '../common/testing/index.js';
import { startThreadedPlatform, type ThreadedPlatform } from './supervisor.js';

interface Started {
  platform: ThreadedPlatform;
  base: string;
  /** The supervisor's log lines so far (the role threads log to stdout on their own). */
  lines: Array<Record<string, unknown>>;
}

const account = { email: 'grace@example.com', password: 'Compiler-Pioneer-1952', username: 'grace' };

async function post(base: string, route: string, body: unknown, token?: string) {
  const response = await fetch(`${base}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    body: (await response.json().catch(() => null)) as Record<string, unknown>,
  };
}

/**
 * Throws `message` from a timer on the thread `threadId`'s own loop, through the inspector protocol
 * (as a debugger attached to it would): a genuine uncaught exception, with no hook in the code.
 * The expression goes to every thread of this process (tsx's loader thread among them) and fires
 * only in the one with that thread id.
 */
async function throwInThread(threadId: number, message: string): Promise<void> {
  const session = new Session();
  session.connect();
  try {
    const sent: Promise<unknown>[] = [];
    const expression = `process.getBuiltinModule('node:worker_threads').threadId === ${threadId} && setTimeout(() => { throw new Error(${JSON.stringify(message)}); })`;
    session.on('NodeWorker.attachedToWorker', (event) => {
      sent.push(
        session.post('NodeWorker.sendMessageToWorker', {
          sessionId: event.params.sessionId,
          message: JSON.stringify({ id: 1, method: 'Runtime.evaluate', params: { expression } }),
        }),
      );
    });
    // Attaches to the threads already running before it answers.
    await session.post('NodeWorker.enable', { waitForDebuggerOnStart: false });
    await Promise.all(sent);
  } finally {
    session.disconnect();
  }
}

describe('threaded standalone mode', () => {
  // One database and one data directory (its signing keys secret with them) for every start.
  let db: TestDatabase;
  let dataDir: string;
  beforeAll(async () => {
    [db, dataDir] = await Promise.all([
      createTestDatabase('embedded'),
      mkdtemp(path.join(tmpdir(), 'veza-threads-')),
    ]);
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
    await db?.drop();
  });

  async function start(env: Record<string, string> = {}): Promise<Started> {
    const config = loadConfig({
      VEZA_DATA_DIR: dataDir,
      DATABASE_URL: db.url,
      HTTP_HOST: '127.0.0.1',
      HTTP_PORT: '0',
      GRPC_HOST: '127.0.0.1',
      GRPC_PORT: '0',
      MEDIA_LISTEN_IP: '127.0.0.1',
      MEDIA_WORKERS: '1',
      WORKER_CONCURRENCY: '1',
      LOG_LEVEL: 'warn',
      ...env,
    });
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
        done();
      },
    });
    const log = createLogger({ level: 'warn', name: 'threads-test', destination });
    const platform = await startThreadedPlatform(config, log);
    return { platform, base: `http://127.0.0.1:${platform.httpPort}`, lines };
  }

  it('runs each role group on its own thread, wired as in cluster mode, with one /metrics', async () => {
    const { platform, base } = await start({ LOGIN_LIMIT_PER_ACCOUNT: '2' });
    try {
      expect(platform.threads.map((thread) => [thread.name, thread.roles])).toEqual([
        ['control-plane', ['control-plane', 'worker']],
        ['media', ['media']],
        ['edge', ['signaling']],
      ]);
      expect(new Set(platform.threads.map((thread) => thread.worker.threadId)).size).toBe(3);

      expect((await post(base, '/auth/register', account)).status).toBe(201);
      const login = await post(base, '/auth/login', { email: account.email, password: account.password });
      expect(login.status).toBe(200);
      // The control plane places the stream on the media node that announced itself on the bus,
      // and the edge opens it there through the bus gateway: its router's capabilities come back.
      const started = await post(
        base,
        '/stream/start',
        { title: 'threads' },
        String(login.body.access_token),
      );
      expect(started.status).toBe(201);
      expect(started.body.router_rtp_capabilities).toMatchObject({ codecs: expect.any(Array) });

      // Rate limits live in the control plane's thread, whole: the third failed login is refused.
      const wrong = { email: account.email, password: 'not-the-password' };
      expect((await post(base, '/auth/login', wrong)).status).toBe(401);
      expect((await post(base, '/auth/login', wrong)).status).toBe(401);
      expect((await post(base, '/auth/login', wrong)).status).toBe(429);

      const metrics = await (await fetch(`${base}/metrics`)).text();
      // Every role's own metrics, from its thread: the edge's, the control plane's, the media node's.
      expect(metrics).toMatch(
        /^veza_http_requests_total\{method="POST",route="\/stream\/start",status="201"\} 1$/m,
      );
      expect(metrics).toMatch(
        /^veza_grpc_requests_total\{method="veza\.stream\.StreamService\/StartStream",code="OK"\} 1$/m,
      );
      expect(metrics).toMatch(/^veza_media_workers\{node="[^"]+"\} 1$/m);
      // Each loop's lag apart; the process's CPU once, not once per thread.
      for (const thread of ['supervisor', 'control-plane', 'media', 'edge']) {
        expect(metrics).toMatch(
          new RegExp(`^veza_nodejs_eventloop_lag_p99_seconds\\{thread="${thread}"\\} `, 'm'),
        );
      }
      expect(metrics.match(/^veza_process_cpu_user_seconds_total /gm)).toHaveLength(1);
      expect(metrics).toMatch(/^veza_process_start_time_seconds \d+/m);
    } finally {
      await platform.close();
    }
    expect(await platform.stopped).toBeNull();
    expect(platform.threads.map((thread) => thread.worker.threadId)).toEqual([-1, -1, -1]);
  }, 60_000);

  it('serves every thread’s metrics on the ops port when no thread runs the edge', async () => {
    const { platform } = await start({ VEZA_ROLES: 'control-plane,media,worker', CONTROL_HTTP_PORT: '0' });
    try {
      expect(platform.threads.map((thread) => thread.name)).toEqual(['control-plane', 'media']);
      expect(platform.httpPort).toBeNull();
      const metrics = await (await fetch(`http://127.0.0.1:${platform.opsPort}/metrics`)).text();
      expect(metrics).toMatch(/^veza_media_workers\{node="[^"]+"\} 1$/m);
      expect(metrics).toMatch(/^veza_nodejs_eventloop_lag_p99_seconds\{thread="control-plane"\} /m);
      expect((await fetch(`http://127.0.0.1:${platform.opsPort}/healthz`)).status).toBe(200);
    } finally {
      await platform.close();
    }
  }, 60_000);

  it('stops the whole platform, in order, when a role thread ends on its own', async () => {
    const { platform, base, lines } = await start();
    const media = platform.threads.find((thread) => thread.name === 'media');
    await media?.worker.terminate();

    const failure = await platform.stopped;
    expect(failure?.message).toBe('the media thread ended unexpectedly (exit code 1)');
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 50,
        failedThread: 'media',
        msg: 'a role thread failed: shutting the platform down',
      }),
    );
    // No zombie: the edge no longer answers, and every thread has ended.
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
    expect(platform.threads.map((thread) => thread.worker.threadId)).toEqual([-1, -1, -1]);
  }, 60_000);

  it('stops the whole platform when a role throws an uncaught exception, the edge with its sockets open', async () => {
    const { platform, base, lines } = await start();
    // A keep-alive connection stays open on the edge's uWebSockets.js: a thread torn down with it
    // would abort the whole process, so the edge must close it itself on the way down.
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const edge = platform.threads.find((thread) => thread.name === 'edge');
    await throwInThread(edge?.worker.threadId ?? -1, 'injected fault');

    const failure = await platform.stopped;
    expect(failure?.message).toBe('the edge thread failed: injected fault');
    expect(lines).toContainEqual(expect.objectContaining({ level: 50, failedThread: 'edge' }));
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
    expect(platform.threads.map((thread) => thread.worker.threadId)).toEqual([-1, -1, -1]);
  }, 60_000);
});
