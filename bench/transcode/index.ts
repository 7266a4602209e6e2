/**
 * The transcode scenario: J uploads processed in parallel, and the same work by the plain
 * ffmpeg command line. Reports x-realtime per job (audio seconds per wall second), jobs per
 * minute and each stage's share of the time.
 *
 * Path: through the platform (multipart POST /stream/upload, the queue, the worker role, GET
 * /tracks/:id until ready) when it has the upload route; otherwise the workers/ pipeline is
 * called directly (transcodeTrack over a file BlobStorage, no queue). The result says which.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { FsBlobStorage } from '../../common/ports/index.js';
import { transcodeTrack } from '../../workers/index.js';
import { ffmpegCliJob } from '../baselines/ffmpeg-cli.js';
import { busyPercent, machineCpuTimes } from '../lib/proc.js';
import type { Progress } from '../lib/progress.js';
import { createUser } from '../lib/rest.js';
import { ratio, type ScenarioOutput } from '../lib/results.js';
import { round } from '../lib/stats.js';
import { openPlatform, type TargetOptions } from '../lib/target.js';
import { othersBusyPercent, ourCpuSeconds } from './cpu.js';
import { stageSeconds, TrackWatcher, uploadJob, uploadRouteExists } from './upload-path.js';

const run = promisify(execFile);

export interface TranscodeOptions {
  jobs: number;
  fileSeconds: number;
  baseline: boolean;
  target: TargetOptions;
}

export interface TranscodeStep {
  path: string;
  jobs: number;
  file_seconds: number;
  /** Audio seconds per wall second of each job's processing: median and slowest job. */
  x_realtime: { p50: number; min: number };
  /** The same from the upload's answer to ready: queue wait included. */
  x_realtime_end_to_end: { p50: number; min: number };
  jobs_per_min: number;
  wall_s: number;
  upload_ms_p50: number | null;
  /** Each stage's share of the summed stage time, %. */
  stage_share_pct: Record<string, number>;
  /** Mean wall time per job of each stage, ms (stages that run beside others overlap them). */
  stage_ms_per_job: Record<string, number>;
  /**
   * One job as the bench sees it, mean ms, in order: the upload, the queue wait (the worker's
   * `claim` of the track is its end), then the job's critical path (download, probe, loudness,
   * renditions, publish, record) and `notify_and_gaps`, what the processing time holds beyond
   * them (the notifications' trip, the handovers between steps). `waveform` and `cover` run
   * beside the renditions and are not on the path. Null for the command lines (their stages
   * are the whole job).
   */
  job_steps_ms: Record<string, number> | null;
  machine_busy_pct: number;
  /**
   * CPU seconds per job on our side: the platform's processes (server, PostgreSQL, ffmpeg) and
   * this bench process for the platform; this process and its ffmpeg for the command lines.
   */
  cpu_s_per_job: number;
  /** The share of all cores other work used during the step, %: machine_busy_pct minus ours. */
  others_busy_pct: number;
  errors: string[];
}

interface JobTiming {
  /** Processing only. */
  wallMs: number;
  /** Upload answered -> ready (equals wallMs without a queue). */
  endToEndMs: number;
  uploadMs: number | null;
  queueWaitMs: number | null;
  stagesMs: Record<string, number>;
}

/** The pipeline's steps one after the other; the rest of the stages run beside them. */
const CRITICAL_STEPS = ['download', 'probe', 'loudness', 'renditions', 'publish', 'record'];

function jobSteps(done: JobTiming[], stageMs: Record<string, number>): Record<string, number> | null {
  if (done.length === 0 || done.every((d) => d.uploadMs === null)) return null;
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  const processing = mean(done.map((d) => d.wallMs));
  const onPath = CRITICAL_STEPS.reduce((sum, step) => sum + (stageMs[step] ?? 0), 0);
  const steps: Record<string, number> = {
    upload: mean(done.flatMap((d) => (d.uploadMs === null ? [] : [d.uploadMs]))),
    queue_wait: mean(done.flatMap((d) => (d.queueWaitMs === null ? [] : [d.queueWaitMs]))),
  };
  for (const step of ['claim', ...CRITICAL_STEPS, 'waveform', 'cover'])
    if (stageMs[step] !== undefined) steps[step] = stageMs[step];
  steps.notify_and_gaps = processing - onPath;
  steps.processing = processing;
  return Object.fromEntries(Object.entries(steps).map(([step, ms]) => [step, round(ms, 1)]));
}

