/**
 * What a `join` decides on (status, owner, visibility, anonymous listening) and where the
 * stream's media is hosted, kept in the edge's memory: a join asks nobody.
 *
 * The bus keeps it current: `stream.started` carries everything of a new stream, `stream.ended`
 * and `stream.moved` change it, and the adoption listing at start (every live stream, private ones
 * included) fills it for streams that started before this edge listened (stream-liveness.ts feeds
 * all four in). A stream it does not know yet (started before the edge subscribed, not listed
 * yet) is asked of the control plane once (GetStreamInfo) and remembered; concurrent joins of it
 * share that one call. A remembered live stream is asked about again, in the background, at most
 * once a minute (`revalidateMs`), so an event the bus lost does not stay wrong.
 *
 * Who may see a stream is the control plane's GetStreamInfo rule, applied here to the
 * connection's verified identity: a public stream is visible to anyone, a private one to its
 * owner and to moderators (the `stream:moderate` permission) and `not_found` for everyone else,
 * listener tokens included, so its existence does not leak.
 */
import { NotFoundError, type StreamStartedEvent, toVezaError } from '../../common/contracts/index.js';
import { hasPermission } from '../../common/index.js';
import type { ControlPlaneClient } from '../../control-plane/client/index.js';
import type { StreamInfo } from '../../proto/gen/veza/stream/stream.js';
import type { ConnectionAuth } from './upgrade.js';

export interface StreamMeta {
  streamId: number;
  ownerId: number;
  ownerUsername: string;
  title: string;
  /** "live" or "ended". */
  status: string;
  isPublic: boolean;
  allowAnonymous: boolean;
  mediaNodeId: string;
}

export function streamMetaOf(info: StreamInfo): StreamMeta {
  return {
    streamId: info.streamId,
    ownerId: info.ownerId,
    ownerUsername: info.ownerUsername,
    title: info.title,
    status: info.status,
    isPublic: info.isPublic,
    allowAnonymous: info.allowAnonymous,
    mediaNodeId: info.mediaNodeId,
  };
}

/** What the edge remembers of streams that ended or moved (stream-liveness.ts). */
export interface StreamFates {
  isEnded(streamId: number): boolean;
  movedTo(streamId: number): string | undefined;
}

export interface StreamLookupOptions {
  controlPlane: Pick<ControlPlaneClient, 'stream'>;
  fates: StreamFates;
  /** How many streams are remembered (live ones and recently ended ones); the oldest go first. */
  capacity?: number;
  /**
   * How old a remembered stream may get before a join also asks the control plane about it, in
   * the background (the join is answered from memory meanwhile). Default 60 s: a `stream.*`
   * event the bus lost (NATS delivers at most once) is corrected within that, at the cost of
   * one GetStreamInfo per stream and interval, never one per join.
   */
  revalidateMs?: number;
}

interface Remembered {
  meta: StreamMeta;
  /** When the control plane or the bus last said what this is (Date.now()). */
  checkedAt: number;
}

/** Far more than one edge's live streams; an evicted one only costs one GetStreamInfo again. */
const DEFAULT_CAPACITY = 20_000;
const DEFAULT_REVALIDATE_MS = 60_000;

/** The control plane's GetStreamInfo rule (control-plane/streams/service.ts `visible`). */
export function canSee(auth: Pick<ConnectionAuth, 'kind' | 'userId' | 'roles'>, meta: StreamMeta): boolean {
  if (meta.isPublic) return true;
  if (auth.kind !== 'user') return false;
  return meta.ownerId === auth.userId || hasPermission(auth.roles, 'stream:moderate');
}

export class StreamLookup {
  readonly #options: StreamLookupOptions;
  readonly #capacity: number;
  readonly #revalidateMs: number;
  readonly #streams = new Map<number, Remembered>();
  /** Misses being asked of the control plane, so concurrent joins of one stream share the call. */
  readonly #asking = new Map<number, Promise<StreamMeta>>();
  #misses = 0;

  constructor(options: StreamLookupOptions) {
    this.#options = options;
    this.#capacity = options.capacity ?? DEFAULT_CAPACITY;
    this.#revalidateMs = options.revalidateMs ?? DEFAULT_REVALIDATE_MS;
  }

  /** How many joins had to ask the control plane (for tests and metrics). */
  get misses(): number {
    return this.#misses;
  }

