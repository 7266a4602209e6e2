/**
 * The upload path (the seed's "Upload de Fichier Audio"), shared by every transport: tus
 * and multipart through the edge, UploadAudio + UploadAudioChunks over gRPC.
 *
 * 1. create: limits and quota are checked, the track row (status "uploaded", no source
 *    yet; presented as "uploading") and its upload session are written.
 * 2. append: bytes arrive in calls, each starting at the committed offset; a call's bytes
 *    become one staged part in BlobStorage (staging.ts), committed with the offset when the
 *    call ends, so the next call may reach any control plane.
 * 3. finish, once every declared byte is there (or the stream of an upload of undeclared
 *    length ended): the sha256 of the whole file must match the declared one; the source
 *    goes to BlobStorage (`uploads/<trackId>/source`), the track points at it in the same
 *    transaction that ends the session, the transcode job is queued and the analytics event
 *    "track.uploaded" recorded.
 *
 * A refused upload (checksum mismatch, over a limit, lost staging) leaves its track failed
 * with the reason and nothing else: no staged part, no blob. A cancelled or expired one
 * leaves nothing at all. The sweeper expires idle uploads and removes staged parts whose
 * upload is gone.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  enqueueTranscode,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PayloadTooLargeError,
  UnavailableError,
  VezaError,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import { type Config, counter, currentTraceCarrier, type Logger } from '../../common/index.js';
import type { BlobStorage, JobQueue } from '../../common/ports/index.js';
import type { Analytics } from '../analytics/index.js';
import type { Notifier } from '../notifications/index.js';
import { notifyUploadOutcome } from './progress.js';
import { Staging, StagingLostError } from './staging.js';
import {
  createUploadStore,
  type QuotaUsage,
  type TrackRow,
  type UploadProtocol,
  type UploadStore,
} from './store.js';
import type { RequestChecksum } from './validation.js';

/** Unfinished uploads are discarded after this long without a byte. */
export const DEFAULT_UPLOAD_EXPIRY_MS = 24 * 3600 * 1000;
const DEFAULT_SWEEP_EVERY_MS = 10 * 60 * 1000;
/**
 * How long a call waits for another call on the same upload to end. A client that dropped
 * its connection mid-request resumes at once; its old request is still committing then.
 */
const BUSY_WAIT_MS = 10_000;
/** A complete upload still not finished after this long is finished by the sweeper. */
const STALLED_AFTER_MS = 60_000;
/** How long one control plane may take to finish an upload before another may try again. */
const FINISH_LEASE_MS = 5 * 60_000;
/** A part still being written after this long belongs to a request whose control plane died. */
const PENDING_PART_MAX_MS = 6 * 3600_000;

export const sourceKeyOf = (trackId: number): string => `uploads/${trackId}/source`;

/** Over the user's upload quota: 429, RESOURCE_EXHAUSTED. */
export class QuotaExceededError extends VezaError {
  override readonly name = 'QuotaExceededError';
  constructor(message: string) {
    super('resource_exhausted', message);
  }
}

/** The bytes of one request do not match the checksum it declared (tus: 460). Nothing of it was kept. */
export class RequestChecksumMismatchError extends VezaError {
  override readonly name = 'RequestChecksumMismatchError';
  constructor(message: string) {
    super('invalid_argument', message, { field: 'upload_checksum' });
  }
}

const uploadsTotal = counter('veza_uploads_total', 'Uploads by protocol and outcome', [
  'protocol',
  'outcome',
]);
const uploadBytes = counter('veza_upload_bytes_total', 'Upload bytes written to staging');

export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

export interface UploadsDeps {
  config: Pick<Config, 'nodeId' | 'UPLOAD_MAX_BYTES' | 'UPLOAD_MAX_DURATION_S' | 'UPLOAD_QUOTA_BYTES'>;
  sql: Sql;
  blobs: BlobStorage;
  jobs: JobQueue;
  analytics: Analytics;
  notifier: Notifier;
  log: Logger;
  expiryMs?: number;
  /** How often expired uploads and orphaned staging files are swept; 0 disables the timer. */
  sweepEveryMs?: number;
}

