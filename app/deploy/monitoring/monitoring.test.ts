/**
 * The monitoring files checked by the tools that will read them: promtool (Prometheus's config,
 * the alert rules and their unit tests), amtool (Alertmanager's config) and docker-compose (the
 * services that run them), plus what no tool checks: every alert has a `for:`, a summary and a
 * runbook, is fired by a unit test and explained in the README; every dashboard panel has a query
 * on the provisioned data source. The queries themselves run against a real Prometheus in
 * dashboards.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dashboardQueries, loadDashboards } from './dashboards.js';

const HERE = import.meta.dirname;
const ROOT = path.resolve(HERE, '../../..');
const PROMETHEUS_DIR = path.join(HERE, 'prometheus');

function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', ...options });
  if (result.error)
    throw new Error(`${command} could not run (npm test installs it): ${result.error.message}`);
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** The alert names of alerts.yml, in order. */
async function alertNames(): Promise<string[]> {
  const rules = await readFile(path.join(PROMETHEUS_DIR, 'alerts.yml'), 'utf8');
  return [...rules.matchAll(/^\s*- alert: (\S+)$/gm)].map((match) => match[1] ?? '');
}

describe('the Prometheus configuration and alert rules', () => {
  let scratch: string;
  beforeAll(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'veza-promtool-'));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('passes promtool check config: the syntax as committed, everything once the token file exists', async () => {
    const syntax = run('promtool', [
      'check',
      'config',
      '--syntax-only',
      path.join(PROMETHEUS_DIR, 'prometheus.yml'),
    ]);
    expect(syntax.output).toContain('SUCCESS');
    expect(syntax.status).toBe(0);
    // The full check also opens the files the config names: the rules, and the token file that
    // the compose service writes at start (/prometheus/metrics-token), here a temporary one.
    const copy = path.join(scratch, 'prometheus');
    await cp(PROMETHEUS_DIR, copy, { recursive: true });
    const token = path.join(scratch, 'metrics-token');
    await writeFile(token, 'a-test-token-of-some-length');
    const config = await readFile(path.join(copy, 'prometheus.yml'), 'utf8');
    expect(config).toContain('credentials_file: /prometheus/metrics-token');
    await writeFile(path.join(copy, 'prometheus.yml'), config.replaceAll('/prometheus/metrics-token', token));
    const full = run('promtool', ['check', 'config', path.join(copy, 'prometheus.yml')]);
    expect(full.output).toMatch(/SUCCESS: 20 rules found/);
    expect(full.status).toBe(0);
  });

  it('scrapes every role, each with the bearer token', async () => {
    const config = await readFile(path.join(PROMETHEUS_DIR, 'prometheus.yml'), 'utf8');
    for (const job of ['edge', 'control-plane', 'media', 'worker']) {
      expect(config).toMatch(
        new RegExp(`job_name: ${job}\\n\\s+authorization:\\n\\s+credentials_file: /prometheus/metrics-token`),
      );
    }
  });

  it('passes promtool check rules', () => {
    const result = run('promtool', ['check', 'rules', path.join(PROMETHEUS_DIR, 'alerts.yml')]);
    expect(result.output).toContain('SUCCESS: 20 rules found');
    expect(result.status).toBe(0);
  });

  it('passes its unit tests (promtool test rules)', () => {
    const result = run('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: PROMETHEUS_DIR });
    expect(result.output).toContain('SUCCESS');
    expect(result.status).toBe(0);
  });

  it('gives every alert a for:, a severity, a summary and a runbook, a unit test that fires it, and a README row', async () => {
    const names = await alertNames();
    expect(names).toHaveLength(20);
    const rules = await readFile(path.join(PROMETHEUS_DIR, 'alerts.yml'), 'utf8');
    const blocks = rules.split(/^\s*- alert: /m).slice(1);
    const tests = await readFile(path.join(PROMETHEUS_DIR, 'alerts.test.yml'), 'utf8');
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    for (const [index, block] of blocks.entries()) {
      const name = names[index];
      expect(block, name).toMatch(/\n\s+for: [1-9]\d*[smh]\n/);
      expect(block, name).toMatch(/\n\s+severity: (critical|warning)\n/);
      expect(block, name).toMatch(/\n\s+summary:\s+\S.{10,}/);
      expect(block, name).toMatch(/\n\s+runbook:\s+\S.{30,}/);
      // Fired, not only mentioned: an expected alert carries the alert's name as a label.
      expect(tests, name).toMatch(
        new RegExp(`alertname: ${name}\\n(?:.*\\n){0,3}?.*exp_alerts:\\n\\s+- exp_labels:`),
      );
      expect(readme, name).toContain(`| \`${name}\``);
    }
  });
});

