/**
 * Test support (imported by *.test.ts only): clients that misbehave on purpose, which the
 * typed client library never does: raw frames, raw handshakes, and a TCP client that stops
 * reading.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import type { WebSocketLike } from '../client/index.js';
import { nodeWebSocket } from '../client/testing/index.js';
import type { ResponseFrame } from '../protocol/index.js';

type Frame = Record<string, unknown>;

/** A WebSocket that sends whatever text it is given and records every frame it gets. */
export class RawClient {
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #socket: WebSocketLike;
  #waiters = new Set<() => void>();
  #nextId = 1;

  private constructor(socket: WebSocketLike) {
    this.#socket = socket;
    socket.addEventListener('message', (event) => {
      if (typeof event.data === 'string') this.frames.push(JSON.parse(event.data) as Frame);
      for (const waiter of [...this.#waiters]) waiter();
    });
    this.closed = new Promise((resolve) => {
      socket.addEventListener('close', (event) => {
        resolve({ code: event.code, reason: event.reason });
        for (const waiter of [...this.#waiters]) waiter();
      });
    });
  }

  /** Opens `url` with `query` appended; resolves once open or closed (see `closed`). */
  static async open(url: string, query: string): Promise<RawClient> {
    const WebSocket = nodeWebSocket();
    const socket = new WebSocket(`${url}?${query}`);
    const client = new RawClient(socket);
    await Promise.race([
      new Promise<void>((resolve) => socket.addEventListener('open', () => resolve())),
      client.closed,
    ]);
    return client;
  }

  get open(): boolean {
    return this.#socket.readyState === 1;
  }

  send(text: string): void {
    this.#socket.send(text);
  }

  /** Sends a request and resolves with its response frame (ok or not). */
  async request(method: string, params: unknown): Promise<ResponseFrame> {
    const id = `r${this.#nextId++}`;
    this.send(JSON.stringify({ id, method, params }));
    return (await this.next((frame) => frame.id === id)) as unknown as ResponseFrame;
  }

  /** The first recorded frame matching `accept`, waiting for it if needed. */
  next(accept: (frame: Frame) => boolean, timeoutMs = 10_000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const index = this.frames.findIndex(accept);
        if (index >= 0) {
          const [frame] = this.frames.splice(index, 1);
          done();
          resolve(frame!);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames).slice(0, 500)}`,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  close(): void {
    this.#socket.close(1000, 'test done');
  }
}

/**
 * An upgrade request by hand, to see the HTTP answer a refused handshake gets. `headers`: extra
 * request headers (X-Forwarded-For). `keepOpen`: an accepted connection stays open until close().
 */
export function rawHandshake(
  baseUrl: string,
  query: string,
  options: { headers?: Record<string, string>; keepOpen?: boolean } = {},
): Promise<{ status: number; body: string; close(): void }> {
  return new Promise((resolve, reject) => {
    const request = http.get(`${baseUrl}/ws?${query}`, {
      headers: {
        ...options.headers,
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        'sec-websocket-version': '13',
      },
    });
    request.on('upgrade', (response, socket) => {
      if (!options.keepOpen) socket.destroy();
      socket.on('error', () => undefined);
      resolve({ status: response.statusCode ?? 0, body: '', close: () => socket.destroy() });
    });
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          body: Buffer.concat(chunks).toString('utf8'),
          close: () => undefined,
        }),
      );
    });
    request.on('error', reject);
  });
}

/** A client-to-server text frame (clients must mask, RFC 6455 5.3). */
export function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const length = payload.length;
  const header =
    length < 126
      ? Buffer.from([0x81, 0x80 | length])
      : length < 65536
        ? Buffer.from([0x81, 0x80 | 126, length >> 8, length & 0xff])
        : (() => {
            const h = Buffer.alloc(10);
            h[0] = 0x81;
            h[1] = 0x80 | 127;
            h.writeBigUInt64BE(BigInt(length), 2);
            return h;
          })();
  const mask = randomBytes(4);
  const masked = Buffer.alloc(length);
  for (let i = 0; i < length; i++) masked[i] = payload[i]! ^ mask[i % 4]!;
  return Buffer.concat([header, mask, masked]);
}

/**
 * A WebSocket client over raw TCP that never reads after the handshake (its receive buffer
 * fills, then the server's send buffer, then uWS backpressure) while it keeps sending.
 */
export class NonReadingClient {
  readonly socket: net.Socket;
  /** Resolves when the server drops the connection (seen as a write error or a close). */
  readonly dropped: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.dropped = new Promise((resolve) => {
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
    });
  }

  static open(port: number, query: string): Promise<NonReadingClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.write(
          `GET /ws?${query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      socket.once('error', reject);
      let head = '';
      const onData = (chunk: Buffer) => {
        head += chunk.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        socket.off('data', onData);
        socket.off('error', reject);
        if (!head.startsWith('HTTP/1.1 101')) {
          reject(new Error(`handshake refused: ${head.split('\r\n')[0]}`));
          return;
        }
        // From here on nothing is read: the kernel buffers fill and stay full.
        socket.pause();
        resolve(new NonReadingClient(socket));
      };
      socket.on('data', onData);
    });
  }

  send(text: string): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(maskedTextFrame(text));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A WebSocket client over raw TCP that reads but never answers pings nor sends anything. */
export class SilentClient {
  pings = 0;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      // Server frames are unmasked; a ping is opcode 0x9. Good enough for small control frames.
      for (let i = 0; i + 1 < chunk.length; ) {
        const opcode = chunk[i]! & 0x0f;
        const length = chunk[i + 1]! & 0x7f;
        if (opcode === 0x9) this.pings++;
        i += 2 + (length < 126 ? length : length === 126 ? 2 + chunk.readUInt16BE(i + 2) : chunk.length);
      }
    });
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
  }

  static open(port: number, query: string): Promise<SilentClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.write(
          `GET /ws?${query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      socket.once('error', reject);
      socket.once('data', (head: Buffer) => {
        if (!head.toString('latin1').startsWith('HTTP/1.1 101')) {
          reject(new Error(`handshake refused: ${head.toString('latin1').split('\r\n')[0]}`));
          return;
        }
        resolve(new SilentClient(socket));
      });
    });
  }
}
