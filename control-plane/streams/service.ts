/**
 * StreamService: the lifecycle of live streams (start, stop, info, the live directory,
 * anonymous listener tokens and listener accounting). PostgreSQL holds the truth; the
 * lifecycle events go on the EventBus after the change is committed.
 *
 * Who may do what:
 * - StartStream: a signed-in user with the broadcaster role.
 * - StopStream: the owner, a moderator/admin, or a service caller (API key, no user
 *   token), which is how the edge ends a stream whose broadcaster's grace period ran out.
 * - GetStreamInfo: public streams for anyone; private ones for their owner and moderators.
 *   A private stream is "not found" for everyone else, so its existence does not leak.
 * - ListStreams, IssueListenerToken: anyone (public streams only). ListStreams with
 *   include_private lists private streams too, for service callers and moderators only.
 * - ReportListenerCount: service callers only.
 *
 * Every call from the edge carries its API key, and a user's token too when it acts for
 * one. The user then wins: only a call without a user token acts as the service.
 */
import {
  FailedPreconditionError,
  NotFoundError,
  PermissionDeniedError,
  type RecordingManifest,
  recordingManifestKey,
  STREAM_ENDED,
  STREAM_MOVED,
  STREAM_STARTED,
  type StreamEndedEvent,
  type StreamMovedEvent,
  type StreamStartedEvent,
  VezaError,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import {
  type Config,
  counter,
  type DependencyMonitor,
  gauge,
  hasPermission,
  type Logger,
} from '../../common/index.js';
import type { BlobStorage, EventBus } from '../../common/ports/index.js';
import { type StreamInfo, StreamServiceService } from '../../proto/gen/veza/stream/stream.js';
import {
  bindService,
  type CallContext,
  type ServiceBinding,
  type ServiceImplementation,
} from '../grpc/index.js';
import { issueListenerToken, type TokenSigningKey } from './listener-token.js';
import { createMediaNodeRegistry, type MediaNodeRegistry } from './media-node-registry.js';
import { createStreamStore, type StreamChatRooms, type StreamRow } from './store.js';
import {
  encodePageToken,
  listStreamsSchema,
  parseInput,
  reportListenerCountSchema,
  startStreamSchema,
  stopStreamSchema,
  streamIdSchema,
} from './validation.js';

interface StreamServiceDeps {
  config: Config;
  sql: Sql;
  bus: EventBus;
  /** The auth module's signing key (SigningKeys), for listener tokens. */
  signingKey: TokenSigningKey;
  log: Logger;
  /**
   * Chooses the media node that will host a new stream; a thrown error fails StartStream
   * before anything changes. The default: in cluster mode, the least-loaded live node of the
   * media-node registry (UnavailableError when there is none); in standalone mode, this
   * process's node when it runs the media role, and none otherwise.
   */
  pickMediaNode?: () => string | null | Promise<string | null>;
  /** The chat module's rooms: every stream opens its chat room as it starts. */
  chatRooms: StreamChatRooms;
  /** The upload and playback rpcs (control-plane/uploads), served by this same binding. */
  uploadRpcs?: ServiceImplementation<typeof StreamServiceService>;
  /** The process's dependency probes; the media-node registry adds itself (StreamService health). */
  dependencies?: DependencyMonitor | undefined;
  /** StreamAnalytics (control-plane/analytics), served by this same binding. */
  analyticsRpcs?: ServiceImplementation<typeof StreamServiceService>;
  /** Where StartStream prepares a recorded stream's storage prefix (its recording manifest). */
  blobs?: BlobStorage;
}

const started = counter('veza_streams_started_total', 'Live streams started');
const ended = counter('veza_streams_ended_total', 'Live streams ended, by reason', ['reason']);
/** Callers choose reasons freely; only these become label values, so the metric's cardinality stays bounded. */
const REASON_LABELS = new Set([
  'stopped',
  'stopped_by_moderator',
  'stopped_by_service',
  'replaced',
  'broadcaster_disconnected',
  'media_node_lost',
]);

/**
 * Live streams and their listeners, read from the table at scrape time: the one count every
 * control plane agrees on (dashboards take the max over them). The newest service's store answers.
 */
let liveTotals: (() => Promise<{ streams: number; listeners: number }>) | null = null;
let totalsRead: Promise<{ streams: number; listeners: number } | null> | null = null;
const readTotals = () => {
  totalsRead ??= (liveTotals?.() ?? Promise.resolve(null))
    .catch(() => null)
    .finally(() => {
      totalsRead = null;
    });
  return totalsRead;
};
gauge('veza_streams_live', 'Streams live now (from the database)', [], {
  async collect() {
    const totals = await readTotals();
    if (totals) this.set(totals.streams);
  },
});
gauge('veza_stream_listeners', 'Listeners of the live streams, as their edges report them', [], {
  async collect() {
    const totals = await readTotals();
    if (totals) this.set(totals.listeners);
  },
});

/** Why a stream ends when its media node is lost and no other node can take it. */
const MEDIA_NODE_LOST = 'media_node_lost';
const moved = counter(
  'veza_streams_moved_total',
  'Live streams moved to another media node after theirs was lost',
);

function toStreamInfo(row: StreamRow): StreamInfo {
  return {
    streamId: row.id,
    ownerId: row.owner_id,
    ownerUsername: row.owner_username,
    title: row.title,
    description: row.description,
    genre: row.genre,
    status: row.status,
    listenerCount: row.listener_count,
    peakListeners: row.peak_listeners,
    startedAt: row.started_at,
    endedAt: row.ended_at ?? undefined,
    chatRoomId: row.chat_room_id,
    isPublic: row.is_public,
    allowAnonymous: row.allow_anonymous,
    mediaNodeId: row.media_node_id ?? '',
    endReason: row.end_reason ?? '',
    record: row.record,
    recordingStatus: row.recording_status,
  };
}

const isModerator = (ctx: CallContext): boolean =>
  !!ctx.user && hasPermission(ctx.user.roles, 'stream:moderate');
const isOwner = (ctx: CallContext, row: StreamRow): boolean => ctx.user?.userId === row.owner_id;
const actsAsService = (ctx: CallContext): boolean => ctx.service && !ctx.user;

const notFound = (id: number) => new NotFoundError(`stream ${id} not found`);

/** Events are best effort once the change is committed: the database stays the truth. */
async function publishEvent(bus: EventBus, subject: string, payload: unknown, log: Logger): Promise<void> {
  try {
    await bus.publish(subject, payload);
  } catch (error) {
    log.error({ err: error, subject }, 'could not publish a stream event');
  }
}

function publishEnded(bus: EventBus, row: StreamRow, log: Logger): Promise<void> {
  const reason = row.end_reason ?? '';
  ended.inc({ reason: REASON_LABELS.has(reason) ? reason : 'other' });
  const event: StreamEndedEvent = {
    stream_id: row.id,
    owner_id: row.owner_id,
    chat_room_id: row.chat_room_id,
    media_node_id: row.media_node_id,
    reason,
    ended_at: (row.ended_at ?? new Date()).toISOString(),
    peak_listeners: row.peak_listeners,
  };
  return publishEvent(bus, STREAM_ENDED, event, log);
}

/**
 * Ends a live stream and announces `stream.ended` to the edges and media nodes; null when
 * it was not live (nothing changed). The one way a stream ends: StopStream and the
 * moderators' EndStream both come here.
 */
export async function endLiveStream(
  deps: { sql: Sql; bus: EventBus; log: Logger },
  streamId: number,
  reason: string,
): Promise<StreamRow | null> {
  const row = await createStreamStore(deps.sql).end(streamId, reason);
  if (row) await publishEnded(deps.bus, row, deps.log);
  return row;
}

/**
 * The live streams of a media node that is lost (its heartbeats stopped, or it came back as a new
 * process, without its routers): each moves to the least-loaded other live node, and the edges tell
 * its clients to join again (`stream.moved`), which opens it there; with no live node it ends with
 * reason `media_node_lost`, except that a node back as a new process (a restart) with no other
 * beside it hosts its streams again itself. Every control plane of the cluster sees the loss and
 * runs this: the conditional UPDATEs (still live, still on the lost node) let exactly one of them
 * move or end each stream (a stream that stays on its restarted node is announced by each).
 */
async function relocateStreams(
  deps: { sql: Sql; bus: EventBus; log: Logger; registry: Pick<MediaNodeRegistry, 'pick'> },
  lostNodeId: string,
  cause: 'missed' | 'restarted' = 'missed',
): Promise<{ moved: number; ended: number }> {
  const store = createStreamStore(deps.sql);
  const log = deps.log.child({ lostNodeId, cause });
  const result = { moved: 0, ended: 0 };
  // Only the first placement waits for a node to announce itself; if none does, the rest do not wait.
  let wait = true;
  const target = async (): Promise<string | null> => {
    try {
      return await deps.registry.pick({ wait, exclude: lostNodeId });
    } catch {
      wait = false;
    }
    // No other node: the lost one itself, when it is back as a new process (a restart).
    return deps.registry.pick({ wait: false }).catch(() => null);
  };
  for (const streamId of await store.liveOnNode(lostNodeId)) {
    try {
      const to = await target();
      if (to === null) {
        const row = await store.end(streamId, MEDIA_NODE_LOST, lostNodeId);
        if (!row) continue;
        await publishEnded(deps.bus, row, log);
        result.ended += 1;
        log.warn({ streamId }, 'stream ended: its media node was lost and no other node is live');
        continue;
      }
      const row = await store.move(streamId, lostNodeId, to);
      if (!row) continue;
      moved.inc();
      const event: StreamMovedEvent = {
        stream_id: row.id,
        media_node_id: to,
        previous_media_node_id: lostNodeId,
        reason: MEDIA_NODE_LOST,
        moved_at: new Date().toISOString(),
      };
      await publishEvent(deps.bus, STREAM_MOVED, event, log);
      result.moved += 1;
      log.warn({ streamId, mediaNodeId: to }, 'stream moved: its media node was lost');
    } catch (error) {
      // The next stream may still move; this one stays where it is.
      log.error({ err: error, streamId }, "could not move a lost media node's stream");
    }
  }
  return result;
}

export function createStreamService(deps: StreamServiceDeps): ServiceBinding {
  const store = createStreamStore(deps.sql);
  liveTotals = () => store.liveTotals();
  // One relocation at a time: a second loss waits for the first, so both see each other's placements.
  let relocating: Promise<unknown> = Promise.resolve();
  const onLost = (nodeId: string, cause: 'missed' | 'restarted') => {
    relocating = relocating.then(() =>
      relocateStreams({ ...deps, registry: registry as MediaNodeRegistry }, nodeId, cause).catch(
        (error: unknown) =>
          deps.log.error({ err: error, lostNodeId: nodeId }, "could not move a lost media node's streams"),
      ),
    );
  };
  // The registry places streams whenever the media node is not on this event loop: in cluster mode,
  // and in threaded standalone mode, where the media node is another thread that announces itself.
  const mediaElsewhere = deps.config.VEZA_MODE === 'cluster' || !deps.config.VEZA_ROLES.includes('media');
  const registry: MediaNodeRegistry | undefined =
    !deps.pickMediaNode && mediaElsewhere
      ? createMediaNodeRegistry({
          bus: deps.bus,
          log: deps.log,
          cluster: deps.config.MEDIA_CLUSTER,
          relayFanout: deps.config.MEDIA_RELAY_FANOUT,
          onLost,
        })
      : undefined;
  registry?.ready.catch((error: unknown) =>
    deps.log.error({ err: error }, 'the media-node registry could not subscribe to the bus'),
  );
  if (registry) {
    // StreamService cannot place a stream while no media node is live; the rest of the server can work.
    deps.dependencies?.add({
      name: 'media-registry',
      advisory: true,
      check: async () => {
        await registry.ready;
        if (registry.live().length === 0) throw new Error('no media node has announced itself');
      },
    });
  }
  const pickMediaNode = deps.pickMediaNode ?? (registry ? () => registry.pick() : () => deps.config.nodeId);

  const publish = (subject: string, payload: unknown, log: Logger) =>
    publishEvent(deps.bus, subject, payload, log);

  /** Loads a stream the caller may see, or NotFound. */
  const visible = async (id: number, ctx: CallContext): Promise<StreamRow> => {
    const row = await store.get(id);
    if (!row) throw notFound(id);
    if (!row.is_public && !isOwner(ctx, row) && !isModerator(ctx)) throw notFound(id);
    return row;
  };

  const binding = bindService(StreamServiceService, {
    ...deps.uploadRpcs,
    ...deps.analyticsRpcs,
    startStream: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const user = ctx.user;
        if (!user) throw new PermissionDeniedError('starting a stream needs a signed-in user');
        if (!user.roles.includes('broadcaster')) {
          throw new PermissionDeniedError('starting a stream needs the broadcaster role');
        }
        const input = parseInput(startStreamSchema, request);
        const blobs = deps.blobs;
        if (input.record && !blobs) {
          throw new FailedPreconditionError(
            'this platform has no storage for recordings: start with record false',
          );
        }
        // The prefix is prepared inside the stream's transaction: a stream that says "recording"
        // always has its manifest, and a manifest that cannot be written fails the start.
        const prepare =
          input.record && blobs
            ? async (streamId: number) => {
                const manifest: RecordingManifest = {
                  streamId,
                  ownerId: user.userId,
                  preparedAt: new Date().toISOString(),
                };
                await blobs.put(
                  recordingManifestKey(streamId),
                  Buffer.from(JSON.stringify(manifest)),
                  'application/json',
                );
              }
            : undefined;
        const result = await store.start(
          { ...input, ownerId: user.userId, mediaNodeId: await pickMediaNode() },
          deps.chatRooms,
          prepare,
        );
        // The owner's previous live stream ended with reason "replaced" in the same
        // transaction (see store.start); its listeners and edges learn it here.
        for (const old of result.replaced) await publishEnded(deps.bus, old, ctx.log);
        const row = result.stream;
        started.inc();
        const event: StreamStartedEvent = {
          stream_id: row.id,
          owner_id: row.owner_id,
          owner_username: row.owner_username,
          title: row.title,
          chat_room_id: row.chat_room_id,
          media_node_id: row.media_node_id,
          is_public: row.is_public,
          allow_anonymous: row.allow_anonymous,
          started_at: row.started_at.toISOString(),
        };
        await publish(STREAM_STARTED, event, ctx.log);
        ctx.log.info(
          { streamId: row.id, record: row.record, replaced: result.replaced.map((old) => old.id) },
          'stream started',
        );
        return { success: true, stream: toStreamInfo(row) };
      },
    },

    stopStream: {
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const input = parseInput(stopStreamSchema, request);
        const row = await store.get(input.streamId);
        if (!row) throw notFound(input.streamId);
        let defaultReason: string;
        if (actsAsService(ctx)) defaultReason = 'stopped_by_service';
        else if (isOwner(ctx, row)) defaultReason = 'stopped';
        else if (isModerator(ctx)) defaultReason = 'stopped_by_moderator';
        else if (!row.is_public) throw notFound(input.streamId);
        else throw new PermissionDeniedError(`only the owner or a moderator may stop stream ${row.id}`);

        // Stopping an ended stream is not an error: a retried stop, or the grace timer
        // firing after the owner pressed stop, must both succeed without a second event.
        if (row.status === 'ended') return { success: true, stream: toStreamInfo(row) };
        const done = await endLiveStream({ ...deps, log: ctx.log }, row.id, input.reason || defaultReason);
        if (!done) {
          const current = await store.get(row.id);
          if (!current) throw notFound(row.id);
          return { success: true, stream: toStreamInfo(current) };
        }
        ctx.log.info({ streamId: done.id, reason: done.end_reason }, 'stream ended');
        return { success: true, stream: toStreamInfo(done) };
      },
    },

    getStreamInfo: {
      // Anonymous REST callers arrive through the edge with its API key and no token.
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const { streamId } = parseInput(streamIdSchema, request);
        return { stream: toStreamInfo(await visible(streamId, ctx)) };
      },
    },

    listStreams: {
      // Anyone; a user's token is verified only so that moderators may list private streams.
      policy: 'public-or-jwt',
      handler: async (request, ctx) => {
        const input = parseInput(listStreamsSchema, request);
        const { limit, includePrivate } = input;
        if (includePrivate && !actsAsService(ctx) && !isModerator(ctx)) {
          throw new VezaError(
            'permission_denied',
            'include_private is for service callers and moderators only',
            { field: 'include_private' },
          );
        }
        // The streams live when the listing began, newest first (ids below `below`), then
        // those started since (ids above `above`, the highest listed so far), oldest first.
        // A first page that is not full is the whole listing.
        const cursor = input.pageToken;
        const rows =
          cursor?.below === 0
            ? []
            : await store.listLive({ limit, includePrivate, below: cursor ? cursor.below : null });
        const olderDone = rows.length < limit;
        const highest = (above: number) => Math.max(above, ...rows.map((row) => row.id));
        if (cursor && olderDone) {
          const above = highest(cursor.above);
          rows.push(...(await store.listLive({ limit: limit - rows.length, includePrivate, above })));
        }
        const nextPageToken =
          rows.length < limit
            ? ''
            : encodePageToken({
                below: olderDone ? 0 : (rows.at(-1)?.id ?? 0),
                above: highest(cursor?.above ?? 0),
              });
        return { streams: rows.map(toStreamInfo), nextPageToken };
      },
    },

    issueListenerToken: {
      policy: 'public',
      handler: async (request) => {
        const { streamId } = parseInput(streamIdSchema, request);
        const row = await store.get(streamId);
        if (!row?.is_public) throw notFound(streamId);
        if (row.status !== 'live') throw new FailedPreconditionError(`stream ${streamId} has ended`);
        if (!row.allow_anonymous) {
          throw new PermissionDeniedError(
            `stream ${streamId} does not allow anonymous listeners; sign in to listen`,
          );
        }
        const issued = await issueListenerToken(deps.signingKey, streamId);
        return { token: issued.token, expiresIn: issued.expiresIn, expiresAt: issued.expiresAt };
      },
    },

    reportListenerCount: {
      policy: 'api-key',
      handler: async (request) => {
        const input = parseInput(reportListenerCountSchema, request);
        const updated = await store.reportListeners(input.streamId, input.listenerCount);
        if (!updated) {
          // A report racing the stream's end is normal; the ended stream is left as it is.
          const current = await store.get(input.streamId);
          if (!current) throw notFound(input.streamId);
          return { stream: toStreamInfo(current) };
        }
        return { stream: toStreamInfo(updated) };
      },
    },
  });
  if (!registry) return binding;
  // The registry lives as long as the server serving this binding.
  return {
    ...binding,
    implement(runtime) {
      runtime.shutdown.addEventListener('abort', () => registry.close(), { once: true });
      return binding.implement(runtime);
    },
  };
}
