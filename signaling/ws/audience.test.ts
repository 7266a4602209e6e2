/**
 * The audience sampler against media nodes it counts the calls of: one qualityStats call per node
 * and tick for all of that node's sessions, each session's sample published under its own
 * dedupe key, nothing for a peer the node left out or a session that ended. The real path
 * (a media node, the bus, the control plane's ingest) is app/audience-analytics.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  ANALYTICS_EVENTS,
  type AnalyticsEventWire,
  type ConsumerStats,
  type PeerQuality,
  type ProducerStats,
  QUALITY_STATS_MAX_PEERS,
} from '../../common/contracts/index.js';
import { createLogger } from '../../common/index.js';
import { MemoryEventBus } from '../../common/ports/index.js';
import { type AudienceReporter, type AudienceSessionInfo, createAudienceReporter } from './audience.js';

const SAMPLE_MS = 5_000;

const rtp = {
  packetCount: 10,
  byteCount: 1000,
  bitrateBps: 64_000,
  packetLoss: 0.02,
  packetsLost: 1,
  roundTripTimeMs: 30,
  score: 10,
};
const consumer = (id: string): ConsumerStats => ({
  ...rtp,
  consumerId: id,
  producerId: 'p',
  paused: false,
  producerPaused: false,
  producerScore: 10,
});
const producer: ProducerStats = { ...rtp, producerId: 'p', paused: false, jitter: 4 };

/** A media node that answers for the peers it holds, and records each call's peers. */
class FakeNode {
  readonly calls: string[][] = [];
  readonly peers = new Set<string>();
  failing = false;

  async qualityStats(peerIds: string[]): Promise<PeerQuality[]> {
    this.calls.push([...peerIds]);
    if (this.failing) throw new Error('no responder');
    return peerIds
      .filter((id) => this.peers.has(id))
      .map((peerId) => ({
        peerId,
        streamId: '1',
        producer: peerId.startsWith('b') ? producer : null,
        consumers: peerId.startsWith('b') ? [] : [consumer(`c-${peerId}`)],
      }));
  }
}

let bus: MemoryEventBus;
let events: AnalyticsEventWire[];
let reporter: AudienceReporter;

beforeEach(async () => {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
  const log = createLogger({ level: 'silent' });
  bus = new MemoryEventBus({ log });
  events = [];
  await bus.subscribe(ANALYTICS_EVENTS, (payload) => {
    events.push(payload as AnalyticsEventWire);
  }).ready;
  reporter = createAudienceReporter({ bus, log, sampleMs: SAMPLE_MS });
});

afterEach(async () => {
  vi.useRealTimers();
  await bus.close();
});

const session = (media: FakeNode, peerId: string, role: AudienceSessionInfo['role'] = 'listener') => {
  media.peers.add(peerId);
  return reporter.start({ streamId: 1, role, peerId, userId: 0, anonId: null, country: 'FR', media });
};

const quality = () => events.filter((event) => event.type.startsWith('quality.'));

describe('audience sampling', () => {
  it('asks each media node once per tick about all of its sessions, and publishes a sample for each', async () => {
    const [a, b] = [new FakeNode(), new FakeNode()];
    for (const id of ['l1', 'l2', 'l3']) session(a, id);
    session(a, 'b1', 'broadcaster');
    session(b, 'l4');

    vi.advanceTimersByTime(SAMPLE_MS);
    await vi.waitFor(() => expect(quality()).toHaveLength(5));
    expect(a.calls).toEqual([['l1', 'l2', 'l3', 'b1']]);
    expect(b.calls).toEqual([['l4']]);
    const l1 = quality().find((event) => event.session_id === 'l1');
    expect(l1).toMatchObject({
      type: 'quality.listener',
      dedupe_key: 'quality.listener:l1:1',
      country: 'FR',
    });
    expect(l1?.values).toEqual({ bitrate_kbps: 64, loss_pct: 2, rtt_ms: 30 });
    const broadcaster = quality().find((event) => event.session_id === 'b1');
    expect(broadcaster).toMatchObject({ type: 'quality.broadcaster', values: { jitter_ms: 4 } });

    vi.advanceTimersByTime(SAMPLE_MS);
    await vi.waitFor(() => expect(quality()).toHaveLength(10));
    expect(a.calls).toHaveLength(2);
    expect(
      quality()
        .filter((event) => event.session_id === 'l1')
        .map((event) => event.dedupe_key),
    ).toEqual(['quality.listener:l1:1', 'quality.listener:l1:2']);
  });

  it('samples a session that just joined at the next tick, not at the one right after it', async () => {
    const node = new FakeNode();
    session(node, 'early');
    vi.advanceTimersByTime(SAMPLE_MS - 1);
    session(node, 'late');
    vi.advanceTimersByTime(1);
    await vi.waitFor(() => expect(quality()).toHaveLength(1));
    expect(node.calls).toEqual([['early']]);
    vi.advanceTimersByTime(SAMPLE_MS);
    await vi.waitFor(() => expect(quality()).toHaveLength(3));
    expect(node.calls.at(-1)).toEqual(['early', 'late']);
  });

  it('asks about a crowd in slices the media node accepts', async () => {
    const node = new FakeNode();
    const crowd = QUALITY_STATS_MAX_PEERS + 20;
    for (let i = 0; i < crowd; i++) session(node, `l${i}`);
    vi.advanceTimersByTime(SAMPLE_MS);
    await vi.waitFor(() => expect(quality()).toHaveLength(crowd));
    expect(node.calls.map((peers) => peers.length)).toEqual([QUALITY_STATS_MAX_PEERS, 20]);
  });

  it('publishes nothing for a peer the node left out, a session that ended, or a node that failed', async () => {
    const [a, b] = [new FakeNode(), new FakeNode()];
    const kept = session(a, 'l1');
    const gone = session(a, 'gone');
    a.peers.delete('gone');
    const ended = session(a, 'l2');
    const failed = session(b, 'l3');
    b.failing = true;
    ended.end('left');

    vi.advanceTimersByTime(SAMPLE_MS);
    await vi.waitFor(() => expect(b.calls).toHaveLength(1));
    await vi.waitFor(() => expect(quality().map((event) => event.session_id)).toEqual(['l1']));
    expect(a.calls).toEqual([['l1', 'gone']]);
    expect(events.find((event) => event.type === 'listener.left')).toMatchObject({
      session_id: 'l2',
      properties: { cause: 'left' },
    });

    // The last session out stops the ticker; the next one starts it again.
    for (const each of [kept, gone, failed]) each.end('left');
    expect(vi.getTimerCount()).toBe(0);
    session(a, 'l5');
    expect(vi.getTimerCount()).toBe(1);
  });
});
