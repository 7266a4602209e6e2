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
