/**
 * The edge's audience events: a listener's or broadcaster's media session, from join to leave,
 * published on `analytics.events` with its country (never its address) and, every sampling
 * interval, its delivery quality read from the media node's stats of its peer: for a listener
 * what its consumer sends it (bitrate) and what its receiver reports (round-trip time, loss), for
 * the broadcaster what its producer receives (bitrate, loss, jitter).
 */
import {
  ANALYTICS_EVENTS,
  type AnalyticsEventType,
  type AnalyticsEventWire,
  type AnalyticsValues,
  analyticsEvent,
  type MediaNodeApi,
  type PeerQuality,
  QUALITY_STATS_MAX_PEERS,
} from '../../common/contracts/index.js';
import { counter, type Logger } from '../../common/index.js';
import type { EventBus } from '../../common/ports/index.js';

const published = counter('veza_edge_analytics_events_total', 'Audience events the edge published, by type', [
  'type',
]);

export interface AudienceSessionInfo {
  streamId: number;
  role: 'broadcaster' | 'listener';
  /** The media peer id: one session. */
  peerId: string;
  /** 0 for an anonymous listener. */
  userId: number;
  anonId: string | null;
  country: string | null;
  /** The media node of the session: sessions on the same one are sampled in one call. */
  media: Pick<MediaNodeApi, 'qualityStats'>;
}

export interface AudienceSession {
  /** Publishes the leave (or disconnect) with the session's duration, and stops sampling. */
  end(cause: string): void;
}

export interface AudienceReporter {
  start(info: AudienceSessionInfo): AudienceSession;
}

/** A listener's quality from its consumer; the broadcaster's from its producer. Null with nothing to say yet. */
export function qualityOf(
  role: 'broadcaster' | 'listener',
  stats: Pick<PeerQuality, 'producer' | 'consumers'>,
): AnalyticsValues | null {
  const stream = role === 'listener' ? stats.consumers[0] : stats.producer;
  if (!stream) return null;
  const values: AnalyticsValues = {
    bitrate_kbps: stream.bitrateBps / 1000,
    loss_pct: Math.min(100, stream.packetLoss * 100),
  };
  if (stats.producer && role === 'broadcaster') values.jitter_ms = stats.producer.jitter;
  if (stream.roundTripTimeMs !== null) values.rtt_ms = stream.roundTripTimeMs;
  return values;
}

interface Sampled {
  info: AudienceSessionInfo;
  /** Date.now() at its start: a session is first sampled half an interval later at least. */
  startedAt: number;
  /** Publishes one quality sample of the session. */
  sample(values: AnalyticsValues): void;
}

/**
 * One sampling tick for every session of the edge: the sessions on one media node are asked
 * about in one `qualityStats` call (in slices of QUALITY_STATS_MAX_PEERS), not one `getStats`
 * each. At 1,000 listeners on a node and a 5 s interval that is two calls every 5 s instead of
 * 200 a second, and the node reads only the producer's or consumers' stats, not the transports'.
 */
export function createAudienceReporter(options: {
  bus: EventBus;
  log: Logger;
  sampleMs: number;
}): AudienceReporter {
  const { bus, log, sampleMs } = options;
  const sessions = new Map<string, Sampled>();
  let timer: ReturnType<typeof setInterval> | null = null;
  let sampling = false;

  const publish = (event: AnalyticsEventWire) => {
    published.inc({ type: event.type });
    bus.publish(ANALYTICS_EVENTS, event).catch((error: unknown) => {
      log.warn({ err: error, type: event.type }, 'could not publish an audience event');
    });
  };

  const sampleNode = async (media: AudienceSessionInfo['media'], peerIds: string[]) => {
    for (let i = 0; i < peerIds.length; i += QUALITY_STATS_MAX_PEERS) {
      const slice = peerIds.slice(i, i + QUALITY_STATS_MAX_PEERS);
      try {
        for (const stats of await media.qualityStats(slice)) {
          // Ended meanwhile: its leave is out, a late sample would follow it.
          const session = sessions.get(stats.peerId);
          const values = session ? qualityOf(session.info.role, stats) : null;
          if (session && values) session.sample(values);
        }
      } catch (error) {
        log.debug({ err: error, peers: slice.length }, 'no stats for this sample');
      }
    }
  };

  // A tick still running when the next is due is not doubled up: that one is skipped.
  const tick = () => {
    if (sampling) return;
    sampling = true;
    const byNode = new Map<AudienceSessionInfo['media'], string[]>();
    // A session that just joined has nothing to say yet (no bitrate, no receiver report): as
    // with a timer of its own, its first sample comes about an interval after it started.
    const settled = Date.now() - sampleMs / 2;
    for (const [peerId, { info, startedAt }] of sessions) {
      if (startedAt > settled) continue;
      const peers = byNode.get(info.media);
      if (peers) peers.push(peerId);
      else byNode.set(info.media, [peerId]);
    }
    void Promise.all([...byNode].map(([media, peerIds]) => sampleNode(media, peerIds))).finally(() => {
      sampling = false;
    });
  };

  return {
    start(info) {
      const joinedAt = Date.now();
      const listener = info.role === 'listener';
      const base = {
        stream_id: info.streamId,
        user_id: info.userId > 0 ? info.userId : null,
        session_id: info.peerId,
        anon_id: info.anonId,
        country: info.country,
      };
      const event = (type: AnalyticsEventType, extra: Partial<AnalyticsEventWire>, key: string) =>
        publish(analyticsEvent({ type, ...base, dedupe_key: `${type}:${info.peerId}${key}`, ...extra }));
      event(listener ? 'listener.joined' : 'broadcaster.connected', {}, '');
      let samples = 0;
      const session: Sampled = {
        info,
        startedAt: joinedAt,
        sample: (values) =>
          event(listener ? 'quality.listener' : 'quality.broadcaster', { values }, `:${++samples}`),
      };
      sessions.set(info.peerId, session);
      if (!timer) {
        timer = setInterval(tick, sampleMs);
        timer.unref();
      }
      let ended = false;
      return {
        end(cause) {
          if (ended) return;
          ended = true;
          if (sessions.get(info.peerId) === session) sessions.delete(info.peerId);
          if (sessions.size === 0 && timer) {
            clearInterval(timer);
            timer = null;
          }
          event(
            listener ? 'listener.left' : 'broadcaster.disconnected',
            { values: { duration_ms: Date.now() - joinedAt }, properties: { cause } },
            '',
          );
        },
      };
    },
  };
}
