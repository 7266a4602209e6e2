/**
 * The `/ws` endpoint on the edge's uWS app (docs/signaling.md).
 *
 * Connection rules, all enforced by uWS or here before any work is done:
 * - handshake: protocol version, then the token, verified locally (upgrade.ts);
 * - token lifetime: the token is followed on the open connection: `tokenExpiring` before it
 *   expires, `auth.refresh` to replace it, refusal and close (4401) after it expired, close
 *   (4403) when its login session is revoked (token-lifetime.ts);
 * - heartbeats: uWS pings automatically and drops a connection silent for `idleTimeoutS`;
 * - size: frames above `maxMessageBytes` get a `payload_too_large` error and the connection
 *   stays open; above `hardMaxMessageBytes` uWS closes it without reading the frame;
 * - backpressure: a client that does not read is dropped once `maxBackpressureBytes` are
 *   buffered for it (closeOnBackpressureLimit), so it cannot grow the edge's memory;
 * - malformed JSON, unknown methods and bad params get error responses; the connection stays.
 */
import { STATUS_CODES } from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  DEFAULT_MEDIA_CLUSTER,
  edgePresenceGroup,
  httpStatusOf,
  ROUTER_RTP_CAPABILITIES,
  toVezaError,
} from '../../common/contracts/index.js';
import { announcePresence, type Config, type Logger } from '../../common/index.js';
import type { EventBus } from '../../common/ports/index.js';
import type { ControlPlaneClient } from '../../control-plane/client/index.js';
import { errorBody } from '../http/reply.js';
import type { TemplatedApp, WebSocket } from '../http/uws.js';
import { iceServers } from '../ice-servers.js';
import {
  CLOSE_CODES,
  HARD_MAX_MESSAGE_BYTES,
  MAX_MESSAGE_BYTES,
  parseRequest,
  type RtpCapabilities,
  SIGNALING_PATH,
} from '../protocol/index.js';
import { AnonymousBudget } from './anonymous-budget.js';
import { createAudienceReporter } from './audience.js';
import { ChatHub, ChatSession, chatSendSteps } from './chat/index.js';
import { openClientOrigin } from './client-origin.js';
import { Connection, type ConnectionLimits } from './connection.js';
import { edgeStreams } from './edge-streams.js';
import { createJwksKeyStore } from './jwks.js';
import type { MediaGateway } from './media-gateway.js';
import { MediaSession } from './media-session.js';
import { wsClosed, wsConnections, wsUpgrades } from './metrics.js';
import { ConnectionSocket, OutboundMeter } from './socket.js';
import { EdgeTokenChecks } from './token-checks.js';
import { DEFAULT_TOKEN_LIFETIME_LIMITS, TokenLifetime, type TokenLifetimeLimits } from './token-lifetime.js';
import { type ConnectionAuth, decideUpgrade, type UpgradeDecision } from './upgrade.js';

export interface SignalingLimits extends ConnectionLimits, TokenLifetimeLimits {
  /** Larger frames get a payload_too_large error (the connection stays). */
  maxMessageBytes: number;
  /** Larger frames close the connection (uWS maxPayloadLength). */
  hardMaxMessageBytes: number;
  /** Bytes buffered for a client that does not read before it is dropped. */
  maxBackpressureBytes: number;
  /** A connection silent this long is closed; uWS pings before that (a multiple of 4, at least 8). */
  idleTimeoutS: number;
}

export const DEFAULT_SIGNALING_LIMITS: SignalingLimits = {
  maxMessageBytes: MAX_MESSAGE_BYTES,
  hardMaxMessageBytes: HARD_MAX_MESSAGE_BYTES,
  maxBackpressureBytes: 512 * 1024,
  idleTimeoutS: 32,
  maxQueuedRequests: 32,
  requestsPerSecond: 50,
  requestBurst: 100,
  ...DEFAULT_TOKEN_LIFETIME_LIMITS,
};

/** What the endpoint needs of the edge (startEdge in signaling/index.ts provides it). */
export interface SignalingHost {
  readonly app: TemplatedApp;
  readonly config: Config;
  readonly log: Logger;
  readonly controlPlane: ControlPlaneClient;
  onClose(hook: () => Promise<void> | void): void;
}

