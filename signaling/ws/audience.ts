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
  media: Pick<MediaNodeApi, 'getStats'>;
}

export interface AudienceSession {
  /** Publishes the leave (or disconnect) with the session's duration, and stops sampling. */
  end(cause: string): void;
}

export interface AudienceReporter {
  start(info: AudienceSessionInfo): AudienceSession;
}

type MediaStats = Awaited<ReturnType<MediaNodeApi['getStats']>>;

/** A listener's quality from its consumer; the broadcaster's from its producer. Null with nothing to say yet. */
export function qualityOf(role: 'broadcaster' | 'listener', stats: MediaStats): AnalyticsValues | null {
  const stream = role === 'listener' ? stats.consumers[0] : stats.producer;
  if (!stream) return null;
  const values: AnalyticsValues = {
    bitrate_kbps: stream.bitrateBps / 1000,
    loss_pct: Math.min(100, stream.packetLoss * 100),
  };
  if (stream.roundTripTimeMs !== null) values.rtt_ms = stream.roundTripTimeMs;
  if (stats.producer && role === 'broadcaster') values.jitter_ms = stats.producer.jitter;
  return values;
}

export function createAudienceReporter(options: {
  bus: EventBus;
  log: Logger;
  sampleMs: number;
}): AudienceReporter {
  const { bus, log, sampleMs } = options;
  const publish = (event: AnalyticsEventWire) => {
    published.inc({ type: event.type });
    bus.publish(ANALYTICS_EVENTS, event).catch((error: unknown) => {
      log.warn({ err: error, type: event.type }, 'could not publish an audience event');
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
      let sampling = false;
      const timer = setInterval(() => {
        if (sampling) return;
        sampling = true;
        info.media
          .getStats(info.peerId)
          .then((stats) => {
            const values = qualityOf(info.role, stats);
            if (values)
              event(listener ? 'quality.listener' : 'quality.broadcaster', { values }, `:${++samples}`);
          })
          .catch((error: unknown) => log.debug({ err: error, peerId: info.peerId }, 'no stats for a sample'))
          .finally(() => {
            sampling = false;
          });
      }, sampleMs);
      timer.unref();
      let ended = false;
      return {
        end(cause) {
          if (ended) return;
          ended = true;
          clearInterval(timer);
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
