/**
 * A load-generator process: ramps probe listeners (node-datachannel peers speaking the real
 * signaling protocol) and counts, per listener, which probe packets arrived and how late.
 * Forked by the fanout orchestrator; see messages.ts for its requests.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { z } from 'zod';
import { monotonicMs } from '../lib/clock.js';
import { serveParent } from '../lib/ipc.js';
import { type HistogramJson, LogHistogram } from '../lib/stats.js';
import type { JoinParams, joinResult, SignalingTargetJson, WindowParams } from './messages.js';
import { JOIN_PHASES, type JoinPhase, ProbeListener } from './peers.js';
import { readProbe } from './rtp.js';

interface Slot {
  peer: ProbeListener;
  startedAt: number;
  firstPacketAt: number | null;
  joinReported: boolean;
  dropped: boolean;
  /** Bit i set: probe fromSeq + i arrived in the current window. */
  bits: Uint32Array;
  bytes: number;
}

const slots: Slot[] = [];
let window = { fromSeq: Number.MAX_SAFE_INTEGER, capacity: 0 };
let delays = new LogHistogram();
/** The same delays per SFU address (which media node served the listener: `--nodes`). */
let delaysByAddress = new Map<string, LogHistogram>();
let cpuAtWindow = process.cpuUsage();
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
let nextName = 0;

function onPacket(slot: Slot, packet: Buffer): void {
  const probe = readProbe(packet, slot.peer.payloadType);
  if (!probe) return;
  const now = performance.now();
  if (slot.firstPacketAt === null) slot.firstPacketAt = now;
  const offset = probe.seq - window.fromSeq;
  if (offset < 0 || offset >= window.capacity) return;
  const word = offset >>> 5;
  const mask = 1 << (offset & 31);
  const bits = slot.bits;
  if ((bits[word] ?? 0) & mask) return; // a duplicate
  bits[word] = (bits[word] ?? 0) | mask;
  slot.bytes += probe.bytes;
  const delay = monotonicMs() - probe.sentMs;
  delays.add(delay);
  const address = slot.peer.serverAddress;
  let byAddress = delaysByAddress.get(address);
  if (!byAddress) {
    byAddress = new LogHistogram();
    delaysByAddress.set(address, byAddress);
  }
  byAddress.add(delay);
}

async function startOne(target: SignalingTargetJson, errors: Set<string>): Promise<Slot> {
  const slot: Slot = {
    // The callbacks run only once packets or failures arrive, after `slot` is assigned.
    peer: new ProbeListener(
      { url: target.url, token: target.token, streamId: target.streamId },
      (packet) => onPacket(slot, packet),
      (reason) => {
        if (slot.dropped) return;
        slot.dropped = true;
        errors.add(reason);
      },
    ),
    startedAt: performance.now(),
    firstPacketAt: null,
    joinReported: false,
    dropped: false,
    bits: new Uint32Array(Math.ceil(window.capacity / 32)),
    bytes: 0,
  };
  slots.push(slot);
  try {
    await slot.peer.listen(`listener-${process.pid}-${nextName++}`);
  } catch (error) {
    slot.dropped = true;
    errors.add(String(error instanceof Error ? error.message : error));
  }
  return slot;
}

async function join(params: JoinParams): Promise<z.infer<typeof joinResult>> {
  const errors = new Set<string>();
  const started = performance.now();
  const cpuAtStart = process.cpuUsage();
  loopDelay.reset();
  const pending: Array<Promise<Slot>> = [];
  for (let i = 0; i < params.count; i++) {
    const due = started + (i * 1000) / params.rampPerSecond;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    pending.push(startOne(params.target, errors));
  }
  const mine = await Promise.all(pending);
  // Every listener that signaled successfully gets until its deadline to see its first packet.
  const deadline = performance.now() + params.joinTimeoutMs;
  while (performance.now() < deadline && mine.some((slot) => !slot.dropped && slot.firstPacketAt === null)) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const silent = mine.filter((slot) => !slot.dropped && slot.firstPacketAt === null).length;
  if (silent > 0) errors.add(`${silent} listener(s) received no packet within ${params.joinTimeoutMs} ms`);
  const cpu = process.cpuUsage(cpuAtStart);
  return {
    attempted: params.count,
    joined: mine.filter((slot) => slot.firstPacketAt !== null && !slot.dropped).length,
    active: activeSlots().length,
    waitedForAudio: mine.filter((slot) => slot.peer.waitedForAudio).length,
    errors: [...errors].slice(0, 10),
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
  };
}

