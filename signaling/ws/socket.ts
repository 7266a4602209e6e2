/**
 * What the edge's parts need of uWS, in one leaf module they all import, so that they depend on
 * these small shapes rather than on each other: the app's topic publishing (stream notifications,
 * chat delivery) and one connection's socket.
 */
import type { ServerFrame } from '../protocol/index.js';

/** The part of the uWS app that publishes: every socket of this edge subscribed to the topic gets the message. */
export interface TopicPublisher {
  publish(topic: string, message: string): boolean;
}

/**
 * The bytes this edge has handed uWS for its sockets: each direct send, and each topic publish
 * once. No socket's unsent buffer can have grown by more than this since it was last read, which
 * lets the chat hub skip walking a busy room's members on every publish (hub.ts).
 */
export class OutboundMeter implements TopicPublisher {
  readonly #app: TopicPublisher;
  #bytes = 0;

  constructor(app: TopicPublisher) {
    this.#app = app;
  }

  /** Only ever grows: a reading is compared with a later one. */
  get bytes(): number {
    return this.#bytes;
  }

  publish(topic: string, message: string): boolean {
    this.#bytes += Buffer.byteLength(message);
    return this.#app.publish(topic, message);
  }

  /** A frame sent straight to one socket. */
  sent(text: string): void {
    this.#bytes += Buffer.byteLength(text);
  }
}

/** What a connection needs of its socket (a uWS WebSocket while it is open). */
export interface SessionSocket {
  send(text: string): number;
  end(code: number, reason: string): void;
  subscribe(topic: string): boolean;
  unsubscribe(topic: string): boolean;
}

/**
 * A connection's socket as its parts share it (request dispatch, media, token lifetime). It goes
 * quiet once the socket has closed: uWS throws on any use of a closed WebSocket, and queued
 * requests and running media calls outlive it.
 */
export class ConnectionSocket {
  #socket: SessionSocket | null;

  constructor(socket: SessionSocket) {
    this.#socket = socket;
  }

  get open(): boolean {
    return this.#socket !== null;
  }

  send(frame: ServerFrame): void {
    this.#socket?.send(JSON.stringify(frame));
  }

  subscribe(topic: string): void {
    this.#socket?.subscribe(topic);
  }

  unsubscribe(topic: string): void {
    this.#socket?.unsubscribe(topic);
  }

  /** Ends the connection from the server side (the close handler runs afterwards). */
  end(code: number, reason: string): void {
    this.#socket?.end(code, reason);
  }

  /** The socket has closed: nothing may touch it any more. */
  detach(): void {
    this.#socket = null;
  }
}
