/**
 * "Accessible", checked: every page of the web app in its meaningful states, audited with
 * axe-core (WCAG 2.0/2.1 level A and AA rules, and axe's best practices) in both the light and
 * the dark colour scheme, against the real platform in this process. axe cannot judge the
 * keyboard, so the studio's main controls are also reached with Tab and must show a visible
 * focus style; and every page must have one h1 and a document title that names it.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setUserRole } from '../../control-plane/index.js';
import { audit } from './axe.js';
import { launchChromium, recordConsole, statusLines } from './chromium.js';
import { type E2ePlatform, startE2ePlatform } from './platform.js';

const PASSWORD = 'Correct horse battery 9';
/** The styles that make focus visible, for comparing an element focused and not. */
function focusStyle(page: Page, selector: string) {
  return page.locator(selector).evaluate((element) => {
    const style = getComputedStyle(element);
    return {
      outline: `${style.outlineStyle} ${style.outlineWidth} ${style.outlineColor}`,
      visible:
        (style.outlineStyle !== 'none' && Number.parseFloat(style.outlineWidth) > 0) ||
        style.boxShadow !== 'none',
      boxShadow: style.boxShadow,
      focused: document.activeElement === element,
      focusVisible: element.matches(':focus-visible'),
    };
  });
}

/**
 * Presses Tab until the control with this data-testid has focus (so it is in the tab order),
 * checks that it then shows a focus style it does not have unfocused, and leaves it focused.
 */
async function tabTo(page: Page, testId: string): Promise<void> {
  const selector = `[data-testid="${testId}"]`;
  const visited: string[] = [];
  for (let presses = 0; presses < 60; presses += 1) {
    await page.keyboard.press('Tab');
    const active = await page.evaluate(() => {
      const element = document.activeElement;
      if (!element || element === document.body) return '(body)';
      const id = element.getAttribute('data-testid');
      return id ? `[${id}]` : `${element.tagName.toLowerCase()} "${(element.textContent ?? '').trim()}"`;
    });
    visited.push(active);
    if (active !== `[${testId}]`) continue;
    const focused = await focusStyle(page, selector);
    await page.keyboard.press('Tab');
    const unfocused = await focusStyle(page, selector);
    await page.keyboard.press('Shift+Tab');
    expect(focused, `${testId} has a visible focus style`).toMatchObject({
      focused: true,
      focusVisible: true,
      visible: true,
    });
    expect(unfocused.focused).toBe(false);
    expect(`${focused.outline} ${focused.boxShadow}`, `${testId} looks different when focused`).not.toBe(
      `${unfocused.outline} ${unfocused.boxShadow}`,
    );
    await expect(page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).resolves.toBe(
      testId,
    );
    return;
  }
  throw new Error(`Tab never reached ${testId}; focus went through: ${visited.join(', ')}`);
}

