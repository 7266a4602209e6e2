/**
 * The hub's slow-consumer check against members whose buffers the test sets: a busy room of
 * members that read is not walked on every publish, and a member that stops reading still comes
 * off the topic before its buffer passes the pause limit, whatever filled it (the room's
 * messages, or frames sent to it alone). End to end, through uWS and a socket that stops
 * reading, in slow-consumer.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { roomSubject, toMessageBatch } from '../../../common/contracts/index.js';
import { createLogger } from '../../../common/index.js';
import { MemoryEventBus } from '../../../common/ports/index.js';
import { ChatMessage } from '../../../proto/gen/veza/chat/chat.js';
import type { ServerFrame } from '../../protocol/index.js';
import { OutboundMeter } from '../socket.js';
import { ChatHub, type ChatMember, roomTopic } from './hub.js';

const ROOM = 7;
const PAUSE_BYTES = 64 * 1024;

/** A member whose socket either reads everything at once or nothing at all. */
class Member implements ChatMember {
  readonly userId: number;
  open = true;
  reading = true;
  buffered = 0;
  /** The most it ever held while on the room's topic. */
  peakOnTopic = 0;
  bufferReads = 0;
  readonly topics = new Set<string>();

  constructor(userId: number) {
    this.userId = userId;
  }

  receive(bytes: number): void {
    if (this.reading) return;
    this.buffered += bytes;
    if (this.topics.has(roomTopic(ROOM))) this.peakOnTopic = Math.max(this.peakOnTopic, this.buffered);
  }

  subscribe(topic: string): void {
    this.topics.add(topic);
  }
  unsubscribe(topic: string): void {
    this.topics.delete(topic);
  }
  send(frame: ServerFrame): void {
    this.receive(Buffer.byteLength(JSON.stringify(frame)));
  }
  bufferedAmount(): number {
    this.bufferReads++;
    return this.buffered;
  }
  dropIfSlow(): boolean {
    return false;
  }
  removedFrom(): void {}
}

let members: Member[];
let bus: MemoryEventBus;
let hub: ChatHub;
let meter: OutboundMeter;
let nextId: number;

beforeEach(() => {
  members = [];
  nextId = 1;
  const log = createLogger({ level: 'silent' });
  bus = new MemoryEventBus({ log });
  // uWS's side: a topic's frame lands in the buffer of each socket subscribed to it.
  meter = new OutboundMeter({
    publish(topic, message) {
      for (const member of members) if (member.topics.has(topic)) member.receive(Buffer.byteLength(message));
      return true;
    },
  });
  hub = new ChatHub({ app: meter, bus, log, pauseBytes: PAUSE_BYTES, resumeBytes: PAUSE_BYTES / 4 });
});

afterEach(async () => {
  hub.close();
  await bus.close();
});

async function join(count: number): Promise<Member[]> {
  const joined = Array.from({ length: count }, (_, i) => new Member(100 + members.length + i));
  members.push(...joined);
  for (const member of joined) await hub.enter(member, ROOM);
  return joined;
}

/** One group commit of `count` messages of about `bytes` each, through the bus to the hub. */
async function commit(count: number, bytes = 300): Promise<void> {
  const messages = Array.from({ length: count }, () =>
    ChatMessage.fromPartial({
      messageId: nextId++,
      roomId: ROOM,
      userId: 1,
      username: 'sender',
      content: 'x'.repeat(bytes),
      messageType: 'text',
      createdAt: new Date(),
      updatedAt: new Date(),
    }),
  );
  await bus.publish(roomSubject(ROOM), toMessageBatch(messages));
  await hub.delivered(ROOM, nextId - 1);
  // The end of the event-loop turn, where uWS writes out what the turn published.
  await new Promise((resolve) => setImmediate(resolve));
}

describe('ChatHub slow consumers', () => {
  it('reads the buffers of a busy room of readers once per pause limit of traffic, not per publish', async () => {
    const readers = await join(50);
    const publishes = 400;
    for (let i = 0; i < publishes; i++) await commit(1);
    const written = meter.bytes;
    const reads = readers.reduce((sum, member) => sum + member.bufferReads, 0);
    // Every publish walking the room would be 50 x 400 reads; one walk per PAUSE_BYTES written, plus the first.
    const walks = Math.ceil(written / PAUSE_BYTES) + 1;
    expect(written).toBeGreaterThan(PAUSE_BYTES);
    expect(reads).toBeLessThanOrEqual(readers.length * walks);
    expect(reads).toBeGreaterThanOrEqual(readers.length);
  });

  it('takes a member that stops reading off the topic before it holds more than the limit', async () => {
    await join(20);
    const [stalled] = await join(1);
    if (!stalled) throw new Error('no member');
    for (let i = 0; i < 50; i++) await commit(1);
    stalled.reading = false;
    for (let i = 0; i < 600; i++) await commit(2);
    expect(stalled.topics.has(roomTopic(ROOM))).toBe(false);
    expect(stalled.peakOnTopic).toBeGreaterThan(PAUSE_BYTES / 2);
    expect(stalled.peakOnTopic).toBeLessThanOrEqual(PAUSE_BYTES);
  });

  it('counts what was sent to one socket alone, not only what the room published', async () => {
    const [member] = await join(1);
    await join(5);
    if (!member) throw new Error('no member');
    await commit(1);
    member.reading = false;
    // A frame straight to it (a history page, say): written through the meter like every send.
    const page = 'p'.repeat(PAUSE_BYTES - 2_000);
    meter.sent(page);
    member.receive(Buffer.byteLength(page));
    for (let i = 0; i < 20; i++) await commit(1);
    expect(member.topics.has(roomTopic(ROOM))).toBe(false);
    expect(member.peakOnTopic).toBeLessThanOrEqual(PAUSE_BYTES);
  });
});
