/**
 * Transcode jobs through the platform: a multipart POST /stream/upload per file (the edge
 * streams it to the control plane, which stores it and queues the transcode), then the worker
 * role takes the job; GET /tracks/:id is polled to see when each track starts processing and
 * when it is ready. Stage times come from the workers' own histogram on /metrics.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { scrape } from '../lib/prom.js';
import type { BenchUser } from '../lib/rest.js';

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
  /** From the first poll that saw `processing` to `ready` (poll resolution: `pollMs`). */
  processingMs: number;
}

/** False when this platform has no upload route (404): the caller then measures the pipeline directly. */
export async function uploadRouteExists(baseUrl: string, user: BenchUser): Promise<boolean> {
  const response = await fetch(`${baseUrl}/stream/upload`, {
    method: 'OPTIONS',
    headers: { authorization: `Bearer ${user.accessToken}` },
  });
  return response.status !== 404;
}

export async function uploadJob(
  baseUrl: string,
  user: BenchUser,
  file: Buffer,
  index: number,
  options: { pollMs: number; timeoutMs: number },
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
  let processingAt: number | null = track.status === 'processing' ? uploaded : null;
  const deadline = uploaded + options.timeoutMs;
  while (performance.now() < deadline) {
    const poll = await fetch(`${baseUrl}/tracks/${track.id}`, {
      headers: { authorization: `Bearer ${user.accessToken}` },
    });
    if (!poll.ok) throw new Error(`GET /tracks/${track.id}: HTTP ${poll.status}`);
    const state = trackState.parse(await poll.json()).track;
    const now = performance.now();
    if (state.status === 'processing' && processingAt === null) processingAt = now;
    if (state.status === 'ready') {
      return {
        uploadMs: uploaded - started,
        toReadyMs: now - uploaded,
        processingMs: now - (processingAt ?? uploaded),
      };
    }
    if (state.status === 'failed')
      throw new Error(`track ${track.id} failed: ${state.failure_reason ?? 'no reason'}`);
    await sleep(options.pollMs);
  }
  throw new Error(`track ${track.id} not ready after ${options.timeoutMs} ms`);
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
