/**
 * Which of this edge's connections are in which stream, and in what role, and the uWS topics
 * that reach them: `stream/<id>` (everyone in the stream) and `stream/<id>/broadcaster` (its
 * broadcaster only). A stream has at most one broadcaster connection here; the registry says
 * when it comes and goes (the callbacks), and stream-liveness.ts decides what that means.
 *
 * Connections are seen through the narrow StreamMember interface: the registry knows nothing of
 * requests, media or chat.
 */
import type {
  NotificationFrame,
  NotificationName,
  Notifications,
  Role,
  ServerFrame,
} from '../protocol/index.js';
import { wsNotifications } from './metrics.js';
import type { TopicPublisher } from './socket.js';

/** Why a connection left its stream. */
export type LeaveCause = 'left' | 'disconnected' | 'replaced' | 'stream-ended' | 'rejoin';

/** A connection in a stream, as the registry sees it. */
export interface StreamMember {
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  send(frame: ServerFrame): void;
  /** The stream ended: forget its media (the registry has told the client already). */
  streamEnded(streamId: number): Promise<void>;
  /** A newer connection of the broadcaster took the stream over: this one closes (4409). */
  replaced(): void;
}

/** A stream and the media node hosting it: what a broadcaster's absence is checked against. */
export interface HostedStream {
  streamId: number;
  mediaNodeId: string;
}

export interface StreamRegistryOptions {
  app: TopicPublisher;
  /** A broadcaster connection of the stream joined on this edge. */
  onBroadcasterJoined(streamId: number): void;
  /** This edge's broadcaster connection of the stream left it (a replaced one is not this edge's any more). */
  onBroadcasterLeft(stream: HostedStream, cause: LeaveCause): void;
}

export const streamTopic = (streamId: number) => `stream/${streamId}`;
export const broadcasterTopic = (streamId: number) => `stream/${streamId}/broadcaster`;

export class StreamRegistry {
  readonly #options: StreamRegistryOptions;
  readonly #members = new Map<number, Set<StreamMember>>();
  readonly #broadcasters = new Map<number, StreamMember>();
  #closing = false;

  constructor(options: StreamRegistryOptions) {
    this.#options = options;
  }

  joined(member: StreamMember, streamId: number, role: Role): void {
    let set = this.#members.get(streamId);
    if (!set) {
      set = new Set();
      this.#members.set(streamId, set);
    }
    set.add(member);
    member.subscribe(streamTopic(streamId));
    if (role !== 'broadcaster') return;
    member.subscribe(broadcasterTopic(streamId));
    this.#broadcasters.set(streamId, member);
    this.#options.onBroadcasterJoined(streamId);
  }

  left(member: StreamMember, stream: HostedStream, role: Role, cause: LeaveCause): void {
    const { streamId } = stream;
    const set = this.#members.get(streamId);
    set?.delete(member);
    if (set?.size === 0) this.#members.delete(streamId);
    member.unsubscribe(streamTopic(streamId));
    if (role !== 'broadcaster') return;
    member.unsubscribe(broadcasterTopic(streamId));
    if (this.#broadcasters.get(streamId) !== member) return;
    this.#broadcasters.delete(streamId);
    this.#options.onBroadcasterLeft(stream, cause);
  }

  hasBroadcaster(streamId: number): boolean {
    return this.#broadcasters.has(streamId);
  }

  /** Closes this edge's broadcaster connection of the stream, unless it is `claimant` itself. */
  replaceBroadcaster(streamId: number, claimant?: StreamMember): void {
    const current = this.#broadcasters.get(streamId);
    if (current && current !== claimant) current.replaced();
  }

  /** How many of this edge's connections are in the stream. */
  count(streamId: number): number {
    return this.#members.get(streamId)?.size ?? 0;
  }

  /** Publishes once to the stream's topic (or its broadcaster's): uWS fans it out to the subscribed sockets. */
  notify<N extends NotificationName>(
    streamId: number,
    notification: N,
    data: Notifications[N],
    options: { broadcasterOnly?: boolean } = {},
  ): void {
    if (this.#closing) return;
    const frame = { notification, data } as NotificationFrame;
    const topic = options.broadcasterOnly ? broadcasterTopic(streamId) : streamTopic(streamId);
    this.#options.app.publish(topic, JSON.stringify(frame));
    wsNotifications.inc({ notification });
  }

  /**
   * Tells the stream's connections it ended (`streamEnded`), then has each forget its media.
   * Returns how many there were.
   */
  async end(streamId: number, reason: string): Promise<number> {
    // Sent to each member, not published to the topic: uWS delivers topic messages when it next
    // drains its queues, and the members unsubscribe right below, which would drop it.
    const members = [...(this.#members.get(streamId) ?? [])];
    const frame: NotificationFrame = { notification: 'streamEnded', data: { streamId, reason } };
    for (const member of members) member.send(frame);
    wsNotifications.inc({ notification: 'streamEnded' });
    await Promise.all(members.map((member) => member.streamEnded(streamId)));
    return members.length;
  }

  /** The edge is shutting down: notifications stop. */
  close(): void {
    this.#closing = true;
  }
}