/** A music-like upload: a chord over pink noise, stereo 44.1 kHz MP3 at 192k. */
async function makeSource(dir: string, seconds: number): Promise<string> {
  const file = path.join(dir, 'upload.mp3');
  await run('ffmpeg', [
    '-nostdin',
    '-v',
    'error',
    '-f',
    'lavfi',
    '-i',
    `sine=f=220:d=${seconds}`,
    '-f',
    'lavfi',
    '-i',
    `sine=f=277:d=${seconds}`,
    '-f',
    'lavfi',
    '-i',
    `anoisesrc=d=${seconds}:c=pink:a=0.08`,
    '-filter_complex',
    'amix=inputs=3,volume=2',
    '-ac',
    '2',
    '-ar',
    '44100',
    '-c:a',
    'libmp3lame',
    '-b:a',
    '192k',
    '-y',
    file,
  ]);
  return file;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN;
}

function shares(totals: Record<string, number>): Record<string, number> {
  const sum = Object.values(totals).reduce((a, b) => a + b, 0);
  return Object.fromEntries(
    Object.entries(totals).map(([stage, ms]) => [stage, sum > 0 ? round((100 * ms) / sum, 1) : 0]),
  );
}

function perJob(totals: Record<string, number>, jobs: number, unitMs: number): Record<string, number> {
  return Object.fromEntries(
    Object.entries(totals).map(([stage, value]) => [stage, jobs > 0 ? round((value * unitMs) / jobs, 1) : 0]),
  );
}

function speed(fileSeconds: number, ms: number[]): { p50: number; min: number } {
  const speeds = ms.map((m) => fileSeconds / (m / 1000));
  return { p50: round(median(speeds), 1), min: round(Math.min(...speeds), 1) };
}

async function measure(
  pathName: string,
  options: TranscodeOptions,
  job: (index: number) => Promise<JobTiming>,
  stages?: () => Promise<Record<string, number>>,
  serverPid: number | null = null,
): Promise<TranscodeStep> {
  const stagesBefore = stages ? await stages() : {};
  const machine0 = machineCpuTimes();
  const cpu0 = ourCpuSeconds(serverPid);
  const started = performance.now();
  const results = await Promise.allSettled(Array.from({ length: options.jobs }, (_, i) => job(i)));
  const wallS = (performance.now() - started) / 1000;
  const ourCpuS = ourCpuSeconds(serverPid) - cpu0;
  const machineBusyPct = busyPercent(machine0, machineCpuTimes());
  const done = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const errors = results.flatMap((r) =>
    r.status === 'rejected' ? [String(r.reason?.message ?? r.reason)] : [],
  );
  let totals: Record<string, number> = {};
  // The histogram sums seconds, the pipeline's own timings milliseconds.
  let unitMs = 1;
  if (stages) {
    unitMs = 1000;
    // The workers' histogram: seconds per stage summed over every job since the start.
    const after = await stages();
    totals = Object.fromEntries(
      Object.entries(after).map(([stage, s]) => [stage, s - (stagesBefore[stage] ?? 0)]),
    );
  } else {
    for (const d of done)
      for (const [stage, ms] of Object.entries(d.stagesMs)) totals[stage] = (totals[stage] ?? 0) + ms;
  }
  const uploads = done.flatMap((d) => (d.uploadMs === null ? [] : [d.uploadMs]));
  const stageMsPerJob = perJob(totals, done.length, unitMs);
  return {
    path: pathName,
    jobs: options.jobs,
    file_seconds: options.fileSeconds,
    x_realtime: speed(
      options.fileSeconds,
      done.map((d) => d.wallMs),
    ),
    x_realtime_end_to_end: speed(
      options.fileSeconds,
      done.map((d) => d.endToEndMs),
    ),
    jobs_per_min: round((done.length / wallS) * 60, 1),
    wall_s: round(wallS, 2),
    upload_ms_p50: uploads.length > 0 ? round(median(uploads), 1) : null,
    stage_share_pct: shares(totals),
    stage_ms_per_job: stageMsPerJob,
    job_steps_ms: jobSteps(done, stageMsPerJob),
    machine_busy_pct: round(machineBusyPct, 1),
    cpu_s_per_job: round(ourCpuS / Math.max(1, done.length), 2),
    others_busy_pct: round(othersBusyPercent(machineBusyPct, ourCpuS, wallS), 1),
    errors: [...new Set(errors)].slice(0, 5),
  };
}

