/**
 * The latency listeners process: N listeners on the real client library (Listener over
 * @roamhq/wrtc, so real Opus decoding and a real jitter buffer), each detecting the clicks in
 * what it decodes.
 */
import wrtc from '@roamhq/wrtc';
import { Listener, SignalingConnection } from '../../signaling/client/index.js';
import { installWrtcGlobals, NODE_HANDLER_NAME } from '../../signaling/client/testing/index.js';
import { serveParent } from '../lib/ipc.js';
import { nodeWebSocket } from '../lib/ws.js';
import { type ClickDetector, clickDetector } from './audio.js';
import { type JitterReading, jitterDelayMs, jitterReading } from './jitter.js';

/**
 * wrtc implements RTCPeerConnection.getStats but not RTCRtpReceiver.getStats (what
 * Consumer.getStats calls), so the peer connections the client library creates are tracked
 * here: each listener's receive transport is one, with one inbound audio stream.
 */
const peerConnections: wrtc.RTCPeerConnection[] = [];
class TrackedPeerConnection extends wrtc.RTCPeerConnection {
  constructor(...args: ConstructorParameters<typeof wrtc.RTCPeerConnection>) {
    super(...args);
    peerConnections.push(this);
  }
}
(globalThis as Record<string, unknown>).RTCPeerConnection = TrackedPeerConnection;
installWrtcGlobals();

interface Ear {
  listener: Listener;
  connection: SignalingConnection;
  detector: ClickDetector;
  onsetsAtStart: number;
}

const ears: Ear[] = [];
let jitterAtStart: Array<JitterReading | null> = [];
/** An anonymous listener, as a browser that is not signed in listens. */
async function listenOne(params: { url: string; streamId: number; refractoryMs: number }) {
  const connection = new SignalingConnection({ url: params.url, WebSocket: nodeWebSocket() });
  await connection.connect();
  const listener = new Listener({ connection, handlerName: NODE_HANDLER_NAME });
  const track = await listener.listen(params.streamId);
  ears.push({
    listener,
    connection,
    detector: clickDetector(track, { refractoryMs: params.refractoryMs }),
    onsetsAtStart: 0,
  });
}

/** One reading per peer connection; null for closed ones (mediasoup-client opens one just to read capabilities). */
function jitterReadings(): Promise<Array<JitterReading | null>> {
  return Promise.all(
    peerConnections.map(async (pc) =>
      pc.signalingState === 'closed' ? null : jitterReading(await pc.getStats()),
    ),
  );
}

serveParent(
  {
    listen: async (params) => {
      const p = params as {
        url: string;
        streamId: number;
        count: number;
        refractoryMs: number;
      };
      await Promise.all(Array.from({ length: p.count }, () => listenOne(p)));
      return { listening: ears.length };
    },
    window: async () => {
      for (const ear of ears) ear.onsetsAtStart = ear.detector.onsets.length;
      jitterAtStart = await jitterReadings();
      return {};
    },
    collect: async () => {
      const now = await jitterReadings();
      const jitterBufferMs = now
        .map((reading, i) => jitterDelayMs(jitterAtStart[i] ?? null, reading))
        .filter((value): value is number => value !== null);
      const listeners = ears.map((ear) => ({
        onsets: ear.detector.onsets.slice(ear.onsetsAtStart),
        frames: ear.detector.frames,
      }));
      return { listeners, jitterBufferMs };
    },
  },
  async () => {
    for (const ear of ears) {
      ear.detector.stop();
      await ear.listener.close();
      ear.connection.close();
    }
  },
);
