/** The latency publisher process: a click track published with the real client library (Broadcaster over @roamhq/wrtc). */
import { Broadcaster, SignalingConnection } from '../../signaling/client/index.js';
import { installWrtcGlobals, NODE_HANDLER_NAME } from '../../signaling/client/testing/index.js';
import { serveParent } from '../lib/ipc.js';
import { nodeWebSocket } from '../lib/ws.js';
import { type ClickSource, clickSource } from './audio.js';

installWrtcGlobals();
let source: ClickSource | undefined;
let broadcaster: Broadcaster | undefined;
let connection: SignalingConnection | undefined;

async function publish(params: { url: string; token: string; streamId: number; intervalMs: number }) {
  source = clickSource({ intervalMs: params.intervalMs });
  connection = new SignalingConnection({ url: params.url, token: params.token, WebSocket: nodeWebSocket() });
  await connection.connect();
  broadcaster = new Broadcaster({ connection, handlerName: NODE_HANDLER_NAME });
  await broadcaster.publish(params.streamId, source.track);
  return {};
}

serveParent(
  {
    publish: (params) =>
      publish(params as { url: string; token: string; streamId: number; intervalMs: number }),
    clicks: () => ({ clicks: [...(source?.clicks ?? [])] }),
  },
  async () => {
    await broadcaster?.close();
    connection?.close();
    source?.stop();
  },
);
