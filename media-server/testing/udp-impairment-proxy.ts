/**
 * A UDP link with delay and loss, of the tests' own (this machine's kernel has no netem): it stands
 * between media nodes that announce a mirror address for their pipes
 * (MEDIA_PIPE_ANNOUNCED_ADDRESS). For each node it binds the mirror address on every port of the
 * node's RTC range; a packet a node sends to another node's mirror is forwarded to that node's
 * real address, from the sender's own mirror at the sender's port, so each side sees the tuple it
 * was told (a PipeTransport drops packets from any other). Every forwarded packet is dropped with
 * probability `loss` (a seeded generator, so a run can be replayed) and otherwise delayed by
 * `delayMs`, in both directions.
 *
 * It also reads what crosses it (the pipes are plain RTP and RTCP on one port), so a test can tell
 * that NACK repaired the link: the RTP packets sent a second time (an SSRC and sequence number seen
 * before in that direction: a retransmission, which for audio mediasoup sends as the original
 * packet) and the RTCP generic NACKs asking for them.
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
  /** RTP packets whose SSRC and sequence number already went into the link (forwarded or dropped). */
  retransmitted: number;
  /** RTCP generic NACK messages (RTPFB, FMT 1) that went into the link. */
  nacks: number;
}

const RTCP_RTPFB = 205;
const RTCP_FMT_NACK = 1;

/** Packets of one direction of the link: which RTP sequence numbers it saw, per SSRC. */
class LinkDirection {
  readonly stats: ImpairmentStats = { forwarded: 0, dropped: 0, retransmitted: 0, nacks: 0 };
  readonly #seen = new Map<number, Uint8Array>();

  inspect(packet: Buffer): void {
    if (packet.length < 12 || packet[0]! >> 6 !== 2) return;
    const type = packet[1]!;
    // RTCP's packet types 192-223 sit where RTP has its marker bit and payload type (RFC 5761).
    if (type >= 192 && type <= 223) {
      this.#countNacks(packet);
      return;
    }
    const sequence = packet.readUInt16BE(2);
    const ssrc = packet.readUInt32BE(8);
    let seen = this.#seen.get(ssrc);
    if (!seen) {
      seen = new Uint8Array(65_536);
      this.#seen.set(ssrc, seen);
    }
    if (seen[sequence]) {
      this.stats.retransmitted++;
      return;
    }
    seen[sequence] = 1;
    // Forget the half of the sequence space ahead, so the numbers wrapping around count as new.
    seen[(sequence + 32_768) & 0xffff] = 0;
  }

  /** Walks a compound RTCP packet. */
  #countNacks(packet: Buffer): void {
    for (let offset = 0; offset + 4 <= packet.length; ) {
      const fmt = packet[offset]! & 0x1f;
      if (packet[offset + 1] === RTCP_RTPFB && fmt === RTCP_FMT_NACK) this.stats.nacks++;
      offset += (packet.readUInt16BE(offset + 2) + 1) * 4;
    }
  }
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
  const directions = new Map<string, LinkDirection>();
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
        let direction = directions.get(key);
        if (!direction) {
          direction = new LinkDirection();
          directions.set(key, direction);
        }
        direction.inspect(packet);
        if (random() < options.loss) {
          direction.stats.dropped++;
          return;
        }
        direction.stats.forwarded++;
        const timer = setTimeout(() => {
          timers.delete(timer);
          out.send(packet, port, target.realIp);
        }, options.delayMs);
        timers.add(timer);
      });
    }
  }

  return {
    stats: () => new Map([...directions].map(([key, direction]) => [key, { ...direction.stats }])),
    async close() {
      for (const timer of timers) clearTimeout(timer);
      await Promise.all(
        [...sockets.values()].map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))),
      );
    },
  };
}
