/**
 * Where a listener of a stream goes, across media nodes (cascaded fan-out). One implementation,
 * held by the media-node registry and fed by the nodes' heartbeats (listeners, cap, zone,
 * draining, the streams each carries and where from), plus the placements made since each node's
 * last heartbeat, so a burst of joins does not pile onto the node that looked empty.
 *
 * Per stream the carriers form a tree rooted at the origin (where the broadcaster produces):
 * 0. a listener with a zone goes to a carrier of its zone with room, else to a node of its zone
 *    added to the tree;
 * 1. a listener goes to the least-loaded carrier with room;
 * 2. when none has room, a node is added to the tree: the least-loaded node with room (zone
 *    first), pulling from the shallowest carrier with fewer than `fanout` children, so 100k
 *    listeners never hang off one origin and the depth grows as log(fanout) of the nodes;
 * 3. when no node can take the listener, a resource_exhausted "this stream is at capacity".
 * A draining node takes no listener and is never added to a tree.
 */
import { type MediaNodeHeartbeat, VezaError } from '../../common/contracts/index.js';

export interface PlacementNode {
  nodeId: string;
  maxListeners: number;
  zone: string;
  draining: boolean;
  /** Listeners from the last heartbeat plus those placed since. */
  listeners: number;
}

interface TreeNode {
  parent: string | null;
  children: Set<string>;
  listeners: number;
}

export interface Placement {
  nodeId: string;
  /** Set when the node must first pull the stream from this carrier (a new branch of the tree). */
  pullFrom: string | null;
}

/** A carrier whose parent died, attached under another one: it must pull the stream from `pullFrom`. */
export interface Reattachment {
  streamId: string;
  nodeId: string;
  pullFrom: string;
  /** The dead parent (the node pulls only if it still pulls from there: see pullStream's `replacing`). */
  replacing: string;
}

export interface PlaceOptions {
  /** Where the broadcaster produces: the root of the stream's tree. */
  originNodeId: string;
  /** The listener's zone (MEDIA_NODE_ZONE of the nodes it should stay near). */
  zone?: string;
  /** Where this connection was placed before in the stream (a rejoin): it counts as left first. */
  previousNodeId?: string;
}

export class ListenerPlacement {
  readonly fanout: number;
  readonly #nodes = new Map<string, PlacementNode>();
  readonly #trees = new Map<string, Map<string, TreeNode>>();
  /** Each stream's origin, as the last placement named it. */
  readonly #origins = new Map<string, string>();
  /**
   * When each node was last given a listener (performance.now()). For two of its heartbeat
   * intervals after that, a heartbeat may have been sent before the join landed: it can raise the
   * node's count but not lower it (listeners that left are told apart, by leave()), nor take the
   * node out of a stream's tree (its pull may not have landed).
   */
  readonly #placedAt = new Map<string, number>();

  constructor(options: { fanout: number }) {
    if (!Number.isInteger(options.fanout) || options.fanout < 1)
      throw new RangeError(`fanout must be a positive integer, got ${options.fanout}`);
    this.fanout = options.fanout;
  }

