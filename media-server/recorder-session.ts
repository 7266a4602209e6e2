/**
 * One run of a stream's recorder: a PlainTransport consumer of the broadcaster's producer sends
 * plain RTP to an ffmpeg that reads it through an SDP file and copies the Opus packets into Ogg
 * segments (no re-encoding). Each segment is uploaded to the stream's recording prefix as soon as
 * ffmpeg closes it (ffmpeg's segment list says when), so a crash loses at most the open one.
 *
 * Timing: ffmpeg timestamps packets by their RTP timestamps, so silence sent as DTX (no packets,
 * timestamps advancing) keeps its length inside a segment. The wall-clock anchor is the moment
 * mediasoup sent ffmpeg its first packet (the consumer's first `rtp` trace), taken only once
 * ffmpeg has bound its port, so that packet is the one its timeline starts from. Each segment key
 * then carries its wall-clock start: anchor + its start in ffmpeg's timeline.
 */
import { createSocket } from 'node:dgram';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { types as ms } from 'mediasoup';
import {
  ROUTER_RTP_CAPABILITIES,
  recordingSegmentKey,
  recordingWriterKey,
} from '../common/contracts/index.js';
import { type Logger, runFfmpeg } from '../common/index.js';
import type { BlobStorage } from '../common/ports/index.js';
import type { RecordingMetrics } from './recording-metrics.js';

export interface RecorderSessionOptions {
  blobs: BlobStorage;
  segmentSeconds: number;
  log: Logger;
  metrics: RecordingMetrics;
  /** How long ffmpeg may take to bind its port before the session counts as failed. */
  bindTimeoutMs?: number;
}

/** What a spare session records once it is taken. */
export interface RecordingTarget {
  streamId: string;
  router: ms.Router;
  producer: ms.Producer;
  /** Names this session's segments (node id and a counter): two writers never share a key. */
  writer: string;
  log: Logger;
}

/** How a session ended: asked to stop, or ffmpeg died (or never started) on its own. */
export type SessionEnd = { cause: 'stopped' } | { cause: 'died'; error: string };

interface UploadedSegment {
  key: string;
  startMs: number;
  endMs: number;
}

const SEGMENT_LIST = 'segments.csv';

export class RecorderSession {
  readonly #options: RecorderSessionOptions;
  readonly #stop = new AbortController();
  #pid: number | undefined;
  #anchorMs: number | undefined;
  /** Segments ffmpeg listed so far (uploaded or on their way). */
  #listed = 0;
  #uploads: Promise<void> = Promise.resolve();
  readonly #uploaded: UploadedSegment[] = [];
  readonly ended: Promise<SessionEnd>;
  /** What to record, once given; the session waits for it with ffmpeg ready. */
  #feed: ((target: RecordingTarget) => void) | undefined;
  readonly #fed: Promise<RecordingTarget>;
  #target: RecordingTarget | undefined;
  /** When the session was asked to stop (or ended), epoch ms: the recording runs until then. */
  #stoppedAtMs: number | undefined;