export interface NewUploadInput {
  ownerId: number;
  title: string;
  description: string;
  genre: string;
  isPublic: boolean;
  fileFormat: string | null;
  filename: string | null;
  /** null: not declared; the end of the first call's stream ends the file. */
  uploadLength: number | null;
  checksum: string | null;
  /** What the uploader says; the worker measures the real duration. */
  declaredDurationS: number | null;
  protocol: UploadProtocol;
}

export interface AppendInput {
  ownerId: number;
  trackId: number;
  /** Where the caller believes the upload stands; must equal the committed offset. */
  offset: number;
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>;
  checksum?: RequestChecksum;
  /** Aborted when the sender went away: its bytes count, but the upload is not complete. */
  signal?: AbortSignal;
}

export interface Uploads {
  create(input: NewUploadInput): Promise<TrackRow>;
  /** Appends a call's bytes; finishes the upload when they complete it. Returns the track after the call. */
  append(input: AppendInput): Promise<TrackRow>;
  /** Ends an unfinished upload; the track goes with it. */
  cancel(ownerId: number, trackId: number): Promise<void>;
  get(trackId: number): Promise<TrackRow | null>;
  list(ownerId: number, limit: number, beforeId: number): Promise<TrackRow[]>;
  quota(ownerId: number): Promise<QuotaUsage>;
  /** Expires idle uploads, finishes stalled ones and removes orphaned staged parts. */
  sweep(): Promise<void>;
  readonly staging: Staging;
  close(): Promise<void>;
}

