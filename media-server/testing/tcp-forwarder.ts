/**
 * A TCP forwarder of the tests' own: it accepts on one address and pipes each connection to a
 * service elsewhere. The machine's NATS, PostgreSQL and Redis listen on 127.0.0.1 only, which a
 * network namespace cannot reach (its loopback is its own); a forwarder on the lab's root-side
 * address (NetnsLab.hostIp) brings one of them to the namespaces' processes.
 */
import net from 'node:net';

export interface TcpForwarder {
  /** The service's URL with its host and port replaced by the forwarder's. */
  readonly url: string;
  close(): Promise<void>;
}

/** Forwards `host`:<the URL's port> to the URL's host and port; resolves once it listens. */
export async function forwardTcp(serviceUrl: string, host: string): Promise<TcpForwarder> {
  const target = new URL(serviceUrl);
  const targetPort = Number(target.port);
  if (!targetPort) throw new Error(`forwardTcp needs a URL with an explicit port, not ${serviceUrl}`);
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  const server = net.createServer((inbound) => {
    const outbound = net.connect({ host: target.hostname, port: targetPort });
    track(inbound);
    track(outbound);
    // Either side's end or failure ends both, as a direct connection would.
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(targetPort, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const url = new URL(serviceUrl);
  url.hostname = host;
  return {
    url: url.toString(),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
