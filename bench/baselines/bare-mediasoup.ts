/**
 * The fanout baseline: bare mediasoup (the same version and worker binary as the platform)
 * behind a minimal signaling stub that speaks just enough of docs/signaling.md for the same
 * load generator: the routers' capabilities on open, the one-request join (transport and consumer
 * in its answer), connectTransport, produce, resumeConsumer (and createTransport and consume).
 * No tokens, no control plane, no validation, no events, no audio-level observer: what is left
 * is the SFU itself, so the platform's figures divided by these show what our stack adds.
 *
 * Placement mirrors the platform's topology so the ratio compares like with like: listeners
 * fill the origin router up to `consumerBudget`, then go to the least-loaded other worker,
 * whose router is fed by pipeToRouter.
 */

import uWS from 'uWebSockets.js';
import type { types as ms } from 'mediasoup';
import { loadMediasoup, MEDIA_CODECS } from '../../media-server/index.js';
// Not on media-server's public surface: the baseline needs raw mediasoup with the platform's
// worker binary, which this module (and only it) knows how to load.
import { cpuSeconds } from '../lib/proc.js';

export interface BareMediasoupOptions {
  workers: number;
  consumerBudget: number;
  listenIp: string;
  rtcMinPort: number;
  rtcMaxPort: number;
}

export interface BareMediasoup {
  /** ws://127.0.0.1:<port>/ws */
  url: string;
  workerPids: number[];
  /** Workers that hold at least one listener. */
  workersUsed(): number;
  close(): Promise<void>;
}

interface Slot {
  worker: ms.Worker;
  router: ms.Router;
  consumers: number;
  /** The piped producer on a fan-out router, once piped. */
  piped: Promise<void> | null;
}

interface Session {
  transports: Map<string, { transport: ms.WebRtcTransport; slot: Slot }>;
  consumers: Map<string, ms.Consumer>;
  producer: ms.Producer | null;
}