describe('Alertmanager and docker-compose', () => {
  it('passes amtool check-config', () => {
    const result = run('amtool', ['check-config', path.join(HERE, 'alertmanager', 'alertmanager.yml')]);
    expect(result.output).toContain('SUCCESS');
    expect(result.status).toBe(0);
  });

  it('passes docker-compose config with Prometheus, Alertmanager and Grafana, and needs METRICS_TOKEN', () => {
    const env = { ...process.env, SIGNING_KEYS_SECRET: 'a'.repeat(44), METRICS_TOKEN: 'b'.repeat(32) };
    const valid = run('docker-compose', ['config', '-q'], { cwd: ROOT, env });
    expect(valid.output).toBe('');
    expect(valid.status).toBe(0);
    const services = run('docker-compose', ['config', '--services'], { cwd: ROOT, env });
    expect(services.output.split('\n')).toEqual(
      expect.arrayContaining(['prometheus', 'alertmanager', 'grafana']),
    );
    const withoutToken = { ...env, METRICS_TOKEN: '' };
    const refused = run('docker-compose', ['config', '-q'], { cwd: ROOT, env: withoutToken });
    expect(refused.status).not.toBe(0);
    expect(refused.output).toContain('set METRICS_TOKEN');
  });

  it('provisions Grafana with the data source and the folder of dashboards the compose file mounts', async () => {
    const datasource = await readFile(
      path.join(HERE, 'grafana/provisioning/datasources/prometheus.yml'),
      'utf8',
    );
    expect(datasource).toMatch(/uid: prometheus\n/);
    expect(datasource).toMatch(/url: http:\/\/prometheus:9090\n/);
    const provider = await readFile(path.join(HERE, 'grafana/provisioning/dashboards/veza.yml'), 'utf8');
    expect(provider).toMatch(/path: \/var\/lib\/grafana\/dashboards\n/);
    const compose = await readFile(path.join(ROOT, 'docker-compose.yml'), 'utf8');
    expect(compose).toContain('./app/deploy/monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro');
    expect(compose).toContain('./app/deploy/monitoring/grafana/provisioning:/etc/grafana/provisioning:ro');
  });
});

describe('the dashboards', () => {
  it('are the five the issue lists, each panel with at least one query on the provisioned data source', async () => {
    const files = (await readdir(path.join(HERE, 'grafana/dashboards'))).sort();
    expect(files).toEqual([
      'veza-chat.json',
      'veza-control-plane.json',
      'veza-live-audio.json',
      'veza-overview.json',
      'veza-uploads.json',
    ]);
    const dashboards = await loadDashboards();
    const uids = new Set<string>();
    for (const dashboard of dashboards) {
      expect(uids.has(dashboard.uid)).toBe(false);
      uids.add(dashboard.uid);
      expect(dashboard.panels.length).toBeGreaterThanOrEqual(8);
      for (const panel of dashboard.panels) {
        expect(panel.datasource, `${dashboard.title} / ${panel.title}`).toEqual({
          type: 'prometheus',
          uid: 'prometheus',
        });
        expect(panel.targets.length, `${dashboard.title} / ${panel.title}`).toBeGreaterThan(0);
      }
    }
    expect(dashboardQueries(dashboards).length).toBeGreaterThan(50);
  });
});
