/**
 * A recording across a media node's failover (issue 15's "a media-node failover continues the
 * same recording"), end to end in cluster mode: two media nodes as separate processes
 * (`node app/main.ts`, VEZA_ROLES=media, app/testing/media-processes.ts), a control plane with
 * the worker role and an edge in this process, on the machine's PostgreSQL, Redis and NATS, and
 * one S3 bucket (s3rver) every process stores in. The broadcaster is the client library on
 * @roamhq/wrtc, sending a 440 Hz tone.
 *
 * The stream is placed on the origin node, which records it; mid-broadcast the origin is killed
 * (SIGKILL, its ffmpeg and mediasoup worker with it), the stream moves to the other node, the
 * broadcaster reconnects there by itself and broadcasts on, and the other node records under
 * the same prefix. At the stream's end ONE replay results, as long as the whole broadcast by the
 * wall clock, with the tone before and after the failover and, in between, silence exactly
 * where no node recorded: from the end of the origin's last stored segment (the segment its
 * ffmpeg had open died with it) to the first packet the other node recorded.
 *
 * Each media process logs into the run's temporary folder; KEEP_RECFAIL=1 keeps it after the run,
 * with the segments and the replay (TEST_LOG_LEVEL sets the processes' level).
 */
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSegmentKey, recordingSegmentsPrefix, replaySourceKey } from '../common/contracts/index.js';
import { createLogger, loadConfig } from '../common/index.js';
import {
  clusterTestEnv,
  createTestDatabase,
  decodeMono,
  type S3TestServer,
  startS3TestServer,
  type TestDatabase,
} from '../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../control-plane/client/index.js';
import { until } from '../media-server/testing/wrtc-peers.js';
import { Broadcaster, SignalingConnection } from '../signaling/client/index.js';
import {
  installWrtcGlobals,
  NODE_HANDLER_NAME,
  nodeWebSocket,
  sineSource,
} from '../signaling/client/testing/index.js';
import { type Platform, startPlatform } from './platform.js';
import { type MediaProcesses, signUpAndIn, watchMediaProcesses } from './testing/index.js';

installWrtcGlobals();

const WebSocket = nodeWebSocket();
const SERVICE_KEY = 'recording-failover-test-service-key-0123456789';
const SEGMENT_S = 2;
const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: 'recording-failover-test' });
const run = randomBytes(3).toString('hex');

let db: TestDatabase;
let s3: S3TestServer;
let dataDir: string;
let shared: Record<string, string>;
let control: Platform;
let edge: Platform;
let client: ControlPlaneClient;
let nodes: MediaProcesses;
const cleanups: Array<() => unknown> = [];

/** Resolves with `check`'s value once it has one; polls a real condition, fails at `timeoutMs`. */
/** The stream's stored segments, by writer (node id and session), in time order. */
async function segmentsOf(streamId: number) {
  const keys = await s3.keys(recordingSegmentsPrefix(streamId));
  return keys
    .flatMap((key) => {
      const segment = parseSegmentKey(key);
      return segment ? [segment] : [];
    })
    .sort((a, b) => a.startMs - b.startMs);
}

beforeAll(async () => {
  [db, s3] = await Promise.all([createTestDatabase('cluster'), startS3TestServer()]);
  dataDir = await mkdtemp(path.join(tmpdir(), 'veza-recording-failover-'));
  for (const sequence of ['users_id_seq', 'streams_id_seq', 'chat_rooms_id_seq']) {
    await db.sql`select setval(${sequence}, ${randomInt(1_000_000, 2 ** 40)})`;
  }
  shared = {
    ...clusterTestEnv('recfail', db.url, SERVICE_KEY),
    ...s3.env,
    MEDIA_CLUSTER: `recfail${run}`,
    PRESENCE_HEARTBEAT_MS: '300',
    RECORDING_SEGMENT_S: String(SEGMENT_S),
    // The dead node never says its recorder is done: the join waits this long for it.
    RECORDING_SETTLE_S: '3',
  };
  nodes = await watchMediaProcesses({ label: 'recfail', run, shared, dataDir, log });
  control = await startPlatform(
    loadConfig({
      ...shared,
      VEZA_ROLES: 'control-plane,worker',
      VEZA_DATA_DIR: path.join(dataDir, 'control'),
    }),
    log,
  );
  client = createControlPlaneClient({ address: `127.0.0.1:${control.grpcPort}`, apiKey: SERVICE_KEY, log });
  edge = await startPlatform(
    loadConfig({
      ...shared,
      VEZA_ROLES: 'signaling',
      VEZA_NODE_ID: `recfail-edge-${run}`,
      VEZA_DATA_DIR: path.join(dataDir, 'edge'),
      CONTROL_PLANE_ADDRESS: `127.0.0.1:${control.grpcPort}`,
    }),
    log,
  );
}, 90_000);

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await nodes?.close();
  await edge?.close();
  client?.close();
  await control?.close();
  await s3?.close();
  await db?.drop();
  if (dataDir && !process.env.KEEP_RECFAIL) await rm(dataDir, { recursive: true, force: true });
});

