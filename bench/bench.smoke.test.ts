/**
 * Smoke runs of every benchmark scenario through the real CLI, with tiny parameters: they
 * prove the harness works end to end (platform, load generators, baselines, JSON and HTML),
 * not how fast anything is. The real runs are `npm run bench -- <scenario>` (README,
 * "Performance").
 *
 * Scenarios run concurrently to keep the file short; fanout starts its own standalone
 * platform (the default path), the others share one through --url.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stderrProgress } from './lib/progress.js';
import { openPlatform, type PlatformTarget } from './lib/target.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

interface Result {
  scenario: string;
  single_node?: { system: string; steps: Array<Record<string, unknown>>; ratios: unknown[] };
  commit: string;
  machine: { cores: number; cpu_model: string; memory_mb: number };
  options: Record<string, unknown>;
  steps: Array<Record<string, unknown>>;
  baseline: { system: string; steps: Array<Record<string, unknown>>; ratios: unknown[] } | null;
}

let dir: string;
let shared: PlatformTarget | undefined;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'veza-bench-smoke-'));
  shared = await openPlatform({}, stderrProgress({ quiet: true }));
});

afterAll(async () => {
  await shared?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Runs so far: each writes into a folder of its own, so it reads back its own report. */
let runs = 0;

function bench(scenario: string, args: string[]): Promise<{ result: Result; html: string }> {
  // Two runs of one scenario (fanout, fanout --nodes) in one folder: readdir's order, not the
  // run, decided whose report was read.
  const resultsDir = path.join(dir, `${scenario}-${++runs}`);
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [
        '--import',
        TSX,
        path.join(ROOT, 'bench/cli.ts'),
        scenario,
        ...args,
        '--json',
        '--results-dir',
        resultsDir,
      ],
      { cwd: ROOT, maxBuffer: 64 * 1024 * 1024, timeout: 150_000 },
      async (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`bench ${scenario} failed (${error.message}):\n${stderr.slice(-4000)}`));
          return;
        }
        try {
          const result = JSON.parse(stdout) as Result;
          const files = await readdir(resultsDir);
          const jsonFile = files.find((f) => f.startsWith(`${scenario}-`) && f.endsWith('.json'));
          const htmlFile = jsonFile?.replace(/\.json$/, '.html');
          expect(jsonFile, `no ${scenario}-<timestamp>.json in ${resultsDir}`).toBeDefined();
          expect(files, 'the HTML report sits next to the JSON').toContain(htmlFile);
          resolve({ result, html: await readFile(path.join(resultsDir, htmlFile ?? ''), 'utf8') });
        } catch (parseError) {
          reject(parseError);
        }
      },
    );
  });
}

function expectStable(result: Result, scenario: string, html: string): void {
  expect(result.scenario).toBe(scenario);
  expect(result.commit).toMatch(/^[0-9a-f]{40}$/);
  expect(result.machine.cores).toBeGreaterThan(0);
  expect(result.machine.cpu_model.length).toBeGreaterThan(0);
  expect(result.machine.memory_mb).toBeGreaterThan(0);
  expect(typeof result.options).toBe('object');
  expect(result.steps.length).toBeGreaterThan(0);
  expect(result.baseline).not.toBeNull();
  expect(result.baseline?.steps.length).toBeGreaterThan(0);
  expect(html).toContain('<svg');
}

interface FanoutStep {
  loss_pct: number;
  join_ms: { p50: number; p95: number; p99: number };
  delay_ms: { p50: number; p95: number; p99: number; max: number };
  bitrate_kbps: number;
  cpu_us_per_packet: number;
  rss_kb_per_listener: number;
  workers_used: number;
}

/** The platform the scenarios other than fanout share. */
function sharedPlatform(): string[] {
  if (!shared) throw new Error('the shared platform did not start');
  return ['--url', shared.baseUrl, '--grpc', shared.grpcAddress];
}

const finite = (value: unknown) => typeof value === 'number' && Number.isFinite(value);

