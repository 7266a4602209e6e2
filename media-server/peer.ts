/**
 * One participant of one stream: a broadcaster (a send transport and its single audio producer) or a
 * listener (a recv transport and its single consumer). A peer holds at most one transport per direction,
 * one producer and one consumer: a new one replaces the old, which makes a client's reconnect (after a
 * worker restart or a network change) idempotent without leaking the old objects.
 *
 * Close cascade: closing the peer closes its transports; mediasoup closes their producer and consumers.
 */
import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';
import type { ProducerCloseReason, TransportDirection } from '../common/contracts/index.js';
import type { PeerTransport } from './peer-transport.js';

/** Why a producer is being closed, recorded on it before closing so its 'close' handler can report it. */
export function markProducerClosing(producer: ms.Producer | undefined, reason: ProducerCloseReason): void {
  if (producer && producer.appData.closeReason === undefined) producer.appData.closeReason = reason;
}

export function producerCloseReason(producer: ms.Producer): ProducerCloseReason | undefined {
  const reason = producer.appData.closeReason;
  return typeof reason === 'string' ? (reason as ProducerCloseReason) : undefined;
}

export interface PeerEvents {
  /** Whether the peer has a consumer changed. */
  listeningchange: [boolean];
  close: [];
}

export class Peer extends EventEmitter<PeerEvents> {
  readonly id: string;
  readonly streamId: string;
  readonly #transports = new Map<string, PeerTransport>();
  #producer: ms.Producer | undefined;
  readonly #consumers = new Map<string, ms.Consumer>();
  #closed = false;

  constructor(id: string, streamId: string) {
    super();
    this.id = id;
    this.streamId = streamId;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get producer(): ms.Producer | undefined {
    return this.#producer;
  }

  get listening(): boolean {
    return this.#consumers.size > 0;
  }

  transports(): PeerTransport[] {
    return [...this.#transports.values()];
  }

  consumers(): ms.Consumer[] {
    return [...this.#consumers.values()];
  }

  transport(direction: TransportDirection): PeerTransport | undefined {
    for (const transport of this.#transports.values())
      if (transport.direction === direction) return transport;
    return undefined;
  }

  addTransport(transport: PeerTransport): void {
    const previous = this.transport(transport.direction);
    if (previous) {
      if (transport.direction === 'send') markProducerClosing(this.#producer, 'transport-closed');
      previous.close();
    }
    this.#transports.set(transport.id, transport);
    transport.once('close', () => this.#transports.delete(transport.id));
  }

  setProducer(producer: ms.Producer): void {
    if (this.#producer) {
      markProducerClosing(this.#producer, 'replaced');
      this.#producer.close();
    }
    this.#producer = producer;
    producer.observer.once('close', () => {
      if (this.#producer === producer) this.#producer = undefined;
    });
  }

  addConsumer(consumer: ms.Consumer): void {
    const wasListening = this.listening;
    // Forget them before closing, so their close handlers do not report the peer as not listening.
    const previous = [...this.#consumers.values()];
    this.#consumers.clear();
    for (const consumer of previous) consumer.close();
    this.#consumers.set(consumer.id, consumer);
    consumer.observer.once('close', () => {
      if (this.#consumers.delete(consumer.id) && this.#consumers.size === 0)
        this.emit('listeningchange', false);
    });
    if (!wasListening) this.emit('listeningchange', true);
  }

  close(reason: ProducerCloseReason = 'peer-left'): void {
    if (this.#closed) return;
    this.#closed = true;
    markProducerClosing(this.#producer, reason);
    for (const transport of this.#transports.values()) transport.close();
    this.emit('close');
    this.removeAllListeners();
  }
}
