/**
 * How a media node reaches the other media nodes (cascaded fan-out): the calls of the contract
 * that nodes make to each other, over the bus's request/reply, each reply parsed with the
 * contract's result schema as any caller does.
 */
import {
  MEDIA_NODE_CALLS,
  type MediaNodeApi,
  mediaRequestSubject,
  VezaError,
} from '../common/contracts/index.js';
import type { Logger } from '../common/index.js';
import type { EventBus } from '../common/ports/index.js';

export type NodeToNodeMethod = 'pullStream' | 'pipeOut' | 'closePipe';
export type MediaNodePeer = Pick<MediaNodeApi, NodeToNodeMethod>;
/** The node with this id, as its peers see it. */
export type MediaNodePeers = (nodeId: string) => MediaNodePeer;

export function mediaNodePeersOverBus(bus: EventBus, log: Logger, timeoutMs = 5000): MediaNodePeers {
  const call =
    <M extends NodeToNodeMethod>(nodeId: string, method: M) =>
    async (...args: unknown[]) => {
      const reply = await bus.request(mediaRequestSubject(nodeId, method), { args }, { timeoutMs });
      const parsed = MEDIA_NODE_CALLS[method].result.safeParse(reply);
      if (parsed.success) return parsed.data;
      log.error(
        { nodeId, method, issue: parsed.error.issues[0]?.message },
        'malformed reply from a media node',
      );
      throw new VezaError('internal', `malformed reply from media node ${nodeId} to ${method}`);
    };
  return (nodeId) =>
    ({
      pullStream: call(nodeId, 'pullStream'),
      pipeOut: call(nodeId, 'pipeOut'),
      closePipe: call(nodeId, 'closePipe'),
    }) as MediaNodePeer;
}
