/**
 * A UDP link with delay and loss, of the tests' own (this machine's kernel has no netem): it stands
 * between media nodes that announce a mirror address for their pipes
 * (MEDIA_PIPE_ANNOUNCED_ADDRESS). For each node it binds the mirror address on every port of the
 * node's RTC range; a packet a node sends to another node's mirror is forwarded to that node's
 * real address, from the sender's own mirror at the sender's port, so each side sees the tuple it
 * was told (a PipeTransport drops packets from any other). Every forwarded packet is dropped with
 * probability `loss` (a seeded generator, so a run can be replayed) and otherwise delayed by
 * `delayMs`, in both directions.
 */
import { createSocket, type Socket } from 'node:dgram';

export interface MirroredNode {
  /** Where the node really listens. */
  realIp: string;
  /** The address it announces for its pipes (MEDIA_PIPE_ANNOUNCED_ADDRESS), held by the proxy. */
  mirrorIp: string;
  /** Its RTC port range (MEDIA_RTC_MIN_PORT..MEDIA_RTC_MAX_PORT). */
  minPort: number;
  maxPort: number;
}

export interface ImpairmentStats {
  forwarded: number;
  dropped: number;
}

export interface UdpImpairmentProxy {
  /** Packets per direction, keyed `<from realIp>-><to realIp>`. */
  stats(): Map<string, ImpairmentStats>;
  close(): Promise<void>;
}

export async function startUdpImpairmentProxy(options: {
  nodes: MirroredNode[];
  delayMs: number;
  loss: number;
  seed?: number;
}): Promise<UdpImpairmentProxy> {
  let state = options.seed ?? 12_345;
  const random = () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const sockets = new Map<string, Socket>();
  const counts = new Map<string, ImpairmentStats>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const byRealIp = new Map(options.nodes.map((node) => [node.realIp, node]));

  const bind = (ip: string, port: number) =>
    new Promise<Socket>((resolve, reject) => {
      const socket = createSocket('udp4');
      socket.once('error', reject);
      socket.bind(port, ip, () => {
        socket.off('error', reject);
        resolve(socket);
      });
    });

  for (const target of options.nodes) {
    for (let port = target.minPort; port <= target.maxPort; port++) {
      const socket = await bind(target.mirrorIp, port);
      sockets.set(`${target.mirrorIp}:${port}`, socket);
      socket.on('message', (packet, from) => {
        const sender = byRealIp.get(from.address);
        const out = sender ? sockets.get(`${sender.mirrorIp}:${from.port}`) : undefined;
        if (!sender || !out) return;
        const key = `${sender.realIp}->${target.realIp}`;
        let count = counts.get(key);
        if (!count) {
          count = { forwarded: 0, dropped: 0 };
          counts.set(key, count);
        }
        if (random() < options.loss) {
          count.dropped++;
          return;
        }
        count.forwarded++;
        const timer = setTimeout(() => {
          timers.delete(timer);
          out.send(packet, port, target.realIp);
        }, options.delayMs);
        timers.add(timer);
      });
    }
  }

  return {
    stats: () => new Map([...counts].map(([key, value]) => [key, { ...value }])),
    async close() {
      for (const timer of timers) clearTimeout(timer);
      await Promise.all(
        [...sockets.values()].map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))),
      );
    },
  };
}
