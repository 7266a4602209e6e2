/**
 * A TCP proxy a test can cut and restore, to take a dependency away from one process while the
 * others keep it (one control plane losing its Redis, say): the server behind it keeps running.
 * cut() stops listening and drops every connection through it; restore() listens again on the
 * same port, so the process's client reconnects by itself.
 */
import net from 'node:net';

export interface TcpProxy {
  port: number;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export interface TcpProxyListen {
  /** Where it accepts (default 127.0.0.1), e.g. a network namespace lab's root-side address. */
  host?: string;
  /** Default: any free port. */
  port?: number;
}

export async function startTcpProxy(
  target: { host: string; port: number },
  at: TcpProxyListen = {},
): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | null = null;
  let port = at.port ?? 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const started = net.createServer((client) => {
        const upstream = net.connect(target.port, target.host);
        for (const socket of [client, upstream]) {
          sockets.add(socket);
          socket.on('close', () => sockets.delete(socket));
          socket.on('error', () => {
            client.destroy();
            upstream.destroy();
          });
        }
        client.pipe(upstream).pipe(client);
      });
      started.once('error', reject);
      started.listen(port, at.host ?? '127.0.0.1', () => {
        const address = started.address();
        if (typeof address === 'object' && address) port = address.port;
        started.off('error', reject);
        server = started;
        resolve();
      });
    });
  const cut = async () => {
    const stopping = server;
    server = null;
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    if (stopping) await new Promise<void>((resolve) => stopping.close(() => resolve()));
  };
  await listen();
  return {
    get port() {
      return port;
    },
    cut,
    restore: listen,
    close: cut,
  };
}