export async function startBareMediasoup(options: BareMediasoupOptions): Promise<BareMediasoup> {
  const mediasoup = await loadMediasoup();
  const slots: Slot[] = [];
  for (let i = 0; i < options.workers; i++) {
    const worker = await mediasoup.createWorker({
      logLevel: 'warn',
      rtcMinPort: options.rtcMinPort,
      rtcMaxPort: options.rtcMaxPort,
    });
    slots.push({
      worker,
      router: await worker.createRouter({ mediaCodecs: MEDIA_CODECS }),
      consumers: 0,
      piped: null,
    });
  }
  const origin = slots[0];
  if (!origin) throw new Error('at least one worker');
  let producer: ms.Producer | null = null;

  const place = (): Slot => {
    if (origin.consumers < options.consumerBudget || slots.length === 1) return origin;
    const others = slots.slice(1).sort((a, b) => a.consumers - b.consumers);
    return others[0] ?? origin;
  };

  const createTransport = async (session: Session, direction: unknown) => {
    const slot = direction === 'send' ? origin : place();
    const transport = await slot.router.createWebRtcTransport({
      listenIps: [{ ip: options.listenIp }],
      enableUdp: true,
      enableTcp: true,
      preferUdp: true,
    });
    session.transports.set(transport.id, { transport, slot });
    return {
      id: transport.id,
      iceParameters: transport.iceParameters,
      iceCandidates: transport.iceCandidates,
      dtlsParameters: transport.dtlsParameters,
      iceServers: [],
    };
  };

  const consume = async (session: Session, params: Record<string, unknown>) => {
    const entry = session.transports.get(String(params.transportId));
    if (!entry) throw new Error('no such transport');
    if (!producer) throw new Error('nothing to consume yet');
    const { slot } = entry;
    if (slot !== origin) {
      const live = producer;
      slot.piped ??= origin.router
        .pipeToRouter({ producerId: live.id, router: slot.router })
        .then(() => undefined);
      await slot.piped;
    }
    const consumer = await entry.transport.consume({
      producerId: producer.id,
      rtpCapabilities: params.rtpCapabilities as ms.RtpCapabilities,
      paused: true,
    });
    slot.consumers++;
    consumer.observer.once('close', () => slot.consumers--);
    session.consumers.set(consumer.id, consumer);
    return {
      consumerId: consumer.id,
      producerId: consumer.producerId,
      kind: 'audio',
      rtpParameters: consumer.rtpParameters,
      paused: true,
    };
  };

  const handlers: Record<string, (session: Session, params: Record<string, unknown>) => Promise<unknown>> = {
    // The same request shape as the platform's one-request join: with the device's capabilities,
    // the answer holds the transport and (for a listener) the consumer.
    join: async (session, params) => {
      const joined: Record<string, unknown> = {
        peerId: `bare-${Math.random().toString(36).slice(2)}`,
        streamId: params.streamId,
        role: params.role,
        rtpCapabilities: origin.router.rtpCapabilities,
        iceServers: [],
        listenerCount: 0,
        stream: { title: 'bare', ownerId: 0, ownerUsername: 'bare' },
      };
      if (!params.rtpCapabilities) return joined;
      const listener = params.role === 'listener';
      const transport = await createTransport(session, listener ? 'recv' : 'send');
      const consumer =
        listener && producer
          ? await consume(session, { transportId: transport.id, rtpCapabilities: params.rtpCapabilities })
          : null;
      return { ...joined, transport, consumer };
    },
    createTransport: (session, params) => createTransport(session, params.direction),
    connectTransport: async (session, params) => {
      const entry = session.transports.get(String(params.transportId));
      if (!entry) throw new Error('no such transport');
      await entry.transport.connect({ dtlsParameters: params.dtlsParameters as ms.DtlsParameters });
      return {};
    },
    produce: async (session, params) => {
      const entry = session.transports.get(String(params.transportId));
      if (!entry) throw new Error('no such transport');
      producer = await entry.transport.produce({
        kind: 'audio',
        rtpParameters: params.rtpParameters as ms.RtpParameters,
      });
      session.producer = producer;
      return { producerId: producer.id };
    },
    consume: (session, params) => consume(session, params),
    resumeConsumer: async (session, params) => {
      await session.consumers.get(String(params.consumerId))?.resume();
      return {};
    },
    leave: async (session) => {
      closeSession(session);
      return {};
    },
  };

  const closeSession = (session: Session) => {
    for (const { transport } of session.transports.values()) transport.close();
    session.transports.clear();
    session.consumers.clear();
  };

  const app = uWS.App();
  app.ws<Session>('/ws', {
    idleTimeout: 32,
    maxPayloadLength: 1024 * 1024,
    upgrade: (res, req, context) => {
      res.upgrade<Session>(
        { transports: new Map(), consumers: new Map(), producer: null },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    message: (ws, message) => {
      const frame = JSON.parse(Buffer.from(message).toString('utf8')) as {
        id: number;
        method: string;
        params: Record<string, unknown>;
      };
      const session = ws.getUserData();
      const handler = handlers[frame.method];
      void (
        handler ? handler(session, frame.params) : Promise.reject(new Error(`unknown method ${frame.method}`))
      )
        .then(
          (result) => ({ id: frame.id, ok: true, result }),
          (error: unknown) => ({
            id: frame.id,
            ok: false,
            error: { code: 'internal', message: error instanceof Error ? error.message : String(error) },
          }),
        )
        .then((reply) => {
          try {
            ws.send(JSON.stringify(reply));
          } catch {
            // Closed meanwhile.
          }
        });
    },
    // As the platform's edge: the routers' capabilities are every connection's first frame.
    open: (ws) => {
      ws.send(
        JSON.stringify({
          notification: 'routerRtpCapabilities',
          data: { rtpCapabilities: origin.router.rtpCapabilities },
        }),
      );
    },
    close: (ws) => closeSession(ws.getUserData()),
  });
  const { socket, port } = await new Promise<{ socket: uWS.us_listen_socket; port: number }>(
    (resolve, reject) => {
      app.listen('127.0.0.1', 0, (listenSocket) => {
        if (!listenSocket) reject(new Error('bare mediasoup stub: listen failed'));
        else resolve({ socket: listenSocket, port: uWS.us_socket_local_port(listenSocket) });
      });
    },
  );

  return {
    url: `ws://127.0.0.1:${port}/ws`,
    workerPids: slots.map((slot) => slot.worker.pid),
    workersUsed: () => slots.filter((slot) => slot.consumers > 0).length,
    async close() {
      uWS.us_listen_socket_close(socket);
      for (const slot of slots) slot.worker.close();
      // A worker tearing down a thousand transports takes a while: wait, so its CPU does not
      // land in whatever the benchmark measures next.
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && slots.some((slot) => cpuSeconds(slot.worker.pid) !== null)) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
  };
}
