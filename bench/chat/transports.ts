/**
 * How a chat client reaches its room, behind one small interface so the same load process
 * drives the platform and the baseline:
 * - `ws` (the platform's real path): the signaling client library's ChatClient on its own
 *   SignalingConnection, as the web app does: chat.join, chat.send (its reply is the ack) and
 *   the `chat.message` notifications (deliveries);
 * - `grpc`: the control plane's ChatService directly (JoinRoom, StreamMessages, SendMessage),
 *   one channel per process as an edge would hold; kept to compare the two paths;
 * - `bare-uws`: the baseline's JSON frames over a plain WebSocket.
 * Every message carries its send time (CLOCK_MONOTONIC ns): in its metadata on the platform,
 * in the frame on the baseline.
 */
import { type ClientReadableStream, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { ChatServiceClient, type Message, type SendMessageResponse } from '../../proto/gen/veza/chat/chat.js';
import {
  ChatClient as SignalingChat,
  SignalingConnection,
  type WebSocketLike,
} from '../../signaling/client/index.js';
import { nodeWebSocket } from '../lib/ws.js';

export type ChatMode = 'ws' | 'grpc' | 'bare-uws';

export interface ClientSpec {
  /** The user's access token (grpc) or unused (bare-uws). */
  token: string;
  roomId: number;
}

export interface ChatClient {
  /** Joins and subscribes; resolves once deliveries can arrive. */
  join(): Promise<void>;
  /** Resolves when the server acknowledged the message (stored, for the platform). */
  send(content: string, clientMessageId: string, sentNs: bigint): Promise<void>;
  close(): void;
}

/** Called with the send time of every message delivered to a client (null when unreadable). */
export type OnDelivery = (sentNs: bigint | null) => void;

export interface ChatTransport {
  client(spec: ClientSpec, onDelivery: OnDelivery): ChatClient;
  close(): void;
}

function unary<Res>(
  invoke: (callback: (error: ServiceError | null, response: Res) => void) => void,
): Promise<Res> {
  return new Promise((resolve, reject) =>
    invoke((error, response) => (error ? reject(error) : resolve(response))),
  );
}

/** The send time a message carries in its metadata (`bench_t`, ns as a decimal string). */
function stampOf(metadata: Record<string, unknown> | null): bigint | null {
  const value = metadata?.bench_t;
  return typeof value === 'string' && /^\d+$/.test(value) ? BigInt(value) : null;
}

export function wsTransport(url: string): ChatTransport {
  const WebSocket = nodeWebSocket();
  return {
    client(spec, onDelivery) {
      // A drop is a result to count, not something to paper over with a reconnect.
      const connection = new SignalingConnection({
        url,
        token: spec.token,
        WebSocket,
        requestTimeoutMs: 60_000,
        reconnect: false,
      });
      // History is not what is measured: load as little as a join allows, and keep a short window
      // of messages. A process holds hundreds of clients: keeping every message of every client
      // (millions) made its garbage collector pause it for ~1 s, and a window of 100 each still
      // had every message promoted to the old generation (17% of a member process's CPU in GC).
      const chat = new SignalingChat({ connection, historyLimit: 1, sendAttempts: 1, maxMessages: 10 });
      chat.on('message', (message, info) => {
        if (info.eventType === 'created') onDelivery(stampOf(message.metadata));
      });
      return {
        async join() {
          await connection.connect();
          await chat.join({ roomId: spec.roomId });
        },
        async send(content, clientMessageId, sentNs) {
          await chat.send(spec.roomId, content, { clientMessageId, metadata: { bench_t: String(sentNs) } });
        },
        close() {
          chat.close();
          connection.close();
        },
      };
    },
    close: () => undefined,
  };
}

export function grpcTransport(address: string): ChatTransport {
  const service = new ChatServiceClient(address, credentials.createInsecure());
  return {
    client(spec, onDelivery) {
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${spec.token}`);
      let stream: ClientReadableStream<Message> | undefined;
      return {
        async join() {
          await unary((cb) => service.joinRoom({ roomId: spec.roomId }, metadata, cb));
          stream = service.streamMessages({ roomId: spec.roomId, lastMessageId: 0 }, metadata);
          stream.on('data', (message: Message) => {
            if (message.eventType !== 'created') return;
            const bytes = message.metadata;
            onDelivery(bytes && bytes.length >= 8 ? Buffer.from(bytes).readBigUInt64BE(0) : null);
          });
          // Cancelled on close; any other error ends this client's deliveries, which the counts show.
          stream.on('error', () => undefined);
        },
        async send(content, clientMessageId, sentNs) {
          const stamp = Buffer.alloc(8);
          stamp.writeBigUInt64BE(sentNs);
          const response = await unary<SendMessageResponse>((cb) =>
            service.sendMessage(
              {
                roomId: spec.roomId,
                content,
                messageType: 'text',
                metadata: stamp,
                replyToId: 0,
                clientMessageId,
              },
              metadata,
              cb,
            ),
          );
          if (!response.success) throw new Error(`SendMessage refused: ${response.errorMessage}`);
        },
        close() {
          stream?.cancel();
        },
      };
    },
    close: () => service.close(),
  };
}

export function bareUwsTransport(baseUrl: string): ChatTransport {
  const WebSocket = nodeWebSocket();
  return {
    client(spec, onDelivery) {
      let socket: WebSocketLike | undefined;
      const acks = new Map<string, () => void>();
      return {
        join() {
          return new Promise((resolve, reject) => {
            const ws = new WebSocket(`${baseUrl}/chat?room=${spec.roomId}`);
            socket = ws;
            ws.addEventListener('open', () => resolve());
            ws.addEventListener('error', () => reject(new Error('bare uWS connection failed')));
            ws.addEventListener('message', (event) => {
              const frame = JSON.parse(String(event.data)) as { ack?: string; t?: string };
              if (frame.ack !== undefined) {
                acks.get(frame.ack)?.();
                acks.delete(frame.ack);
              } else {
                onDelivery(frame.t ? BigInt(frame.t) : null);
              }
            });
          });
        },
        send(content, clientMessageId, sentNs) {
          return new Promise((resolve) => {
            acks.set(clientMessageId, resolve);
            socket?.send(
              JSON.stringify({ id: clientMessageId, room: spec.roomId, t: String(sentNs), content }),
            );
          });
        },
        close() {
          socket?.close();
        },
      };
    },
    close: () => undefined,
  };
}
