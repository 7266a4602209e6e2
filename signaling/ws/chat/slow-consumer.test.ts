/**
 * A chat socket that stops reading, through the real edge and control plane (standalone,
 * in-process), with the client library in Node: the edge stops sending it the room once it is
 * behind (its buffer stays bounded, the connection is not cut), and when it reads again it is
 * told the gap and catches up completely, in order, without duplicates. And the client library's
 * own memory: a bounded window of messages per room, duplicates still recognised past it.
 */
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { type ChatStack, startChatStack } from '../../../app/testing/index.js';
import { CHAT_METADATA_MAX_BYTES } from '../../../common/contracts/index.js';
import { metricsRegistry } from '../../../common/index.js';
import {
  ChatClient,
  SignalingConnection,
  type WebSocketConstructor,
  type WebSocketLike,
} from '../../client/index.js';
import { nodeWebSocket } from '../../client/testing/index.js';
import type { ChatGap } from '../../protocol/index.js';
import { DEFAULT_SIGNALING_LIMITS } from '../server.js';

/** `ws` pauses reading its TCP socket on pause() (the kernel buffers fill, then uWS's). */
interface PausableSocket extends WebSocketLike {
  pause(): void;
  resume(): void;
}

let stack: ChatStack;

/** A short sentence that differs each time (the moderation's repeat rule lets it through). */
let sentences = 0;
const sentence = () => `catching up, message number ${++sentences}`;

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const values = (await metricsRegistry().getSingleMetric(name)?.get())?.values ?? [];
  return values
    .filter((value) => Object.entries(labels).every(([key, wanted]) => value.labels[key] === wanted))
    .reduce((sum, value) => sum + value.value, 0);
}

beforeAll(async () => {
  // Enough messages to fill a socket's kernel buffers quickly: the per-user limits out of the way.
  stack = await startChatStack({
    env: { CHAT_BURST_PER_5S: '100000', CHAT_MESSAGES_PER_MIN: '100000' },
    limits: { requestsPerSecond: 10_000, requestBurst: 10_000 },
  });
});

afterAll(async () => {
  await stack?.close();
});