const UPLOAD_PATH =
  'platform: POST /stream/upload (multipart) -> control plane -> job queue -> worker role -> GET /tracks/:id ready';
const PIPELINE_PATH =
  'workers pipeline called directly (transcodeTrack over FsBlobStorage), no upload API, no queue';

async function measurePlatform(
  options: TranscodeOptions,
  bytes: Buffer,
  dir: string,
  progress: Progress,
): Promise<{ step: TranscodeStep; settings: Record<string, unknown> }> {
  const target = await openPlatform(options.target, progress);
  try {
    const user = await createUser(target.baseUrl, 'uploader');
    if (await uploadRouteExists(target.baseUrl, user)) {
      progress.note(
        `platform: ${options.jobs} upload(s) in parallel through the upload API, queue and workers`,
      );
      const watcher = await TrackWatcher.open(target.baseUrl, user);
      try {
        const step = await measure(
          UPLOAD_PATH,
          options,
          async (i) => {
            const job = await uploadJob(target.baseUrl, user, watcher, bytes, i, {
              timeoutMs: 60_000 + options.fileSeconds * 2000,
            });
            return {
              wallMs: job.processingMs,
              endToEndMs: job.toReadyMs,
              uploadMs: job.uploadMs,
              queueWaitMs: job.queueWaitMs,
              stagesMs: {},
            };
          },
          () => stageSeconds(target.baseUrl),
          target.serverPid,
        );
        return { step, settings: target.settings };
      } finally {
        watcher.close();
      }
    }
  } finally {
    await target.close();
  }
  progress.note(`no upload route on this platform: ${options.jobs} job(s) through the pipeline directly`);
  const blobs = new FsBlobStorage({ root: path.join(dir, 'blobs'), baseUrl: 'http://127.0.0.1/media' });
  for (let i = 0; i < options.jobs; i++) await blobs.put(`uploads/bench-${i}.mp3`, bytes, 'audio/mpeg');
  const step = await measure(PIPELINE_PATH, options, async (i) => {
    const t = performance.now();
    const result = await transcodeTrack({
      blobs,
      trackId: i + 1,
      sourceKey: `uploads/bench-${i}.mp3`,
      maxDurationS: 3 * 3600,
    });
    const ms = performance.now() - t;
    return {
      wallMs: ms,
      endToEndMs: ms,
      uploadMs: null,
      queueWaitMs: null,
      stagesMs: result.timingsMs as Record<string, number>,
    };
  });
  return { step, settings: target.settings };
}

