/**
 * Request bodies: which kind a request carries (from its headers, before any byte is
 * read) and reading it with a hard size limit enforced while it streams in. A body over
 * the limit is refused as soon as the limit is crossed; nothing past it is buffered.
 */
import { Readable } from 'node:stream';
import {
  InvalidArgumentError,
  PayloadTooLargeError,
  UnavailableError,
} from '../../common/contracts/index.js';
import type { HttpResponse } from './uws.js';

/** What a route accepts. Absent kinds are refused with 400 naming the accepted types. */
export interface BodySpec {
  /** Limit in bytes for application/json (and +json) bodies. */
  json?: number;
  /** Limit in bytes for multipart/form-data bodies. */
  multipart?: number;
  /** An empty body is acceptable (e.g. logout with nothing to add). */
  optional?: boolean;
  /**
   * Raw bodies of these media types (e.g. tus's application/offset+octet-stream) are not
   * buffered: the handler reads them as a stream, with the limit enforced as bytes arrive.
   */
  stream?: { mediaTypes: readonly string[]; limit: number };
}

export type BodyKind = 'none' | 'json' | 'multipart' | 'stream';

export interface BodyHeaders {
  contentType: string;
  contentLength: string;
  transferEncoding: string;
}

export interface BodyPlan {
  kind: BodyKind;
  limit: number;
  /** The media type without parameters, lower-cased. */
  mediaType: string;
}

/** True when the request carries body bytes after its headers. */
export function hasBody(headers: BodyHeaders): boolean {
  return headers.transferEncoding !== '' || (headers.contentLength !== '' && headers.contentLength !== '0');
}

export function mediaTypeOf(contentType: string): string {
  return (contentType.split(';')[0] ?? '').trim().toLowerCase();
}

/** Decides how to read a body from the headers alone; throws 400/413 before any byte is read. */
export function planBody(spec: BodySpec, headers: BodyHeaders): BodyPlan {
  if (headers.contentLength !== '' && !/^\d+$/.test(headers.contentLength)) {
    throw new InvalidArgumentError(`invalid Content-Length header "${headers.contentLength}"`);
  }
  const mediaType = mediaTypeOf(headers.contentType);
  if (!hasBody(headers)) return { kind: 'none', limit: 0, mediaType };
  let plan: BodyPlan | undefined;
  if (
    spec.json !== undefined &&
    (mediaType === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(mediaType))
  ) {
    plan = { kind: 'json', limit: spec.json, mediaType };
  } else if (spec.multipart !== undefined && mediaType === 'multipart/form-data') {
    plan = { kind: 'multipart', limit: spec.multipart, mediaType };
  } else if (spec.stream?.mediaTypes.includes(mediaType)) {
    plan = { kind: 'stream', limit: spec.stream.limit, mediaType };
  }
  if (!plan) {
    const accepted = [
      spec.json !== undefined && 'application/json',
      spec.multipart !== undefined && 'multipart/form-data',
      ...(spec.stream?.mediaTypes ?? []),
    ]
      .filter((type): type is string => typeof type === 'string')
      .join(' or ');
    throw new InvalidArgumentError(
      accepted
        ? `unsupported content type "${mediaType || '(none)'}": expected ${accepted}`
        : 'this endpoint takes no request body',
    );
  }
  const declared = headers.contentLength === '' ? null : Number(headers.contentLength);
  if (declared !== null && declared > plan.limit) throw tooLarge(plan);
  return plan;
}

function tooLarge(plan: BodyPlan): PayloadTooLargeError {
  return new PayloadTooLargeError(
    `request body too large: the limit for ${plan.mediaType} is ${plan.limit} bytes`,
  );
}

/** Accumulates chunks up to a limit. uWS neuters each chunk after its callback, so chunks are copied. */
export class BodyCollector {
  private readonly chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly limit: number) {}

  /** Returns false, and drops what it held, once the total passes the limit. */
  push(chunk: ArrayBuffer): boolean {
    this.size += chunk.byteLength;
    if (this.size > this.limit) {
      this.chunks.length = 0;
      return false;
    }
    if (chunk.byteLength > 0) this.chunks.push(Buffer.from(new Uint8Array(chunk)));
    return true;
  }

  get received(): number {
    return this.size;
  }

  concat(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
  }
}

/**
 * Reads the body of `res` under `plan`. Must be called synchronously inside the uWS route
 * handler (data that arrives before onData is attached is lost). `onComplete` tells the
 * caller the body has been fully received, so the connection can be kept alive.
 */
export function readBody(
  res: HttpResponse,
  plan: BodyPlan,
  signal: AbortSignal,
  onComplete: () => void,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const collector = new BodyCollector(plan.limit);
    let settled = false;
    // A client that disconnects mid-body never sends its last chunk: settle instead of hanging.
    signal.addEventListener(
      'abort',
      () => {
        if (settled) return;
        settled = true;
        reject(new UnavailableError('the client disconnected before sending the whole body'));
      },
      { once: true },
    );
    res.onData((chunk, isLast) => {
      if (settled) {
        if (isLast) onComplete();
        return;
      }
      if (!collector.push(chunk)) {
        settled = true;
        reject(tooLarge(plan));
        return;
      }
      if (isLast) {
        settled = true;
        onComplete();
        resolve(collector.concat());
      }
    });
  });
}

/**
 * The body of `res` as a stream, for `stream` plans. Like readBody it must be called
 * synchronously inside the uWS route handler. uWS is paused while the consumer is behind,
 * so a slow consumer never makes the edge buffer a large body. The stream fails with 413
 * once the limit is crossed, and with 503 when the client disconnects mid-body.
 */
export function streamBody(
  res: HttpResponse,
  plan: BodyPlan,
  signal: AbortSignal,
  onComplete: () => void,
): Readable {
  let received = 0;
  let paused = false;
  let ended = false;
  const resume = () => {
    if (!paused || signal.aborted) return;
    paused = false;
    try {
      res.resume();
    } catch {
      // The response already ended (the handler answered without reading everything).
    }
  };
  // About two uWS chunks in flight before uWS is paused: throughput without a large buffer.
  const body = new Readable({ read: resume, highWaterMark: 1024 * 1024 });
  signal.addEventListener(
    'abort',
    () => {
      if (!ended) body.destroy(new UnavailableError('the client disconnected before sending the whole body'));
    },
    { once: true },
  );
  res.onData((chunk, isLast) => {
    if (isLast) {
      ended = true;
      onComplete();
    }
    if (body.destroyed) return;
    received += chunk.byteLength;
    if (received > plan.limit) {
      body.destroy(tooLarge(plan));
      return;
    }
    const more = chunk.byteLength === 0 || body.push(Buffer.from(new Uint8Array(chunk)));
    if (isLast) body.push(null);
    else if (!more && !paused) {
      paused = true;
      res.pause();
    }
  });
  return body;
}
