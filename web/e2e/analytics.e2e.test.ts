/**
 * The studio's analytics in Chromium, against the real platform (needs the analytics backend:
 * GET /analytics/streams/...): while live, the audience figures move as listeners join and
 * leave, with their countries (listeners behind a trusted proxy on loopback, X-Forwarded-For);
 * after the stream, the past-streams list and the stream's page with its charts. Every state is
 * audited with axe in the light and dark themes.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { audit } from './axe.js';
import { launchChromium, recordConsole, signUpAndIn, statusLines } from './chromium.js';
import { type E2ePlatform, startE2ePlatform } from './platform.js';

/** Addresses the bundled GeoIP database places (../shared/notes/environment.md). */
const GERMANY = '81.169.145.1';
const JAPAN = '133.242.0.1';
/** The studio polls every 5 s; a few rounds of slack. */
const FIGURES_MS = 30_000;

describe('analytics in the studio', () => {
  let e2e: E2ePlatform;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const consoleLines: string[] = [];

  beforeAll(async () => {
    [e2e, browser] = await Promise.all([startE2ePlatform('e2e-analytics'), launchChromium()]);
  });

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await e2e?.close();
  });

  const newPage = async (name: string, forwardedFor?: string): Promise<Page> => {
    // bypassCSP: axe is injected as an inline script (other e2e tests hold the app to its CSP).
    const context = await browser.newContext({
      bypassCSP: true,
      ...(forwardedFor ? { extraHTTPHeaders: { 'x-forwarded-for': forwardedFor } } : {}),
    });
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

  const listen = async (name: string, address: string, url: string): Promise<Page> => {
    const page = await newPage(name, address);
    await page.goto(url);
    await expect
      .poll(() => page.getByTestId('live-indicator').getAttribute('data-state'), { timeout: 20_000 })
      .toBe('live');
    return page;
  };

  it('live figures move as listeners come and go; the past stream has its charts', {
    timeout: 240_000,
  }, async () => {
    try {
      const studio = await newPage('studio');
      await studio.goto(`${e2e.baseUrl}/studio`);
      await signUpAndIn(studio, `dj-${Date.now()}@example.com`);
      await studio.getByTestId('title').fill('Counted set');
      await studio.getByTestId('go-live').click();
      await expect
        .poll(() => studio.getByTestId('studio-status').textContent(), { timeout: 20_000 })
        .toBe('You are live.');
      const listenUrl = (await studio.getByTestId('share-link').getAttribute('href')) ?? '';
      const streamId = /\/listen\/(\d+)$/.exec(listenUrl)?.[1] ?? '';
      expect(streamId).not.toBe('');

      const liveListeners = studio.getByTestId('live-listeners');
      await expect.poll(() => liveListeners.textContent(), { timeout: FIGURES_MS }).toBe('0');

      const german = await listen('listener-de', GERMANY, listenUrl);
      const japanese = await listen('listener-jp', JAPAN, listenUrl);
      await expect.poll(() => liveListeners.textContent(), { timeout: FIGURES_MS }).toBe('2');
      const countries = studio.getByTestId('live-countries').locator('li[data-country]');
      await expect
        .poll(
          async () =>
            (
              await countries.evaluateAll((items) => items.map((item) => item.getAttribute('data-country')))
            ).sort(),
          {
            timeout: FIGURES_MS,
          },
        )
        .toEqual(['DE', 'JP']);
      await expect
        .poll(() => studio.getByTestId('live-bitrate').textContent(), { timeout: FIGURES_MS })
        .toMatch(/^\d+ kbit\/s$/);
      await expect(studio.getByTestId('live-minutes').textContent()).resolves.toMatch(/min$/);
      await audit(studio, '/studio (live, audience figures)', /^Studio · Veza Live$/);

      await japanese.close();
      await expect.poll(() => liveListeners.textContent(), { timeout: FIGURES_MS }).toBe('1');
      await expect
        .poll(
          () => countries.evaluateAll((items) => items.map((item) => item.getAttribute('data-country'))),
          {
            timeout: FIGURES_MS,
          },
        )
        .toEqual(['DE']);
      await german.close();

      await studio.getByTestId('stop').click();
      await expect
        .poll(() => studio.getByTestId('studio-status').textContent(), { timeout: 10_000 })
        .toBe('Your stream has ended.');

      await studio.getByTestId('past-streams-link').click();
      const entry = studio.locator(`[data-testid="past-streams"] li[data-stream-id="${streamId}"]`);
      await entry.waitFor({ timeout: 10_000 });
      await expect(entry.textContent()).resolves.toContain('Counted set');
      await audit(studio, '/studio/streams', /^Your streams · Veza Live$/);

      await entry.getByRole('link', { name: 'Counted set' }).click();
      await studio.getByTestId('summary').waitFor({ timeout: 10_000 });
      await expect(studio.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Counted set');
      await expect(studio.locator('[data-fact="unique"]').textContent()).resolves.toBe('2');
      // The peak and the series come from the per-minute roll-ups, which the worker makes a
      // little after each minute closes: reload until they are there.
      const points = (testId: string) =>
        studio.locator(`[data-testid="${testId}"] svg`).getAttribute('data-points').then(Number);
      await expect
        .poll(
          async () => {
            if ((await studio.locator('[data-fact="peak"]').textContent()) === '2') return true;
            await studio.reload();
            await studio.getByTestId('summary').waitFor();
            return false;
          },
          { timeout: 150_000, interval: 5_000 },
        )
        .toBe(true)
        .catch(async (error: unknown) => {
          // What the server answered, to tell a page bug from a figures bug.
          const answers = await studio.evaluate(async (id) => {
            const session = JSON.parse(localStorage.getItem('veza.session') ?? '{}') as {
              accessToken?: string;
            };
            const get = (path: string) =>
              fetch(path, { headers: { authorization: `Bearer ${session.accessToken}` } }).then((r) =>
                r.text(),
              );
            return Promise.all([
              get(`/analytics/streams/${id}/summary`),
              get(`/analytics/streams/${id}/series?metrics=listeners,listening_minutes`),
              get('/analytics/streams'),
            ]);
          }, streamId);
          console.error(`the analytics routes answered:\n${answers.join('\n')}`);
          throw error;
        });
      await expect(points('chart-listeners')).resolves.toBeGreaterThan(0);
      await expect(
        studio.locator('[data-testid="chart-listeners"] svg').getAttribute('aria-label'),
      ).resolves.toContain('highest 2 listeners');
      await expect(points('chart-minutes')).resolves.toBeGreaterThan(0);
      await expect(points('chart-bitrate')).resolves.toBeGreaterThan(0);
      await expect(points('chart-rtt')).resolves.toBeGreaterThan(0);
      await expect(points('chart-countries')).resolves.toBe(2);
      await expect(
        studio.locator('[data-testid="chart-countries"] svg').getAttribute('aria-label'),
      ).resolves.toMatch(/^Listening minutes by country: (DE|JP) .*, (DE|JP) /);
      await audit(studio, '/studio/streams/:id (charts)', /^Counted set · Analytics · Veza Live$/);
    } catch (error) {
      await explain(error);
    }
  });

  it('someone else’s stream: the page says it is not theirs', { timeout: 60_000 }, async () => {
    try {
      const owner = await newPage('owner');
      await owner.goto(`${e2e.baseUrl}/studio`);
      await signUpAndIn(owner, `owner-${Date.now()}@example.com`);
      await owner.getByTestId('title').fill('Not yours');
      await owner.getByTestId('go-live').click();
      await expect
        .poll(() => owner.getByTestId('studio-status').textContent(), { timeout: 20_000 })
        .toBe('You are live.');
      const streamId = /\/listen\/(\d+)$/.exec(
        (await owner.getByTestId('share-link').getAttribute('href')) ?? '',
      )?.[1];

      const other = await newPage('other');
      await other.goto(`${e2e.baseUrl}/studio/streams/${streamId}`);
      await signUpAndIn(other, `other-${Date.now()}@example.com`);
      await expect
        .poll(() => other.getByTestId('analytics-status').textContent(), { timeout: 10_000 })
        .toBe('These figures are only for the stream’s owner.');
      await audit(other, '/studio/streams/:id (not yours)', /^Stream analytics · Veza Live$/);
      await owner.getByTestId('stop').click();
    } catch (error) {
      await explain(error);
    }
  });
});
