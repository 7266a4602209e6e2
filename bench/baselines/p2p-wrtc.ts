/**
 * The latency baseline: the same click source and detector over a direct @roamhq/wrtc
 * peer-to-peer call on loopback (no SFU, no signaling server). Same codec, same jitter buffer,
 * same clocks: the platform's figure minus this one is what the SFU path adds.
 */
import wrtc from '@roamhq/wrtc';
import { type ClickDetector, type ClickSource, clickDetector, clickSource } from '../latency/audio.js';
import { type JitterReading, jitterDelayMs, jitterReading } from '../latency/jitter.js';
import { serveParent } from '../lib/ipc.js';

let source: ClickSource | undefined;
let detector: ClickDetector | undefined;
let sender: wrtc.RTCPeerConnection | undefined;
let receiver: wrtc.RTCPeerConnection | undefined;
let jitterAtStart: JitterReading | null = null;
let onsetsAtStart = 0;
let clicksAtStart = 0;

async function start(params: { intervalMs: number; refractoryMs: number }) {
  source = clickSource({ intervalMs: params.intervalMs });
  const a = new wrtc.RTCPeerConnection();
  const b = new wrtc.RTCPeerConnection();
  sender = a;
  receiver = b;
  a.onicecandidate = (event) => {
    if (event.candidate) void b.addIceCandidate(event.candidate);
  };
  b.onicecandidate = (event) => {
    if (event.candidate) void a.addIceCandidate(event.candidate);
  };
  const track = new Promise<MediaStreamTrack>((resolve) => {
    b.ontrack = (event) => resolve(event.track as unknown as MediaStreamTrack);
  });
  a.addTrack(source.track as never, new wrtc.MediaStream());
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription as wrtc.RTCSessionDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription as wrtc.RTCSessionDescription);
  detector = clickDetector(await track, { refractoryMs: params.refractoryMs });
  return {};
}

serveParent(
  {
    start: (params) => start(params as { intervalMs: number; refractoryMs: number }),
    window: async () => {
      jitterAtStart = receiver ? jitterReading(await receiver.getStats()) : null;
      onsetsAtStart = detector?.onsets.length ?? 0;
      clicksAtStart = source?.clicks.length ?? 0;
      return {};
    },
    collect: async () => {
      const jitter = jitterDelayMs(jitterAtStart, receiver ? jitterReading(await receiver.getStats()) : null);
      return {
        clicks: source?.clicks.slice(Math.max(0, clicksAtStart - 1)) ?? [],
        listeners: [{ onsets: detector?.onsets.slice(onsetsAtStart) ?? [], frames: detector?.frames ?? 0 }],
        jitterBufferMs: jitter === null ? [] : [jitter],
      };
    },
  },
  () => {
    detector?.stop();
    source?.stop();
    sender?.close();
    receiver?.close();
  },
);
