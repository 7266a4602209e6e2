/**
 * Killing a mediasoup worker process mid-stream: the pool replaces it, rebuilds the stream's router
 * that lived there, announces it (workerReplaced with the stream), and listeners that re-do their
 * transports and consume (what the client does on that notification) hear the stream again within 3 s.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, loadConfig, renderMetrics } from '../common/index.js';
import { type MediaNode, type MediaNodeEvents, startMediaNode } from './index.js';
import { installWrtcGlobals, SineSource, TestListener, TestPublisher } from './testing/wrtc-peers.js';

const STREAM = 'recovering';
const RECOVERY_BUDGET_MS = 3000;

let node: MediaNode;
const source = new SineSource();
let publisher: TestPublisher;
let onOrigin: TestListener;
let onFanout: TestListener;

function nextEvent<K extends keyof MediaNodeEvents>(
  event: K,
  timeoutMs = 10_000,
): Promise<MediaNodeEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} event within ${timeoutMs} ms`)), timeoutMs);
    node.once(event, (payload) => {
      clearTimeout(timer);
      resolve(payload);
    });
  });
}

async function pidOf(workerIndex: number): Promise<number> {
  const worker = (await node.getWorkers()).find((candidate) => candidate.workerIndex === workerIndex);
  if (!worker) throw new Error(`no live worker ${workerIndex}`);
  return worker.pid;
}

beforeAll(async () => {
  installWrtcGlobals();
  // Budget 1 with 2 workers: the first listener stays on the origin, the second goes to the other worker.
  const config = loadConfig({
    MEDIA_WORKERS: '2',
    MEDIA_CONSUMER_BUDGET: '1',
    VEZA_NODE_ID: 'media-recovery',
  });
  node = await startMediaNode({ config, log: createLogger({ level: 'silent', name: 'media-recovery' }) });
  source.start();
  await node.openStream(STREAM);
  publisher = await TestPublisher.start(node, { streamId: STREAM, peerId: 'broadcaster' }, source);
  onOrigin = await TestListener.join(node, { streamId: STREAM, peerId: 'listener-origin' });
  onFanout = await TestListener.join(node, { streamId: STREAM, peerId: 'listener-fanout' });
  await Promise.all([onOrigin.waitForRms(source.rms), onFanout.waitForRms(source.rms)]);
});

afterAll(async () => {
  onOrigin?.close();
  onFanout?.close();
  publisher?.close();
  source.stop();
  await node?.close();
});

describe('worker death', () => {
  it('replaces a dead fan-out worker; its listener reconnects and hears again within 3 s', async () => {
    expect(onFanout.workerIndex).not.toBe(onOrigin.workerIndex);
    const deadIndex = onFanout.workerIndex;
    const deadPid = await pidOf(deadIndex);
    const replaced = nextEvent('workerReplaced');

    const killedAt = performance.now();
    process.kill(deadPid, 'SIGKILL');
    const event = await replaced;
    expect(event).toMatchObject({ oldWorkerIndex: deadIndex, oldPid: deadPid, affectedStreamIds: [STREAM] });
    expect(event.newPid).not.toBe(deadPid);

    await onFanout.connect();
    await onFanout.waitForRms(source.rms, { frames: 20, timeoutMs: RECOVERY_BUDGET_MS });
    const recoveredMs = performance.now() - killedAt;
    expect(recoveredMs).toBeLessThan(RECOVERY_BUDGET_MS);

    // The origin's listener never noticed.
    onOrigin.resetMeter();
    await onOrigin.waitForRms(source.rms, { frames: 20 });
    expect((await node.getWorkers()).map((worker) => worker.pid)).toContain(event.newPid);
    expect((await renderMetrics()).body).toMatch(/veza_media_worker_deaths_total\{node="media-recovery"\} 1/);
    console.info(`fan-out worker killed: audio back after ${recoveredMs.toFixed(0)} ms`);
  });

  it('replaces a dead origin worker; broadcaster and listeners reconnect and audio is back within 3 s', async () => {
    const info = await node.getStreamInfo(STREAM);
    const originIndex = info.routers.find((router) => router.role === 'origin')?.workerIndex ?? -1;
    const deadPid = await pidOf(originIndex);
    const replaced = nextEvent('workerReplaced');
    const producerClosed = nextEvent('producerClosed');

    const killedAt = performance.now();
    process.kill(deadPid, 'SIGKILL');
    expect(await producerClosed).toMatchObject({ streamId: STREAM, reason: 'worker-died' });
    const event = await replaced;
    expect(event).toMatchObject({ oldWorkerIndex: originIndex, affectedStreamIds: [STREAM] });

    // What the clients do on the worker-restart notification: the broadcaster produces again, then listeners consume.
    await publisher.connect();
    await Promise.all([onOrigin.connect(), onFanout.connect()]);
    await Promise.all(
      [onOrigin, onFanout].map((listener) =>
        listener.waitForRms(source.rms, { frames: 20, timeoutMs: RECOVERY_BUDGET_MS }),
      ),
    );
    const recoveredMs = performance.now() - killedAt;
    expect(recoveredMs).toBeLessThan(RECOVERY_BUDGET_MS);
    expect(await node.listenerCount(STREAM)).toBe(2);
    console.info(`origin worker killed: audio back after ${recoveredMs.toFixed(0)} ms`);
  });
});
