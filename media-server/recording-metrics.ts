import { counter, gauge } from '../common/index.js';

/** The recorders' Prometheus metrics, labelled by media node (several can share a process in tests). */

const running = gauge('veza_recording_recorders', 'Stream recorders running (an ffmpeg each)', ['node']);
const segments = counter('veza_recording_segments_total', 'Recording segments uploaded', ['node']);
const bytes = counter('veza_recording_bytes_total', 'Bytes of recording segments uploaded', ['node']);
const restarts = counter(
  'veza_recording_restarts_total',
  'Recorders that died and were restarted (the gap is recorded as silence)',
  ['node'],
);

export class RecordingMetrics {
  constructor(private readonly node: string) {}

  recorderStarted(): void {
    running.inc({ node: this.node });
  }

  recorderStopped(): void {
    running.dec({ node: this.node });
  }

  segmentWritten(size: number): void {
    segments.inc({ node: this.node });
    bytes.inc({ node: this.node }, size);
  }

  restarted(): void {
    restarts.inc({ node: this.node });
  }

  clear(): void {
    running.remove({ node: this.node });
  }
}