  /** stream.started: everything a join needs. */
  started(event: StreamStartedEvent): void {
    if (this.#options.fates.isEnded(event.stream_id)) return;
    this.#remember({
      streamId: event.stream_id,
      ownerId: event.owner_id,
      ownerUsername: event.owner_username,
      title: event.title,
      status: 'live',
      isPublic: event.is_public,
      allowAnonymous: event.allow_anonymous,
      mediaNodeId: event.media_node_id ?? '',
    });
  }

  /** A stream the control plane listed (the adoption at start). */
  listed(info: StreamInfo): void {
    if (this.#streams.has(info.streamId)) return;
    const meta = streamMetaOf(info);
    if (this.#options.fates.isEnded(meta.streamId)) meta.status = 'ended';
    this.#remember(meta);
  }

  /** stream.ended: kept as ended, so a late join is told so (or not_found, when it may not see it). */
  ended(streamId: number): void {
    const entry = this.#streams.get(streamId);
    if (entry) entry.meta.status = 'ended';
  }

  moved(streamId: number, mediaNodeId: string): void {
    const entry = this.#streams.get(streamId);
    if (entry) entry.meta.mediaNodeId = mediaNodeId;
  }

  /**
   * The stream as `auth` may see it, or NotFoundError. From memory; on a miss from the control
   * plane (with the user's token while it is valid, so a private stream is visible to its owner;
   * as the service otherwise). A connection that was already allowed into the stream (`known`)
   * keeps that right when the control plane no longer answers for it (its token expired
   * meanwhile: a re-join after a worker restart), unless the stream has ended.
   */
  async streamMeta(
    auth: Pick<ConnectionAuth, 'kind' | 'userId' | 'roles' | 'token' | 'expiresAt'>,
    streamId: number,
    known?: StreamMeta,
  ): Promise<StreamMeta> {
    const remembered = this.#streams.get(streamId);
    if (remembered) {
      if (!canSee(auth, remembered.meta)) throw notFound(streamId);
      if (remembered.meta.status === 'live' && Date.now() - remembered.checkedAt >= this.#revalidateMs) {
        remembered.checkedAt = Date.now();
        void this.#revalidate(auth, streamId);
      }
      return { ...remembered.meta };
    }
    try {
      return { ...(await this.#ask(auth, streamId)) };
    } catch (error) {
      const code = toVezaError(error).code;
      if (known && (code === 'not_found' || code === 'unauthenticated')) {
        const { fates } = this.#options;
        return {
          ...known,
          status: fates.isEnded(streamId) ? 'ended' : known.status,
          // What the connection knew may predate a move to another media node.
          mediaNodeId: fates.movedTo(streamId) ?? known.mediaNodeId,
        };
      }
      throw error;
    }
  }

  async #ask(auth: Pick<ConnectionAuth, 'token' | 'expiresAt'>, streamId: number): Promise<StreamMeta> {
    const pending = this.#asking.get(streamId);
    if (pending) {
      // Another join's answer is the stream's; its failure may be about that join's caller only.
      const shared = await pending.catch(() => null);
      const meta = shared ?? this.#streams.get(streamId)?.meta;
      if (meta) return meta;
    }
    const asking = this.#fetch(auth, streamId);
    this.#asking.set(streamId, asking);
    try {
      return await asking;
    } finally {
      if (this.#asking.get(streamId) === asking) this.#asking.delete(streamId);
    }
  }

  async #fetch(auth: Pick<ConnectionAuth, 'token' | 'expiresAt'>, streamId: number): Promise<StreamMeta> {
    this.#misses += 1;
    const { token, expiresAt } = auth;
    const context = token && expiresAt - 5_000 > Date.now() ? { token } : {};
    const response = await this.#options.controlPlane.stream.getStreamInfo({ streamId }, context);
    const info = response.stream;
    if (!info) throw new Error('GetStreamInfo returned no stream');
    const meta = streamMetaOf(info);
    const { fates } = this.#options;
    // The bus may have said more since the control plane answered.
    if (fates.isEnded(streamId)) meta.status = 'ended';
    meta.mediaNodeId = fates.movedTo(streamId) ?? meta.mediaNodeId;
    // An event that arrived while we asked is newer than the answer.
    const current = this.#streams.get(streamId);
    if (current) return current.meta;
    this.#remember(meta);
    return meta;
  }

  /**
   * Asks the control plane about a remembered stream again (see `revalidateMs`). An answer
   * corrects status and media node; a failure changes nothing (the caller may simply not be
   * allowed to see a private stream, or the control plane is away for a moment).
   */
  async #revalidate(auth: Pick<ConnectionAuth, 'token' | 'expiresAt'>, streamId: number): Promise<void> {
    const { token, expiresAt } = auth;
    const context = token && expiresAt - 5_000 > Date.now() ? { token } : {};
    let info: StreamInfo | undefined;
    try {
      info = (await this.#options.controlPlane.stream.getStreamInfo({ streamId }, context)).stream;
    } catch {
      return;
    }
    const entry = this.#streams.get(streamId);
    if (!info || !entry) return;
    if (info.status !== 'live') entry.meta.status = 'ended';
    else if (!this.#options.fates.movedTo(streamId)) entry.meta.mediaNodeId = info.mediaNodeId;
  }

  #remember(meta: StreamMeta): void {
    this.#streams.delete(meta.streamId);
    this.#streams.set(meta.streamId, { meta, checkedAt: Date.now() });
    if (this.#streams.size > this.#capacity) {
      const oldest = this.#streams.keys().next();
      if (!oldest.done) this.#streams.delete(oldest.value);
    }
  }
}

const notFound = (streamId: number) => new NotFoundError(`stream ${streamId} not found`);
