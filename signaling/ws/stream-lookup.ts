/**
 * A stream as a connection may see it, from the control plane (GetStreamInfo): what `join`
 * decides on (status, owner, anonymous listening) and where the stream's media is hosted.
 */
import { toVezaError } from '../../common/contracts/index.js';
import type { ControlPlaneClient } from '../../control-plane/client/index.js';
import type { StreamInfo } from '../../proto/gen/veza/stream/stream.js';
import type { ConnectionAuth } from './upgrade.js';

export interface StreamMeta {
  streamId: number;
  ownerId: number;
  ownerUsername: string;
  title: string;
  /** "live" or "ended". */
  status: string;
  isPublic: boolean;
  allowAnonymous: boolean;
  mediaNodeId: string;
}

export function streamMetaOf(info: StreamInfo): StreamMeta {
  return {
    streamId: info.streamId,
    ownerId: info.ownerId,
    ownerUsername: info.ownerUsername,
    title: info.title,
    status: info.status,
    isPublic: info.isPublic,
    allowAnonymous: info.allowAnonymous,
    mediaNodeId: info.mediaNodeId,
  };
}

/** What the edge remembers of streams that ended or moved (stream-liveness.ts). */
export interface StreamFates {
  isEnded(streamId: number): boolean;
  movedTo(streamId: number): string | undefined;
}

export interface StreamLookupOptions {
  controlPlane: Pick<ControlPlaneClient, 'stream'>;
  fates: StreamFates;
}

export class StreamLookup {
  readonly #options: StreamLookupOptions;

  constructor(options: StreamLookupOptions) {
    this.#options = options;
  }

  /**
   * The stream as the caller may see it. With the user's token while it is valid (a private
   * stream is visible to its owner); as the service otherwise. A connection that was already
   * allowed into the stream (`known`) keeps that right when its token has expired meanwhile (a
   * re-join after a worker restart), unless the stream has ended.
   */
  async streamMeta(
    auth: Pick<ConnectionAuth, 'token' | 'expiresAt'>,
    streamId: number,
    known?: StreamMeta,
  ): Promise<StreamMeta> {
    const { token, expiresAt } = auth;
    const context = token && expiresAt - 5_000 > Date.now() ? { token } : {};
    try {
      const response = await this.#options.controlPlane.stream.getStreamInfo({ streamId }, context);
      const info = response.stream;
      if (!info) throw new Error('GetStreamInfo returned no stream');
      return streamMetaOf(info);
    } catch (error) {
      const code = toVezaError(error).code;
      if (known && (code === 'not_found' || code === 'unauthenticated')) {
        const { fates } = this.#options;
        return {
          ...known,
          status: fates.isEnded(streamId) ? 'ended' : known.status,
          // What the connection knew may predate a move to another media node.
          mediaNodeId: fates.movedTo(streamId) ?? known.mediaNodeId,
        };
      }
      throw error;
    }
  }
}
