/**
 * The roll-up's arithmetic on a hand-made hour: listening seconds split across minutes, peak
 * concurrency, countries, listeners across sessions, open sessions ended by the stream's end, and
 * the same input always giving the same output (what makes a redelivered job harmless).
 */
import { describe, expect, it } from 'vitest';
import type { RollupInput } from '../common/contracts/index.js';
import { computeRollup } from './analytics-rollup.js';

const HOUR = '2026-01-01T10:00:00.000Z';
const at = (mmss: string) => new Date(`2026-01-01T10:${mmss}.000Z`).toISOString();

const input: RollupInput = {
  stream_id: 7,
  hour: HOUR,
  started_at: at('00:30'),
  ended_at: at('03:00'),
  now: at('30:00'),
  sessions: [
    // u:1 listens twice: one listener, two sessions.
    { session_id: 's1', listener_key: 'u:1', country: 'DE', joined_at: at('00:30'), left_at: at('01:30') },
    { session_id: 's2', listener_key: 'u:1', country: 'DE', joined_at: at('02:00'), left_at: at('02:30') },
    // Never left: ends with the stream.
    { session_id: 's3', listener_key: 'a:abcd', country: 'JP', joined_at: at('01:00'), left_at: null },
  ],
  quality: [],
  counts: [{ minute: at('01:00'), chat_messages: 4, reports: 1, moderator_actions: 0 }],
};

describe('computeRollup', () => {
  it('splits listening time per minute and country, finds the peak and the listeners', () => {
    const output = computeRollup(input);
    expect(output.final).toBe(true);
    expect(output.minutes.map((m) => [m.minute.slice(14, 16), m.listener_seconds, m.peak_listeners])).toEqual(
      [
        ['00', 30, 1],
        ['01', 90, 2],
        ['02', 90, 2],
      ],
    );
    expect(output.minutes[1]?.countries).toEqual({ DE: 30, JP: 60 });
    expect(output.minutes[1]?.chat_messages).toBe(4);
    const total = output.minutes.reduce((sum, m) => sum + m.listener_seconds, 0);
    expect(total).toBe(60 + 30 + 120);
    expect(output.listeners.sort((a, b) => a.listener_key.localeCompare(b.listener_key))).toEqual([
      { listener_key: 'a:abcd', country: 'JP', seconds: 120 },
      { listener_key: 'u:1', country: 'DE', seconds: 90 },
    ]);
  });

  it('counts a live stream’s open sessions up to the reader’s clock, and is deterministic', () => {
    const live = { ...input, ended_at: null, now: at('02:15') };
    const output = computeRollup(live);
    expect(output.final).toBe(false);
    expect(output.minutes.map((m) => m.minute.slice(14, 16))).toEqual(['00', '01', '02']);
    expect(output.minutes[2]?.listener_seconds).toBe(15 + 15);
    expect(computeRollup(live)).toEqual(output);
  });
});