describe('accessibility of the web app (axe-core: WCAG 2.1 A and AA and best practices, light and dark)', () => {
  let e2e: E2ePlatform;
  let browser: Browser;
  let baseUrl: string;
  let wavPath: string;
  const contexts: BrowserContext[] = [];
  const consoleLines: string[] = [];
  /** The broadcaster's signed-in page, and the stream it went live with. */
  let studio: Page;
  let listenUrl = '';

  beforeAll(async () => {
    [e2e, browser] = await Promise.all([startE2ePlatform('e2e-a11y'), launchChromium()]);
    baseUrl = e2e.baseUrl;
    wavPath = path.join(e2e.scratchDir, 'sine-2s.wav');
    await promisify(execFile)('ffmpeg', [
      ...['-hide_banner', '-loglevel', 'error', '-f', 'lavfi'],
      ...['-i', 'sine=frequency=440:duration=2', '-ar', '44100', '-ac', '1', wavPath],
    ]);
  });

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await e2e?.close();
  });

  const newPage = async (name: string): Promise<Page> => {
    // The app's Content-Security-Policy allows no inline script, and axe is injected as one:
    // these contexts bypass the CSP (other e2e tests check that the app keeps to it).
    const context = await browser.newContext({ bypassCSP: true, colorScheme: 'light' });
    contexts.push(context);
    const page = await context.newPage();
    await recordConsole(page, name, consoleLines);
    return page;
  };

  /** Prints what every page said and logged, then rethrows: a failed step says what the browser saw. */
  const explain = async (error: unknown): Promise<never> => {
    const pages = contexts.flatMap((context) => context.pages());
    console.error(
      `page status lines:\n${await statusLines(pages)}\nbrowser console:\n${consoleLines.join('\n')}`,
    );
    throw error;
  };

  it('the directory with nobody live, and a stream that does not exist', async () => {
    try {
      const page = await newPage('directory');
      await page.goto(`${baseUrl}/`);
      await expect
        .poll(() => page.getByTestId('directory-status').textContent(), { timeout: 10_000 })
        .toBe('Nobody is live right now.');
      await audit(page, '/ (empty)', /^Live now · Veza Live$/);

      await page.goto(`${baseUrl}/listen/999999`);
      await page.getByRole('heading', { name: 'Stream not found' }).waitFor();
      await audit(page, '/listen (no such stream)', /^Stream not found · Veza Live$/);
    } catch (error) {
      await explain(error);
    }
  });

  it('the studio signed out: the sign-in form, by keyboard', { timeout: 60_000 }, async () => {
    try {
      studio = await newPage('studio');
      await studio.goto(`${baseUrl}/studio`);
      await studio.getByTestId('email').waitFor();
      await audit(studio, '/studio (signed out)', /^Studio · Veza Live$/);

      // The first Tab shows the skip link, which moves focus to the main content.
      await studio.keyboard.press('Tab');
      const skip = studio.getByRole('link', { name: 'Skip to content' });
      await expect(skip.evaluate((link) => link === document.activeElement)).resolves.toBe(true);
      await expect(skip.evaluate((link) => link.getBoundingClientRect().top >= 0)).resolves.toBe(true);
      await studio.keyboard.press('Enter');
      await expect(studio.evaluate(() => document.activeElement?.id)).resolves.toBe('main');

      // Keyboard only: Tab to each control, type, and create the account and sign in with Enter.
      await tabTo(studio, 'email');
      await studio.keyboard.type(`dj-${Date.now()}@example.com`);
      await tabTo(studio, 'password');
      await studio.keyboard.type(PASSWORD);
      await tabTo(studio, 'sign-up');
      await studio.keyboard.press('Enter');
      await expect
        .poll(() => studio.getByTestId('auth-status').textContent(), { timeout: 10_000 })
        .toContain('Account created');
      await audit(studio, '/studio (account created)', /^Studio · Veza Live$/);
      await tabTo(studio, 'sign-in');
      await studio.keyboard.press('Enter');
      await studio.getByTestId('title').waitFor();
      // The form is replaced by the studio: focus goes to its first heading, not back to <body>.
      await expect
        .poll(() =>
          studio.evaluate(() => `${document.activeElement?.tagName} ${document.activeElement?.textContent}`),
        )
        .toBe('H2 Microphone');
    } catch (error) {
      await explain(error);
    }
  });

  it('the studio signed in: microphone open, live by keyboard, the directory, the listen page, chat and moderation', {
    timeout: 120_000,
  }, async () => {
    try {
      await expect
        .poll(() => studio.getByTestId('mic-status').textContent(), { timeout: 10_000 })
        .toMatch(/^Using /);
      await audit(studio, '/studio (signed in, microphone open)', /^Studio · Veza Live$/);

      await tabTo(studio, 'title');
      await studio.keyboard.type('Accessible airwaves');
      await tabTo(studio, 'go-live');
      await studio.keyboard.press('Enter');
      await expect
        .poll(() => studio.getByTestId('studio-status').textContent(), { timeout: 20_000 })
        .toBe('You are live.');
      listenUrl = (await studio.getByTestId('share-link').getAttribute('href')) ?? '';
      expect(listenUrl).toMatch(/\/listen\/\d+$/);
      await studio.getByTestId('chat-input').waitFor({ timeout: 10_000 });
      await audit(studio, '/studio (live, with chat)', /^Studio · Veza Live$/);

      // A moderator (the role granted as `veza set-role` does; roles travel in the session, so
      // before signing in) sees an empty queue, then writes in the chat.
      const moderator = await newPage('moderator');
      const moderatorEmail = `mod-${Date.now()}@example.com`;
      await moderator.goto(`${baseUrl}/moderation`);
      await moderator.getByTestId('email').fill(moderatorEmail);
      await moderator.getByTestId('password').fill(PASSWORD);
      await moderator.getByTestId('sign-up').click();
      await expect
        .poll(() => moderator.getByTestId('auth-status').textContent())
        .toContain('Account created');
      await setUserRole(
        { sql: e2e.platform.sql },
        { email: moderatorEmail, role: 'moderator', granted: true, actor: 'e2e' },
      );
      await moderator.getByTestId('sign-in').click();
      await expect
        .poll(() => moderator.getByTestId('moderation-status').textContent(), { timeout: 10_000 })
        .toBe('Nothing to review.');
      await audit(moderator, '/moderation (moderator, empty queue)', /^Moderation · Veza Live$/);
      await moderator.goto(listenUrl);
      await moderator.getByTestId('chat-input').fill('Hello from the moderator');
      await moderator.getByTestId('chat-send').click();
      const message = studio.getByTestId('chat-message').filter({ hasText: 'Hello from the moderator' });
      await message.waitFor({ timeout: 10_000 });
      await audit(moderator, '/listen (live, signed in, chatting)', /^Accessible airwaves · Veza Live$/);

      // The broadcaster reports it: the report form, then the moderator's queue with the item.
      await message.getByTestId('report').click();
      await studio.getByRole('button', { name: 'Send report' }).waitFor();
      await audit(studio, '/studio (reporting a chat message)', /^Studio · Veza Live$/);
      await studio.getByRole('button', { name: 'Send report' }).click();
      await expect.poll(() => message.getByTestId('report').textContent()).toBe('Reported');
      await moderator.goto(`${baseUrl}/moderation`);
      await moderator.getByTestId('moderation-item').first().waitFor({ timeout: 10_000 });
      await audit(moderator, '/moderation (moderator, one report)', /^Moderation · Veza Live$/);

      // The notification bell of a signed-in user, opened.
      await studio.getByTestId('notifications').click();
      await studio.locator('#notification-list').waitFor();
      await audit(studio, '/studio (notifications open)', /^Studio · Veza Live$/);
      await studio.keyboard.press('Escape');
      await studio.locator('#notification-list').waitFor({ state: 'hidden' });

      const visitor = await newPage('visitor');
      await visitor.goto(`${baseUrl}/`);
      await visitor.getByRole('link', { name: 'Accessible airwaves' }).waitFor({ timeout: 10_000 });
      await audit(visitor, '/ (one stream live)', /^Live now · Veza Live$/);

      await visitor.goto(listenUrl);
      await expect
        .poll(() => visitor.getByTestId('live-indicator').getAttribute('data-state'), { timeout: 20_000 })
        .toBe('live');
      await visitor.getByTestId('chat-log').waitFor();
      await audit(visitor, '/listen (live)', /^Accessible airwaves · Veza Live$/);

      // Stop, by keyboard too: the listener is told the stream ended.
      await tabTo(studio, 'stop');
      await studio.keyboard.press('Enter');
      await expect
        .poll(() => studio.getByTestId('studio-status').textContent(), { timeout: 10_000 })
        .toBe('Your stream has ended.');
      await visitor.getByTestId('ended').waitFor({ state: 'visible', timeout: 15_000 });
      await audit(visitor, '/listen (ended)', /^Accessible airwaves · Veza Live$/);
      await audit(studio, '/studio (after the stream ended)', /^Studio · Veza Live$/);

      await visitor.goto(listenUrl);
      await visitor.getByTestId('ended').waitFor({ state: 'visible', timeout: 10_000 });
      await audit(visitor, '/listen (opened after it ended)', /^Accessible airwaves · Veza Live$/);
    } catch (error) {
      await explain(error);
    }
  });

  it('upload, your tracks and a track page, signed out and in', { timeout: 120_000 }, async () => {
    try {
      const visitor = await newPage('visitor-tracks');
      await visitor.goto(`${baseUrl}/upload`);
      await visitor.getByTestId('email').waitFor();
      await audit(visitor, '/upload (signed out)', /^Upload a track · Veza Live$/);
      await visitor.goto(`${baseUrl}/my-tracks`);
      await visitor.getByTestId('email').waitFor();
      await audit(visitor, '/my-tracks (signed out)', /^Your tracks · Veza Live$/);

      // The broadcaster's session (same browser context) carries over.
      await studio.goto(`${baseUrl}/my-tracks`);
      await expect
        .poll(() => studio.getByTestId('tracks-status').textContent(), { timeout: 10_000 })
        .toBe('You have not uploaded anything yet.');
      await audit(studio, '/my-tracks (none yet)', /^Your tracks · Veza Live$/);

      await studio.goto(`${baseUrl}/upload`);
      await studio.locator('[data-live="watching"]').waitFor({ timeout: 10_000 });
      await audit(studio, '/upload (signed in)', /^Upload a track · Veza Live$/);
      await studio.getByTestId('upload-file').setInputFiles(wavPath);
      await studio.getByTestId('upload-submit').click();
      await expect
        .poll(() => studio.getByTestId('track-status').getAttribute('data-status'), { timeout: 60_000 })
        .toBe('ready');
      await audit(studio, '/upload (processed)', /^Upload a track · Veza Live$/);

      const trackUrl = (await studio.getByTestId('track-link').getAttribute('href')) ?? '';
      expect(trackUrl).toMatch(/^\/track\/\d+$/);
      await studio.goto(`${baseUrl}${trackUrl}`);
      await expect
        .poll(() => studio.getByTestId('waveform').getAttribute('data-points'), { timeout: 10_000 })
        .toMatch(/^\d+$/);
      await audit(studio, '/track (ready)', /^sine-2s · Veza Live$/);

      await studio.goto(`${baseUrl}/my-tracks`);
      await studio.locator('[data-testid="track-list"] a').first().waitFor({ timeout: 10_000 });
      await audit(studio, '/my-tracks (one track)', /^Your tracks · Veza Live$/);
    } catch (error) {
      await explain(error);
    }
  });

  it('the profile page: signed out, signed in, and refusing a name too long', async () => {
    try {
      const visitor = await newPage('visitor-profile');
      await visitor.goto(`${baseUrl}/profile`);
      await visitor.getByTestId('email').waitFor();
      await audit(visitor, '/profile (signed out)', /^Your profile · Veza Live$/);

      await studio.goto(`${baseUrl}/profile`);
      const form = studio.locator('form[aria-labelledby="profile-heading"]');
      await expect.poll(() => form.getAttribute('aria-busy'), { timeout: 10_000 }).toBe('false');
      await audit(studio, '/profile (signed in)', /^Your profile · Veza Live$/);
      await studio.getByTestId('display-name').fill('x'.repeat(65));
      await studio.getByTestId('save-profile').click();
      await studio.getByTestId('display_name-error').filter({ hasText: 'at most 64' }).waitFor();
      await audit(studio, '/profile (a field in error)', /^Your profile · Veza Live$/);
    } catch (error) {
      await explain(error);
    }
  });

  it('moderation: signed out and as a normal user', async () => {
    try {
      const visitor = await newPage('visitor-moderation');
      await visitor.goto(`${baseUrl}/moderation`);
      await visitor.getByTestId('email').waitFor();
      await audit(visitor, '/moderation (signed out)', /^Moderation · Veza Live$/);

      await studio.goto(`${baseUrl}/moderation`);
      await studio.getByText('This page is for moderators.', { exact: false }).waitFor({ timeout: 10_000 });
      await audit(studio, '/moderation (not a moderator)', /^Moderation · Veza Live$/);
    } catch (error) {
      await explain(error);
    }
  });
});
