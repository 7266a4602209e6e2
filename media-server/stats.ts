/**
 * Transport, producer and consumer stats in one plain, JSON-serialisable shape, for the listener's
 * connection-quality indicator and later for analytics. Units are in the names: ms, bps, bytes, and
 * packet loss as a fraction 0..1 (RTCP reports it in 1/256ths).
 */
import type { types as ms } from 'mediasoup';
import type {
  ConsumerStats,
  ProducerStats,
  RtpStreamStats,
  TransportStats,
} from '../common/contracts/index.js';

export type {
  ConsumerStats,
  PeerStats,
  ProducerStats,
  RtpStreamStats,
  TransportStats,
} from '../common/contracts/index.js';

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
