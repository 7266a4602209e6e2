/**
 * Transcode jobs through the platform: a multipart POST /stream/upload per file (the edge
 * streams it to the control plane, which stores it and queues the transcode), then the worker
 * role takes the job. When each track starts processing and when it is ready comes from the
 * owner's `track.progress` notifications on the signaling WebSocket, as the web app sees them:
 * polling GET /tracks/:id instead added up to its period to every reading. Stage times come
 * from the workers' own histogram on /metrics.
 */
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { ChatClient, SignalingConnection, type TrackProgress } from '../../signaling/client/index.js';
import { scrape } from '../lib/prom.js';
import { type BenchUser, signalingWsUrl } from '../lib/rest.js';
import { nodeWebSocket } from '../lib/ws.js';

const trackReply = z
  .object({ track: z.object({ id: z.number().int(), status: z.string() }).loose() })
  .loose();
const trackState = z.object({
  track: z.object({ status: z.string(), failure_reason: z.string().nullable().optional() }).loose(),
});

export interface UploadedJob {
  uploadMs: number;
  /** From the upload's answer to the track being ready: queue wait plus processing. */
  toReadyMs: number;
  /** From the worker's `processing` notification to its `ready` one. */
  processingMs: number;
  /** From the upload's answer to the `processing` notification (0 when it came first). */
  queueWaitMs: number;
}

/** False when this platform has no upload route (404): the caller then measures the pipeline directly. */
export async function uploadRouteExists(baseUrl: string, user: BenchUser): Promise<boolean> {
  const response = await fetch(`${baseUrl}/stream/upload`, {
    method: 'OPTIONS',
    headers: { authorization: `Bearer ${user.accessToken}` },
  });
  return response.status !== 404;
}

interface TrackTimes {
  /** When the first `processing` notification arrived. */
  processingAt: number | null;
  doneAt: number | null;
  status: TrackProgress['status'] | null;
  failureReason: string | null;
}

/**
 * The user's `track.progress` notifications, timed on arrival. Events are kept per track from
 * the moment the socket watches, since the worker may start (and notify) before the upload's
 * own answer reaches us.
 */
export class TrackWatcher {
  readonly #tracks = new Map<number, TrackTimes>();
  readonly #waiters = new Map<number, () => void>();

  private constructor(
    private readonly connection: SignalingConnection,
    private readonly chat: ChatClient,
  ) {
    chat.on('trackProgress', (event: TrackProgress) => {
      const now = performance.now();
      const times = this.#times(event.trackId);
      if (event.status === 'processing' && times.processingAt === null) times.processingAt = now;
      if (event.status !== 'processing' && times.doneAt === null) {
        times.doneAt = now;
        times.status = event.status;
        times.failureReason = event.failureReason ?? null;
        this.#waiters.get(event.trackId)?.();
      }
    });
  }

  static async open(baseUrl: string, user: BenchUser): Promise<TrackWatcher> {
    const connection = new SignalingConnection({
      url: signalingWsUrl(baseUrl),
      token: user.accessToken,
      WebSocket: nodeWebSocket(),
      reconnect: false,
    });
    const chat = new ChatClient({ connection });
    try {
      await connection.connect();
      // Listing notifications is what makes the edge send this user's live events to the socket.
      await chat.loadNotifications();
    } catch (error) {
      chat.close();
      connection.close();
      throw error;
    }
    return new TrackWatcher(connection, chat);
  }

  #times(trackId: number): TrackTimes {
    let times = this.#tracks.get(trackId);
    if (!times) {
      times = { processingAt: null, doneAt: null, status: null, failureReason: null };
      this.#tracks.set(trackId, times);
    }
    return times;
  }

  /** Resolves with the track's times once it is ready or failed; rejects after `timeoutMs`. */
  async done(trackId: number, timeoutMs: number): Promise<TrackTimes> {
    const times = this.#times(trackId);
    if (times.doneAt === null) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await new Promise<void>((resolve, reject) => {
          this.#waiters.set(trackId, resolve);
          timer = setTimeout(
            () => reject(new Error(`track ${trackId}: no ready notification after ${timeoutMs} ms`)),
            timeoutMs,
          );
        });
      } finally {
        clearTimeout(timer);
        this.#waiters.delete(trackId);
      }
    }
    return times;
  }

  close(): void {
    this.chat.close();
    this.connection.close();
  }
}

export async function uploadJob(
  baseUrl: string,
  user: BenchUser,
  watcher: TrackWatcher,
  file: Buffer,
  index: number,
  options: { timeoutMs: number },
): Promise<UploadedJob> {
  const form = new FormData();
  form.set('title', `benchmark upload ${index + 1}`);
  form.set('file', new Blob([new Uint8Array(file)], { type: 'audio/mpeg' }), `bench-${index + 1}.mp3`);
  const started = performance.now();
  const response = await fetch(`${baseUrl}/stream/upload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${user.accessToken}` },
    body: form,
  });
  const text = await response.text();
  if (response.status !== 201)
    throw new Error(`POST /stream/upload: HTTP ${response.status} ${text.slice(0, 200)}`);
  const { track } = trackReply.parse(JSON.parse(text));
  const uploaded = performance.now();
  const times = await watcher.done(track.id, options.timeoutMs);
  if (times.status === 'failed')
    throw new Error(`track ${track.id} failed: ${times.failureReason ?? 'no reason'}`);
  // What the notification said, the API says too (read after the timing, so it costs nothing).
  const poll = await fetch(`${baseUrl}/tracks/${track.id}`, {
    headers: { authorization: `Bearer ${user.accessToken}` },
  });
  if (!poll.ok) throw new Error(`GET /tracks/${track.id}: HTTP ${poll.status}`);
  const state = trackState.parse(await poll.json()).track;
  if (state.status !== 'ready')
    throw new Error(`track ${track.id}: notified ready, but GET /tracks/:id says ${state.status}`);
  const readyAt = times.doneAt ?? performance.now();
  const processingAt = times.processingAt ?? uploaded;
  return {
    uploadMs: uploaded - started,
    toReadyMs: readyAt - uploaded,
    processingMs: readyAt - processingAt,
    queueWaitMs: Math.max(0, processingAt - uploaded),
  };
}

/** Seconds per pipeline stage so far, from the workers' histogram (sum per stage label). */
export async function stageSeconds(baseUrl: string): Promise<Record<string, number>> {
  const samples = await scrape(`${baseUrl}/metrics`);
  const totals: Record<string, number> = {};
  for (const sample of samples) {
    if (sample.name !== 'veza_transcode_stage_seconds_sum') continue;
    const stage = sample.labels.stage ?? 'unknown';
    totals[stage] = (totals[stage] ?? 0) + sample.value;
  }
  return totals;
}
