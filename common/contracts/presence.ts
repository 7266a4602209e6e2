/**
 * Presence on the EventBus, the wire part: which processes of one kind are alive. The mechanism
 * (announcing, watching) is common/presence.ts; the groups are each kind's contract
 * (contracts/media-node.ts: media nodes and edges).
 *
 * Under a group prefix `<group>`: `<group>.heartbeat` every interval with `{ nodeId, bootId,
 * intervalMs, ...state }`, `<group>.goodbye` on a clean close, `<group>.probe` asking every member
 * for a heartbeat now, and `<group>.echo.<watchId>`, a watcher's message to itself.
 *
 * Browser-safe: zod only.
 */
import { z } from 'zod';

/** How often a member announces itself by default (PRESENCE_HEARTBEAT_MS). */
export const PRESENCE_HEARTBEAT_MS = 2000;
/** A member that misses this many of its own intervals is forgotten. */
export const PRESENCE_MISSED_HEARTBEATS = 3;
/** A member's node id: no `:` (edges' peer ids start with `<nodeId>:<bootId>:`), short enough for those ids. */
export const PRESENCE_NODE_ID = /^[A-Za-z0-9._-]{1,80}$/;
/** A process's boot id: new in every process, so a restart with the same node id is a new member. */
export const PRESENCE_BOOT_ID = /^[0-9a-f]{8,32}$/;

export type PresenceKind = 'heartbeat' | 'goodbye' | 'probe';
export const presenceSubject = (group: string, kind: PresenceKind) => `${group}.${kind}`;
/** Every presence message of a group, in the order each member sent them (one subscription keeps that order). */
export const presenceOf = (group: string) => `${group}.*`;
/** The kind in a `<group>.<kind>` subject. */
export const presenceKindOf = (subject: string) => subject.slice(subject.lastIndexOf('.') + 1);
/** A watcher's message to itself, proving its own bus works (common/presence.ts). */
export const presenceEchoSubject = (group: string, watchId: string) => `${group}.echo.${watchId}`;

export const presenceHeartbeatSchema = z.looseObject({
  nodeId: z.string().regex(PRESENCE_NODE_ID),
  bootId: z.string().regex(PRESENCE_BOOT_ID),
  /** When the next heartbeat is due; the watchers' expiry scales with it. */
  intervalMs: z.number().int().positive().max(60_000),
});
export type PresenceHeartbeat = z.infer<typeof presenceHeartbeatSchema>;

export const presenceGoodbyeSchema = z.looseObject({
  nodeId: z.string().regex(PRESENCE_NODE_ID),
  bootId: z.string().regex(PRESENCE_BOOT_ID),
});
export type PresenceGoodbye = z.infer<typeof presenceGoodbyeSchema>;