export interface SignalingOptions {
  bus: EventBus;
  media: MediaGateway;
  limits?: Partial<SignalingLimits>;
  /** Names this edge in media peer ids, bus messages and its presence (default config.nodeId). */
  edgeId?: string;
  /** How often the edge announces itself to the media nodes (default config.PRESENCE_HEARTBEAT_MS). */
  heartbeatMs?: number;
  /** Listener-count throttles (defaults 250 ms to clients, 1 s to the control plane). */
  listenerNotifyMs?: number;
  listenerReportMs?: number;
}

interface SocketData {
  auth: ConnectionAuth | null;
  /** Set when the handshake is accepted only to deliver a close reason. */
  rejectReason: string | null;
  connection: Connection | null;
  remoteAddress: string;
  /** From the client's address (see client-origin.ts); the address behind a proxy is not kept. */
  country: string | null;
  /** Set when a send was dropped for backpressure and the edge cut the connection. */
  backpressureDrop: boolean;
  /** A tokenless connection: the client address whose anonymous budget it holds a slot of (memory only, never logged). */
  anonymousSlot: string | null;
}

/** uWS send status: the message was dropped because the socket is over maxBackpressure. */
const DROPPED = 2;

export async function registerSignaling(host: SignalingHost, options: SignalingOptions): Promise<void> {
  const { app, config, controlPlane } = host;
  // Every frame to a socket goes through it: the chat hub bounds its members' buffers with it.
  const outbound = new OutboundMeter(app);
  const log = host.log.child({ component: 'signaling' });
  const limits: SignalingLimits = { ...DEFAULT_SIGNALING_LIMITS, ...options.limits };
  const keys = createJwksKeyStore({ controlPlane, log });
  const edgeId = options.edgeId ?? config.nodeId;
  const origin = await openClientOrigin({
    trustedProxies: config.TRUSTED_PROXIES,
    database: config.GEOIP_COUNTRY_DB,
  });
  // The edge's presence for the media nodes: they close the peers of an edge whose heartbeats stop.
  const presence = announcePresence({
    bus: options.bus,
    group: edgePresenceGroup(config.MEDIA_CLUSTER ?? DEFAULT_MEDIA_CLUSTER),
    nodeId: edgeId,
    intervalMs: options.heartbeatMs ?? config.PRESENCE_HEARTBEAT_MS,
    log,
    what: 'edge',
  });
  const streams = edgeStreams({
    app: outbound,
    controlPlane,
    bus: options.bus,
    media: options.media,
    edgeId,
    bootId: presence.bootId,
    graceMs: config.STREAM_GRACE_S * 1000,
    iceServers: (userId) => iceServers(config, { userId }),
    audience: createAudienceReporter({ bus: options.bus, log, sampleMs: config.ANALYTICS_SAMPLE_S * 1000 }),
    log,
    // Several media nodes: the registry places listeners across them (one node in standalone mode).
    ...(config.VEZA_MODE === 'cluster'
      ? {
          cascade: {
            cluster: config.MEDIA_CLUSTER ?? DEFAULT_MEDIA_CLUSTER,
            ...(config.MEDIA_NODE_ZONE ? { zone: config.MEDIA_NODE_ZONE } : {}),
          },
        }
      : {}),
    ...(options.listenerNotifyMs === undefined ? {} : { listenerNotifyMs: options.listenerNotifyMs }),
    ...(options.listenerReportMs === undefined ? {} : { listenerReportMs: options.listenerReportMs }),
  });
  // Token checks from memory, kept current (and revoked sockets closed) by acknowledged invalidations.
  const tokenChecks = new EdgeTokenChecks({
    bus: options.bus,
    log,
    keys,
    controlPlane,
    nodeId: edgeId,
    bootId: presence.bootId,
    intervalMs: options.heartbeatMs ?? config.PRESENCE_HEARTBEAT_MS,
  });
  await Promise.all([streams.start(), tokenChecks.start(), presence.ready]);
  // Chat pauses a room's deliveries to a socket at half the hard limit, so uWS never has to drop one.
  const chatHub = new ChatHub({
    app: outbound,
    bus: options.bus,
    log,
    pauseBytes: Math.floor(limits.maxBackpressureBytes / 2),
    resumeBytes: Math.floor(limits.maxBackpressureBytes / 8),
  });

  // The first frame of every connection: the client loads its Device with it and joins in one request.
  const routerCapabilitiesFrame = JSON.stringify({
    notification: 'routerRtpCapabilities',
    data: { rtpCapabilities: ROUTER_RTP_CAPABILITIES },
  });
  const sockets = new Set<WebSocket<SocketData>>();
  const anonymousBudget = new AnonymousBudget(config.ANONYMOUS_CONNECTIONS_PER_IP);
  let nextConnectionId = 1;
  let closing = false;

  app.ws<SocketData>(SIGNALING_PATH, {
    maxPayloadLength: limits.hardMaxMessageBytes,
    maxBackpressure: limits.maxBackpressureBytes,
    // Typed as a number in these typings; uWS reads it as a flag.
    closeOnBackpressureLimit: 1,
    idleTimeout: limits.idleTimeoutS,
    sendPingsAutomatically: true,

    upgrade: (res, req, context) => {
      // uWS requests live on the stack: read everything before the first await.
      const query = req.getQuery() ?? '';
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const remoteAddress = Buffer.from(res.getRemoteAddressAsText()).toString('utf8');
      const clientAddress = origin.address(remoteAddress, req.getHeader('x-forwarded-for'));
      const country = origin.country(clientAddress);
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      if (closing) {
        res.cork(() => res.writeStatus('503 Service Unavailable').end('edge shutting down'));
        return;
      }
      const decided = decideUpgrade(query, keys, tokenChecks).catch((error: unknown): UpgradeDecision => {
        log.error({ err: error }, 'ws handshake failed');
        return { kind: 'reject-http', error: toVezaError(error) };
      });
      void decided.then((answer) => {
        if (aborted) return;
        let decision = answer;
        let anonymousSlot: string | null = null;
        let overBudget = false;
        // Taken once the handshake is otherwise accepted, given back when the socket closes.
        if (decision.kind === 'accept' && decision.tokenless) {
          try {
            anonymousBudget.take(clientAddress);
            anonymousSlot = clientAddress;
          } catch (error) {
            overBudget = true;
            decision = { kind: 'reject-http', error: toVezaError(error) };
          }
        }
        res.cork(() => {
          if (decision.kind === 'reject-http') {
            const status = httpStatusOf(decision.error.code);
            wsUpgrades.inc({ result: overBudget ? 'anonymous_limit' : decision.error.code });
            log.debug(
              { remoteAddress, code: decision.error.code, reason: decision.error.message },
              'ws handshake refused',
            );
            res
              .writeStatus(`${status} ${STATUS_CODES[status] ?? ''}`.trimEnd())
              .writeHeader('content-type', 'application/json; charset=utf-8')
              .writeHeader('cache-control', 'no-store')
              .end(JSON.stringify(errorBody(decision.error)));
            return;
          }
          wsUpgrades.inc({ result: decision.kind === 'accept' ? 'ok' : 'unsupported_version' });
          const data: SocketData = {
            auth: decision.kind === 'accept' ? decision.auth : null,
            rejectReason: decision.kind === 'reject-version' ? decision.reason : null,
            connection: null,
            remoteAddress,
            country,
            backpressureDrop: false,
            anonymousSlot,
          };
          res.upgrade(data, key, protocol, extensions, context);
        });
      });
    },

    open: (ws) => {
      const data = ws.getUserData();
      if (data.rejectReason !== null || !data.auth) {
        ws.end(CLOSE_CODES.unsupportedVersion, data.rejectReason ?? 'unsupported protocol version');
        return;
      }
      const id = nextConnectionId++;
      sockets.add(ws);
      wsConnections.inc();
      const send = (text: string) => {
        let status = 0;
        ws.cork(() => {
          status = ws.send(text, false);
        });
        outbound.sent(text);
        if (status === DROPPED) {
          // Over maxBackpressure: uWS only stops reading (shutdown of the read side), which a
          // client that keeps sending never notices. Cut it off: it is not reading anyway.
          data.backpressureDrop = true;
          ws.close();
        }
        return status;
      };
      const connectionLog = log.child({ connectionId: id, userId: data.auth.userId });
      const socket = new ConnectionSocket({
        send,
        end: (code, reason) => ws.end(code, reason),
        subscribe: (topic) => ws.subscribe(topic),
        unsubscribe: (topic) => ws.unsubscribe(topic),
      });
      const chat = new ChatSession({
        auth: data.auth,
        hub: chatHub,
        controlPlane,
        log: connectionLog,
        socket: {
          get open() {
            return data.connection !== null && !data.backpressureDrop;
          },
          send,
          subscribe: (topic) => ws.subscribe(topic),
          unsubscribe: (topic) => ws.unsubscribe(topic),
          // Chat topic messages: cut a reader that is behind off before uWS would drop one for it.
          dropIfSlow: (incomingBytes) => {
            const buffered = ws.getBufferedAmount();
            if (buffered === 0 || buffered + incomingBytes <= limits.maxBackpressureBytes) return false;
            data.backpressureDrop = true;
            ws.close();
            return true;
          },
          bufferedAmount: () => ws.getBufferedAmount(),
        },
      });
      const lifetime = new TokenLifetime({
        auth: data.auth,
        limits,
        keys,
        checks: tokenChecks,
        log: connectionLog,
        send: (frame) => socket.send(frame),
        end: (code, reason) => socket.end(code, reason),
      });
      const media = new MediaSession({
        connectionId: id,
        auth: data.auth,
        socket,
        log: connectionLog,
        context: streams.media,
        country: data.country,
      });
      const connection = new Connection({ socket, limits, log: connectionLog, lifetime, media, chat });
      data.connection = connection;
      send(routerCapabilitiesFrame);
      lifetime.start();
      connection.log.debug(
        { remoteAddress: data.remoteAddress, kind: data.auth.kind },
        'signaling connection open',
      );
    },

    message: (ws, message, isBinary) => {
      const connection = ws.getUserData().connection;
      if (!connection) return;
      if (isBinary) {
        connection.reply(null, '', {
          code: 'invalid_argument',
          message: 'binary frames are not part of the protocol: send JSON text',
        });
        return;
      }
      if (message.byteLength > limits.maxMessageBytes) {
        connection.reply(null, '', {
          code: 'payload_too_large',
          message: `frame of ${message.byteLength} bytes is over the ${limits.maxMessageBytes}-byte limit`,
        });
        return;
      }
      const receivedAt = performance.now();
      // The ArrayBuffer is only valid during this call: decode (copy) it now.
      const parsed = parseRequest(Buffer.from(message).toString('utf8'));
      if (!parsed.ok) {
        connection.reply(parsed.id, '', parsed.error);
        return;
      }
      if (parsed.request.method === 'chat.send')
        chatSendSteps.observe({ step: 'validate' }, (performance.now() - receivedAt) / 1000);
      connection.enqueue(parsed.request, receivedAt);
    },

    close: (ws, code, message) => {
      const data = ws.getUserData();
      if (data.anonymousSlot !== null) anonymousBudget.release(data.anonymousSlot);
      data.anonymousSlot = null;
      const connection = data.connection;
      if (!connection) return;
      data.connection = null;
      sockets.delete(ws);
      wsConnections.dec();
      const reason = Buffer.from(message).toString('utf8');
      const cause = data.backpressureDrop ? 'backpressure' : closeCause(code, reason);
      wsClosed.inc({ cause });
      if (cause === 'backpressure')
        connection.log.info('client not reading: dropped at the backpressure limit');
      else connection.log.debug({ code, reason }, 'signaling connection closed');
      connection
        .closed()
        .catch((error: unknown) => connection.log.error({ err: error }, 'cleanup after close failed'));
    },
  });

  host.onClose(async () => {
    closing = true;
    streams.close();
    chatHub.close();
    for (const ws of [...sockets]) ws.end(CLOSE_CODES.goingAway, 'edge shutting down');
    // Its connections released their peers; the media nodes close any left over.
    await Promise.all([presence.goodbye(), tokenChecks.close()]);
  });
  log.info({ path: SIGNALING_PATH, limits }, 'signaling endpoint ready');
}

/** Bounded metric labels for why a connection closed. */
function closeCause(code: number, reason: string): string {
  if (code === CLOSE_CODES.normal) return 'normal';
  if (code === CLOSE_CODES.goingAway) return 'going_away';
  if (code === CLOSE_CODES.replaced) return 'replaced';
  if (code === CLOSE_CODES.tokenExpired) return 'token_expired';
  if (code === CLOSE_CODES.sessionRevoked) return 'session_revoked';
  if (/too big/i.test(reason)) return 'too_big';
  if (code === 1006) return 'abnormal';
  return 'other';
}

/**
 * For POST /stream/start (signaling/index.ts's `routerRtpCapabilities`): opens the stream on
 * its media node at once, so the response carries the router's capabilities.
 */
export function routerCapabilitiesProvider(media: MediaGateway) {
  return async (stream: { streamId: number; mediaNodeId: string | null }): Promise<RtpCapabilities> => {
    const opened = await media.node(stream.mediaNodeId ?? '').openStream(String(stream.streamId));
    return opened.rtpCapabilities as unknown as RtpCapabilities;
  };
}
