/** What the contract test's thread and its peer thread (thread-peer-worker.ts) say to each other. */

export type PeerCommand =
  | { op: 'subscribe'; id: number; subject: string }
  | { op: 'respond'; id: number; subject: string }
  | { op: 'unsubscribe'; id: number }
  /** The test thread's responder answered call `callId` (bus-wire.ts's reply envelope). */
  | { op: 'answer'; callId: number; text: string }
  | { op: 'publish'; id: number; subject: string; payload: unknown }
  | { op: 'request'; id: number; subject: string; payload: unknown; timeoutMs?: number }
  | { op: 'close'; id: number };

export type PeerEvent =
  | { op: 'ready'; id: number; error?: string }
  | { op: 'delivered'; id: number; payload: unknown; subject: string }
  | { op: 'called'; id: number; callId: number; payload: unknown; subject: string }
  /** A publish, request or close finished: `text` is a request's reply envelope, `error` a failure's message. */
  | { op: 'done'; id: number; text?: string; error?: string };
