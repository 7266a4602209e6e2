import { counter, gauge, histogram } from '../common/index.js';
/**
 * The media role's Prometheus metrics. Labelled by node (several media nodes can share a process in
 * tests and standalone mode) and by worker index (a replaced worker keeps its index).
 */

export type ObjectKind = 'routers' | 'transports' | 'producers' | 'consumers';

const workers = gauge('veza_media_workers', 'mediasoup workers alive', ['node']);
const objects: Record<ObjectKind, ReturnType<typeof gauge<'node' | 'worker'>>> = {
  routers: gauge('veza_media_routers', 'mediasoup routers (one per stream per worker)', ['node', 'worker']),
  transports: gauge('veza_media_transports', 'mediasoup transports (WebRTC and pipe)', ['node', 'worker']),
  producers: gauge('veza_media_producers', 'mediasoup producers (broadcasters and pipes)', [
    'node',
    'worker',
  ]),
  consumers: gauge('veza_media_consumers', 'mediasoup consumers (listeners and pipes)', ['node', 'worker']),
};
const cpuSeconds = gauge(
  'veza_media_worker_cpu_seconds',
  'CPU time (user + system) used by the current mediasoup worker process of this index',
  ['node', 'worker'],
);
const workerDeaths = counter(
  'veza_media_worker_deaths_total',
  'mediasoup workers that died and were replaced',
  ['node'],
);
const bytesReceived = counter(
  'veza_media_bytes_received_total',
  'bytes received on WebRTC transports (sampled)',
  ['node'],
);
const bytesSent = counter('veza_media_bytes_sent_total', 'bytes sent on WebRTC transports (sampled)', [
  'node',
]);

const listenersRefused = counter(
  'veza_media_listeners_refused_total',
  'listeners refused by a media node: stream_budget (every router of the stream full), node_max (MEDIA_NODE_MAX_LISTENERS), draining',
  ['node', 'reason'],
);

export type RefusalReason = 'stream_budget' | 'node_max' | 'draining';

// What listeners' RTCP receiver reports say about their leg, one observation per sampled listener
// per tick: the distribution is what alerts on (a few bad listeners are not an outage).
const listenerLoss = histogram(
  'veza_media_listener_packet_loss_ratio',
  'Fraction of packets lost on the way to a listener, from its RTCP receiver reports (sampled)',
  ['node'],
  [0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1],
);
const listenerRtt = histogram(
  'veza_media_listener_rtt_seconds',
  'Round-trip time to a listener, from its RTCP receiver reports (sampled)',
  ['node'],
  [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2],
);
const packetsSent = counter(
  'veza_media_packets_sent_total',
  'RTP packets sent to listeners (sampled with the listeners; the divisor of CPU per packet)',
  ['node'],
);

export class MediaMetrics {
  constructor(private readonly node: string) {}

  setWorkers(count: number): void {
    workers.set({ node: this.node }, count);
  }

  setObjects(workerIndex: number, kind: ObjectKind, count: number): void {
    objects[kind].set({ node: this.node, worker: String(workerIndex) }, count);
  }

  setCpuSeconds(workerIndex: number, seconds: number): void {
    cpuSeconds.set({ node: this.node, worker: String(workerIndex) }, seconds);
  }

  listenerRefused(reason: RefusalReason): void {
    listenersRefused.inc({ node: this.node, reason });
  }

  workerDied(): void {
    workerDeaths.inc({ node: this.node });
  }

  addBytes(received: number, sent: number): void {
    if (received > 0) bytesReceived.inc({ node: this.node }, received);
    if (sent > 0) bytesSent.inc({ node: this.node }, sent);
  }

  /** One sampled listener: its last receiver report (loss as a fraction 0..1, RTT in ms), if any, and packets sent since the last sample. */
  observeListener(report: { loss: number; rttMs: number } | undefined, packets: number): void {
    if (report) {
      listenerLoss.observe({ node: this.node }, report.loss);
      listenerRtt.observe({ node: this.node }, report.rttMs / 1000);
    }
    if (packets > 0) packetsSent.inc({ node: this.node }, packets);
  }

  /** Drops this node's series so a closed node does not report stale values. */
  clear(workerCount: number): void {
    workers.remove({ node: this.node });
    for (let index = 0; index < workerCount; index++) {
      const labels = { node: this.node, worker: String(index) };
      for (const metric of Object.values(objects)) metric.remove(labels);
      cpuSeconds.remove(labels);
    }
  }
}