function activeSlots(): Slot[] {
  return slots.filter((slot) => slot.firstPacketAt !== null && !slot.dropped);
}

function startWindow(params: WindowParams): Record<string, never> {
  window = { fromSeq: params.fromSeq, capacity: params.capacity };
  for (const slot of slots) {
    slot.bits = new Uint32Array(Math.ceil(params.capacity / 32));
    slot.bytes = 0;
  }
  delays = new LogHistogram();
  delaysByAddress = new Map();
  cpuAtWindow = process.cpuUsage();
  loopDelay.reset();
  return {};
}

function popcount(value: number): number {
  let v = value - ((value >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** Counts bits for offsets below `limit` only: packets after the window's end do not count. */
function countBelow(bits: Uint32Array, limit: number): number {
  let count = 0;
  const full = limit >>> 5;
  for (let i = 0; i < full; i++) count += popcount(bits[i] ?? 0);
  const rest = limit & 31;
  if (rest > 0) count += popcount((bits[full] ?? 0) & ((1 << rest) - 1));
  return count;
}

function collect(params: { toSeq: number }) {
  const expected = Math.max(0, Math.min(window.capacity, params.toSeq - window.fromSeq));
  const active = activeSlots();
  let received = 0;
  let bytes = 0;
  let worstLossPct = 0;
  const byAddress: Record<string, { active: number; received: number; delay: HistogramJson }> = {};
  for (const slot of active) {
    const got = countBelow(slot.bits, expected);
    received += got;
    const address = slot.peer.serverAddress;
    const node = byAddress[address] ?? {
      active: 0,
      received: 0,
      delay: (delaysByAddress.get(address) ?? new LogHistogram()).toJSON(),
    };
    node.active++;
    node.received += got;
    byAddress[address] = node;
    // Bytes are kept for the whole window; scale to the packets inside it.
    const total = countBelow(slot.bits, window.capacity);
    bytes += total > 0 ? (slot.bytes * got) / total : 0;
    if (expected > 0) worstLossPct = Math.max(worstLossPct, (100 * (expected - got)) / expected);
  }
  const joinMs: number[] = [];
  const phaseMs = Object.fromEntries(JOIN_PHASES.map((phase) => [phase, [] as number[]])) as Record<
    JoinPhase,
    number[]
  >;
  for (const slot of slots) {
    if (slot.firstPacketAt !== null && !slot.joinReported) {
      slot.joinReported = true;
      joinMs.push(slot.firstPacketAt - slot.startedAt);
      for (const [phase, ms] of Object.entries(slot.peer.phases)) phaseMs[phase as JoinPhase].push(ms);
      // ICE, DTLS and the first packet: from the resume's answer (or the answer's arrival, whichever came later).
      phaseMs.media.push(Math.max(0, slot.firstPacketAt - slot.peer.signaledAt));
    }
  }
  const cpu = process.cpuUsage(cpuAtWindow);
  return {
    active: active.length,
    received,
    bytes,
    worstLossPct,
    delay: delays.toJSON(),
    byAddress,
    joinMs,
    phaseMs,
    dropped: slots.filter((slot) => slot.dropped).length,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
  };
}

serveParent(
  {
    join: (params) => join(params as JoinParams),
    window: (params) => startWindow(params as WindowParams),
    collect: (params) => collect(params as { toSeq: number }),
  },
  () => {
    for (const slot of slots) slot.peer.close();
  },
);