// The kernel holds megabytes for a socket that stops reading before uWS holds any: this test pushes
// about 5 MB through the whole path, several seconds on a busy machine.
it('stops sending a room to a socket that does not read, then tells it the gap, which it fills', async () => {
  const [owner, slowUser, readerUser] = await Promise.all([
    stack.createUser(),
    stack.createUser(),
    stack.createUser(),
  ]);
  const { roomId } = await stack.startStream(owner);
  const sockets: PausableSocket[] = [];
  const Base = nodeWebSocket() as unknown as new (url: string) => PausableSocket;
  const Recorded: WebSocketConstructor = class extends Base {
    constructor(url: string) {
      super(url);
      sockets.push(this);
    }
  };
  const connection = new SignalingConnection({
    url: stack.wsUrl,
    token: slowUser.token,
    WebSocket: Recorded,
  });
  await connection.connect();
  const slow = new ChatClient({ connection, token: slowUser.token });
  let closed = false;
  connection.on('close', () => {
    closed = true;
  });
  await slow.join({ roomId });
  const reader = await stack.connect(readerUser);
  await reader.chat.join({ roomId });
  const sender = await stack.connect(owner);
  await sender.chat.join({ roomId });
  // Requests of one connection are answered one at a time: many connections, so that each burst
  // goes out in a few group commits and the kernel's socket buffers (megabytes) fill quickly.
  const senders = [sender, ...(await Promise.all(Array.from({ length: 19 }, () => stack.connect(owner))))];
  for (const { chat } of senders.slice(1)) await chat.join({ roomId });

  const gaps: ChatGap[] = [];
  slow.on('gap', (gap) => gaps.push(gap));
  const synced = new Promise<void>((resolve) => {
    slow.on('synced', ({ roomId: synced, reconnect }) => {
      if (synced === roomId && !reconnect && gaps.length > 0) resolve();
    });
  });

  const socket = sockets.at(-1);
  if (!socket) throw new Error('no socket recorded');
  socket.pause();
  const pausedBefore = await metric('veza_ws_chat_paused_total');
  const droppedBefore = await metric('veza_ws_closed_total', { cause: 'backpressure' });
  // Large frames until the edge takes the reader off the room: the bulk in the metadata (nearly its
  // 4 KiB), which only travels, so that each message costs the path little besides its bytes.
  const metadata = { pad: 'm'.repeat(CHAT_METADATA_MAX_BYTES - 20) };
  const acked: number[] = [];
  const burst = async (count: number) => {
    const sent = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        (senders[i % senders.length] ?? sender).chat.send(roomId, sentence(), { metadata }),
      ),
    );
    acked.push(...sent.map((message) => message.messageId));
  };
  while ((await metric('veza_ws_chat_paused_total')) === pausedBefore) await burst(40);
  // Then more than the hard limit (512 KiB): none of it may be buffered for the paused socket.
  const bytesPerMessage = Buffer.byteLength(JSON.stringify({ content: sentence(), metadata }));
  const more = Math.ceil((1.25 * DEFAULT_SIGNALING_LIMITS.maxBackpressureBytes) / bytesPerMessage);
  for (let sent = 0; sent < more; sent += 40) await burst(40);
  expect(closed).toBe(false);
  expect(await metric('veza_ws_closed_total', { cause: 'backpressure' })).toBe(droppedBefore);
  // A socket still on the room never held more than the pause threshold (plus one tick's frames).
  const pauseBytes = DEFAULT_SIGNALING_LIMITS.maxBackpressureBytes / 2;
  expect(await metric('veza_ws_chat_buffered_peak_bytes')).toBeLessThanOrEqual(
    pauseBytes + 40 * bytesPerMessage,
  );

  socket.resume();
  await synced;
  const last = (await sender.chat.send(roomId, 'after the gap')).messageId;
  acked.push(last);

  const ids = () => slow.room(roomId)?.messages.map((message) => message.messageId) ?? [];
  await vi.waitFor(() => expect(ids()).toContain(last), { timeout: 10_000 });
  expect(ids()).toEqual([...acked].sort((a, b) => a - b));
  expect(reader.chat.room(roomId)?.messages.map((message) => message.messageId)).toEqual(ids());
  const [gap] = gaps;
  expect(gap?.roomId).toBe(roomId);
  expect(gap?.afterMessageId).toBeLessThan(gap?.throughMessageId ?? 0);
  expect(closed).toBe(false);
  slow.close();
  connection.close();
}, 60_000);

it('keeps a bounded window of messages per room in the client library, and no duplicate past it', async () => {
  const [owner, member] = await Promise.all([stack.createUser(), stack.createUser()]);
  const { roomId } = await stack.startStream(owner);
  const connection = new SignalingConnection({
    url: stack.wsUrl,
    token: member.token,
    WebSocket: nodeWebSocket(),
  });
  await connection.connect();
  const windowed = new ChatClient({ connection, token: member.token, maxMessages: 3 });
  const created: number[] = [];
  windowed.on('message', (message, info) => {
    if (info.eventType === 'created') created.push(message.messageId);
  });
  await windowed.join({ roomId });
  const sender = await stack.connect(owner);
  await sender.chat.join({ roomId });
  const sent: number[] = [];
  // Its own sends too: each arrives twice (broadcast and ack), past the window for the early ones.
  for (let i = 0; i < 20; i++) {
    const via = i % 2 === 0 ? sender.chat : windowed;
    sent.push((await via.send(roomId, `window message ${i}`)).messageId);
  }
  await vi.waitFor(() => expect(created.at(-1)).toBe(sent.at(-1)));
  expect(created).toEqual(sent);
  const view = windowed.room(roomId);
  expect(view?.messages.map((m) => m.messageId)).toEqual(sent.slice(-3));
  expect(view?.hasOlder).toBe(true);
  await windowed.loadOlder(roomId);
  expect(windowed.room(roomId)?.messages[0]?.messageId).toBeLessThan(sent.at(-3) ?? 0);
  windowed.close();
  connection.close();
});