  private constructor(
    options: RecorderSessionOptions,
    run: (session: RecorderSession) => Promise<SessionEnd>,
  ) {
    this.#options = options;
    this.#fed = new Promise((resolve) => {
      this.#feed = resolve;
    });
    this.ended = run(this);
    void this.ended.then(() => {
      this.#finished = true;
    });
  }

  #finished = false;
  #bound: (ready: boolean) => void = () => undefined;
  /** Resolves true once ffmpeg listens (false when it never will): a fed session records at once then. */
  readonly ready = new Promise<boolean>((resolve) => {
    this.#bound = resolve;
  });

  /** The run is over (stopped or died): it records nothing more. */
  get finished(): boolean {
    return this.#finished;
  }

  /**
   * Starts ffmpeg, which binds its port and waits for RTP, before anything is to be recorded:
   * spawning and binding take hundreds of milliseconds, which a session started when the producer
   * opens would cut off the recording's beginning (or a restart would add to its gap). The media
   * node keeps one such spare session and hands it to the next producer (feed).
   */
  static prepare(options: RecorderSessionOptions): RecorderSession {
    return new RecorderSession(options, (session) => session.#run());
  }

  /** Records `target`; a session records one producer only. */
  feed(target: RecordingTarget): void {
    if (this.#target) return;
    this.#target = target;
    this.#feed?.(target);
  }

  /** Fed already: it records, or recorded, a producer. */
  get taken(): boolean {
    return this.#target !== undefined;
  }

  /** The ffmpeg process, once it runs (tests kill it to play a crash). */
  get pid(): number | undefined {
    return this.#pid;
  }

  /** Wall-clock end of the last segment uploaded, epoch ms; undefined before the first. */
  get lastSegmentEndMs(): number | undefined {
    return this.#uploaded.at(-1)?.endMs;
  }

  /** Asks ffmpeg to close its last segment; resolves once it is uploaded. */
  async stop(): Promise<SessionEnd> {
    this.#stopNow();
    return this.ended;
  }

  #stopNow(): void {
    this.#stoppedAtMs ??= Date.now();
    if (this.#stop.signal.aborted) return;
    this.#stop.abort();
    // SIGINT alone ends ffmpeg only once its next packet arrives (until then it waits in its UDP
    // read, up to 10 s): a broadcaster that dropped before its producer closed sends none. An RTCP
    // BYE is the end of the input to ffmpeg's RTP demuxer, so it closes its last segment at once.
    if (this.#rtcpPort !== undefined) sendBye(this.#rtcpPort);
  }

  /** Where ffmpeg takes RTCP, once it has its ports. */
  #rtcpPort: number | undefined;

  async #run(): Promise<SessionEnd> {
    const dir = await mkdtemp(path.join(tmpdir(), 'veza-recorder-'));
    let transport: ms.PlainTransport | undefined;
    let consumer: ms.Consumer | undefined;
    let poller: NodeJS.Timeout | undefined;
    let anchored = false;
    const stopped = new Promise<undefined>((resolve) => {
      if (this.#stop.signal.aborted) resolve(undefined);
      this.#stop.signal.addEventListener('abort', () => resolve(undefined), { once: true });
    });
    try {
      const ports = await freeUdpPortPair();
      this.#rtcpPort = ports.rtcp;
      const sdpFile = path.join(dir, 'input.sdp');
      await writeFile(sdpFile, sdpOf(ports));

      const running = runFfmpeg({
        input: sdpFile,
        inputOptions: ['-protocol_whitelist', 'file,udp,rtp', '-f', 'sdp', '-reorder_queue_size', '64'],
        outputs: [
          {
            target: path.join(dir, 'seg-%06d.ogg'),
            options: [
              '-map',
              '0:a',
              '-c:a',
              'copy',
              // Padding-only RTP packets (libwebrtc pads the audio stream to probe bandwidth, often
              // right after connecting) come out of the RTP demuxer as empty Opus packets; Ogg
              // stores them, but reading the segment back stops at the first (ffmpeg's Ogg demuxer
              // refuses it), so the rest of the segment would join as silence. They carry nothing.
              '-bsf:a',
              'noise=drop=not(size)',
              '-f',
              'segment',
              '-segment_time',
              String(this.#options.segmentSeconds),
              '-segment_format',
              'ogg',
              '-segment_list',
              path.join(dir, SEGMENT_LIST),
              '-segment_list_type',
              'csv',
              '-reset_timestamps',
              '1',
            ],
          },
        ],
        stop: this.#stop.signal,
        onSpawn: (pid) => {
          this.#pid = pid;
        },
      });
      const outcome = running.then(
        () => ({ ok: true as const }),
        (error: unknown) => ({
          ok: false as const,
          error: error instanceof Error ? error.message : String(error),
        }),
      );
      const bound = await Promise.race([
        waitForUdpBind(ports.rtp, this.#options.bindTimeoutMs ?? 10_000, this.#stop.signal),
        outcome.then(() => false),
      ]);
      this.#bound(bound);
      const target = bound
        ? await Promise.race([this.#fed, stopped, outcome.then(() => undefined)])
        : undefined;
      const producer = target?.producer;
      if (target && producer && !this.#stop.signal.aborted && !producer.closed && !target.router.closed) {
        const { router } = target;
        transport = await router.createPlainTransport({
          listenIp: { ip: '127.0.0.1' },
          rtcpMux: false,
          comedia: false,
          appData: { recorder: target.writer },
        });
        // The router going away (the worker died, the stream closed) ends the run.
        transport.observer.once('close', () => this.#stopNow());
        await transport.connect({ ip: '127.0.0.1', port: ports.rtp, rtcpPort: ports.rtcp });
        consumer = await transport.consume({
          producerId: producer.id,
          rtpCapabilities: router.rtpCapabilities,
          paused: true,
        });
        // The producer going away (the broadcaster left) ends the run cleanly.
        consumer.on('producerclose', () => this.#stopNow());
        await this.#mark('open');
        anchored = await this.#anchor(consumer);
        poller = setInterval(() => this.#collect(dir), 250);
      } else if (target) {
        this.#stopNow(); // fed with a producer or router that closed meanwhile
      }
      const result = await outcome;
      // Asked to stop (stop(), the producer or the router closing) before ffmpeg ended, or not.
      const requested = this.#stop.signal.aborted;
      this.#stoppedAtMs ??= Date.now();
      clearInterval(poller);
      // The segments ffmpeg closed last (the final one on a stop) are listed by now.
      this.#collect(dir);
      await this.#uploads;
      if (anchored) await this.#mark('done');
      if (requested) return { cause: 'stopped' };
      return { cause: 'died', error: result.ok ? 'ffmpeg exited on its own' : result.error };
    } catch (error) {
      this.#bound(false);
      clearInterval(poller);
      await this.#uploads;
      if (this.#stop.signal.aborted) return { cause: 'stopped' };
      (this.#target?.log ?? this.#options.log).error({ err: error }, 'the recorder could not run');
      return { cause: 'died', error: error instanceof Error ? error.message : String(error) };
    } finally {
      this.#stopNow();
      if (consumer && !consumer.closed) consumer.close();
      if (transport && !transport.closed) transport.close();
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** Tells the join this writer's state; a failure only costs the join its wait. */
  async #mark(state: 'open' | 'done'): Promise<void> {
    const target = this.#target;
    if (!target) return;
    const { blobs } = this.#options;
    const { streamId, writer, log } = target;
    const key = recordingWriterKey(streamId, writer, state);
    // "done" carries when the recording stopped: what ffmpeg still held then is silence until it.
    const at = state === 'done' ? (this.#stoppedAtMs ?? Date.now()) : Date.now();
    await blobs
      .put(key, Buffer.from(new Date(at).toISOString()), 'text/plain')
      .catch((error: unknown) => log.warn({ err: error, key }, 'could not mark the recorder state'));
  }

  /** Resumes the consumer and takes the wall time of the first packet it sends; false if none came. */
  async #anchor(consumer: ms.Consumer): Promise<boolean> {
    const first = new Promise<number>((resolve) => {
      consumer.on('trace', (trace) => {
        if (trace.type === 'rtp') resolve(Date.now());
      });
    });
    await consumer.enableTraceEvent(['rtp']);
    await consumer.resume();
    const closed = new Promise<undefined>((resolve) => {
      const onAbort = () => resolve(undefined);
      this.#stop.signal.addEventListener('abort', onAbort, { once: true });
      first.finally(() => this.#stop.signal.removeEventListener('abort', onAbort));
    });
    this.#anchorMs = await Promise.race([first, closed]);
    if (!consumer.closed) await consumer.enableTraceEvent([]).catch(() => undefined);
    return this.#anchorMs !== undefined;
  }

  /** Uploads, in order, every segment ffmpeg listed since the last look. */
  #collect(dir: string): void {
    this.#uploads = this.#uploads.then(async () => {
      let list: string;
      try {
        list = await readFile(path.join(dir, SEGMENT_LIST), 'utf8');
      } catch {
        return;
      }
      const lines = list.split('\n').filter((line) => line.trim().length > 0);
      for (const line of lines.slice(this.#listed)) {
        this.#listed += 1;
        await this.#upload(dir, line);
      }
    });
  }

  async #upload(dir: string, line: string): Promise<void> {
    const target = this.#target;
    if (!target) return;
    const { blobs, metrics } = this.#options;
    const { streamId, writer, log } = target;
    const [name, start, end] = line.split(',');
    const startS = Number(start);
    const endS = Number(end);
    const anchor = this.#anchorMs;
    if (!name || !Number.isFinite(startS) || !Number.isFinite(endS) || anchor === undefined) {
      log.warn({ line }, 'unreadable entry in the recorder segment list');
      return;
    }
    const file = path.join(dir, path.basename(name));
    const startMs = anchor + startS * 1000;
    const durationMs = (endS - startS) * 1000;
    const key = recordingSegmentKey(streamId, { startMs, durationMs, writer });
    try {
      const data = await readFile(file);
      // A few tries: a blob store hiccup must not cost a segment.
      for (let attempt = 1; ; attempt++) {
        try {
          await blobs.put(key, data, 'audio/ogg');
          break;
        } catch (error) {
          if (attempt >= 3) throw error;
          await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
        }
      }
      await rm(file, { force: true });
      metrics.segmentWritten(data.length);
      this.#uploaded.push({ key, startMs, endMs: startMs + durationMs });
      log.debug({ key, bytes: data.length, durationMs }, 'recording segment uploaded');
    } catch (error) {
      const size = await stat(file).then(
        (info) => info.size,
        () => null,
      );
      log.error({ err: error, key, size }, 'could not upload a recording segment');
    }
  }
}

/** Sends ffmpeg an RTCP BYE (no SSRC of note: one stream per input); a failure only costs the wait. */
function sendBye(port: number): void {
  const socket = createSocket('udp4');
  // Version 2, two sources (ffmpeg drops any packet under 12 bytes); packet type 203 (BYE);
  // length 2 (three 32-bit words); SSRCs 0.
  const bye = Buffer.from([0x82, 203, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
  socket.once('error', () => socket.close());
  socket.send(bye, port, '127.0.0.1', () => socket.close());
}

/** Two consecutive free UDP ports on loopback (RTP, then RTCP), as ffmpeg's SDP input expects. */
async function freeUdpPortPair(): Promise<{ rtp: number; rtcp: number }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const first = await bindUdp(0);
    const port = first.address().port;
    const second = await bindUdp(port + 1).catch(() => null);
    first.close();
    second?.close();
    if (second && port + 1 <= 65535) return { rtp: port, rtcp: port + 1 };
  }
  throw new Error('no two consecutive free UDP ports on 127.0.0.1');
}

function bindUdp(port: number): Promise<ReturnType<typeof createSocket>> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', (error) => {
      socket.close();
      reject(error);
    });
    socket.bind(port, '127.0.0.1', () => resolve(socket));
  });
}

/**
 * Waits until a process has bound `port` (the kernel's UDP socket tables say so): packets sent
 * before would be dropped, and the recording's anchor would be off by as much.
 */
async function waitForUdpBind(port: number, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  const needle = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  const deadline = Date.now() + timeoutMs;
  while (!signal.aborted) {
    for (const table of ['/proc/net/udp', '/proc/net/udp6']) {
      const text = await readFile(table, 'utf8').catch(() => '');
      // Column 2 is the local address; the remote one (column 3) could hold the port too.
      if (text.split('\n').some((line) => line.trim().split(/\s+/)[1]?.endsWith(needle.trim()))) return true;
    }
    if (Date.now() > deadline) throw new Error(`ffmpeg did not bind UDP port ${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

/**
 * The SDP ffmpeg reads the consumer's RTP with, written before the consumer (or even its router)
 * exists: a consumer's Opus payload type is its router's, and every router has the same codecs.
 */
function sdpOf(ports: { rtp: number; rtcp: number }): string {
  const found = ROUTER_RTP_CAPABILITIES.codecs?.find(
    (codec) => codec.mimeType.toLowerCase() === 'audio/opus',
  );
  if (!found?.preferredPayloadType) throw new Error('the routers have no Opus codec to record');
  const codec = { ...found, payloadType: found.preferredPayloadType };
  const fmtp = Object.entries(codec.parameters ?? {})
    .map(([key, value]) => `${key}=${value}`)
    .join(';');
  return [
    'v=0',
    'o=- 0 0 IN IP4 127.0.0.1',
    's=veza-recording',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    `m=audio ${ports.rtp} RTP/AVP ${codec.payloadType}`,
    `a=rtcp:${ports.rtcp}`,
    `a=rtpmap:${codec.payloadType} opus/${codec.clockRate}/${codec.channels ?? 2}`,
    ...(fmtp ? [`a=fmtp:${codec.payloadType} ${fmtp}`] : []),
    'a=recvonly',
    '',
  ].join('\n');
}
