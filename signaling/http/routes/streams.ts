/**
 * The live-stream REST flows of the seed ("Démarrage d'un Stream"): go live, stop, the
 * live directory, one stream, and listener tokens for anonymous listeners. Each is a thin
 * translation to one StreamService rpc; the control plane owns the rules (roles, lengths,
 * who may stop or see what) and its errors pass through with their status and field.
 */
import { z } from 'zod';
import { InvalidArgumentError } from '../../../common/contracts/index.js';
import type { Config } from '../../../common/index.js';
import type { StreamInfo } from '../../../proto/gen/veza/stream/stream.js';
import { iceServers } from '../../ice-servers.js';
import { LastKnown, staleHeaders } from '../../last-known.js';
import type { RtpCapabilities } from '../../protocol/index.js';
import type { EdgeRequest } from '../context.js';
import { json } from '../reply.js';
import type { RouteRegistrar } from '../server.js';
import { callContext, type RouteDeps, requireBearer } from './shared.js';

/**
 * The router RTP capabilities of a stream that just started, from the media node that
 * will host it. The WebSocket layer, which owns the media node, provides it; without it
 * (or when it fails) POST /stream/start answers `router_rtp_capabilities: null` and the
 * client asks for them over the WebSocket, which it must be able to do anyway on reconnect.
 */
export type RouterCapabilitiesProvider = (stream: {
  streamId: number;
  /** The media node the control plane picked; null when it picked none. */
  mediaNodeId: string | null;
  signal: AbortSignal;
}) => Promise<RtpCapabilities | null>;

export interface StreamRouteDeps extends Pick<RouteDeps, 'config' | 'controlPlane'> {
  routerRtpCapabilities?: RouterCapabilitiesProvider | undefined;
}

export interface StreamJson {
  id: number;
  title: string;
  description: string;
  genre: string;
  status: string;
  is_public: boolean;
  allow_anonymous: boolean;
  listener_count: number;
  peak_listeners: number;
  started_at: string | null;
  ended_at: string | null;
  end_reason: string | null;
  chat_room_id: number;
  owner_id: number;
  owner_username: string;
}

/** A reply without its stream is a control-plane bug; it surfaces as a 500, not as `stream: null`. */
export function presentStream(stream: StreamInfo | undefined): StreamJson {
  if (!stream) throw new Error('control plane replied without stream');
  return {
    id: stream.streamId,
    title: stream.title,
    description: stream.description,
    genre: stream.genre,
    status: stream.status,
    is_public: stream.isPublic,
    allow_anonymous: stream.allowAnonymous,
    listener_count: stream.listenerCount,
    peak_listeners: stream.peakListeners,
    started_at: stream.startedAt ? stream.startedAt.toISOString() : null,
    ended_at: stream.endedAt ? stream.endedAt.toISOString() : null,
    end_reason: stream.endReason || null,
    chat_room_id: stream.chatRoomId,
    owner_id: stream.ownerId,
    owner_username: stream.ownerUsername,
  };
}

