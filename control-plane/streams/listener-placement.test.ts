/**
 * Listener placement across media nodes (the registry's real code, no media): a simulation of
 * 100k listeners joining and leaving one broadcast over 50 nodes, fed back by heartbeats as the
 * nodes would send them, then the rules one at a time (zone, draining, at capacity).
 */
import { describe, expect, it } from 'vitest';
import { type MediaNodeHeartbeat, VezaError } from '../../common/contracts/index.js';
import { ListenerPlacement } from './listener-placement.js';

const NODE_MAX = 2_500;

function heartbeat(nodeId: string, fields: Partial<MediaNodeHeartbeat> = {}): MediaNodeHeartbeat {
  return {
    nodeId,
    bootId: '0123456789abcdef',
    intervalMs: 2000,
    workers: 2,
    routers: 0,
    transports: 0,
    producers: 0,
    consumers: 0,
    load: 0,
    listeners: 0,
    maxListeners: NODE_MAX,
    zone: '',
    draining: false,
    streams: [],
    ...fields,
  };
}

/** A deterministic generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe('placement simulation: 100k listeners, 50 nodes, one broadcast', () => {
  it('places every listener, fills carriers before adding nodes, keeps the tree shallow and the pipes per node bounded', () => {
    const fanout = 4;
    const placement = new ListenerPlacement({ fanout });
    const nodeIds = Array.from({ length: 50 }, (_, i) => `node-${i}`);
    for (const id of nodeIds) placement.observe(heartbeat(id));
    const streamId = 'big';
    const origin = 'node-0';
    /** Where each listener really is (what the nodes would report). */
    const truth = new Map<string, number>();
    const present: string[] = [];
    const next = random(42);
    let joins = 0;
    let leaves = 0;

    const beat = () => {
      const tree = placement.tree(streamId);
      for (const id of nodeIds) {
        const carried = tree.get(id);
        placement.observe(
          heartbeat(id, {
            listeners: truth.get(id) ?? 0,
            streams: carried
              ? [
                  {
                    streamId,
                    listeners: truth.get(id) ?? 0,
                    upstream: carried.parent,
                    downstream: carried.children,
                  },
                ]
              : [],
          }),
        );
      }
    };

    // 120k joins and 20k leaves, interleaved: 100k listeners at the end.
    while (joins < 120_000) {
      if (present.length > 0 && next() < 1 / 6 && leaves < 20_000) {
        const index = Math.floor(next() * present.length);
        const nodeId = present[index] as string;
        present[index] = present[present.length - 1] as string;
        present.pop();
        truth.set(nodeId, (truth.get(nodeId) ?? 0) - 1);
        placement.leave(streamId, nodeId);
        leaves++;
      } else {
        const { nodeId } = placement.place(streamId, { originNodeId: origin });
        truth.set(nodeId, (truth.get(nodeId) ?? 0) + 1);
        present.push(nodeId);
        joins++;
      }
      // Heartbeats every 2,000 operations: what placement counted meanwhile meets the nodes' word.
      if ((joins + leaves) % 2_000 === 0) beat();
    }
    beat();

    expect(present).toHaveLength(100_000);
    const tree = placement.tree(streamId);
    const carriers = [...tree.keys()];
    const counts = carriers.map((id) => truth.get(id) ?? 0);
    // Every listener placed, no node over its cap.
    expect(counts.reduce((a, b) => a + b, 0)).toBe(100_000);
    expect(Math.max(...counts)).toBeLessThanOrEqual(NODE_MAX);
    // Carriers are filled before a node is added: 100k / 2,500 = 40 nodes, at most one more.
    expect(carriers.length).toBeGreaterThanOrEqual(40);
    expect(carriers.length).toBeLessThanOrEqual(41);
    // Balance: apart from the newest carrier, every one holds at least 90% of its cap.
    const sorted = [...counts].sort((a, b) => a - b);
    expect(sorted[1] ?? 0).toBeGreaterThanOrEqual(0.9 * NODE_MAX);
    // Pipes per node bounded by the fan-out; the tree is shallow (4-ary over 41 nodes: depth 3).
    const depth = (id: string): number => {
      const parent = tree.get(id)?.parent;
      return parent ? 1 + depth(parent) : 0;
    };
    for (const [id, entry] of tree) {
      expect(entry.children.length).toBeLessThanOrEqual(fanout);
      if (id !== origin) expect(entry.parent).not.toBeNull();
    }
    const maxDepth = Math.max(...carriers.map(depth));
    expect(maxDepth).toBeLessThanOrEqual(3);
    console.info(
      `placement simulation: ${carriers.length} carriers, listeners per carrier ${sorted[0]}..${sorted.at(-1)}, depth ${maxDepth}, max pipes per node ${Math.max(...[...tree.values()].map((entry) => entry.children.length))}`,
    );
  });
});

