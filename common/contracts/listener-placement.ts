/**
 * Listener placement across media nodes (cascaded fan-out), between the edges and the control
 * planes' media-node registries, on the bus:
 *
 * - `media-placement.<cluster>.place`: request/reply. An edge asks where a listener of a stream
 *   goes before it joins it; one control plane answers (a queue group), from its registry. The
 *   answer names the node, and the carrier that node pulls the stream from when it must join the
 *   stream's tree first; the edge passes that on in the node's `joinStream` (`pullFrom`), so a
 *   join costs one placement request and one join, whatever the tree.
 * - `media-placement.<cluster>.left`: published, every control plane hears it. The listeners that
 *   left, batched by the edge (one message per interval, counts per stream and node), so their
 *   nodes have room again before their next heartbeat says so.
 *
 * Standalone mode has one media node and asks nothing: every listener joins the stream's node.
 */
import { z } from 'zod';
import { MEDIA_NODE_ID } from './media-node.js';

const nodeIdSchema = z.string().regex(MEDIA_NODE_ID, 'a media node id (letters, digits, _ and -)');
const streamIdSchema = z.string().regex(/^[1-9][0-9]{0,15}$/, 'a stream id');

export const placeListenerRequestSchema = z.object({
  streamId: streamIdSchema,
  /** The stream's media node (where its broadcaster produces): the root of its tree. */
  originNodeId: nodeIdSchema,
  /** The zone of the nodes the listener should stay near (MEDIA_NODE_ZONE), when the edge knows it. */
  zone: z.string().max(64).optional(),
  /**
   * The node this connection was placed on before in this stream (a rejoin): it counts as left
   * first, so a listener moving after a failure does not find its own old place taken.
   */
  previousNodeId: nodeIdSchema.optional(),
});
export type PlaceListenerRequest = z.infer<typeof placeListenerRequestSchema>;

export const placeListenerResultSchema = z.object({
  nodeId: nodeIdSchema,
  /** The carrier the node must pull the stream from first (it joins the tree, or re-attaches); null when it carries it. */
  pullFrom: nodeIdSchema.nullable(),
});
export type PlaceListenerResult = z.infer<typeof placeListenerResultSchema>;

export const listenersLeftSchema = z.object({
  left: z
    .array(z.object({ streamId: streamIdSchema, nodeId: nodeIdSchema, count: z.number().int().min(1) }))
    .min(1)
    .max(10_000),
});
export type ListenersLeft = z.infer<typeof listenersLeftSchema>;

export const placeListenerSubject = (cluster: string) => `media-placement.${cluster}.place`;
export const listenersLeftSubject = (cluster: string) => `media-placement.${cluster}.left`;
