/**
 * The probe packets: Opus-sized RTP whose payload carries a sequence number and the send time
 * (CLOCK_MONOTONIC, shared by every process on the machine), so each listener measures its
 * own loss and delay exactly, with no clock sync.
 *
 * Payload: magic "VZB1" | uint32 probe sequence | float64 send time in ms | zero padding.
 */
import { monotonicMs } from '../lib/clock.js';

export const PAYLOAD_BYTES = 100;
const MAGIC = 0x565a4231;
const RTP_HEADER_BYTES = 12;

export interface ProbeWriter {
  /** Fills the next packet (sequence, timestamp, send time) and returns it; the buffer is reused. */
  next(): { packet: Buffer; seq: number };
}

export function probeWriter(options: {
  ssrc: number;
  payloadType: number;
  samplesPerPacket?: number;
}): ProbeWriter {
  const packet = Buffer.alloc(RTP_HEADER_BYTES + PAYLOAD_BYTES);
  packet[0] = 0x80; // version 2, no padding, no extension, no CSRC
  packet[1] = options.payloadType & 0x7f;
  packet.writeUInt32BE(options.ssrc >>> 0, 8);
  packet.writeUInt32BE(MAGIC, RTP_HEADER_BYTES);
  const samples = options.samplesPerPacket ?? 960; // 20 ms at 48 kHz
  let seq = 0;
  let rtpSeq = Math.floor(Math.random() * 0xffff);
  let timestamp = Math.floor(Math.random() * 0xffffffff);
  return {
    next() {
      packet.writeUInt16BE(rtpSeq & 0xffff, 2);
      packet.writeUInt32BE(timestamp >>> 0, 4);
      packet.writeUInt32BE(seq >>> 0, RTP_HEADER_BYTES + 4);
      packet.writeDoubleBE(monotonicMs(), RTP_HEADER_BYTES + 8);
      const sent = { packet, seq };
      seq++;
      rtpSeq++;
      timestamp = (timestamp + samples) >>> 0;
      return sent;
    },
  };
}

export interface Probe {
  seq: number;
  /** ms on CLOCK_MONOTONIC (lib/clock.ts) */
  sentMs: number;
  /** Size of the whole RTP packet (header included). */
  bytes: number;
}

/** Reads a probe from an RTP packet; null for RTCP, other payload types or foreign payloads. */
export function readProbe(packet: Buffer, payloadType: number): Probe | null {
  if (packet.length < RTP_HEADER_BYTES || packet[0] === undefined || packet[1] === undefined) return null;
  if (packet[0] >> 6 !== 2 || (packet[1] & 0x7f) !== payloadType) return null;
  let offset = RTP_HEADER_BYTES + 4 * (packet[0] & 0x0f);
  if (packet[0] & 0x10) {
    if (packet.length < offset + 4) return null;
    offset += 4 + 4 * packet.readUInt16BE(offset + 2);
  }
  if (packet.length < offset + 16 || packet.readUInt32BE(offset) !== MAGIC) return null;
  return {
    seq: packet.readUInt32BE(offset + 4),
    sentMs: packet.readDoubleBE(offset + 8),
    bytes: packet.length,
  };
}
