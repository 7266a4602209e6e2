/**
 * The whole live-audio path in a real browser, against the real platform in this process:
 * a broadcaster signs up, signs in and goes live with Chromium's fake microphone; a second
 * browser context opens the listener page and decodes audio through the mediasoup SFU;
 * stopping the stream shows "ended" to the listener.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../common/config.js';
import { createLogger } from '../../common/log.js';
import { type Platform, startPlatform } from '../../common/platform.js';
import { createTestDatabase, type TestDatabase } from '../../common/testing/databases.js';
import { buildWeb, isWebBuildStale } from '../build.js';

/** The flags measured in ../shared/notes/environment.md; without the autoplay one, decoded energy often stays 0. */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

interface InboundAudio {
  packetsReceived: number;
  totalAudioEnergy: number;
}

async function inboundAudio(page: Page): Promise<InboundAudio | null> {
  return page.evaluate(async () => {
    const stats = (await window.__veza?.stats()) ?? [];
    const inbound = stats.find((entry) => entry.type === 'inbound-rtp' && entry.kind === 'audio');
    if (!inbound) return null;
    return {
      packetsReceived: Number(inbound.packetsReceived ?? 0),
      totalAudioEnergy: Number(inbound.totalAudioEnergy ?? 0),
    };
  });
}

/** Browser console errors, printed when a step fails so the failure says what the page saw. */
function recordConsole(page: Page, name: string, lines: string[]): void {
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') lines.push(`[${name}] ${message.text()}`);
  });
  page.on('pageerror', (error) => lines.push(`[${name}] page error: ${error.message}`));
}

