/**
 * The machine's NATS, PostgreSQL and Redis listen on 127.0.0.1 only, which a network namespace
 * cannot reach (its loopback is its own); a forwarder (common/testing's TCP proxy) on the lab's
 * root-side address (NetnsLab.hostIp) brings one of them to the namespaces' processes.
 */
import { startTcpProxy } from '../../common/testing/index.js';

export interface TcpForwarder {
  /** The service's URL with its host and port replaced by the forwarder's. */
  readonly url: string;
  close(): Promise<void>;
}

/** Forwards `host`:<the URL's port> to the URL's host and port; resolves once it listens. */
export async function forwardTcp(serviceUrl: string, host: string): Promise<TcpForwarder> {
  const target = new URL(serviceUrl);
  const port = Number(target.port);
  if (!port) throw new Error(`forwardTcp needs a URL with an explicit port, not ${serviceUrl}`);
  const proxy = await startTcpProxy({ host: target.hostname, port }, { host, port });
  const url = new URL(serviceUrl);
  url.hostname = host;
  return { url: url.toString(), close: () => proxy.close() };
}
