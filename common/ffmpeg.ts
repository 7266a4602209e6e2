/**
 * The one door to the system's ffmpeg and ffprobe.
 *
 * fluent-ffmpeg runs ffmpeg (argument building, progress parsing, killing); its README asks
 * for maintainers, so nothing else imports it and replacing it means rewriting this file
 * only. ffprobe runs directly: its JSON is all we need, plus the warnings fluent-ffmpeg
 * drops (e.g. "Estimating duration from bitrate", which says a duration is a guess).
 */
import { execFile } from 'node:child_process';
import ffmpeg from 'fluent-ffmpeg';
import { z } from 'zod';

export const FFMPEG_PATH = 'ffmpeg';
export const FFPROBE_PATH = 'ffprobe';

export class FfmpegError extends Error {
  override readonly name = 'FfmpegError';
  constructor(
    message: string,
    /** ffmpeg's own last words, for logs; may name paths, so it never reaches a user. */
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** Thrown when the signal aborted the run (the process was killed). */
export class FfmpegAbortedError extends Error {
  override readonly name = 'FfmpegAbortedError';
}

const numeric = z.union([z.string(), z.number()]).transform((value) => Number(value));

const streamSchema = z.object({
  index: z.number().int(),
  codec_type: z.string().optional(),
  codec_name: z.string().optional(),
  sample_rate: numeric.optional(),
  channels: z.number().int().optional(),
  bit_rate: numeric.optional(),
  duration: numeric.optional(),
  disposition: z.record(z.string(), z.number()).optional(),
  tags: z.record(z.string(), z.string()).optional(),
});

const probeSchema = z.object({
  streams: z.array(streamSchema).default([]),
  format: z
    .object({
      format_name: z.string().optional(),
      duration: numeric.optional(),
      bit_rate: numeric.optional(),
      size: numeric.optional(),
    })
    .optional(),
});

export type ProbeStream = z.infer<typeof streamSchema>;

export interface ProbeData {
  streams: ProbeStream[];
  format: { formatName: string | null; durationS: number | null; bitRate: number | null };
  /** Warning lines ffprobe printed while reading the file. */
  warnings: string[];
}

const finite = (value: number | undefined): number | null =>
  value === undefined || !Number.isFinite(value) ? null : value;

/** Rejects with FfmpegError when ffprobe cannot read the file at all. */
export function ffprobe(file: string, signal?: AbortSignal): Promise<ProbeData> {
  const args = ['-v', 'warning', '-print_format', 'json', '-show_format', '-show_streams', file];
  return new Promise((resolve, reject) => {
    execFile(
      FFPROBE_PATH,
      args,
      { maxBuffer: 16 * 1024 * 1024, ...(signal ? { signal } : {}) },
      (error, stdout, stderr) => {
        if (signal?.aborted) return reject(new FfmpegAbortedError('ffprobe aborted'));
        if (error) return reject(new FfmpegError(lastLine(stderr) || 'ffprobe failed', stderr));
        let parsed: z.infer<typeof probeSchema>;
        try {
          parsed = probeSchema.parse(JSON.parse(stdout));
        } catch {
          return reject(new FfmpegError('ffprobe printed unreadable output', stderr));
        }
        resolve({
          streams: parsed.streams,
          format: {
            formatName: parsed.format?.format_name ?? null,
            durationS: finite(parsed.format?.duration),
            bitRate: finite(parsed.format?.bit_rate),
          },
          warnings: stderr
            .split('\n')
            .map((line) => stripContext(line))
            .filter((line) => line.length > 0),
        });
      },
    );
  });
}

export interface FfmpegOutput {
  /** A file path, or a muxer's target (tee's slave list). */
  target: string;
  options: string[];
}

export interface FfmpegRun {
  input: string;
  inputOptions?: string[];
  /** Further inputs (files), numbered 1, 2, ... in maps. */
  extraInputs?: string[];
  /** A -filter_complex graph; outputs pick its labels with `-map`. */
  complexFilter?: string;
  outputs: FfmpegOutput[];
  /** Working directory of the process; relative output paths resolve against it. */
  cwd?: string;
  /** Seconds of media the run covers; turns ffmpeg's time into a 0..1 fraction for onProgress. */
  durationS?: number;
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
  /**
   * Asks ffmpeg to finish (SIGINT: it closes its outputs, trailers included) instead of killing
   * it; the run then resolves as a success. A live input (the recorder's RTP) ends only this way.
   */
  stop?: AbortSignal;
  /** Called with the process id once ffmpeg runs (a test kills it to play a crash). */
  onSpawn?: (pid: number) => void;
  /** Every line ffmpeg prints on stderr, as it prints it. */
  onStderr?: (line: string) => void;
  /** Kills ffmpeg after this long (a stuck decoder must not hold a worker slot forever). */
  timeoutMs?: number;
}

export interface FfmpegResult {
  /** Everything ffmpeg printed on stderr (filters such as ebur128 report there). */
  stderr: string;
}

export function runFfmpeg(run: FfmpegRun): Promise<FfmpegResult> {
  return new Promise((resolve, reject) => {
    if (run.signal?.aborted) return reject(new FfmpegAbortedError('aborted before start'));
    // stdoutLines 0: keep every line, since ebur128's summary comes last but error lines come first.
    const command = ffmpeg({ stdoutLines: 0, ...(run.cwd ? { cwd: run.cwd } : {}) })
      .setFfmpegPath(FFMPEG_PATH)
      .input(run.input);
    // `level` tags each line with its severity, so decoder errors can be told from chatter.
    // Spread, not an array: given one array, fluent-ffmpeg splits any item holding one space
    // ("comment=Cover (front)") into two arguments.
    // Stats (and so progress) five times a second instead of two: short files finish a stage quickly.
    const stats = run.onProgress ? ['-stats_period', '0.2'] : [];
    command.inputOptions(
      '-hide_banner',
      '-nostdin',
      '-loglevel',
      'level+info',
      ...stats,
      ...(run.inputOptions ?? []),
    );
    for (const extra of run.extraInputs ?? []) command.input(extra);
    if (run.complexFilter) command.complexFilter(run.complexFilter);
    for (const output of run.outputs) {
      command.output(output.target);
      const [only, ...more] = output.options;
      if (only === undefined) continue;
      // A lone option is the one case the variadic form cannot protect from splitting.
      if (more.length === 0 && only.includes(' '))
        throw new Error(`ffmpeg option "${only}" needs its own argument`);
      command.outputOptions(only, ...more);
    }

    let settled = false;
    let timedOut = false;
    const finish = (error: Error | null, stderr: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      run.signal?.removeEventListener('abort', onAbort);
      run.stop?.removeEventListener('abort', onStop);
      if (!error || (run.stop?.aborted && !run.signal?.aborted)) return resolve({ stderr });
      if (run.signal?.aborted) return reject(new FfmpegAbortedError('ffmpeg was stopped'));
      if (timedOut) return reject(new FfmpegError(`ffmpeg ran longer than ${run.timeoutMs} ms`, stderr));
      reject(new FfmpegError(errorLines(stderr)[0] ?? lastLine(stderr) ?? error.message, stderr));
    };
    const onAbort = () => command.kill('SIGKILL');
    run.signal?.addEventListener('abort', onAbort, { once: true });
    const onStop = () => command.kill('SIGINT');
    run.stop?.addEventListener('abort', onStop, { once: true });
    const { onSpawn, onStderr } = run;
    if (onSpawn) {
      command.on('start', () => {
        // fluent-ffmpeg keeps the child process here; its types do not declare it.
        const pid = (command as unknown as { ffmpegProc?: { pid?: number } }).ffmpegProc?.pid;
        if (pid !== undefined) onSpawn(pid);
        if (run.stop?.aborted) onStop();
      });
    }
    if (onStderr) command.on('stderr', (line: string) => onStderr(line));
    const timer = run.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          command.kill('SIGKILL');
        }, run.timeoutMs)
      : undefined;

    const { durationS, onProgress } = run;
    if (onProgress && durationS && durationS > 0) {
      // fluent-ffmpeg's own 'progress' parser gives up on lines tagged with a log level.
      command.on('stderr', (line: string) => {
        const seconds = timemarkSeconds(/time=\s*(\S+)/.exec(line)?.[1]);
        if (seconds !== null) onProgress(Math.min(1, Math.max(0, seconds / durationS)));
      });
    }
    command.on('end', (_stdout: string | null, stderr: string | null) => finish(null, stderr ?? ''));
    command.on('error', (error: Error, _stdout: string | null, stderr: string | null) =>
      finish(error, stderr ?? ''),
    );
    command.run();
  });
}

