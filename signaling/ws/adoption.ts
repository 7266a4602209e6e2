/**
 * The live streams of the control plane, read once when the edge starts: the timers of an edge
 * live in its memory only, so a starting edge (a deploy, a restart after a crash) hands every
 * live stream to `adopt` (stream-liveness.ts decides which get a grace period).
 *
 * The listing pages through every live stream, public and private (ListStreams with
 * include_private, as the service), until the control plane says it is complete. A page that
 * fails is asked for again with backoff, so the edge starts without the control plane and keeps
 * asking; the pages already read stay adopted. close() cuts a pending backoff short.
 */
import type { Logger } from '../../common/index.js';
import type { ControlPlaneClient } from '../../control-plane/client/index.js';
import type { ListStreamsResponse, StreamInfo } from '../../proto/gen/veza/stream/stream.js';

/** ListStreams' largest page (LIST_MAX_LIMIT of the control plane's validation). */
const ADOPT_PAGE = 100;
/** Backoff between attempts to list the live streams while the control plane is unreachable. */
const ADOPT_RETRY_MIN_MS = 1_000;
const ADOPT_RETRY_MAX_MS = 30_000;

/** Exponential backoff (1 s, 2 s, 4 s, ... 30 s) with equal jitter, so restarted edges do not ask in step. */
function adoptRetryMs(attempt: number): number {
  const ceiling = Math.min(ADOPT_RETRY_MAX_MS, ADOPT_RETRY_MIN_MS * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

export interface LiveStreamAdoptionOptions {
  controlPlane: Pick<ControlPlaneClient, 'stream'>;
  log: Logger;
  /** Takes one listed stream; true when it was adopted (for the log). */
  adopt(info: StreamInfo): boolean;
}

export class LiveStreamAdoption {
  readonly #options: LiveStreamAdoptionOptions;
  /** Wakes the pending backoff, so close() does not wait for it. */
  readonly #wakeups = new Set<() => void>();
  #closing = false;

  constructor(options: LiveStreamAdoptionOptions) {
    this.#options = options;
  }

  /** Lists every live stream once; resolves when done, or when closed. */
  async run(): Promise<void> {
    const { controlPlane, log } = this.#options;
    let pageToken = '';
    let failures = 0;
    let pages = 0;
    let listed = 0;
    let adopted = 0;
    while (!this.#closing) {
      let page: ListStreamsResponse;
      try {
        page = await controlPlane.stream.listStreams({ limit: ADOPT_PAGE, pageToken, includePrivate: true });
      } catch (error) {
        if (this.#closing) return;
        failures += 1;
        const retryInMs = adoptRetryMs(failures);
        log.warn(
          { err: error, attempt: failures, retryInMs, page: pages + 1 },
          'could not list the live streams to adopt; retrying',
        );
        await this.#sleep(retryInMs);
        continue;
      }
      failures = 0;
      pages += 1;
      listed += page.streams.length;
      for (const info of page.streams) if (this.#options.adopt(info)) adopted += 1;
      if (!page.nextPageToken) break;
      pageToken = page.nextPageToken;
    }
    if (!this.#closing) log.info({ listed, adopted, pages }, 'live streams adopted');
  }

  close(): void {
    this.#closing = true;
    for (const wake of [...this.#wakeups]) wake();
  }

  /** A timer close() cuts short. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#wakeups.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      timer.unref?.();
      this.#wakeups.add(wake);
    });
  }
}
