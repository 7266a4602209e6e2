/**
 * The dashboards against reality: the platform (standalone, in this process, with the bearer
 * token on /metrics) scraped by a real Prometheus server (Debian's), with the repository's scrape
 * jobs and alert rules; traffic through the real paths (REST register, login, go live with a wrtc
 * broadcaster and a listener, chat, a report, an upload transcoded, stop); then every panel's query
 * of every dashboard runs on Prometheus's HTTP API. Each must parse, and each must return data
 * unless it is one of the few listed below that this traffic cannot feed. A renamed metric or label
 * breaks this test, not a dashboard.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLogger, loadConfig } from '../../../common/index.js';
import { createTestDatabase, freePort, type TestDatabase } from '../../../common/testing/index.js';
import { Broadcaster, ChatClient, Listener, SignalingConnection } from '../../../signaling/client/index.js';
import {
  installWrtcGlobals,
  listenerTap,
  NODE_HANDLER_NAME,
  nodeWebSocket,
  sineSource,
} from '../../../signaling/client/testing/index.js';
import { makeAudio } from '../../../workers/test-audio.js';
import { type Platform, startPlatform } from '../../platform.js';
import { dashboardQueries, loadDashboards, resolveGrafanaVariables } from './dashboards.js';

installWrtcGlobals();

const HERE = import.meta.dirname;
const WebSocket = nodeWebSocket();
const PASSWORD = 'Correct-Horse-42-dashboards';
/** Longer than the whole test, so every sample it scraped is in each rate window. */
const WINDOW = '15m';

/**
 * Panels (`<dashboard> / <panel> / <refId>`) this traffic cannot feed: they count failures and
 * events the test does not cause. They must still parse.
 */
const MAY_BE_EMPTY = new Set([
  'Veza Live / Overview / REST 5xx ratio / A', // no request fails with 5xx
  'Veza Live / Overview / rpc server-error ratio / A', // no rpc fails on the server
  'Veza Live / Overview / PostgreSQL connection errors / A', // PostgreSQL stays up
  'Veza Live / Live audio / Worker deaths / A', // no mediasoup worker dies
  'Veza Live / Chat / Moderation: flagged, reports, actions / C', // no moderator acts
  'Veza Live / Chat / Moderation scorer breaker / A', // no external scorer (MODERATION_URL) configured
  'Veza Live / Uploads and transcoding / Transcode failures / A', // the upload transcodes
  'Veza Live / Control plane rpcs / rpc errors by method and code / A', // whether a refusal happens is not this test's point
]);

interface QueryResponse {
  status: 'success' | 'error';
  error?: string;
  errorType?: string;
  data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

let platform: Platform;
let database: TestDatabase;
let scratch: string;
let prometheus: ChildProcess;
let prometheusUrl: string;
let base: string;
const token = randomBytes(24).toString('hex');
const cleanups: Array<() => void | Promise<void>> = [];

async function query(expr: string): Promise<QueryResponse> {
  const response = await fetch(`${prometheusUrl}/api/v1/query?${new URLSearchParams({ query: expr })}`);
  return (await response.json()) as QueryResponse;
}

/** The first sample of `expr`'s result as a number, or null while it has none. */
async function value(expr: string): Promise<number | null> {
  const result = await query(expr);
  const sample = result.data?.result[0];
  return sample ? Number(sample.value[1]) : null;
}

async function json<T>(response: Response, status: number): Promise<T> {
  const body = await response.text();
  expect(response.status, body).toBe(status);
  return JSON.parse(body) as T;
}

async function post<T>(route: string, body: unknown, status: number, bearer?: string): Promise<T> {
  const response = await fetch(`${base}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    body: JSON.stringify(body),
  });
  return json<T>(response, status);
}

async function account(name: string): Promise<string> {
  const email = `${name}-${randomBytes(4).toString('hex')}@veza.test`;
  await post(
    '/auth/register',
    { email, username: email.split('@')[0]?.replaceAll('-', '_'), password: PASSWORD },
    201,
  );
  const login = await post<{ access_token: string }>('/auth/login', { email, password: PASSWORD }, 200);
  return login.access_token;
}

async function connect(accessToken: string): Promise<SignalingConnection> {
  const connection = new SignalingConnection({
    url: `ws://127.0.0.1:${platform.httpPort}/ws`,
    token: accessToken,
    WebSocket,
  });
  cleanups.push(() => connection.close());
  await connection.connect();
  return connection;
}