function timemarkSeconds(timemark: string | undefined): number | null {
  const match = /^(-?\d+):(\d+):(\d+(?:\.\d+)?)$/.exec(timemark ?? '');
  if (!match) return null;
  return Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]);
}

/** Drops the "[mp3 @ 0x55d...]" prefix: addresses mean nothing to a reader. */
function stripContext(line: string): string {
  return line
    .replace(/^\[[^\]]*@ 0x[0-9a-f]+\]\s*/, '')
    .replace(/^\[(?:info|warning|error|fatal|panic|verbose|debug)\]\s*/, '')
    .trim();
}

function lastLine(text: string): string | undefined {
  return text
    .split(/\r|\n/)
    .map(stripContext)
    .filter((line) => line.length > 0)
    .at(-1);
}

/** The error-level lines of a run (decoder complaints about the input, mostly), without tags. */
export function errorLines(stderr: string): string[] {
  const lines: string[] = [];
  for (const line of stderr.split(/\r|\n/)) {
    const match = /\[(?:error|fatal|panic)\]\s*(.*)$/.exec(line);
    if (match?.[1]) lines.push(match[1].trim());
  }
  return lines;
}

/** What the pipeline asks of ffmpeg; a build without one of them could not make a single track. */
const REQUIRED = {
  encoders: ['libopus', 'aac', 'mjpeg'],
  muxers: ['ogg', 'mp4', 'hls', 'tee', 's16le', 'image2'],
  filters: ['ebur128', 'volume', 'aresample'],
} as const;

