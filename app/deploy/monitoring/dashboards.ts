/**
 * The Grafana dashboards of grafana/dashboards/, read for the tests: the fields they rely on,
 * checked with zod so a dashboard edited into another shape fails by name.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';

const DASHBOARDS_DIR = path.join(import.meta.dirname, 'grafana', 'dashboards');

const datasource = z.object({ type: z.string(), uid: z.string() });
const target = z.object({ expr: z.string().min(1), refId: z.string().min(1), datasource });
const panel = z.object({ title: z.string().min(1), datasource, targets: z.array(target) });
const dashboard = z.object({ uid: z.string().min(1), title: z.string().min(1), panels: z.array(panel) });

export type Dashboard = z.infer<typeof dashboard>;

export interface PanelQuery {
  /** `<dashboard title> / <panel title> / <refId>`, as test names and messages show it. */
  name: string;
  expr: string;
}

export async function loadDashboards(): Promise<Dashboard[]> {
  const files = (await readdir(DASHBOARDS_DIR)).filter((file) => file.endsWith('.json')).sort();
  return Promise.all(
    files.map(async (file) => {
      const parsed = dashboard.safeParse(JSON.parse(await readFile(path.join(DASHBOARDS_DIR, file), 'utf8')));
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new Error(`${file}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid dashboard'}`);
      }
      return parsed.data;
    }),
  );
}

export function dashboardQueries(dashboards: readonly Dashboard[]): PanelQuery[] {
  return dashboards.flatMap((board) =>
    board.panels.flatMap((item) =>
      item.targets.map((query) => ({
        name: `${board.title} / ${item.title} / ${query.refId}`,
        expr: query.expr,
      })),
    ),
  );
}

/**
 * The query as Grafana would send it: `$__rate_interval` becomes a window, here one long enough to
 * hold every sample a test scraped (Grafana picks at least four scrape intervals).
 */
export function resolveGrafanaVariables(expr: string, window: string): string {
  return expr
    .replaceAll('$__rate_interval', window)
    .replaceAll('$__interval', window)
    .replaceAll('$__range', window);
}
