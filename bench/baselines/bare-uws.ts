/**
 * The chat baseline: bare uWebSockets.js pub/sub on the same machine. A client connects to
 * `/chat?room=<id>` and is subscribed to that room's topic; each frame it sends (JSON with its
 * room) is published to the room with `app.publish` and acknowledged to the sender. No auth,
 * no moderation, no storage, no bus: the floor our chat path is measured against.
 */
import uWS from 'uWebSockets.js';

interface SocketData {
  room: string;
}

export async function startBareUws(): Promise<{ port: number; close(): Promise<void> }> {
  const app = uWS.App();
  app.ws<SocketData>('/chat', {
    idleTimeout: 60,
    maxBackpressure: 4 * 1024 * 1024,
    upgrade: (res, req, context) => {
      const room = new URLSearchParams(req.getQuery() ?? '').get('room') ?? '0';
      res.upgrade<SocketData>(
        { room },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws) => {
      ws.subscribe(`room:${ws.getUserData().room}`);
    },
    message: (ws, message) => {
      const text = Buffer.from(message).toString('utf8');
      const frame = JSON.parse(text) as { id: string };
      app.publish(`room:${ws.getUserData().room}`, text, false);
      ws.send(JSON.stringify({ ack: frame.id }), false);
    },
  });
  const { socket, port } = await new Promise<{ socket: uWS.us_listen_socket; port: number }>(
    (resolve, reject) => {
      app.listen('127.0.0.1', 0, (listenSocket) => {
        if (!listenSocket) reject(new Error('bare uWS: listen failed'));
        else resolve({ socket: listenSocket, port: uWS.us_socket_local_port(listenSocket) });
      });
    },
  );
  return {
    port,
    close: async () => uWS.us_listen_socket_close(socket),
  };
}
