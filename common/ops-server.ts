/**
 * /metrics, /healthz and /readyz for processes that run no HTTP edge (a control-plane,
 * media or worker process in cluster mode), so every process can be scraped and probed.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { renderMetrics } from './metrics.js';
import { metricsAccessAllowed } from './metrics-access.js';
import { reportReadiness } from './readiness-metric.js';

export interface OpsServer {
  port: number;
  close(): Promise<void>;
}

export interface OpsServerOptions {
  /** METRICS_TOKEN: /metrics then needs it as a bearer token. */
  metricsToken?: string | undefined;
}

/** A readiness answer with what it was decided on (each dependency: "up" or why it is down). */
export interface Readiness {
  ready: boolean;
  checks: Record<string, string>;
}

const isReadyNow = (answer: boolean | Readiness) => (typeof answer === 'boolean' ? answer : answer.ready);

export async function startOpsServer(
  host: string,
  port: number,
  isReady: () => Promise<boolean | Readiness>,
  options: OpsServerOptions = {},
): Promise<OpsServer> {
  const server = http.createServer((request, response) => {
    const reply = (status: number, contentType: string, body: string) => {
      response.writeHead(status, { 'content-type': contentType });
      response.end(body);
    };
    const route = `${request.method} ${request.url?.split('?')[0]}`;
    if (
      route === 'GET /metrics' &&
      !metricsAccessAllowed(request.headers.authorization, options.metricsToken)
    ) {
      reply(
        401,
        'application/json',
        '{"error":{"code":"unauthenticated","message":"/metrics needs the bearer token configured in METRICS_TOKEN"}}',
      );
    } else if (route === 'GET /metrics') {
      renderMetrics().then(
        ({ contentType, body }) => reply(200, contentType, body),
        () => reply(500, 'application/json', '{"error":{"code":"internal","message":"metrics failed"}}'),
      );
    } else if (route === 'GET /healthz') {
      reply(200, 'application/json', '{"status":"ok"}');
    } else if (route === 'GET /readyz') {
      isReady().then(
        (answer) => {
          const { ready, checks } = typeof answer === 'boolean' ? { ready: answer, checks: {} } : answer;
          reply(
            ready ? 200 : 503,
            'application/json',
            JSON.stringify({ status: ready ? 'ready' : 'not_ready', checks }),
          );
        },
        () => reply(503, 'application/json', '{"status":"not_ready"}'),
      );
    } else {
      reply(404, 'application/json', '{"error":{"code":"not_found","message":"no such route"}}');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const stopReporting = reportReadiness('ops', async () => isReadyNow(await isReady()));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      stopReporting();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
