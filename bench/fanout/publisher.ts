/**
 * The probe publisher process: joins as the stream's broadcaster over the real signaling
 * protocol and sends Opus-sized probe packets at a steady rate, paced against the clock (not
 * by chained timers, which drift). Forked by the fanout orchestrator.
 */
import { performance } from 'node:perf_hooks';
import { serveParent } from '../lib/ipc.js';
import type { SignalingTargetJson } from './messages.js';
import { ProbePublisher } from './peers.js';
import { probeWriter } from './rtp.js';

let publisher: ProbePublisher | undefined;
let timer: NodeJS.Timeout | undefined;
let seq = 0;
let late = 0;
let sendErrors = 0;
let lastError: string | null = null;

async function publish(params: { target: SignalingTargetJson; packetsPerSecond: number }) {
  const { target } = params;
  if (target.token === null) throw new Error('the publisher needs the broadcaster token');
  publisher = new ProbePublisher({ url: target.url, token: target.token, streamId: target.streamId });
  await publisher.publish();
  const writer = probeWriter({ ssrc: publisher.ssrc, payloadType: publisher.payloadType });
  const interval = 1000 / params.packetsPerSecond;
  const started = performance.now();
  let sent = 0;
  const tick = () => {
    const now = performance.now();
    // Catch up after a stall (the wire sees a burst, as from a real client), bounded to 1 s.
    const due = Math.min(Math.floor((now - started) / interval) + 1, sent + params.packetsPerSecond);
    if (due - sent > 1 && now - (started + (sent + 1) * interval) > 10) late += due - sent - 1;
    while (sent < due) {
      const next = writer.next();
      try {
        if (!publisher?.send(next.packet)) sendErrors++;
      } catch (error) {
        // The SFU dropped us (ICE consent, DTLS): the listeners' loss shows it; the run goes on.
        sendErrors++;
        lastError = error instanceof Error ? error.message : String(error);
      }
      seq = next.seq + 1;
      sent++;
    }
    const wait = started + sent * interval - performance.now();
    timer = setTimeout(tick, Math.max(0, wait));
  };
  tick();
  return { payloadType: publisher.payloadType, ssrc: publisher.ssrc };
}

serveParent(
  {
    publish: (params) => publish(params as { target: SignalingTargetJson; packetsPerSecond: number }),
    seq: () => ({ seq, late, sendErrors, lastError }),
  },
  () => {
    if (timer) clearTimeout(timer);
    publisher?.close();
  },
);