describe('live audio in the browser', () => {
  let database: TestDatabase;
  let dataDir: string;
  let platform: Platform;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const consoleLines: string[] = [];
  let baseUrl: string;

  beforeAll(async () => {
    if (await isWebBuildStale()) await buildWeb();
    [database, dataDir, browser] = await Promise.all([
      createTestDatabase('embedded'),
      mkdtemp(path.join(tmpdir(), 'veza-e2e-')),
      chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS }),
    ]);
    const config = loadConfig({
      VEZA_DATA_DIR: dataDir,
      DATABASE_URL: database.url,
      HTTP_PORT: '0',
      GRPC_PORT: '0',
      MEDIA_WORKERS: '1',
      LOG_LEVEL: 'warn',
    });
    platform = await startPlatform(config, createLogger({ level: 'warn', name: 'e2e' }));
    baseUrl = `http://localhost:${platform.httpPort}`;
  });

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await platform?.close();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('serves the app: pages revalidate, hashed assets are immutable and compressed', async () => {
    const pages = await Promise.all(['/', '/studio', '/listen/42'].map((page) => fetch(`${baseUrl}${page}`)));
    const bodies = await Promise.all(pages.map((response) => response.text()));
    for (const response of pages) {
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(response.headers.get('cache-control')).toBe('no-cache');
      expect(response.headers.get('content-security-policy')).toContain("script-src 'self'");
    }
    expect(new Set(bodies).size).toBe(1);
    const script = /<script type="module" src="(\/assets\/main-[A-Z2-7]{8}\.js)">/.exec(bodies[0] ?? '')?.[1];
    expect(script).toBeDefined();

    const etag = pages[0]!.headers.get('etag')!;
    const revalidated = await fetch(`${baseUrl}/`, { headers: { 'if-none-match': etag } });
    expect(revalidated.status).toBe(304);

    const asset = await fetch(`${baseUrl}${script}`, { headers: { 'accept-encoding': 'br' } });
    expect(asset.status).toBe(200);
    expect(asset.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(asset.headers.get('content-encoding')).toBe('br');
    expect(await asset.text()).toContain('import');

    const missing = await fetch(`${baseUrl}/assets/main-AAAAAAAA.js`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: 'not_found' } });
  });

  it('goes live from the studio, is heard on the listen page, and ends there', {
    timeout: 90_000,
  }, async () => {
    const started = performance.now();
    const mark = (step: string) =>
      console.info(`[e2e] ${step} at ${Math.round(performance.now() - started)} ms`);
    try {
      const broadcasterContext = await browser.newContext();
      const listenerContext = await browser.newContext();
      contexts.push(broadcasterContext, listenerContext);
      const studio = await broadcasterContext.newPage();
      recordConsole(studio, 'studio', consoleLines);

      await studio.goto(`${baseUrl}/studio`);
      const email = `dj-${Date.now()}@example.com`;
      await studio.getByTestId('email').fill(email);
      await studio.getByTestId('password').fill('Correct horse battery 9');
      await studio.getByTestId('sign-up').click();
      await expect.poll(() => studio.getByTestId('auth-status').textContent()).toContain('Account created');
      await studio.getByTestId('sign-in').click();
      await studio.getByTestId('title').waitFor();
      mark('signed up and signed in');

      // The fake microphone beeps: the local level meter moves before going live.
      await expect
        .poll(
          () => studio.getByTestId('level-meter').evaluate((meter) => (meter as HTMLMeterElement).value),
          {
            timeout: 10_000,
          },
        )
        .toBeGreaterThan(0);
      await studio.getByTestId('title').fill('Late night test transmission');
      await studio.getByTestId('go-live').click();
      // Polling the status line (not just the button) makes a failure say what the page said.
      await expect
        .poll(() => studio.getByTestId('studio-status').textContent(), { timeout: 20_000 })
        .toBe('You are live.');
      await expect(studio.getByTestId('stop').isEnabled()).resolves.toBe(true);
      const listenUrl = await studio.getByTestId('share-link').getAttribute('href');
      expect(listenUrl).toMatch(/\/listen\/\d+$/);
      mark('live');

      const listen = await listenerContext.newPage();
      recordConsole(listen, 'listen', consoleLines);
      // The directory lists the stream; its link is the listen page.
      await listen.goto(`${baseUrl}/`);
      const entry = listen.getByRole('link', { name: 'Late night test transmission' });
      await entry.waitFor({ timeout: 10_000 });
      expect(new URL(await entry.evaluate((link) => (link as HTMLAnchorElement).href)).href).toBe(listenUrl);
      await entry.click();
      await listen.waitForURL(listenUrl!);
      let baseline = 0;
      await expect
        .poll(
          async () => {
            baseline = (await inboundAudio(listen))?.packetsReceived ?? 0;
            return baseline;
          },
          { timeout: 20_000 },
        )
        .toBeGreaterThan(0);
      mark(`first packets (${baseline})`);
      await expect
        .poll(() => inboundAudio(listen), { timeout: 20_000 })
        .toSatisfy(
          (audio: InboundAudio | null) =>
            audio !== null && audio.packetsReceived > baseline && audio.totalAudioEnergy > 0,
        );
      mark('audio decoded with energy');
      await expect(listen.getByTestId('live-indicator').getAttribute('data-state')).resolves.toBe('live');
      await expect
        .poll(() => studio.getByTestId('listener-count').textContent(), { timeout: 10_000 })
        .toBe('1');

      await studio.getByTestId('stop').click();
      await listen.getByTestId('ended').waitFor({ state: 'visible', timeout: 15_000 });
      mark('ended shown to the listener');
      await expect(listen.getByTestId('live-indicator').getAttribute('data-state')).resolves.toBe('ended');
    } catch (error) {
      const pages = contexts.flatMap((context) => context.pages());
      const statuses = await Promise.all(
        pages.map((page) =>
          page
            .locator('[role=status]')
            .allTextContents()
            .then((texts) => `${new URL(page.url()).pathname}: ${texts.filter(Boolean).join(' | ')}`)
            .catch(() => ''),
        ),
      );
      console.error(
        `page status lines:\n${statuses.join('\n')}\nbrowser console:\n${consoleLines.join('\n')}`,
      );
      throw error;
    }
  });
});