type Lister<T> = (callback: (error: Error | null, found: T) => void) => void;

function list<T>(lister: Lister<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    lister((error, found) => (error ? reject(error) : resolve(found)));
  });
}

function execText(binary: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: 10_000, maxBuffer: 4 * 1024 * 1024 }, (error, stdout) => {
      if (error) {
        reject(new Error(`${binary} is not available (${error.message}); install the ffmpeg package`));
      } else {
        resolve(stdout);
      }
    });
  });
}

/** Filter names from `ffmpeg -filters` (fluent-ffmpeg's own list drops sinks such as ebur128). */
function filterNames(listing: string): Set<string> {
  const names = new Set<string>();
  for (const line of listing.split('\n')) {
    const match = /^\s*[T.][S.][C.]\s+(\S+)\s+\S+->\S+/.exec(line);
    if (match?.[1]) names.add(match[1]);
  }
  return names;
}

/**
 * Fails with a clear message when the system's ffmpeg or ffprobe is missing, too old to run,
 * or built without an encoder, muxer or filter the pipeline uses. Run once at start: it also
 * fills fluent-ffmpeg's cache of formats and encoders, which it otherwise reads (two ffmpeg
 * runs) before the first job's first command.
 */
export async function checkFfmpeg(): Promise<{ version: string }> {
  const [version, , filterListing] = await Promise.all([
    execText(FFMPEG_PATH, ['-version']),
    execText(FFPROBE_PATH, ['-version']),
    execText(FFMPEG_PATH, ['-hide_banner', '-filters']),
  ]);
  const command = ffmpeg().setFfmpegPath(FFMPEG_PATH);
  const [encoders, formats] = await Promise.all([
    list<ffmpeg.Encoders>((callback) => command.availableEncoders(callback)),
    list<ffmpeg.Formats>((callback) => command.availableFormats(callback)),
  ]);
  const filters = filterNames(filterListing);
  const missing = [
    ...REQUIRED.encoders.filter((name) => !encoders[name]).map((name) => `encoder ${name}`),
    ...REQUIRED.muxers.filter((name) => !formats[name]?.canMux).map((name) => `muxer ${name}`),
    ...REQUIRED.filters.filter((name) => !filters.has(name)).map((name) => `filter ${name}`),
  ];
  if (missing.length > 0) {
    throw new Error(`${FFMPEG_PATH} lacks what transcoding needs: ${missing.join(', ')}`);
  }
  return { version: version.split('\n')[0] ?? '' };
}
