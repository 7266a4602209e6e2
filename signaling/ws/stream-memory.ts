/**
 * What this edge remembers of streams that are no longer simply live: the ones that ended (so a
 * late join, re-open or grace timer is refused) and where moved ones went (so a connection
 * re-joining on what it knew, or a grace check, reaches the new media node). The edge's one
 * record of both; bounded, the oldest forgotten first.
 */

/** How many ended stream ids the edge remembers. */
const ENDED_MEMORY = 10_000;
/** How many moved streams' new media nodes the edge remembers. */
const MOVED_MEMORY = 10_000;

export class StreamMemory {
  readonly #ended = new Set<number>();
  /** Stream id -> the media node it moved to (stream.moved), newest last. */
  readonly #moved = new Map<number, string>();

  /** The stream ended: where it was hosted no longer matters. */
  markEnded(streamId: number): void {
    this.#ended.add(streamId);
    this.#moved.delete(streamId);
    if (this.#ended.size > ENDED_MEMORY) {
      const oldest = this.#ended.values().next().value;
      if (oldest !== undefined) this.#ended.delete(oldest);
    }
  }

  isEnded(streamId: number): boolean {
    return this.#ended.has(streamId);
  }

  markMoved(streamId: number, mediaNodeId: string): void {
    this.#moved.delete(streamId);
    this.#moved.set(streamId, mediaNodeId);
    if (this.#moved.size > MOVED_MEMORY) {
      const oldest = this.#moved.keys().next().value;
      if (oldest !== undefined) this.#moved.delete(oldest);
    }
  }

  /** The media node the stream moved to last, if it moved. */
  movedTo(streamId: number): string | undefined {
    return this.#moved.get(streamId);
  }
}
