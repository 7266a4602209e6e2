/**
 * `getStats` in the protocol's shape, field by field: the wire shape is the protocol's, so a
 * change inside the media node does not silently change it.
 */
import type { MediaNodeApi } from '../../common/contracts/index.js';
import type { PeerStats } from '../protocol/index.js';

type MediaPeerStats = Awaited<ReturnType<MediaNodeApi['getStats']>>;

export function toProtocolStats(stats: MediaPeerStats): PeerStats {
  return {
    transports: stats.transports.map((t) => ({
      transportId: t.transportId,
      direction: t.direction,
      iceState: t.iceState,
      dtlsState: t.dtlsState,
      bytesReceived: t.bytesReceived,
      bytesSent: t.bytesSent,
      recvBitrateBps: t.recvBitrateBps,
      sendBitrateBps: t.sendBitrateBps,
    })),
    producer: stats.producer
      ? {
          producerId: stats.producer.producerId,
          paused: stats.producer.paused,
          score: stats.producer.score,
          packetLoss: stats.producer.packetLoss,
          packetsLost: stats.producer.packetsLost,
          bitrateBps: stats.producer.bitrateBps,
          roundTripTimeMs: stats.producer.roundTripTimeMs,
          jitter: stats.producer.jitter,
        }
      : null,
    consumers: stats.consumers.map((c) => ({
      consumerId: c.consumerId,
      producerId: c.producerId,
      paused: c.paused,
      producerPaused: c.producerPaused,
      score: c.score,
      producerScore: c.producerScore,
      packetLoss: c.packetLoss,
      packetsLost: c.packetsLost,
      bitrateBps: c.bitrateBps,
      roundTripTimeMs: c.roundTripTimeMs,
    })),
  };
}
