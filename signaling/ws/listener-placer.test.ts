/**
 * The edge's side of listener placement over the machine's NATS: one request per join, the
 * listeners that left sent in one batch per interval with their counts, and the stream's own
 * node when no registry answers (control planes of the previous version). The registry's side is
 * tested in control-plane/streams/media-node-registry.test.ts; here the test answers as a
 * registry would, to see what the edge sends.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  listenersLeftSchema,
  listenersLeftSubject,
  placeListenerSubject,
} from '../../common/contracts/index.js';
import { createLogger } from '../../common/index.js';
import { NatsEventBus } from '../../common/ports/index.js';
import { clusterServices } from '../../common/testing/index.js';
import { busListenerPlacer, originPlacer } from './listener-placer.js';

const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: 'listener-placer-test' });
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function connect() {
  const bus = await NatsEventBus.connect(clusterServices.natsUrl, { log });
  cleanups.push(() => bus.close());
  return bus;
}

describe("the edge's listener placer", () => {
  it('asks once per join, and sends the listeners that left in one batch with counts', async () => {
    const cluster = `placer-${randomBytes(4).toString('hex')}`;
    const registrySide = await connect();
    const asked: unknown[] = [];
    const answering = registrySide.respond(placeListenerSubject(cluster), async (payload) => {
      asked.push(payload);
      return { nodeId: 'relay-1', pullFrom: 'origin-1' };
    });
    const batches: unknown[] = [];
    const hearing = registrySide.subscribe(listenersLeftSubject(cluster), (payload) =>
      batches.push(listenersLeftSchema.parse(payload)),
    );
    await Promise.all([answering.ready, hearing.ready]);
    const placer = busListenerPlacer({ bus: await connect(), log, cluster, zone: 'eu', flushMs: 100 });
    cleanups.push(() => placer.close());

    await expect(
      placer.place({ streamId: 7, originNodeId: 'origin-1', previousNodeId: 'relay-2' }),
    ).resolves.toEqual({
      nodeId: 'relay-1',
      pullFrom: 'origin-1',
    });
    expect(asked).toEqual([
      { streamId: '7', originNodeId: 'origin-1', zone: 'eu', previousNodeId: 'relay-2' },
    ]);

    placer.left(7, 'relay-1');
    placer.left(7, 'relay-1');
    placer.left(8, 'origin-1');
    await expect.poll(() => batches.length).toBe(1);
    expect(batches[0]).toEqual({
      left: [
        { streamId: '7', nodeId: 'relay-1', count: 2 },
        { streamId: '8', nodeId: 'origin-1', count: 1 },
      ],
    });
  });

  it("joins the stream's own node when no registry answers, and with one node asks nothing", async () => {
    const cluster = `placer-${randomBytes(4).toString('hex')}`;
    const placer = busListenerPlacer({ bus: await connect(), log, cluster, timeoutMs: 1_000 });
    cleanups.push(() => placer.close());
    await expect(placer.place({ streamId: 7, originNodeId: 'origin-1' })).resolves.toEqual({
      nodeId: 'origin-1',
      pullFrom: null,
    });
    await expect(originPlacer().place({ streamId: 7, originNodeId: 'only' })).resolves.toEqual({
      nodeId: 'only',
      pullFrom: null,
    });
  });
});