describe('a recording across a media node failover', () => {
  it('continues on the other node: one replay, as long as the broadcast, the tone on both sides of a silence where no node recorded', async () => {
    // The origin first, so the control plane places the stream there.
    const origin = await nodes.start('origin');
    const owner = await signUpAndIn(client, 'recfail');
    const started = await client.stream.startStream(
      { title: 'Failover recording', description: '', genre: '', isPublic: true, allowAnonymous: false },
      { token: owner.token },
    );
    const streamId = started.stream?.streamId ?? 0;
    expect(started.stream).toMatchObject({ mediaNodeId: origin.nodeId, recordingStatus: 'recording' });
    const other = await nodes.start('other');

    const source = sineSource({ frequency: 440 });
    cleanups.push(() => source.stop());
    const connection = new SignalingConnection({
      url: `ws://127.0.0.1:${edge.httpPort}/ws`,
      token: owner.token,
      WebSocket,
    });
    cleanups.push(() => connection.close());
    await connection.connect();
    const broadcaster = new Broadcaster({ connection, handlerName: NODE_HANDLER_NAME });
    const liveAt = Date.now();
    await broadcaster.publish(streamId, source.track);

    // The origin records: wait for two of its segments to be stored, so the kill comes mid-segment.
    const before = await until(
      async () => {
        const stored = (await segmentsOf(streamId)).filter((s) => s.writer.startsWith(origin.nodeId));
        return stored.length >= 2 ? stored : undefined;
      },
      { what: 'two segments from the origin', timeoutMs: 30_000, intervalMs: 50 },
    );
    const reconnected = broadcaster.next('reconnected', 30_000);
    const killedAt = Date.now();
    await origin.kill();
    await reconnected;
    const backAt = Date.now();
    const moved = await client.stream.getStreamInfo({ streamId });
    expect(moved.stream).toMatchObject({ status: 'live', mediaNodeId: other.nodeId });

    // The other node records under the same prefix: its segments follow the origin's.
    await until(
      async () => {
        const stored = (await segmentsOf(streamId)).filter((s) => s.writer.startsWith(other.nodeId));
        return stored.length >= 2 ? stored : undefined;
      },
      { what: 'two segments from the other node', timeoutMs: 30_000, intervalMs: 100 },
    );
    const stoppedAt = Date.now();
    await client.stream.stopStream({ streamId, reason: '' }, { token: owner.token });
    await broadcaster.close();

    // ONE replay, made by the worker from both nodes' segments.
    const replay = await until(
      async () => {
        const answer = await client.stream.getReplay({ streamId }, { token: owner.token }).catch(() => null);
        if (answer?.replay?.track?.status === 'failed') throw new Error('the replay failed');
        return answer?.replay?.track?.status === 'ready' ? answer.replay : undefined;
      },
      { what: 'the replay to be ready', timeoutMs: 90_000, intervalMs: 250 },
    );
    expect(await db.sql`select id from tracks where stream_id = ${streamId}`).toHaveLength(1);
    const segments = await segmentsOf(streamId);
    const writers = new Set(segments.map((segment) => segment.writer.split('.')[0]));
    expect(writers).toEqual(new Set([origin.nodeId, other.nodeId]));
    const lastOnOrigin = segments.filter((s) => s.writer.startsWith(origin.nodeId)).at(-1);
    const firstOnOther = segments.find((s) => s.writer.startsWith(other.nodeId));
    if (!lastOnOrigin || !firstOnOther) throw new Error('a node stored no segment');
    // The origin stored at least what the test waited for; the other node began after the kill.
    expect(lastOnOrigin.startMs).toBeGreaterThanOrEqual(before.at(-1)?.startMs ?? Number.POSITIVE_INFINITY);
    expect(firstOnOther.startMs).toBeGreaterThanOrEqual(killedAt);

    if (process.env.KEEP_RECFAIL) {
      for (const segment of segments) {
        await writeFile(
          path.join(dataDir, path.basename(segment.key)),
          await buffer(await s3.storage().get(segment.key)),
        );
      }
    }
    const flac = path.join(dataDir, `replay-${streamId}.flac`);
    await writeFile(flac, await buffer(await s3.storage().get(replaySourceKey(streamId))));
    const audio = await decodeMono(flac, path.join(dataDir, `replay-${streamId}.pcm`));
    const originMs = replay.recordingStartedAt?.getTime() ?? 0;
    const broadcastS = (stoppedAt - originMs) / 1000;
    const gapFromS = (lastOnOrigin.startMs + lastOnOrigin.durationMs - originMs) / 1000;
    const gapToS = (firstOnOther.startMs - originMs) / 1000;
    console.info(
      `[recording-failover] replay ${audio.durationS.toFixed(2)} s (track ${replay.track?.duration?.toFixed(2)} s), broadcast ${broadcastS.toFixed(2)} s from the first packet (${((originMs - liveAt) / 1000).toFixed(2)} s after publish); ` +
        `killed at ${((killedAt - originMs) / 1000).toFixed(2)} s, broadcaster back at ${((backAt - originMs) / 1000).toFixed(2)} s; silence ${gapFromS.toFixed(2)}-${gapToS.toFixed(2)} s`,
    );

    // As long as the whole broadcast by the wall clock, the failover's gap included.
    expect(originMs).toBeGreaterThanOrEqual(liveAt);
    expect(Math.abs(audio.durationS - broadcastS)).toBeLessThan(0.5);
    expect(Math.abs((replay.track?.duration ?? 0) - broadcastS)).toBeLessThan(0.5);
    // The gap is where no node recorded: it opens before the kill (the open segment died with the
    // origin) and closes after it, with the other node's first packet.
    expect(gapFromS).toBeLessThanOrEqual((killedAt - originMs) / 1000);
    expect(gapToS).toBeGreaterThan((killedAt - originMs) / 1000);
    // The tone before the failover (every segment read to its end), silence of the gap's real
    // length where it was, the tone after.
    for (let at = 0.3; at < gapFromS - 0.3; at += 0.25) expect(audio.toneAt(at).share).toBeGreaterThan(0.8);
    for (let at = gapFromS + 0.1; at < gapToS - 0.3; at += 0.2)
      expect(audio.toneAt(at).rms).toBeLessThan(100);
    for (let at = gapToS + 0.3; at < audio.durationS - 0.8; at += 0.25)
      expect(audio.toneAt(at).share).toBeGreaterThan(0.8);
  }, 240_000);
});