export async function transcodeScenario(
  options: TranscodeOptions,
  progress: Progress,
): Promise<ScenarioOutput> {
  const dir = await mkdtemp(path.join(tmpdir(), 'veza-bench-transcode-'));
  try {
    progress.note(`making a ${options.fileSeconds} s test upload`);
    const source = await makeSource(dir, options.fileSeconds);
    const bytes = await readFile(source);
    const { step: measured, settings } = await measurePlatform(options, bytes, dir, progress);
    progress.note(
      `platform: ${measured.x_realtime.p50}x realtime per job (${measured.x_realtime_end_to_end.p50}x with queue wait), ${measured.jobs_per_min} jobs/min`,
    );
    let bare: TranscodeStep | null = null;
    if (options.baseline) {
      progress.note(`ffmpeg command line: ${options.jobs} job(s) in parallel`);
      bare = await measure('plain ffmpeg/ffprobe command lines', options, async () => {
        const job = await ffmpegCliJob(source);
        return {
          wallMs: job.wallMs,
          endToEndMs: job.wallMs,
          uploadMs: null,
          queueWaitMs: null,
          stagesMs: job.stagesMs,
        };
      });
      progress.note(
        `ffmpeg command line: ${bare.x_realtime.p50}x realtime per job, ${bare.jobs_per_min} jobs/min`,
      );
    }
    const speedRatio = bare ? ratio(measured.x_realtime.p50, bare.x_realtime.p50) : null;
    return {
      measured: `J uploads (MP3, 192k stereo) transcoded in parallel (ffprobe; one analysis decode measuring loudness and true peak with ebur128 and writing the waveform PCM; the renditions with one linear gain, Opus 96k and AAC 128k M4A+HLS in two ffmpeg side by side; waveform, publish). Path measured: ${measured.path}. Baseline: the plain ffmpeg command lines for the same work.`,
      options: {
        jobs: options.jobs,
        file_seconds: options.fileSeconds,
        path: measured.path === UPLOAD_PATH ? 'upload-api' : 'pipeline-direct',
        url: options.target.url ?? null,
        platform: settings,
      },
      steps: [measured],
      baseline: bare
        ? {
            system: 'ffmpeg-cli',
            description:
              'ffprobe, one analysis decode (ebur128 loudness and true peak, waveform PCM) and the renditions with the resulting gain (Opus 96k in one ffmpeg, AAC 128k teed to M4A and HLS in another, side by side), as plain command lines on the same file.',
            steps: [bare],
            ratios: [
              {
                jobs: options.jobs,
                x_realtime_p50: speedRatio,
                jobs_per_min: ratio(measured.jobs_per_min, bare.jobs_per_min),
              },
            ],
          }
        : null,
      targets: [
        {
          name: 'transcode x-realtime per job (p50)',
          target: '>= 30x',
          value: Number.isFinite(measured.x_realtime.p50) ? measured.x_realtime.p50 : null,
          met: Number.isFinite(measured.x_realtime.p50) ? measured.x_realtime.p50 >= 30 : null,
        },
        ...(bare
          ? [
              {
                name: 'x-realtime per job against the ffmpeg command lines (same invocation)',
                target: '>= 0.9x',
                value: speedRatio,
                met: speedRatio === null ? null : speedRatio >= 0.9,
              },
            ]
          : []),
      ],
      notes: [
        'ffmpeg runs as separate processes: J parallel jobs on shared cores divide the CPU, so x-realtime per job falls as J grows while jobs/min shows the throughput.',
        'Through the upload API, x_realtime is processing only: from the worker\'s "processing" notification to its "ready" one, as the uploader\'s WebSocket receives them (track.progress); x_realtime_end_to_end adds the queue wait (the worker role runs WORKER_CONCURRENCY jobs at once). GET /tracks/:id is read once after "ready" to confirm it.',
        'cpu_s_per_job is our side of the step (the platform includes its server, PostgreSQL, the upload and the notifications; the command lines only ffmpeg) and others_busy_pct what the rest of the machine used meanwhile: on shared cores they tell a slower path from a busier machine.',
        "job_steps_ms splits one job as the bench sees it: upload, queue_wait (ending with the worker's claim of the track), the critical path (download, probe, loudness, renditions, publish, record) and notify_and_gaps, the processing time beyond those steps.",
        "Stage shares and stage_ms_per_job come from the workers' veza_transcode_stage_seconds histogram (upload path; on a platform given with --url it also counts any other pipeline job run meanwhile, such as an ended stream's replay) or the pipeline's own timings (direct path). 'loudness' is the analysis decode (it also proves the file decodes and writes the waveform PCM); 'waveform' and 'cover' run beside the long stages, so the stages add up to more than the job.",
      ],
      charts: [
        {
          title: 'Share of job time per stage (%)',
          xLabel: 'stage',
          yLabel: '%',
          categories: [
            ...new Set(
              [measured, ...(bare ? [bare] : [])].flatMap((step) => Object.keys(step.stage_share_pct)),
            ),
          ],
          series: [measured, ...(bare ? [bare] : [])].map((step, i) => ({
            name: i === 0 ? 'pipeline' : 'ffmpeg command line',
            dashed: i > 0,
            points: [],
            values: step.stage_share_pct,
          })),
        },
      ],
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
