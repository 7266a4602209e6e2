/**
 * Transport, producer and consumer stats in one plain, JSON-serialisable shape, for the listener's
 * connection-quality indicator and later for analytics. Units are in the names: ms, bps, bytes, and
 * packet loss as a fraction 0..1 (RTCP reports it in 1/256ths).
 */
import type { types as ms } from 'mediasoup';

export interface TupleStats {
  localIp: string;
  localPort: number;
  remoteIp: string | null;
  remotePort: number | null;
  protocol: 'udp' | 'tcp';
}

export interface TransportStats {
  transportId: string;
  direction: 'send' | 'recv';
  workerIndex: number;
  iceState: ms.IceState;
  dtlsState: ms.DtlsState;
  selectedTuple: TupleStats | null;
  bytesReceived: number;
  bytesSent: number;
  recvBitrateBps: number;
  sendBitrateBps: number;
  availableOutgoingBitrateBps: number | null;
}

export interface RtpStreamStats {
  /** mediasoup's 0..10 quality score of the RTP stream. */
  score: number;
  roundTripTimeMs: number | null;
  /** Fraction of packets lost in the last RTCP report interval, 0..1. */
  packetLoss: number;
  packetsLost: number;
  packetCount: number;
  byteCount: number;
  bitrateBps: number;
}

export interface ConsumerStats extends RtpStreamStats {
  consumerId: string;
  producerId: string;
  paused: boolean;
  producerPaused: boolean;
  /** Score of the stream arriving from the broadcaster (0..10); low means the problem is upstream. */
  producerScore: number;
}

export interface ProducerStats extends RtpStreamStats {
  producerId: string;
  paused: boolean;
  jitter: number;
}

export interface PeerStats {
  peerId: string;
  streamId: string;
  transports: TransportStats[];
  producer: ProducerStats | null;
  consumers: ConsumerStats[];
}

const EMPTY_STREAM: RtpStreamStats = {
  score: 0,
  roundTripTimeMs: null,
  packetLoss: 0,
  packetsLost: 0,
  packetCount: 0,
  byteCount: 0,
  bitrateBps: 0,
};

function rtpStream(stat: ms.ConsumerStat | ms.ProducerStat | undefined): RtpStreamStats {
  if (!stat) return { ...EMPTY_STREAM };
  return {
    score: stat.score,
    roundTripTimeMs: stat.roundTripTime ?? null,
    packetLoss: stat.fractionLost / 256,
    packetsLost: stat.packetsLost,
    packetCount: stat.packetCount,
    byteCount: stat.byteCount,
    bitrateBps: stat.bitrate,
  };
}

export async function transportStats(
  transport: ms.WebRtcTransport,
  direction: 'send' | 'recv',
  workerIndex: number,
): Promise<TransportStats> {
  const [stat] = await transport.getStats();
  const tuple = stat?.iceSelectedTuple ?? transport.iceSelectedTuple;
  return {
    transportId: transport.id,
    direction,
    workerIndex,
    iceState: stat?.iceState ?? transport.iceState,
    dtlsState: stat?.dtlsState ?? transport.dtlsState,
    selectedTuple: tuple
      ? {
          localIp: tuple.localIp,
          localPort: tuple.localPort,
          remoteIp: tuple.remoteIp ?? null,
          remotePort: tuple.remotePort ?? null,
          protocol: tuple.protocol,
        }
      : null,
    bytesReceived: stat?.bytesReceived ?? 0,
    bytesSent: stat?.bytesSent ?? 0,
    recvBitrateBps: stat?.recvBitrate ?? 0,
    sendBitrateBps: stat?.sendBitrate ?? 0,
    availableOutgoingBitrateBps: stat?.availableOutgoingBitrate ?? null,
  };
}

export async function consumerStats(consumer: ms.Consumer): Promise<ConsumerStats> {
  const stats = await consumer.getStats();
  // The consumer's own (outbound) stream; the producer's inbound one tells nothing the score does not.
  const outbound = stats.find((stat) => stat.type === 'outbound-rtp');
  return {
    consumerId: consumer.id,
    producerId: consumer.producerId,
    paused: consumer.paused,
    producerPaused: consumer.producerPaused,
    ...rtpStream(outbound),
    score: consumer.score.score,
    producerScore: consumer.score.producerScore,
  };
}

export async function producerStats(producer: ms.Producer): Promise<ProducerStats> {
  const [inbound] = await producer.getStats();
  return {
    producerId: producer.id,
    paused: producer.paused,
    ...rtpStream(inbound),
    score: producer.score[0]?.score ?? 0,
    jitter: inbound?.jitter ?? 0,
  };
}