describe.concurrent('benchmark smoke runs', { timeout: 180_000 }, () => {
  it('fanout: 5 listeners for 3 s, platform and bare mediasoup', async () => {
    const { result, html } = await bench('fanout', [
      '--listeners',
      '5',
      '--duration',
      '3',
      '--settle',
      '0.5',
      '--ramp',
      '50',
    ]);
    expectStable(result, 'fanout', html);
    for (const step of [result.steps[0], result.baseline?.steps[0]]) {
      expect(step).toMatchObject({ listeners: 5, joined: 5 });
      const s = step as unknown as FanoutStep;
      expect(s.loss_pct).toBeGreaterThanOrEqual(0);
      expect(s.loss_pct).toBeLessThanOrEqual(100);
      for (const q of ['p50', 'p95', 'p99'] as const) {
        expect(finite(s.join_ms[q])).toBe(true);
        expect(finite(s.delay_ms[q])).toBe(true);
      }
      expect(finite(s.delay_ms.max)).toBe(true);
      expect(s.bitrate_kbps).toBeGreaterThan(30);
      expect(s.cpu_us_per_packet).toBeGreaterThan(0);
      expect(finite(s.rss_kb_per_listener)).toBe(true);
      expect(s.workers_used).toBeGreaterThanOrEqual(1);
    }
  });

  it('fanout --nodes 3: 6 listeners over three media node processes, beside the single node', async () => {
    const { result, html } = await bench('fanout', [
      '--nodes',
      '3',
      '--listeners',
      '6',
      '--duration',
      '3',
      '--settle',
      '0.5',
      '--ramp',
      '30',
      '--no-baseline',
    ]);
    const step = result.steps[0] as unknown as FanoutStep & {
      listeners: number;
      joined: number;
      worst_listener_loss_pct: number;
      nodes: Array<{
        tier: number | null;
        listeners: number;
        packets_forwarded: number;
        cpu_us_per_packet: number;
      }>;
      tiers: Array<{ tier: number; listeners: number; added_ms: { p50: number; p99: number } | null }>;
    };
    // Every listener joined and received probe packets in the window (a silent one is 100% loss).
    expect(step).toMatchObject({ listeners: 6, joined: 6 });
    expect(step.worst_listener_loss_pct).toBeLessThan(100);
    // MEDIA_NODE_MAX_LISTENERS=2 (6 / 3): two on each node, and at MEDIA_RELAY_FANOUT=1 a chain of three tiers.
    expect(step.nodes.map((node) => node.listeners)).toEqual([2, 2, 2]);
    expect(step.nodes.map((node) => node.tier).sort()).toEqual([0, 1, 2]);
    for (const node of step.nodes) {
      expect(node.packets_forwarded).toBeGreaterThan(0);
      expect(node.cpu_us_per_packet).toBeGreaterThan(0);
    }
    expect(step.tiers.map((tier) => tier.tier)).toEqual([0, 1, 2]);
    expect(step.tiers[0]?.added_ms).toBeNull();
    expect(finite(step.tiers[2]?.added_ms?.p50)).toBe(true);
    // The single-node platform ran in the same invocation.
    expect(result.single_node?.steps[0]).toMatchObject({ listeners: 6, joined: 6 });
    expect(result.baseline).toBeNull();
    expect(html).toContain('Per media node');
  });

  it('latency: 1 listener for 3 s, against a direct wrtc call', async () => {
    const { result, html } = await bench('latency', [
      '--listeners',
      '1',
      '--duration',
      '3',
      ...sharedPlatform(),
    ]);
    expectStable(result, 'latency', html);
    const step = result.steps[0] as { joined: number; mouth_to_ear_ms: { p50: number; p95: number } };
    expect(step.joined).toBe(1);
    expect(step.mouth_to_ear_ms.p50).toBeGreaterThan(0);
    expect(step.mouth_to_ear_ms.p95).toBeLessThan(1000);
  });

  it('chat: 4 clients in 2 rooms for 3 s, 2 of them sending, against bare uWS', async () => {
    const { result, html } = await bench('chat', [
      '--clients',
      '4',
      '--rooms',
      '2',
      '--senders',
      '2',
      '--rate',
      '0.5',
      '--duration',
      '3',
      // Each sender's first message falls within 2 s at 0.5/s, whatever its random phase.
      '--warmup',
      '2',
      '--drain',
      '1',
      ...sharedPlatform(),
    ]);
    expectStable(result, 'chat', html);
    const step = result.steps[0] as {
      joined: number;
      sent: number;
      acked: number;
      deliveries: number;
      path: string;
      loadgen_per_process: Array<{ role: string; clients: number }>;
      server_ack_breakdown: Record<string, { count: number; p50_ms: number | null }> | null;
      warmup_ack_ms: { count: number } | null;
      delivered_pct: number;
    };
    expect(step.joined).toBe(4);
    // The warm-up sent and was acked, and stayed out of the window's figures.
    expect(step.warmup_ack_ms?.count).toBeGreaterThan(0);
    // Each sender's first window message is new, not the warm-up's first answered as a retry
    // (same clientMessageId), which would leave it undelivered: at most half would arrive.
    expect(step.delivered_pct).toBeGreaterThan(50);
    expect(step.server_ack_breakdown?.edge_total?.count).toBeLessThan(
      step.acked + (step.warmup_ack_ms?.count ?? 0),
    );
    expect(step.acked).toBeGreaterThan(0);
    // The senders in a load process of their own, the members that only receive in another.
    expect(step.loadgen_per_process.map(({ role, clients }) => [role, clients])).toEqual([
      ['senders', 2],
      ['members', 2],
    ]);
    // The server's own account of the acks: every acked send was seen on the edge, split by step.
    expect(step.server_ack_breakdown?.edge_total?.count).toBeGreaterThanOrEqual(step.acked);
    expect(step.server_ack_breakdown?.cp_commit?.p50_ms).toBeGreaterThan(0);
    expect(step.deliveries).toBeGreaterThan(0);
    expect(result.options.path).toBeDefined();
  });

  it('grpc: 50 requests per step, against a bare grpc-js server', async () => {
    const { result, html } = await bench('grpc', [
      '--requests',
      '50',
      '--concurrency',
      '4',
      '--warmup',
      '0',
      '--history',
      '5',
      '--duration',
      '5',
      ...sharedPlatform(),
    ]);
    expectStable(result, 'grpc', html);
    expect(result.steps.map((s) => s.method)).toEqual(['ValidateToken', 'GetMessages']);
    for (const step of result.steps) {
      expect(step.requests).toBe(50);
      expect(step.errors).toBe(0);
      expect(step.req_per_s).toBeGreaterThan(0);
    }
  });

  it('transcode: one 5 s upload, against the ffmpeg command line', async () => {
    // A platform of its own: the job's steps come from the worker's stage histogram, which on the
    // shared platform also counts the replay jobs of the streams the other scenarios end meanwhile.
    const { result, html } = await bench('transcode', ['--jobs', '1', '--duration', '5']);
    expectStable(result, 'transcode', html);
    const step = result.steps[0] as {
      errors: string[];
      x_realtime: { p50: number };
      stage_share_pct: Record<string, number>;
      job_steps_ms: Record<string, number> | null;
    };
    expect(step.errors).toEqual([]);
    expect(step.x_realtime.p50).toBeGreaterThan(0);
    expect(Object.keys(step.stage_share_pct).length).toBeGreaterThan(2);
    // One job split as the bench saw it: the bench's own readings and the worker's steps.
    const steps = step.job_steps_ms ?? {};
    for (const name of ['upload', 'queue_wait', 'claim', 'probe', 'loudness', 'renditions', 'record'])
      expect(steps[name], name).toBeGreaterThanOrEqual(0);
    expect(steps.processing).toBeGreaterThan((steps.loudness ?? 0) + (steps.renditions ?? 0));
  });
});