/** The WebSocket endpoint on this edge, as the browser must reach it. */
export function signalingUrl(config: Pick<Config, 'publicUrl'>): string {
  const url = new URL(config.publicUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.pathname = `${url.pathname.replace(/\/$/, '')}/ws`;
  url.search = '';
  url.hash = '';
  return url.toString();
}

const NO_STORE = { 'cache-control': 'no-store' };

const startSchema = z.strictObject({
  title: z.string(),
  description: z.string().optional(),
  genre: z.string().optional(),
  is_public: z.boolean().optional(),
  allow_anonymous: z.boolean().optional(),
});

/** Stop and listener-token take no input besides the path; an empty JSON object is accepted too. */
const emptyBodySchema = z.strictObject({});

function streamIdParam(request: EdgeRequest): number {
  const raw = request.params.id ?? '';
  const id = Number(raw);
  if (!/^[1-9]\d*$/.test(raw) || !Number.isSafeInteger(id)) {
    throw new InvalidArgumentError(`invalid path parameter "id": "${raw}" is not a stream id`, 'id');
  }
  return id;
}

function limitParam(request: EdgeRequest): number {
  const raw = request.query.get('limit');
  if (raw === null) return 0;
  const limit = Number(raw);
  if (!/^\d+$/.test(raw) || limit < 1 || limit > 100) {
    throw new InvalidArgumentError(
      `invalid query parameter "limit": "${raw}" is not a number from 1 to 100`,
      'limit',
    );
  }
  return limit;
}

/** GET /stream/:id shows private streams to their owner, so a token is passed on when one is sent. */
function optionalBearer(request: EdgeRequest): string | undefined {
  return request.header('authorization') ? requireBearer(request) : undefined;
}

export function registerStreamRoutes(routes: RouteRegistrar, deps: StreamRouteDeps): void {
  const stream = deps.controlPlane.stream;
  const jsonBody = { json: deps.config.BODY_LIMIT_BYTES };

  const capabilitiesFor = async (request: EdgeRequest, info: StreamInfo): Promise<RtpCapabilities | null> => {
    if (!deps.routerRtpCapabilities) return null;
    try {
      return await deps.routerRtpCapabilities({
        streamId: info.streamId,
        mediaNodeId: info.mediaNodeId || null,
        signal: request.signal,
      });
    } catch (error) {
      // The stream is live already; the client can still ask over the WebSocket.
      request.log.warn({ err: error, streamId: info.streamId }, 'router RTP capabilities unavailable');
      return null;
    }
  };

  routes.route(
    'POST',
    '/stream/start',
    async (request) => {
      const token = requireBearer(request);
      const input = request.json(startSchema);
      const response = await stream.startStream(
        {
          title: input.title,
          description: input.description ?? '',
          genre: input.genre ?? '',
          isPublic: input.is_public ?? true,
          allowAnonymous: input.allow_anonymous ?? false,
        },
        callContext(request, token),
      );
      const started = presentStream(response.stream);
      return json(
        {
          stream: started,
          stream_id: started.id,
          chat_room_id: started.chat_room_id,
          signaling_url: signalingUrl(deps.config),
          ice_servers: iceServers(deps.config, { userId: started.owner_id }),
          router_rtp_capabilities: response.stream ? await capabilitiesFor(request, response.stream) : null,
        },
        201,
        NO_STORE,
      );
    },
    { body: jsonBody },
  );

  routes.route(
    'POST',
    '/stream/:id/stop',
    async (request) => {
      // Without a user token the call would act as the edge's own service identity,
      // which may stop any stream: a user's stop must always carry the user.
      const token = requireBearer(request);
      const streamId = streamIdParam(request);
      request.json(emptyBodySchema);
      const response = await stream.stopStream({ streamId, reason: '' }, callContext(request, token));
      return json({ stream: presentStream(response.stream) }, 200, NO_STORE);
    },
    { body: { ...jsonBody, optional: true } },
  );

  // Public streams only: without a user token the call acts as the edge's service identity,
  // which may list private ones, so include_private is never passed on from here.
  // While the control plane cannot answer, readers get the directory and stream pages as this edge
  // last saw them (marked stale) rather than an error. Only public data is kept: the directory
  // lists public streams only, and a stream's page is kept only when the stream is public.
  const directory = new LastKnown<string, { streams: StreamJson[]; next_page_token: string | null }>({
    name: 'stream-directory',
  });
  const pages = new LastKnown<number, { stream: StreamJson }>({ name: 'stream-page' });

  routes.route('GET', '/streams', async (request) => {
    const limit = limitParam(request);
    const pageToken = request.query.get('page_token') ?? '';
    const fallen = await directory.read(`${limit}:${pageToken}`, async () => {
      const response = await stream.listStreams(
        { limit, pageToken, includePrivate: false },
        callContext(request),
      );
      return {
        streams: response.streams.map(presentStream),
        next_page_token: response.nextPageToken || null,
      };
    });
    return json(fallen.value, 200, { ...NO_STORE, ...staleHeaders(fallen) });
  });

  routes.route('GET', '/stream/:id', async (request) => {
    const token = optionalBearer(request);
    const streamId = streamIdParam(request);
    const fallen = await pages.read(
      streamId,
      async () => {
        const response = await stream.getStreamInfo({ streamId }, callContext(request, token));
        return { stream: presentStream(response.stream) };
      },
      (page) => page.stream.is_public,
    );
    return json(fallen.value, 200, { ...NO_STORE, ...staleHeaders(fallen) });
  });

  routes.route(
    'POST',
    '/stream/:id/listener-token',
    async (request) => {
      const streamId = streamIdParam(request);
      request.json(emptyBodySchema);
      const response = await stream.issueListenerToken({ streamId }, callContext(request));
      return json({ token: response.token, expires_in: response.expiresIn }, 200, NO_STORE);
    },
    { body: { ...jsonBody, optional: true } },
  );
}