/** Starts Prometheus with the repository's scrape jobs and rules, every job on the platform's edge port. */
async function startPrometheus(httpPort: number): Promise<void> {
  const repoConfig = await readFile(path.join(HERE, 'prometheus', 'prometheus.yml'), 'utf8');
  const jobs = [...repoConfig.matchAll(/job_name: (\S+)/g)]
    .map((match) => match[1] ?? '')
    .filter((job) => job !== 'prometheus');
  expect(jobs).toEqual(['edge', 'control-plane', 'media', 'worker']);
  const tokenFile = path.join(scratch, 'metrics-token');
  await writeFile(tokenFile, token, { mode: 0o600 });
  // JSON is YAML. Standalone mode serves every role's metrics on the edge's port, so each job
  // scrapes it: the dashboards' job filters then find every role they name.
  const config = {
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: [path.join(HERE, 'prometheus', 'alerts.yml')],
    scrape_configs: jobs.map((job) => ({
      job_name: job,
      authorization: { credentials_file: tokenFile },
      static_configs: [{ targets: [`127.0.0.1:${httpPort}`] }],
    })),
  };
  const configFile = path.join(scratch, 'prometheus.json.yml');
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const port = await freePort();
  prometheusUrl = `http://127.0.0.1:${port}`;
  const output: string[] = [];
  prometheus = spawn(
    'prometheus',
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(scratch, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  prometheus.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  prometheus.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => prometheus.once('exit', () => resolve()));
  cleanups.push(async () => {
    if (prometheus.exitCode === null) prometheus.kill('SIGTERM');
    await exited;
  });
  await vi.waitFor(
    async () => {
      if (prometheus.exitCode !== null) throw new Error(`prometheus exited: ${output.join('')}`);
      const ready = await fetch(`${prometheusUrl}/-/ready`).catch(() => null);
      expect(ready?.status).toBe(200);
    },
    { timeout: 30_000, interval: 100 },
  );
}

/** Waits until `expr` has a sample above `min`. */
async function prometheusSees(expr: string, min = 0, timeout = 60_000): Promise<void> {
  await vi.waitFor(
    async () => {
      const seen = await value(expr);
      expect(seen, expr).not.toBeNull();
      expect(seen).toBeGreaterThan(min);
    },
    { timeout, interval: 250 },
  );
}

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'veza-dashboards-'));
  database = await createTestDatabase('embedded');
  const config = loadConfig({
    VEZA_DATA_DIR: path.join(scratch, 'data'),
    DATABASE_URL: database.url,
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    GRPC_HOST: '127.0.0.1',
    GRPC_PORT: '0',
    MEDIA_WORKERS: '1',
    // wrtc peers reach loopback (browsers would need the announced LAN address).
    MEDIA_LISTEN_IP: '127.0.0.1',
    METRICS_TOKEN: token,
    // The first sweep comes within this interval: the retention panels then have a success to show.
    RETENTION_SWEEP_INTERVAL_S: '2',
    LOG_LEVEL: 'warn',
  });
  platform = await startPlatform(
    config,
    createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn', name: 'dashboards' }),
  );
  base = `http://127.0.0.1:${platform.httpPort}`;
  await startPrometheus(platform.httpPort ?? 0);
}, 180_000);

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await platform?.close();
  await database?.drop();
  await rm(scratch, { recursive: true, force: true });
});

describe('/metrics on the edge port', () => {
  it('answers 401 without the bearer token or with another one, and the metrics with it', async () => {
    const anonymous = await fetch(`${base}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).toContain('METRICS_TOKEN');
    expect((await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}x` } })).status).toBe(
      401,
    );
    const scraped = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain('veza_http_requests_total');
    // Liveness and readiness stay open to load balancers.
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });
});