describe('placement rules', () => {
  const at = (placement: ListenerPlacement, zone?: string) =>
    placement.place('s', { originNodeId: 'origin', ...(zone ? { zone } : {}) });

  it('sends a listener to the least-loaded carrier before adding a node, and tells the new node where to pull from', () => {
    const placement = new ListenerPlacement({ fanout: 2 });
    placement.observe(heartbeat('origin', { maxListeners: 1 }));
    placement.observe(heartbeat('a', { maxListeners: 2 }));
    placement.observe(heartbeat('b', { maxListeners: 2 }));
    expect(at(placement)).toEqual({ nodeId: 'origin', pullFrom: null });
    const added = at(placement);
    expect(added.pullFrom).toBe('origin');
    expect(at(placement)).toEqual({ nodeId: added.nodeId, pullFrom: null });
  });

  it('keeps a listener in its zone when a node there has room', () => {
    const placement = new ListenerPlacement({ fanout: 4 });
    placement.observe(heartbeat('origin', { maxListeners: 1, zone: 'eu' }));
    placement.observe(heartbeat('eu-1', { zone: 'eu', listeners: 2_000 }));
    placement.observe(heartbeat('us-1', { zone: 'us' }));
    expect(at(placement, 'us')).toEqual({ nodeId: 'us-1', pullFrom: 'origin' });
    expect(at(placement, 'eu').nodeId).toBe('origin');
    expect(at(placement, 'eu')).toEqual({ nodeId: 'eu-1', pullFrom: 'origin' });
  });

  it('never places on a draining node, and answers "at capacity" when no node can take a listener', () => {
    const placement = new ListenerPlacement({ fanout: 4 });
    placement.observe(heartbeat('origin', { maxListeners: 1 }));
    placement.observe(heartbeat('draining', { draining: true }));
    expect(at(placement).nodeId).toBe('origin');
    let error: unknown;
    try {
      at(placement);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(VezaError);
    expect(error).toMatchObject({ code: 'resource_exhausted', details: { reason: 'at_capacity' } });
    expect((error as Error).message).toMatch(/stream s is at capacity/);
  });

  it('re-attaches the children of a lost node to another carrier', () => {
    const placement = new ListenerPlacement({ fanout: 1 });
    placement.observe(heartbeat('origin', { maxListeners: 1 }));
    placement.observe(heartbeat('a', { maxListeners: 1 }));
    placement.observe(heartbeat('b', { maxListeners: 1 }));
    at(placement);
    expect(at(placement)).toEqual({ nodeId: 'a', pullFrom: 'origin' });
    expect(at(placement)).toEqual({ nodeId: 'b', pullFrom: 'a' });
    placement.forget('a');
    expect(placement.tree('s').get('b')?.parent).toBeNull();
    // b says it pulls from the origin now (the edge asked it to, after placement).
    placement.observe(
      heartbeat('b', {
        maxListeners: 1,
        listeners: 1,
        streams: [{ streamId: 's', listeners: 1, upstream: 'origin', downstream: [] }],
      }),
    );
    expect(placement.tree('s').get('origin')?.children).toEqual(['b']);
  });

  it('re-attaches a carrier whose upstream died under a live carrier: its next listener makes it pull from there', () => {
    const placement = new ListenerPlacement({ fanout: 4 });
    placement.observe(heartbeat('origin', { maxListeners: 1 }));
    placement.observe(heartbeat('a', { maxListeners: 2 }));
    placement.observe(heartbeat('b', { maxListeners: 2 }));
    at(placement);
    const relay = at(placement);
    expect(relay.pullFrom).toBe('origin');
    // The origin dies and the stream moves to the other node; the relay still says it pulls from the dead origin.
    placement.forget('origin');
    const newOrigin = relay.nodeId === 'a' ? 'b' : 'a';
    placement.observe(
      heartbeat(relay.nodeId, {
        maxListeners: 2,
        listeners: 1,
        streams: [{ streamId: 's', listeners: 1, upstream: 'origin', downstream: [] }],
      }),
    );
    const moved = placement.place('s', { originNodeId: newOrigin, previousNodeId: relay.nodeId });
    expect(moved).toEqual({ nodeId: relay.nodeId, pullFrom: newOrigin });
    expect(placement.tree('s').get(newOrigin)?.children).toEqual([relay.nodeId]);
    // Re-attached: the next listener there needs no pull.
    expect(placement.place('s', { originNodeId: newOrigin })).toEqual({ nodeId: newOrigin, pullFrom: null });
  });

  it('re-attaches the children of a dead relay at once and says where they pull from; a dead origin waits for the move', () => {
    const placement = new ListenerPlacement({ fanout: 1 });
    for (const id of ['origin', 'a', 'b']) placement.observe(heartbeat(id, { maxListeners: 1 }));
    at(placement);
    expect(at(placement)).toEqual({ nodeId: 'a', pullFrom: 'origin' });
    expect(at(placement)).toEqual({ nodeId: 'b', pullFrom: 'a' });
    expect(placement.forget('a', { reattach: true })).toEqual([
      { streamId: 's', nodeId: 'b', pullFrom: 'origin', replacing: 'a' },
    ]);
    expect(placement.tree('s').get('b')?.parent).toBe('origin');
    // The origin's death re-attaches nobody: the stream moves, and its next placement rebuilds the tree.
    expect(placement.forget('origin', { reattach: true })).toEqual([]);
  });

  it('takes the parent a re-attached node names when another control plane re-attached it first', () => {
    const placement = new ListenerPlacement({ fanout: 2 });
    for (const id of ['origin', 'a', 'b', 'c']) placement.observe(heartbeat(id, { maxListeners: 1 }));
    at(placement);
    expect(at(placement)).toEqual({ nodeId: 'a', pullFrom: 'origin' });
    expect(at(placement)).toEqual({ nodeId: 'b', pullFrom: 'origin' });
    expect(at(placement)).toEqual({ nodeId: 'c', pullFrom: 'a' });
    // This control plane puts c under the origin; the node answers that it pulls from b (another
    // control plane's choice, made first): the tree follows the node.
    expect(placement.forget('a', { reattach: true })).toEqual([
      { streamId: 's', nodeId: 'c', pullFrom: 'origin', replacing: 'a' },
    ]);
    placement.pullsFrom('s', 'c', 'b');
    expect(placement.tree('s').get('c')?.parent).toBe('b');
    expect(placement.tree('s').get('origin')?.children).toEqual(['b']);
    // A node or parent this control plane does not know changes nothing.
    placement.pullsFrom('s', 'c', 'gone');
    expect(placement.tree('s').get('c')?.parent).toBe('b');
  });

  it('counts a listener that left in the same request as its rejoin (previousNodeId)', () => {
    const placement = new ListenerPlacement({ fanout: 4 });
    placement.observe(heartbeat('origin', { maxListeners: 1 }));
    expect(at(placement).nodeId).toBe('origin');
    expect(() => at(placement)).toThrow(/at capacity/);
    expect(placement.place('s', { originNodeId: 'origin', previousNodeId: 'origin' })).toEqual({
      nodeId: 'origin',
      pullFrom: null,
    });
  });

  it("does not let a heartbeat sent before a join landed free that listener's place", () => {
    const placement = new ListenerPlacement({ fanout: 4 });
    placement.observe(heartbeat('origin', { maxListeners: 1 }), 0);
    placement.observe(heartbeat('a', { maxListeners: 1 }), 0);
    expect(at(placement).nodeId).toBe('origin');
    const placedAt = performance.now();
    // The origin's heartbeat, sent before the listener's join reached it, still says 0.
    placement.observe(heartbeat('origin', { maxListeners: 1, listeners: 0 }), placedAt + 100);
    expect(at(placement)).toEqual({ nodeId: 'a', pullFrom: 'origin' });
    // Two intervals later the node's word stands again.
    placement.observe(heartbeat('origin', { maxListeners: 1, listeners: 0 }), placedAt + 4_001);
    expect(at(placement).nodeId).toBe('origin');
  });

  it('keeps a node just added to the tree there while a heartbeat sent before its pull landed says it carries nothing', () => {
    // A chain (fan-out 1) of three nodes of one listener each: the ramp of `bench fanout --nodes 3`.
    const placement = new ListenerPlacement({ fanout: 1 });
    for (const id of ['origin', 'a', 'b']) placement.observe(heartbeat(id, { maxListeners: 1 }), 0);
    expect(at(placement).nodeId).toBe('origin');
    const added = at(placement);
    expect(added.pullFrom).toBe('origin');
    const placedAt = performance.now();
    // The new node's heartbeat, sent before its pull from the origin landed: no stream yet.
    placement.observe(heartbeat(added.nodeId, { maxListeners: 1, listeners: 0 }), placedAt + 100);
    // The origin's only fan-out slot is taken: the third node hangs under the second.
    expect(at(placement)).toEqual({ nodeId: added.nodeId === 'a' ? 'b' : 'a', pullFrom: added.nodeId });
    expect(placement.tree('s').get('origin')?.children).toEqual([added.nodeId]);
  });

  it('sends the listener to the origin when the registry does not know the origin (just started, or lost)', () => {
    const placement = new ListenerPlacement({ fanout: 4 });
    placement.observe(heartbeat('a'));
    expect(placement.place('s', { originNodeId: 'unknown' })).toEqual({ nodeId: 'unknown', pullFrom: null });
  });
});
