/**
 * Following and the profile, in Chromium against the real platform:
 * - a listener follows a broadcaster from the listen page; the broadcaster goes live again; the
 *   follower's bell shows the "went live" notification, which leads to the new stream;
 * - the profile page saves a display name, a bio and an avatar, and shows what is wrong (a name
 *   too long, a file that is not an image) next to the field, saving nothing.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, recordConsole, signUpAndIn, statusLines } from './chromium.js';
import { type E2ePlatform, startE2ePlatform } from './platform.js';

describe('follow a broadcaster, and edit your profile', () => {
  let e2e: E2ePlatform;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const consoleLines: string[] = [];

  beforeAll(async () => {
    [e2e, browser] = await Promise.all([startE2ePlatform('e2e-follow'), launchChromium()]);
  });

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await e2e?.close();
  });

  const newPage = async (name: string): Promise<Page> => {
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    await recordConsole(page, name, consoleLines);
    return page;
  };

  const explain = async (error: unknown): Promise<never> => {
    const pages = contexts.flatMap((context) => context.pages());
    console.error(
      `page status lines:\n${await statusLines(pages)}\nbrowser console:\n${consoleLines.join('\n')}`,
    );
    throw error;
  };

  const goLive = async (studio: Page, title: string): Promise<string> => {
    await studio.getByTestId('title').fill(title);
    await studio.getByTestId('go-live').click();
    await expect
      .poll(() => studio.getByTestId('studio-status').textContent(), { timeout: 20_000 })
      .toBe('You are live.');
    const href = (await studio.getByTestId('share-link').getAttribute('href')) ?? '';
    expect(href).toMatch(/\/listen\/\d+$/);
    return href;
  };

  const stopLive = async (studio: Page) => {
    await studio.getByTestId('stop').click();
    await expect
      .poll(() => studio.getByTestId('studio-status').textContent(), { timeout: 10_000 })
      .toBe('Your stream has ended.');
  };

  it('follow → the broadcaster goes live → the follower’s bell shows it', { timeout: 120_000 }, async () => {
    try {
      const studio = await newPage('broadcaster');
      await studio.goto(`${e2e.baseUrl}/studio`);
      await signUpAndIn(studio, `dj-${Date.now()}@example.com`);
      const firstUrl = await goLive(studio, 'First set');

      const fan = await newPage('fan');
      await fan.goto(`${e2e.baseUrl}/my-tracks`);
      await signUpAndIn(fan, `fan-${Date.now()}@example.com`);
      await fan.goto(firstUrl);
      const follow = fan.getByTestId('follow');
      await expect.poll(() => follow.getAttribute('data-state'), { timeout: 10_000 }).toBe('not-following');
      const owner = ((await fan.getByText(/^by /).textContent()) ?? '').replace(/^by /, '');
      expect(owner).not.toBe('');
      await expect(follow.textContent()).resolves.toBe(`Follow ${owner}`);
      await follow.click();
      await expect.poll(() => follow.getAttribute('data-state')).toBe('following');
      await expect(follow.getAttribute('aria-pressed')).resolves.toBe('true');
      await expect(fan.getByTestId('follow-status').textContent()).resolves.toBe(
        `You will be told when ${owner} goes live.`,
      );
      // The state is the server's: it survives a reload.
      await fan.reload();
      await expect.poll(() => follow.getAttribute('data-state'), { timeout: 10_000 }).toBe('following');
      // The broadcaster sees no Follow button on their own stream (a second tab of their session).
      const own = await studio.context().newPage();
      await own.goto(firstUrl);
      await own.getByTestId('live-indicator').waitFor();
      await expect(own.getByTestId('follow').isHidden()).resolves.toBe(true);
      await own.close();

      // Nothing announced yet: the follow came after this stream started.
      await stopLive(studio);
      await fan.goto(`${e2e.baseUrl}/`);
      const bell = fan.getByTestId('notifications');
      await bell.waitFor({ timeout: 10_000 });
      await expect.poll(() => bell.getAttribute('data-unread'), { timeout: 10_000 }).toBe('0');

      const secondUrl = await goLive(studio, 'Second set');
      expect(secondUrl).not.toBe(firstUrl);

      await expect.poll(() => bell.getAttribute('data-unread'), { timeout: 15_000 }).toBe('1');
      await bell.click();
      const notification = fan.getByTestId('notification').first();
      await notification.waitFor();
      await expect(notification.textContent()).resolves.toContain(`${owner} is live`);
      await expect(notification.textContent()).resolves.toContain('Second set');
      await expect(notification.locator('a').getAttribute('href')).resolves.toBe(new URL(secondUrl).pathname);
      await stopLive(studio);
    } catch (error) {
      await explain(error);
    }
  });

  it('the profile page saves name, bio and avatar, and refuses bad input next to the field', {
    timeout: 90_000,
  }, async () => {
    try {
      const png = path.join(e2e.scratchDir, 'avatar.png');
      const notImage = path.join(e2e.scratchDir, 'avatar.png.txt');
      await promisify(execFile)('ffmpeg', [
        ...['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'color=c=red:s=8x8'],
        ...['-frames:v', '1', png],
      ]);
      await writeFile(notImage, 'this is not an image');

      const page = await newPage('profile');
      await page.goto(`${e2e.baseUrl}/profile`);
      await signUpAndIn(page, `me-${Date.now()}@example.com`);
      const form = page.locator('form[aria-labelledby="profile-heading"]');
      await expect.poll(() => form.getAttribute('aria-busy'), { timeout: 10_000 }).toBe('false');
      const name = page.getByTestId('display-name');
      const status = page.getByTestId('profile-status');

      // Too long: said next to the field, focus on it, nothing sent.
      await name.fill('x'.repeat(65));
      await page.getByTestId('save-profile').click();
      await expect(page.getByTestId('display_name-error').textContent()).resolves.toBe(
        'The display name can have at most 64 characters.',
      );
      await expect(name.getAttribute('aria-invalid')).resolves.toBe('true');
      await expect(page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).resolves.toBe(
        'display-name',
      );

      // Not an image: the server's check, shown on the avatar field.
      await name.fill('DJ Nightjar');
      await page.getByTestId('avatar').setInputFiles(notImage);
      await page.getByTestId('save-profile').click();
      await expect
        .poll(() => page.getByTestId('avatar-error').textContent(), { timeout: 10_000 })
        .toMatch(/PNG, JPEG, WebP or GIF/);
      await expect(status.textContent()).resolves.toMatch(/^Not saved: /);
      await expect(name.getAttribute('aria-invalid')).resolves.toBeNull();
      await page.reload();
      await expect.poll(() => form.getAttribute('aria-busy'), { timeout: 10_000 }).toBe('false');
      await expect(name.inputValue()).resolves.toBe('');

      // All good: saved, the avatar shown.
      await name.fill('DJ Nightjar');
      await page.getByTestId('bio').fill('Late sets, mostly ambient.');
      await page.getByTestId('avatar').setInputFiles(png);
      await page.getByTestId('save-profile').click();
      await expect.poll(() => status.textContent(), { timeout: 10_000 }).toBe('Your profile is saved.');
      const avatar = page.getByTestId('avatar-image');
      await expect
        .poll(() => avatar.evaluate((image: HTMLImageElement) => image.complete && image.naturalWidth))
        .toBe(8);

      await page.reload();
      await expect.poll(() => form.getAttribute('aria-busy'), { timeout: 10_000 }).toBe('false');
      await expect(name.inputValue()).resolves.toBe('DJ Nightjar');
      await expect(page.getByTestId('bio').inputValue()).resolves.toBe('Late sets, mostly ambient.');
      await expect
        .poll(() => avatar.evaluate((image: HTMLImageElement) => image.complete && image.naturalWidth))
        .toBe(8);
    } catch (error) {
      await explain(error);
    }
  });
});