describe('the dashboards against a real Prometheus scraping the platform', () => {
  it('loads the alert rules, each with its for: and runbook', async () => {
    const response = (await (await fetch(`${prometheusUrl}/api/v1/rules?type=alert`)).json()) as {
      data: {
        groups: Array<{
          rules: Array<{ name: string; duration: number; annotations: Record<string, string> }>;
        }>;
      };
    };
    const rules = response.data.groups.flatMap((group) => group.rules);
    expect(rules).toHaveLength(20);
    for (const rule of rules) {
      expect(rule.duration, rule.name).toBeGreaterThan(0);
      expect(rule.annotations.runbook, rule.name).toBeTruthy();
      expect(rule.annotations.summary, rule.name).toBeTruthy();
    }
  });

  it('runs every panel query after real traffic: each parses, and returns data where the traffic made some', async () => {
    // Register, log in (REST), go live, a listener hears the broadcaster.
    const dj = await account('dj');
    const fan = await account('fan');
    const started = await post<{ stream_id: number; chat_room_id: number }>(
      '/stream/start',
      { title: 'Dashboards' },
      201,
      dj,
    );
    const source = sineSource();
    cleanups.push(() => source.stop());
    const broadcaster = new Broadcaster({ connection: await connect(dj), handlerName: NODE_HANDLER_NAME });
    await broadcaster.publish(started.stream_id, source.track);
    const listenerConnection = await connect(fan);
    const listener = new Listener({ connection: listenerConnection, handlerName: NODE_HANDLER_NAME });
    const tap = listenerTap(listener);
    cleanups.push(() => tap.stop());
    await listener.listen(started.stream_id);
    await tap.waitForFrames(20, (rms) => rms > 100);
    await fetch(`${base}/streams`);

    // Chat: the fan sends, the broadcaster's socket receives; the DJ reports the message.
    const djChat = new ChatClient({ connection: await connect(dj) });
    await djChat.join({ roomId: started.chat_room_id });
    const fanChat = new ChatClient({ connection: listenerConnection });
    await fanChat.join({ roomId: started.chat_room_id });
    const delivered = new Promise<void>((resolve) => djChat.on('message', () => resolve()));
    const sent = await fanChat.send(started.chat_room_id, 'hello from the dashboards test');
    await delivered;
    await post(
      '/moderation/report',
      { target_type: 'message', target_id: sent.messageId, reason: 'test report' },
      201,
      dj,
    );

    // An upload, transcoded by the worker role.
    const wav = await readFile(await makeAudio(path.join(scratch, 'tone.wav'), 'wav', 'sine=f=440:d=2'));
    const form = new FormData();
    form.set('title', 'Dashboards tone');
    form.set('file', new Blob([new Uint8Array(wav)]), 'tone.wav');
    const uploaded = await json<{ track_id: number }>(
      await fetch(`${base}/stream/upload`, {
        method: 'POST',
        headers: { authorization: `Bearer ${dj}` },
        body: form,
      }),
      201,
    );
    await vi.waitFor(
      async () => {
        const track = await json<{ track: { status: string } }>(
          await fetch(`${base}/tracks/${uploaded.track_id}`, { headers: { authorization: `Bearer ${dj}` } }),
          200,
        );
        expect(track.track.status).toBe('ready');
      },
      { timeout: 60_000, interval: 250 },
    );

    // What Prometheus must have scraped before the queries mean anything: the listener's receiver
    // reports (sampled every 5 s), the delivery, the transcode and a retention sweep.
    await prometheusSees('sum(veza_media_listener_rtt_seconds_count{job="media"})');
    await prometheusSees('sum(veza_media_packets_sent_total{job="media"})');
    await prometheusSees('sum(veza_ws_chat_deliveries_total{job="edge"})');
    await prometheusSees('sum(veza_transcode_jobs_total{job="worker", outcome="ready"})');
    await prometheusSees('max(veza_retention_last_success_timestamp_seconds{job="control-plane"})');
    await prometheusSees('max(veza_stream_listeners{job="control-plane"})');

    // The stream ends, then two more scrapes so every counter has its last increase in the window.
    const stopped = await fetch(`${base}/stream/${started.stream_id}/stop`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dj}` },
    });
    expect(stopped.status).toBe(200);
    await prometheusSees('sum(veza_streams_ended_total{job="control-plane"})');
    const after = Date.now() / 1000;
    await prometheusSees('min(timestamp(up{job=~"edge|control-plane|media|worker"}))', after + 2);
    expect(await value('min(up{job=~"edge|control-plane|media|worker"})')).toBe(1);

    const queries = dashboardQueries(await loadDashboards());
    const failures: string[] = [];
    const empty: string[] = [];
    for (const panel of queries) {
      const result = await query(resolveGrafanaVariables(panel.expr, WINDOW));
      if (result.status !== 'success') failures.push(`${panel.name}: ${result.errorType}: ${result.error}`);
      else if ((result.data?.result.length ?? 0) === 0 && !MAY_BE_EMPTY.has(panel.name))
        empty.push(panel.name);
    }
    // Both lists at once, so one run names every broken panel.
    expect({ failures, empty }).toEqual({ failures: [], empty: [] });
    // The exemptions name real panels: a renamed panel must not leave a stale exemption behind.
    const names = new Set(queries.map((panel) => panel.name));
    expect([...MAY_BE_EMPTY].filter((name) => !names.has(name))).toEqual([]);
  }, 240_000);
});
