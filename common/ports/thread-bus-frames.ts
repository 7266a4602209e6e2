/**
 * The frames between a ThreadEventBus (one per thread) and the ThreadBusHub that routes between
 * them, over one MessagePort per thread. They play the part of NATS's protocol lines (SUB, UNSUB,
 * PUB, a request with its reply inbox, MSG), and the payloads inside are bus-wire.ts's JSON text,
 * exactly what NATS carries, so a subscriber parses the same bytes in both modes.
 *
 * Both ends are this codebase in one process (the supervisor spawns its threads from the same
 * files), so the frames are typed rather than parsed with zod: what needs validating is the
 * payload, and every subscriber already validates that.
 */

/** A thread to the hub. */
export type ClientFrame =
  /** Interest in `subject` (with wildcards); `queue`: a responder, one of which gets each request. */
  | { op: 'sub'; sid: number; subject: string; queue: boolean }
  | { op: 'unsub'; sid: number }
  | { op: 'pub'; subject: string; data: string }
  /** A request: `rid` is the requester's own id for it (its reply inbox). */
  | { op: 'req'; rid: number; subject: string; data: string }
  /** The requester gave up (timeout): the hub forgets the call. */
  | { op: 'cancel'; rid: number }
  /** A responder's answer to the call `cid` the hub handed it. */
  | { op: 'answer'; cid: number; data: string };

/** The hub to a thread. */
export type HubFrame =
  /** The hub routes to `sid` from now on: the subscription's `ready`. */
  | { op: 'ack'; sid: number }
  /** A message for the thread's subscriptions `sids` (one frame however many of them match). */
  | { op: 'msg'; sids: number[]; subject: string; data: string }
  /** A request for the responder `sid`; answered with `cid`. */
  | { op: 'call'; sid: number; cid: number; subject: string; data: string }
  | { op: 'reply'; rid: number; data: string }
  /** Nobody responds on the request's subject. */
  | { op: 'noresp'; rid: number };