export function createUploads(deps: UploadsDeps): Uploads {
  const { config, blobs, log } = deps;
  const store: UploadStore = createUploadStore(deps.sql);
  const staging = new Staging(blobs, store);
  const expiryMs = deps.expiryMs ?? DEFAULT_UPLOAD_EXPIRY_MS;
  /**
   * The call of this process writing each track's bytes (one writer per upload): `ended`
   * settles when it is over, `draining` once its bytes stopped coming and it is committing.
   */
  const active = new Map<number, { ended: Promise<void>; draining: boolean }>();

  /**
   * Waits for the call writing `trackId` to end (only if it is already committing, with
   * `drainingOnly`); false when it did not end within BUSY_WAIT_MS.
   */
  async function idle(trackId: number, drainingOnly = false): Promise<boolean> {
    const deadline = Date.now() + BUSY_WAIT_MS;
    for (let running = active.get(trackId); running; running = active.get(trackId)) {
      if (drainingOnly && !running.draining) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), left);
      });
      const outcome = await Promise.race([running.ended.then(() => 'ended' as const), timeout]);
      clearTimeout(timer);
      if (outcome === 'timeout') return false;
    }
    return true;
  }
  let sweeping: Promise<void> | null = null;
  let closed = false;

  const notFound = (trackId: number) => new NotFoundError(`track ${trackId} not found`);

  const quotaError = (usage: QuotaUsage, needed: number) =>
    new QuotaExceededError(
      `upload quota exceeded: ${formatBytes(usage.usedBytes)} of your ${formatBytes(usage.quotaBytes)} are used ` +
        `and this upload needs ${formatBytes(needed)}; delete tracks or ask for a larger quota`,
    );

  const tooLarge = (size: number | null) =>
    new PayloadTooLargeError(
      size === null
        ? `the file is larger than the limit of ${formatBytes(config.UPLOAD_MAX_BYTES)}`
        : `the file is ${formatBytes(size)}; the limit is ${formatBytes(config.UPLOAD_MAX_BYTES)}`,
    );

  /** Ends a refused upload: track failed with the reason, no staging file, no blob, the owner told. */
  async function reject(row: TrackRow, reason: string, outcome: string): Promise<void> {
    uploadsTotal.inc({ protocol: row.upload_protocol ?? 'grpc', outcome });
    await store.fail(row.id, reason);
    await staging.remove(row.id);
    await blobs
      .delete(sourceKeyOf(row.id))
      .catch((error: unknown) =>
        log.warn({ err: error, trackId: row.id }, 'could not delete a refused source'),
      );
    await notifyUploadOutcome(deps.notifier, log, {
      trackId: row.id,
      ownerId: row.owner_id,
      title: row.title,
      status: 'failed',
      failureReason: reason,
    });
    log.info({ trackId: row.id, reason }, 'upload refused');
  }

  async function finish(row: TrackRow): Promise<TrackRow> {
    const length = row.bytes_received ?? 0;
    // One finisher per upload across control planes; a zero-byte call racing it gets told.
    if (!(await store.claimFinish(row.id, length, new Date(Date.now() + FINISH_LEASE_MS)))) {
      throw new FailedPreconditionError(`the upload of track ${row.id} is being finished by another request`);
    }
    const key = sourceKeyOf(row.id);
    const hash = createHash('sha256');
    let size = 0;
    try {
      const parts = await staging.read(row.id, length);
      const counted = (async function* () {
        for await (const chunk of parts) {
          hash.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      })();
      await blobs.put(key, Readable.from(counted, { objectMode: false }), 'application/octet-stream');
    } catch (error) {
      await blobs.delete(key).catch(() => undefined);
      if (error instanceof StagingLostError) {
        log.warn({ err: error, trackId: row.id }, 'staged upload lost');
        const reason = 'the partial upload was lost on the server; please upload the file again';
        await reject(row, reason, 'staging_lost');
        throw new FailedPreconditionError(reason);
      }
      // The parts and the session stay: the upload can be finished again (a 0-byte append at its end).
      await store.releaseFinish(row.id);
      throw error;
    }
    const sha256 = hash.digest('hex');
    if (size === 0) {
      await reject(row, 'the file is empty', 'empty');
      throw new InvalidArgumentError('the file is empty', 'file');
    }
    if (row.upload_checksum && row.upload_checksum !== sha256) {
      const reason = `the uploaded file does not match its checksum (sha256 ${sha256}, declared ${row.upload_checksum})`;
      await reject(row, reason, 'checksum_mismatch');
      throw new InvalidArgumentError(reason, 'checksum');
    }
    if (!(await store.complete(row.id, { key, checksum: sha256, size }))) {
      // Another finisher may have completed it (its lease ran out on a slow store): the source
      // then holds the same bytes and the track points at it, so it stays.
      if ((await store.get(row.id))?.source_key !== key) await blobs.delete(key);
      throw new FailedPreconditionError(`the upload of track ${row.id} was cancelled or expired meanwhile`);
    }
    await staging.remove(row.id);
    try {
      // The transcode continues this request's trace, however much later a worker takes the job.
      const trace = currentTraceCarrier();
      await enqueueTranscode(deps.jobs, { trackId: row.id, sourceKey: key, ...(trace ? { trace } : {}) });
    } catch (error) {
      log.error({ err: error, trackId: row.id }, 'could not queue the transcode job');
      const reason = 'processing could not be queued; please upload the file again';
      await reject(row, reason, 'queue_failed');
      throw new UnavailableError(reason, { cause: error });
    }
    try {
      await deps.analytics.record({
        eventType: 'track.uploaded',
        userId: row.owner_id,
        properties: {
          track_id: String(row.id),
          size: String(size),
          format: row.file_format ?? '',
          protocol: row.upload_protocol ?? 'grpc',
          checksum: sha256,
        },
      });
    } catch (error) {
      // Analytics never fail an upload whose bytes are safe.
      log.error({ err: error, trackId: row.id }, 'could not record the track.uploaded event');
    }
    uploadsTotal.inc({ protocol: row.upload_protocol ?? 'grpc', outcome: 'uploaded' });
    log.info({ trackId: row.id, size, protocol: row.upload_protocol }, 'upload complete; transcode queued');
    const done = await store.get(row.id);
    if (!done) throw notFound(row.id);
    return done;
  }

  async function append(input: AppendInput): Promise<TrackRow> {
    const id = input.trackId;
    const owned = await store.get(id);
    if (!owned || owned.owner_id !== input.ownerId) throw notFound(id);
    if (!(await idle(id)) || active.has(id)) {
      throw new FailedPreconditionError(
        `another request is uploading to track ${id}; wait for it to end, then resume`,
      );
    }
    let release = () => {};
    const call = {
      ended: new Promise<void>((resolve) => {
        release = resolve;
      }),
      draining: false,
    };
    active.set(id, call);
    try {
      // Read again now that this call owns the upload: the previous call may have moved it on.
      const row = await store.get(id);
      if (!row) throw notFound(id);
      if (!row.uploading) {
        throw new FailedPreconditionError(
          `the upload of track ${id} is already complete (status ${row.status})`,
        );
      }
      const start = row.bytes_received ?? 0;
      if (input.offset !== start) {
        throw new VezaError(
          'failed_precondition',
          `offset ${input.offset} does not match the ${start} bytes received for track ${id}`,
          {
            field: 'offset',
          },
        );
      }
      // An undeclared length reserves nothing up front: the quota is checked as bytes arrive.
      const usage =
        row.upload_length === null
          ? await store.quotaUsage(row.owner_id, config.UPLOAD_QUOTA_BYTES, id)
          : null;
      const hash = input.checksum ? createHash(input.checksum.algorithm) : null;
      let position = start;
      let interruption: unknown = null;
      let limit: VezaError | null = null;
      // The call's bytes as the part's body: it ends at a limit, or where the sender dropped
      // (those bytes still count), so the part always holds exactly [start, position).
      const body = async function* (): AsyncGenerator<Buffer> {
        try {
          for await (const chunk of input.chunks) {
            const next = position + chunk.length;
            if (row.upload_length !== null && next > row.upload_length) {
              limit = new PayloadTooLargeError(
                `the upload sends more than its declared ${row.upload_length} bytes`,
              );
            } else if (next > config.UPLOAD_MAX_BYTES) {
              limit = tooLarge(null);
            } else if (usage && usage.usedBytes + next > usage.quotaBytes) {
              limit = quotaError(usage, next);
            }
            if (limit) return;
            hash?.update(chunk);
            position = next;
            yield chunk;
          }
        } catch (error) {
          interruption = error;
        } finally {
          call.draining = true;
        }
      };
      // A call known to carry nothing (the sweeper finishing an upload) writes no part.
      const empty = Array.isArray(input.chunks) && input.chunks.length === 0;
      const part = empty ? null : await staging.write(id, start, body());
      call.draining = true;
      uploadBytes.inc(position - start);
      if (limit) {
        await reject(row, (limit as VezaError).message, 'too_large');
        throw limit;
      }
      if (hash && input.checksum) {
        const digest = hash.digest();
        if (interruption || !digest.equals(input.checksum.digest)) {
          // Unverifiable or wrong: none of this request's bytes count.
          if (part) await staging.drop(part);
          if (interruption) throw interruption;
          throw new RequestChecksumMismatchError(
            `the ${position - start} bytes of this request do not match its ${input.checksum.algorithm} checksum; they were discarded`,
          );
        }
      }
      if (part && position === start) await staging.drop(part);
      else if (
        part &&
        !(await store.commitPart(id, part, start, position, new Date(Date.now() + expiryMs)))
      ) {
        await staging.drop(part);
        throw new FailedPreconditionError(
          `the upload of track ${id} moved on meanwhile (cancelled, expired, or another request committed first); ask for its offset and resume from there`,
        );
      }
      // Every declared byte is there even if the sender went away right after the last one:
      // finish now, or a tus client (which sees offset = length) would never come back to.
      const complete =
        row.upload_length !== null
          ? position === row.upload_length
          : !interruption && !(input.signal?.aborted ?? false);
      if (complete) return await finish({ ...row, bytes_received: position });
      if (interruption) throw interruption;
      const current = await store.get(id);
      if (!current) throw notFound(id);
      return current;
    } finally {
      active.delete(id);
      release();
    }
  }

  async function sweep(): Promise<void> {
    for (const id of await store.expired(new Date())) {
      if (active.has(id)) continue;
      if (await store.discard(id)) {
        uploadsTotal.inc({ protocol: 'any', outcome: 'expired' });
        log.info({ trackId: id }, 'unfinished upload expired');
      }
      await staging.remove(id);
      // A crash between storing the source and completing leaves it behind; nothing refers to it.
      await blobs.delete(sourceKeyOf(id));
    }
    // Complete uploads whose finishing failed (storage down, a crash): finished again here,
    // by whichever control plane gets the lease.
    for (const session of await store.stalled(new Date(Date.now() - STALLED_AFTER_MS))) {
      if (active.has(session.trackId)) continue;
      await append({
        ownerId: session.ownerId,
        trackId: session.trackId,
        offset: session.length,
        chunks: [],
      }).catch((error: unknown) =>
        log.warn({ err: error, trackId: session.trackId }, 'could not finish a stalled upload'),
      );
    }
    const swept = await staging.sweep(new Date(Date.now() - PENDING_PART_MAX_MS));
    if (swept > 0) log.info({ parts: swept }, 'orphaned staged parts deleted');
  }

  const runSweep = () => {
    if (closed || sweeping) return sweeping ?? Promise.resolve();
    sweeping = sweep()
      .catch((error: unknown) => log.error({ err: error }, 'upload sweep failed'))
      .finally(() => {
        sweeping = null;
      });
    return sweeping;
  };
  const sweepEveryMs = deps.sweepEveryMs ?? DEFAULT_SWEEP_EVERY_MS;
  const timer = sweepEveryMs > 0 ? setInterval(runSweep, sweepEveryMs) : null;
  timer?.unref();

  return {
    staging,

    async create(input) {
      if (input.uploadLength !== null && input.uploadLength > config.UPLOAD_MAX_BYTES)
        throw tooLarge(input.uploadLength);
      if (input.declaredDurationS !== null && input.declaredDurationS > config.UPLOAD_MAX_DURATION_S) {
        throw new InvalidArgumentError(
          `the audio is ${input.declaredDurationS} s long; the limit is ${config.UPLOAD_MAX_DURATION_S} s`,
          'duration',
        );
      }
      const needed = input.uploadLength ?? 1;
      const row = await store.create(
        {
          ownerId: input.ownerId,
          title: input.title,
          description: input.description,
          genre: input.genre,
          isPublic: input.isPublic,
          fileFormat: input.fileFormat,
          protocol: input.protocol,
          uploadLength: input.uploadLength,
          checksum: input.checksum,
          filename: input.filename,
          nodeId: config.nodeId,
          expiresAt: new Date(Date.now() + expiryMs),
        },
        (usage) => {
          if (usage.usedBytes + needed > usage.quotaBytes) {
            uploadsTotal.inc({ protocol: input.protocol, outcome: 'over_quota' });
            throw quotaError(usage, input.uploadLength ?? 0);
          }
        },
        config.UPLOAD_QUOTA_BYTES,
      );
      log.info(
        { trackId: row.id, ownerId: row.owner_id, length: input.uploadLength, protocol: input.protocol },
        'upload created',
      );
      return row;
    },

    append,

    async cancel(ownerId, trackId) {
      const row = await store.get(trackId);
      if (!row || row.owner_id !== ownerId) throw notFound(trackId);
      if (!row.uploading) {
        throw new FailedPreconditionError(
          `the upload of track ${trackId} is complete; it can no longer be cancelled`,
        );
      }
      await store.discard(trackId);
      await staging.remove(trackId);
      uploadsTotal.inc({ protocol: row.upload_protocol ?? 'grpc', outcome: 'cancelled' });
      log.info({ trackId }, 'upload cancelled');
    },

    async get(trackId) {
      // A read right after a dropped request sees what that request committed. A request
      // still receiving bytes is not waited for: its offset is the one committed before it.
      await idle(trackId, true);
      return store.get(trackId);
    },
    list: (ownerId, limit, beforeId) => store.listOwned(ownerId, limit, beforeId),
    quota: (ownerId) => store.quotaUsage(ownerId, config.UPLOAD_QUOTA_BYTES),
    sweep: () => runSweep(),

    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      await sweeping;
    },
  };
}
