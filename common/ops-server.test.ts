import { afterEach, describe, expect, it } from 'vitest';
import { metricsRegistry } from './metrics.js';
import { type OpsServer, startOpsServer } from './ops-server.js';

/** veza_ready{endpoint="ops"} as the next scrape would read it. */
async function readyGauge(): Promise<number | undefined> {
  const metric = metricsRegistry().getSingleMetric('veza_ready');
  const values = (await metric?.get())?.values ?? [];
  return values.find((entry) => entry.labels.endpoint === 'ops')?.value;
}

describe('the ops server', () => {
  let server: OpsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('serves /metrics only with the bearer token when METRICS_TOKEN is set; health stays open', async () => {
    const token = 'an-ops-metrics-token-123';
    server = await startOpsServer('127.0.0.1', 0, async () => true, { metricsToken: token });
    const url = `http://127.0.0.1:${server.port}`;
    const refused = await fetch(`${url}/metrics`);
    expect(refused.status).toBe(401);
    expect(await refused.json()).toEqual({
      error: {
        code: 'unauthenticated',
        message: '/metrics needs the bearer token configured in METRICS_TOKEN',
      },
    });
    const scraped = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain('veza_ready{endpoint="ops"} 1');
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
  });

  it('reports its readiness as veza_ready at each scrape, and stops once closed', async () => {
    let ready = false;
    server = await startOpsServer('127.0.0.1', 0, async () => ready);
    expect(await readyGauge()).toBe(0);
    ready = true;
    expect(await readyGauge()).toBe(1);
    await server.close();
    server = undefined;
    expect(await readyGauge()).toBeUndefined();
  });
});