  /** A heartbeat: the node's own word replaces what was counted for it. */
  observe(heartbeat: MediaNodeHeartbeat, now = performance.now()): void {
    const { nodeId } = heartbeat;
    const placedAt = this.#placedAt.get(nodeId);
    const counted = this.#nodes.get(nodeId)?.listeners ?? 0;
    const settled = placedAt === undefined || now - placedAt >= 2 * heartbeat.intervalMs;
    if (settled) this.#placedAt.delete(nodeId);
    this.#nodes.set(nodeId, {
      nodeId,
      // A node of the previous version announces no cap: it takes listeners as before (its own budget refuses).
      maxListeners: heartbeat.maxListeners > 0 ? heartbeat.maxListeners : Number.MAX_SAFE_INTEGER,
      zone: heartbeat.zone,
      draining: heartbeat.draining,
      listeners: settled ? heartbeat.listeners : Math.max(heartbeat.listeners, counted),
    });
    const carried = new Set<string>();
    for (const stream of heartbeat.streams) {
      carried.add(stream.streamId);
      const tree = this.#tree(stream.streamId);
      const entry = this.#entry(tree, nodeId);
      entry.listeners = stream.listeners;
      if (stream.upstream !== null) this.#attach(tree, nodeId, stream.upstream);
    }
    // A stream the node no longer carries: it released its pipe. Not while a placement on it may
    // still be landing: a heartbeat sent before the pull it was told to make lists no stream yet,
    // and detaching it then freed its fan-out slot, so a burst of joins hung two nodes under a
    // parent of fan-out 1 (seen in `bench fanout --nodes 3`).
    for (const [streamId, tree] of this.#trees) {
      if (settled && !carried.has(streamId) && tree.has(nodeId) && tree.get(nodeId)?.parent !== null)
        this.#detach(streamId, nodeId);
    }
  }

  /**
   * The node is gone: it leaves every tree. With `reattach` (it died), each of its children in a
   * tree it did not root is re-attached under the shallowest live carrier with a free slot, and
   * returned, so the caller has it pull from there; the children of a dead origin wait for the
   * stream's move (their next placement re-attaches them under the new origin).
   */
  forget(nodeId: string, options: { reattach?: boolean } = {}): Reattachment[] {
    this.#nodes.delete(nodeId);
    this.#placedAt.delete(nodeId);
    const reattached: Reattachment[] = [];
    for (const [streamId, tree] of [...this.#trees]) {
      const children = [...(tree.get(nodeId)?.children ?? [])];
      this.#detach(streamId, nodeId);
      if (!options.reattach || this.#origins.get(streamId) === nodeId) continue;
      for (const child of children) {
        if (!this.#nodes.has(child)) continue;
        const parent = this.#parentFor(tree, child);
        if (!parent) continue;
        this.#attach(tree, child, parent);
        reattached.push({ streamId, nodeId: child, pullFrom: parent, replacing: nodeId });
      }
    }
    return reattached;
  }

  /**
   * A node said where it pulls a stream from (a pull's answer): a re-attachment another control
   * plane made first stands, whatever this one chose. Ignored for nodes or streams not known here.
   */
  pullsFrom(streamId: string, nodeId: string, upstream: string): void {
    const tree = this.#trees.get(streamId);
    if (!tree?.has(nodeId) || !this.#nodes.has(upstream) || nodeId === upstream) return;
    this.#attach(tree, nodeId, upstream);
  }

  place(streamId: string, options: PlaceOptions): Placement {
    if (options.previousNodeId) this.leave(streamId, options.previousNodeId);
    // An origin the registry has not heard (just started) or has lost: the listener goes where the
    // stream is, as with one node; a lost origin refuses it, and the stream's move brings it back.
    if (!this.#nodes.has(options.originNodeId)) return { nodeId: options.originNodeId, pullFrom: null };
    this.#origins.set(streamId, options.originNodeId);
    const tree = this.#tree(streamId);
    const origin = this.#entry(tree, options.originNodeId);
    if (origin.parent !== null) {
      tree.get(origin.parent)?.children.delete(options.originNodeId);
      origin.parent = null;
    }
    const open = (node: PlacementNode | undefined): node is PlacementNode =>
      node !== undefined && !node.draining && node.listeners < node.maxListeners;
    // A carrier whose parent is gone (its upstream died, or the stream moved to a new origin) still
    // counts, re-attached under a live carrier: it pulls from there before it takes the listener.
    const placeOn = (nodeId: string): Placement | undefined => {
      if (!this.#orphan(tree, nodeId, options.originNodeId)) return this.#count(streamId, nodeId, null);
      const parent = this.#parentFor(tree, nodeId);
      if (!parent) return undefined;
      this.#attach(tree, nodeId, parent);
      return this.#count(streamId, nodeId, parent);
    };
    const carriers = [...tree.keys()].map((id) => this.#nodes.get(id)).filter(open);
    const fresh = [...this.#nodes.values()].filter((node) => open(node) && !tree.has(node.nodeId));
    const parent = this.#parentFor(tree);
    // A listener with a zone stays there when it can: a carrier in its zone, else a node of its
    // zone added to the tree, and only then anywhere.
    const { zone } = options;
    if (zone) {
      for (const near of byLoad(carriers.filter((node) => node.zone === zone))) {
        const placed = placeOn(near.nodeId);
        if (placed) return placed;
      }
      const nearFresh = leastLoaded(fresh.filter((node) => node.zone === zone));
      if (nearFresh && parent) {
        this.#attach(tree, nearFresh.nodeId, parent);
        return this.#count(streamId, nearFresh.nodeId, parent);
      }
    }
    for (const carrier of byLoad(carriers)) {
      const placed = placeOn(carrier.nodeId);
      if (placed) return placed;
    }
    const joining = leastLoaded(fresh);
    if (!joining || !parent) {
      throw new VezaError(
        'resource_exhausted',
        `stream ${streamId} is at capacity: every media node that could carry it holds its listeners; try again later`,
        { reason: 'at_capacity' },
      );
    }
    this.#attach(tree, joining.nodeId, parent);
    return this.#count(streamId, joining.nodeId, parent);
  }

  /** A listener left (its socket closed): its node has room again. */
  leave(streamId: string, nodeId: string): void {
    const node = this.#nodes.get(nodeId);
    if (node && node.listeners > 0) node.listeners--;
    const entry = this.#trees.get(streamId)?.get(nodeId);
    if (entry && entry.listeners > 0) entry.listeners--;
  }

  /** The stream ended: its tree goes. */
  end(streamId: string): void {
    this.#trees.delete(streamId);
    this.#origins.delete(streamId);
  }

  nodes(): PlacementNode[] {
    return [...this.#nodes.values()];
  }

  /** The stream's tree: each carrier with its parent, children and listeners. */
  tree(streamId: string): Map<string, { parent: string | null; children: string[]; listeners: number }> {
    const result = new Map<string, { parent: string | null; children: string[]; listeners: number }>();
    for (const [id, entry] of this.#trees.get(streamId) ?? []) {
      result.set(id, { parent: entry.parent, children: [...entry.children], listeners: entry.listeners });
    }
    return result;
  }

  #count(streamId: string, nodeId: string, pullFrom: string | null): Placement {
    const node = this.#nodes.get(nodeId);
    if (node) node.listeners++;
    this.#placedAt.set(nodeId, performance.now());
    const entry = this.#trees.get(streamId)?.get(nodeId);
    if (entry) entry.listeners++;
    return { nodeId, pullFrom };
  }

  /** A carrier (not the origin) whose chain up to the origin is broken by a node that is gone. */
  #orphan(tree: Map<string, TreeNode>, nodeId: string, originNodeId: string): boolean {
    let current = nodeId;
    for (let hops = 0; hops <= tree.size; hops++) {
      if (current === originNodeId) return false;
      const parent = tree.get(current)?.parent;
      if (!parent || !this.#nodes.has(parent)) return true;
      current = parent;
    }
    return true;
  }

  /**
   * The shallowest live carrier with a free fan-out slot (fewest children among equals); for a
   * carrier that re-attaches, never itself or one below it.
   */
  #parentFor(tree: Map<string, TreeNode>, reattaching?: string): string | undefined {
    let best: { id: string; depth: number; children: number } | undefined;
    for (const [id, entry] of tree) {
      const node = this.#nodes.get(id);
      if (!node || entry.children.size >= this.fanout) continue;
      if (reattaching && isUnder(tree, id, reattaching)) continue;
      const depth = depthOf(tree, id);
      if (!best || depth < best.depth || (depth === best.depth && entry.children.size < best.children)) {
        best = { id, depth, children: entry.children.size };
      }
    }
    return best?.id;
  }

  #tree(streamId: string): Map<string, TreeNode> {
    let tree = this.#trees.get(streamId);
    if (!tree) {
      tree = new Map();
      this.#trees.set(streamId, tree);
    }
    return tree;
  }

  #entry(tree: Map<string, TreeNode>, nodeId: string): TreeNode {
    let entry = tree.get(nodeId);
    if (!entry) {
      entry = { parent: null, children: new Set(), listeners: 0 };
      tree.set(nodeId, entry);
    }
    return entry;
  }

  #attach(tree: Map<string, TreeNode>, child: string, parent: string): void {
    const entry = this.#entry(tree, child);
    if (entry.parent === parent) return;
    if (entry.parent !== null) tree.get(entry.parent)?.children.delete(child);
    entry.parent = parent;
    this.#entry(tree, parent).children.add(child);
  }

  #detach(streamId: string, nodeId: string): void {
    const tree = this.#trees.get(streamId);
    const entry = tree?.get(nodeId);
    if (!tree || !entry) return;
    if (entry.parent !== null) tree.get(entry.parent)?.children.delete(nodeId);
    // Orphans stay listed without a parent until their node says where it pulls from now.
    for (const child of entry.children) {
      const orphan = tree.get(child);
      if (orphan) orphan.parent = null;
    }
    tree.delete(nodeId);
  }
}

function depthOf(tree: Map<string, TreeNode>, nodeId: string): number {
  let depth = 0;
  let current = tree.get(nodeId);
  while (current?.parent && depth <= tree.size) {
    depth++;
    current = tree.get(current.parent);
  }
  return depth;
}

/** Whether `nodeId` is `ancestor` or hangs below it. */
function isUnder(tree: Map<string, TreeNode>, nodeId: string, ancestor: string): boolean {
  let current: string | null | undefined = nodeId;
  for (let hops = 0; current && hops <= tree.size; hops++) {
    if (current === ancestor) return true;
    current = tree.get(current)?.parent;
  }
  return false;
}

/** Least loaded first (listeners over cap). */
function byLoad(nodes: PlacementNode[]): PlacementNode[] {
  return [...nodes].sort((a, b) => a.listeners / a.maxListeners - b.listeners / b.maxListeners);
}

function leastLoaded(nodes: PlacementNode[]): PlacementNode | undefined {
  let best: PlacementNode | undefined;
  for (const node of nodes) {
    if (!best || node.listeners / node.maxListeners < best.listeners / best.maxListeners) best = node;
  }
  return best;
}
