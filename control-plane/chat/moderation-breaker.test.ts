/**
 * Chat with an external moderation service that goes down: the breaker opens, the local
 * scorer takes over, the metrics show it, and chat goes on.
 */
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { renderMetrics } from '../../common/index.js';
import { startTestScorer, type TestScorerServer } from '../moderation/test-scorer-server.js';
import { grpcError } from '../test-harness.js';
import { type ChatHarness, chatCalls, startChatHarness, type TestUser } from './test-support.js';

let h: ChatHarness;
let scorer: TestScorerServer;
let users: TestUser[];

beforeAll(async () => {
  scorer = await startTestScorer();
  h = await startChatHarness({
    chat: { moderation: { url: scorer.url, timeoutMs: 500, volumeThreshold: 3, resetTimeoutMs: 60_000 } },
  });
  users = await Promise.all(['ann', 'ben', 'cat', 'dan'].map((name) => h.user(name)));
});

afterAll(async () => {
  await h?.close();
  await scorer?.stop();
});

function metricValue(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

it('keeps chat going on the local scorer when the external one is down', async () => {
  const [owner, ...others] = users as [TestUser, ...TestUser[]];
  const roomId = (await chatCalls(h.chat, owner.md).createRoom({ name: 'breaker' })).room?.roomId ?? 0;
  for (const user of others) await chatCalls(h.chat, user.md).join(roomId);
  const as = (n: number) => chatCalls(h.chat, (users[n % users.length] as TestUser).md);

  // Healthy: the service decides what the local lists do not know.
  const refused = await grpcError(as(0).send({ roomId, content: 'banana split' }));
  expect(refused.code).toBe(status.FAILED_PRECONDITION);
  expect(refused.details).toBe('message not sent: external: fruit abuse');
  expect(scorer.texts).toContain('banana split');

  const before = (await renderMetrics()).body;
  await scorer.stop();
  let sent = 0;
  for (let n = 0; n < 6; n++) {
    // The local fallback does not know "banana": the messages go through.
    const response = await as(n).send({ roomId, content: `banana number ${n}` });
    expect(response.success).toBe(true);
    sent += 1;
  }
  // Toxic text is still blocked by the fallback.
  const toxic = await grpcError(as(1).send({ roomId, content: 'f.u.c.k this' }));
  expect(toxic.details).toBe('message not sent: offensive language');

  const after = (await renderMetrics()).body;
  expect(metricValue(after, 'veza_moderation_breaker_state{state="open"}')).toBe(1);
  expect(metricValue(after, 'veza_moderation_fallback_total')).toBe(
    metricValue(before, 'veza_moderation_fallback_total') + sent + 1,
  );
  // Failures until the breaker opened (2 of 3 calls in the window), none after: it stopped calling.
  expect(metricValue(after, 'veza_moderation_external_failures_total')).toBe(
    metricValue(before, 'veza_moderation_external_failures_total') + 2,
  );
  const history = await as(2).history({ roomId });
  expect(history.messages).toHaveLength(sent);
});
