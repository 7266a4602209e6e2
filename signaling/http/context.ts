/** The request a route handler sees: everything read out of uWS up front, the body already received (or streaming). */
import { Readable } from 'node:stream';
import type { z } from 'zod';
import { InvalidArgumentError } from '../../common/contracts/index.js';
import type { Logger } from '../../common/index.js';
import type { BodyKind, BodySpec } from './body.js';
import { type MultipartPart, parseJsonBody, parseMultipart, validate } from './input.js';
import type { HttpReply } from './reply.js';
import type { HttpMethod } from './router.js';

export interface EdgeRequest {
  readonly method: HttpMethod;
  /** Raw URL path, without the query string. */
  readonly path: string;
  /** The matched route pattern, e.g. `/admin/users/:id/roles`. */
  readonly route: string;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly requestId: string;
  /** The peer's socket address (proxies are not trusted). */
  readonly remoteAddress: string;
  /** Carries the request id. */
  readonly log: Logger;
  /** Aborted when the client goes away; pass it on to outgoing calls. */
  readonly signal: AbortSignal;
  readonly bodyKind: BodyKind;
  /** Lower-case header name; '' when absent. */
  header(name: string): string;
  /** The JSON body validated by `schema` (an optional empty body validates as `{}`). */
  json<S extends z.ZodType>(schema: S): z.output<S>;
  multipart(): MultipartPart[];
  /** A `stream` body (see BodySpec.stream) as it arrives; empty for a request without a body. */
  bodyStream(): Readable;
}

export type RouteHandler = (request: EdgeRequest) => Promise<HttpReply> | HttpReply;

export interface RouteOptions {
  /** Accepted bodies and their limits; without it no body is read. */
  body?: BodySpec;
}

export interface RequestInit {
  method: HttpMethod;
  path: string;
  route: string;
  params: Record<string, string>;
  query: string;
  headers: Map<string, string>;
  requestId: string;
  remoteAddress: string;
  log: Logger;
  signal: AbortSignal;
  bodyKind: BodyKind;
  body: Buffer;
  /** Set for `stream` bodies. */
  stream?: Readable;
  spec: BodySpec | undefined;
}

export function createEdgeRequest(init: RequestInit): EdgeRequest {
  const { headers, body, bodyKind, spec } = init;
  return {
    method: init.method,
    path: init.path,
    route: init.route,
    params: init.params,
    query: new URLSearchParams(init.query),
    requestId: init.requestId,
    remoteAddress: init.remoteAddress,
    log: init.log,
    signal: init.signal,
    bodyKind,
    header: (name) => headers.get(name.toLowerCase()) ?? '',
    json(schema) {
      if (bodyKind === 'json') return validate(schema, parseJsonBody(body));
      if (bodyKind === 'none' && spec?.optional) return validate(schema, {});
      if (bodyKind === 'none')
        throw new InvalidArgumentError('missing request body: expected application/json');
      throw new InvalidArgumentError(`expected an application/json body, got ${bodyKind}`);
    },
    multipart() {
      if (bodyKind !== 'multipart') throw new InvalidArgumentError('expected a multipart/form-data body');
      return parseMultipart(body, headers.get('content-type') ?? '');
    },
    bodyStream() {
      if (init.stream) return init.stream;
      if (bodyKind === 'none') return Readable.from([]);
      throw new InvalidArgumentError(`expected a raw body, got ${bodyKind}`);
    },
  };
}
