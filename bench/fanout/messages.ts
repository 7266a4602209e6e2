/** What the fanout orchestrator and its child processes say to each other (results validated by the parent). */
import { z } from 'zod';

export interface SignalingTargetJson {
  url: string;
  streamId: number;
  /** The publisher's access token; null for listeners, who connect anonymously as a browser does. */
  token: string | null;
}

export interface JoinParams {
  target: SignalingTargetJson;
  count: number;
  /** New listeners per second. */
  rampPerSecond: number;
  /** How long a listener may take from its start to its first packet. */
  joinTimeoutMs: number;
}

export const joinResult = z.object({
  attempted: z.number().int(),
  joined: z.number().int(),
  active: z.number().int(),
  /** Listeners whose join answered without audio (their node was still pulling it) and who consumed on streamStarted. */
  waitedForAudio: z.number().int(),
  errors: z.array(z.string()),
  /** This generator's CPU seconds over the ramp (the joins and the packets arriving meanwhile). */
  cpuSeconds: z.number(),
  /** Its event loop's delay p99 over the ramp, ms: a busy generator inflates join times. */
  loopDelayP99Ms: z.number(),
});

export interface WindowParams {
  fromSeq: number;
  /** Upper bound on the packets the window will hold, to size each listener's bitmap. */
  capacity: number;
}

export const histogramJson = z.object({
  buckets: z.array(z.tuple([z.number(), z.number()])),
  count: z.number(),
  max: z.number(),
});

export const collectResult = z.object({
  /** Listeners that received at least one packet and are still connected. */
  active: z.number().int(),
  /** Distinct probe packets received in [fromSeq, toSeq), summed over active listeners. */
  received: z.number().int(),
  /** Bytes of those packets (RTP header included). */
  bytes: z.number(),
  /** Per-listener loss %, for the worst listener. */
  worstLossPct: z.number(),
  delay: histogramJson,
  /**
   * The active listeners, their packets and delays per SFU address (the join answer's UDP
   * candidate): with `--nodes`, per media node.
   */
  byAddress: z.record(
    z.string(),
    z.object({ active: z.number().int(), received: z.number().int(), delay: histogramJson }),
  ),
  /** Join times (ms) of listeners that got their first packet since the previous collect. */
  joinMs: z.array(z.number()),
  /** The same listeners' time in each step of the join (peers.ts JOIN_PHASES). */
  phaseMs: z.record(z.string(), z.array(z.number())),
  /** Listeners lost (signaling closed, peer failed) since they joined. */
  dropped: z.number().int(),
  /** CPU seconds this load generator used since the window started. */
  cpuSeconds: z.number(),
  /** How late this process's event loop ran, p99 in ms over the window: a busy generator inflates delays. */
  loopDelayP99Ms: z.number(),
});

export const publishResult = z.object({ payloadType: z.number().int(), ssrc: z.number().int() });
export const seqResult = z.object({
  seq: z.number().int(),
  /** Sends that were more than 10 ms behind schedule (the publisher's own pacing problems). */
  late: z.number().int(),
  /** Packets the publisher could not hand to its track (connection lost). */
  sendErrors: z.number().int(),
  lastError: z.string().nullable(),
});

export const emptyResult = z.object({});
