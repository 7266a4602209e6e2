/**
 * Chat in a real browser, against the real edge, control plane and media node in this
 * process: a broadcaster goes live from the studio, a listener opens the listen page, signs
 * in from the chat panel and writes; the message appears on the broadcaster's page. A toxic
 * message gets the "not sent" notice instead, and the broadcaster can report the listener's.
 */
import type { Browser, BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChatStack, startChatStack } from '../../app/testing/index.js';
import { buildWeb, isWebBuildStale } from '../build.js';
import { launchChromium, recordConsole, signUpAndIn, statusLines } from './chromium.js';

describe('chat in the browser', () => {
  let stack: ChatStack;
  let browser: Browser;
  let baseUrl: string;
  const contexts: BrowserContext[] = [];
  const consoleLines: string[] = [];

  beforeAll(async () => {
    if (await isWebBuildStale()) await buildWeb();
    [stack, browser] = await Promise.all([
      // Chromium offers no loopback ICE candidate: the media node listens on every interface.
      startChatStack({ env: { MEDIA_LISTEN_IP: '0.0.0.0', STREAM_GRACE_S: '30' } }),
      launchChromium(),
    ]);
    baseUrl = `http://localhost:${stack.edge.port}`;
  });

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await stack?.close();
  });

  it("shows a listener's message on the broadcaster's page; refusals, reports and the moderator's queue", {
    timeout: 90_000,
  }, async () => {
    try {
      // A moderator from the start: moderators are told about reports and flagged messages.
      const moderator = await stack.createUser(['moderator']);
      const broadcasterContext = await browser.newContext();
      const listenerContext = await browser.newContext();
      contexts.push(broadcasterContext, listenerContext);

      const studio = await broadcasterContext.newPage();
      await recordConsole(studio, 'studio', consoleLines);
      await studio.goto(`${baseUrl}/studio`);
      await signUpAndIn(studio, `host-${Date.now()}@example.com`);
      // Going live needs the (fake) microphone open: its level moves first.
      await expect
        .poll(
          () => studio.getByTestId('level-meter').evaluate((meter) => (meter as HTMLMeterElement).value),
          { timeout: 10_000 },
        )
        .toBeGreaterThan(0);
      await studio.getByTestId('title').fill('Chatty show');
      await studio.getByTestId('go-live').click();
      await expect
        .poll(() => studio.getByTestId('studio-status').textContent(), { timeout: 20_000 })
        .toBe('You are live.');
      await studio.getByTestId('chat-input').waitFor();
      // The bell is there for the signed-in broadcaster.
      await studio.getByTestId('notifications').waitFor();
      const listenUrl = await studio.getByTestId('share-link').getAttribute('href');
      expect(listenUrl).toMatch(/\/listen\/\d+$/);

      const listen = await listenerContext.newPage();
      await recordConsole(listen, 'listen', consoleLines);
      await listen.goto(listenUrl!);
      // Anonymous visitors read along and are invited to sign in to write.
      await listen.getByRole('button', { name: 'Sign in to chat' }).click();
      await signUpAndIn(listen, `fan-${Date.now()}@example.com`);
      const input = listen.getByTestId('chat-input');
      await input.waitFor();

      await input.fill('Hello from the audience!');
      await listen.getByTestId('chat-send').click();
      const onStudio = studio.getByTestId('chat-message').filter({ hasText: 'Hello from the audience!' });
      await onStudio.waitFor({ timeout: 10_000 });
      await listen.getByTestId('chat-message').filter({ hasText: 'Hello from the audience!' }).waitFor();
      await expect.poll(() => input.inputValue()).toBe('');

      // Someone else's message can be reported from the broadcaster's page.
      await onStudio.getByTestId('report').click();
      await studio.getByRole('button', { name: 'Send report' }).click();
      await expect.poll(() => onStudio.getByTestId('report').textContent()).toBe('Reported');

      // A refused message: the notice says why, and the text stays to be fixed.
      await input.fill('you are a fucking idiot');
      await listen.getByTestId('chat-send').click();
      const notice = listen.getByTestId('chat-not-sent');
      await notice.waitFor({ state: 'visible' });
      expect(await notice.textContent()).toBe('Not sent: offensive language');
      expect(await input.inputValue()).toBe('you are a fucking idiot');
      expect(await studio.getByTestId('chat-message').filter({ hasText: 'idiot' }).count()).toBe(0);

      // A moderator sees both in the queue, with the bell counting what they were told.
      const moderatorContext = await browser.newContext();
      contexts.push(moderatorContext);
      const desk = await moderatorContext.newPage();
      await recordConsole(desk, 'moderation', consoleLines);
      await desk.goto(`${baseUrl}/moderation`);
      await desk.getByTestId('email').fill(moderator.email);
      await desk.getByTestId('password').fill('Correct-Horse-42');
      await desk.getByTestId('sign-in').click();
      const bell = desk.getByTestId('notifications');
      await expect.poll(() => bell.getAttribute('data-unread'), { timeout: 10_000 }).toBe('2');
      await bell.click();
      await desk.getByTestId('notification').first().waitFor();
      const flagged = desk.getByTestId('moderation-item').filter({ hasText: 'you are a fucking idiot' });
      await flagged.waitFor();
      const reported = desk.getByTestId('moderation-item').filter({ hasText: 'Hello from the audience!' });
      await reported.getByRole('button', { name: 'Ban from room' }).click();
      // The banned listener is out of the chat at once.
      await expect
        .poll(() => listen.getByTestId('chat-status').textContent(), { timeout: 10_000 })
        .toContain('You can no longer write here');
      await expect.poll(() => input.isVisible()).toBe(false);
    } catch (error) {
      const pages = contexts.flatMap((context) => context.pages());
      const seen = await statusLines(pages, '[role=status], [role=alert], [data-testid=chat-log]');
      console.error(`pages:\n${seen}\nbrowser console:\n${consoleLines.join('\n')}`);
      throw error;
    }
  });
});
