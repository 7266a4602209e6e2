/**
 * What a process needs to do its work (PostgreSQL, Redis, NATS, blob storage, the media-node
 * registry), probed in the background every HEALTH_PROBE_INTERVAL_MS. Readiness (/readyz) and
 * grpc.health.v1 answer from the last result, so a probe from an orchestrator or a load balancer
 * never waits on a database that is down, and many probes cost one.
 *
 * A change is logged with its reason and exported as `veza_dependency_up{dependency}`; listeners
 * (the control plane's health service) hear of it at once.
 */
import type { Logger } from './log.js';
import { counter, gauge } from './metrics.js';

export const DEPENDENCIES = ['postgres', 'redis', 'nats', 'blob-storage', 'media-registry'] as const;
export type DependencyName = (typeof DEPENDENCIES)[number];

export interface DependencyProbe {
  name: DependencyName;
  /** Resolves when the dependency answers; rejects (with the reason) when it does not. */
  check(): Promise<void>;
  /**
   * Reported (log, metric, the services that need it) but not a condition of the whole process's
   * readiness: with no media node live, a control plane cannot place streams, yet it must keep
   * taking logins, so a load balancer must not take it out.
   */
  advisory?: boolean;
}

export interface DependencyStatus {
  up: boolean;
  /** Why it is down; null when up. */
  reason: string | null;
  /** When it was last probed (epoch ms). */
  checkedAt: number;
}

export interface DependencyMonitor {
  /** Resolves after the first round of probes, so a process is not reported ready before it knows. */
  readonly ready: Promise<void>;
  /** The dependencies this process probes. */
  readonly names: readonly DependencyName[];
  /** Those of them the process's readiness depends on (all but the advisory ones). */
  readonly required: readonly DependencyName[];
  status(name: DependencyName): DependencyStatus | undefined;
  /** Every probed dependency's last status. */
  snapshot(): Partial<Record<DependencyName, DependencyStatus>>;
  /** Whether each of `names` that is probed (default: the required ones) is up. */
  allUp(names?: readonly DependencyName[]): boolean;
  /** Adds a probe known only once a component started (the media-node registry); probed at once. */
  add(probe: DependencyProbe): void;
  /** Called on every change of a dependency's state (not on every probe). */
  onChange(listener: (name: DependencyName, status: DependencyStatus) => void): void;
  close(): void;
}

export interface DependencyMonitorOptions {
  probes: readonly DependencyProbe[];
  intervalMs: number;
  /** A probe slower than this counts as down. */
  timeoutMs: number;
  log: Logger;
}

const upGauge = gauge(
  'veza_dependency_up',
  "1 when the process's last probe of a dependency it needs succeeded, 0 when it failed",
  ['dependency'],
  // Threads of one process probing the same dependency: down if any of them finds it down.
  { aggregator: 'min' },
);
const probeFailures = counter(
  'veza_dependency_probe_failures_total',
  'Dependency probes that failed or timed out',
  ['dependency'],
);

function withTimeout(check: () => Promise<void>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([check(), timeout]).finally(() => clearTimeout(timer));
}

/** A reason fit for a log line and a readiness body: the error's message, never a stack or a URL. */
function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  const text = typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message;
  // Connection strings can carry credentials; a probe's reason never needs the address.
  return text.replace(/[a-z][a-z0-9+.-]*:\/\/\S+/gi, '<url>').slice(0, 300) || 'probe failed';
}

export function startDependencyMonitor(options: DependencyMonitorOptions): DependencyMonitor {
  const log = options.log.child({ component: 'dependency-health' });
  const statuses = new Map<DependencyName, DependencyStatus>();
  const listeners: Array<(name: DependencyName, status: DependencyStatus) => void> = [];
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const probeOne = async (probe: DependencyProbe): Promise<void> => {
    let next: DependencyStatus;
    try {
      await withTimeout(probe.check, options.timeoutMs);
      next = { up: true, reason: null, checkedAt: Date.now() };
    } catch (error) {
      probeFailures.inc({ dependency: probe.name });
      next = { up: false, reason: reasonOf(error), checkedAt: Date.now() };
    }
    if (closed) return;
    const previous = statuses.get(probe.name);
    statuses.set(probe.name, next);
    upGauge.set({ dependency: probe.name }, next.up ? 1 : 0);
    if (previous?.up === next.up) return;
    if (next.up) {
      if (previous) log.info({ dependency: probe.name }, `${probe.name} is back`);
    } else {
      log.warn({ dependency: probe.name, reason: next.reason }, `${probe.name} is down: ${next.reason}`);
    }
    for (const listener of listeners) listener(probe.name, next);
  };

  const probes = [...options.probes];
  const round = () => Promise.all(probes.map(probeOne)).then(() => undefined);
  const schedule = () => {
    if (closed) return;
    timer = setTimeout(() => {
      round().finally(schedule);
    }, options.intervalMs);
    timer.unref();
  };
  const ready = round().finally(schedule);
  const names = () => probes.map((probe) => probe.name);
  const required = () => probes.filter((probe) => !probe.advisory).map((probe) => probe.name);

  return {
    ready,
    get names() {
      return names();
    },
    get required() {
      return required();
    },
    status: (name) => statuses.get(name),
    snapshot: () => Object.fromEntries(statuses),
    allUp: (wanted = required()) => {
      const probed = names();
      return wanted.every((name) => !probed.includes(name) || statuses.get(name)?.up === true);
    },
    add(probe) {
      if (closed) return;
      if (probes.some((known) => known.name === probe.name)) {
        throw new Error(`a ${probe.name} probe is registered already`);
      }
      probes.push(probe);
      void probeOne(probe);
    },
    onChange(listener) {
      listeners.push(listener);
    },
    close() {
      closed = true;
      clearTimeout(timer);
    },
  };
}

/** The readiness answer of a process whose only conditions are its dependencies. */
export function dependencyReadiness(monitor: DependencyMonitor): {
  ready: boolean;
  checks: Record<string, string>;
} {
  const checks: Record<string, string> = {};
  for (const name of monitor.names) {
    const status = monitor.status(name);
    const state = status === undefined ? 'not probed yet' : status.up ? 'up' : `down: ${status.reason}`;
    checks[name] = monitor.required.includes(name) || state === 'up' ? state : `${state} (advisory)`;
  }
  return { ready: monitor.allUp(), checks };
}
