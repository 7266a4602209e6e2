/**
 * `window.__veza`: a small read-only hook for automated tests and for support ("what does
 * your browser see?"). It exposes WebRTC stats of the current page's media, nothing secret.
 */

export interface DebugSource {
  page: string;
  state(): string;
  stats(): Promise<RTCStatsReport | null>;
}

export interface VezaDebug {
  page: string;
  state(): string;
  /** The current media's RTCStats as plain objects (empty before media flows). */
  stats(): Promise<Array<Record<string, unknown>>>;
}

declare global {
  interface Window {
    __veza?: VezaDebug;
  }
}

export function exposeDebug(source: DebugSource): void {
  window.__veza = {
    page: source.page,
    state: () => source.state(),
    async stats() {
      const report = await source.stats();
      if (!report) return [];
      return [...report.values()].map((entry) => ({ ...(entry as Record<string, unknown>) }));
    },
  };
}
