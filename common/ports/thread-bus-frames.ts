/**
 * The frames of the thread bus. Threads talk directly, over one MessagePort per pair of threads
 * (a link); the hub only introduces them (it hands each thread its end of a link to every other).
 * On a link each side keeps a copy of the other's interest, so a publisher or requester routes by
 * itself, with no hop through a third thread: the way NATS servers form a mesh of routes.
 *
 * Payloads are bus-wire.ts's JSON text, exactly what NATS carries, so a subscriber parses the same
 * bytes in both modes, and a message sent inside a trace carries its W3C context (`trace`), as NATS
 * headers do. Both ends are this codebase in one process (the supervisor spawns its
 * threads from the same files), so the frames are typed rather than parsed with zod: what needs
 * validating is the payload, and every subscriber already validates that.
 */
import type { MessagePort } from 'node:worker_threads';
import type { TraceCarrier } from './bus-tracing.js';

/** The hub to a thread, on the thread's own port to the hub. */
export type HubFrame =
  /** The thread's first frame: its links to every thread connected before it (transferred). */
  | { op: 'welcome'; ports: MessagePort[] }
  /** A link to a thread that connected later (transferred). */
  | { op: 'link'; port: MessagePort };

export interface SubscriptionFrame {
  sid: number;
  subject: string;
  /** A responder: one of all the responders of a subject gets each request. */
  queue: boolean;
}

/** Between two threads, on their link; either side sends any of them. */
export type LinkFrame =
  /** The sender's interest when the link opens; answered with `synced`. */
  | { op: 'sync'; subs: SubscriptionFrame[] }
  /** The receiver routes to the sender's subscriptions `sids` of its `sync` from now on. */
  | { op: 'synced'; sids: number[] }
  | ({ op: 'sub' } & SubscriptionFrame)
  /** The receiver routes to `sid` from now on (a subscription is `ready` once every link says so). */
  | { op: 'ack'; sid: number }
  | { op: 'unsub'; sid: number }
  /** A message for the receiver's subscriptions `sids` (one frame however many of them match). */
  | { op: 'msg'; sids: number[]; subject: string; data: string; trace?: TraceCarrier }
  /** A request for the receiver's responder `sid`; answered with the sender's `rid`. */
  | { op: 'call'; sid: number; rid: number; subject: string; data: string; trace?: TraceCarrier }
  | { op: 'answer'; rid: number; data: string };
