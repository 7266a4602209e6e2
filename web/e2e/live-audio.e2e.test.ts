/**
 * The whole live-audio path in a real browser, against the real platform in this process:
 * a broadcaster signs up, signs in and goes live with Chromium's fake microphone; a second
 * browser context opens the listener page and decodes audio through the mediasoup SFU;
 * stopping the stream shows "ended" to the listener.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Platform } from '../../app/index.js';
import {
  type InboundAudio,
  inboundAudio,
  launchChromium,
  recordConsole,
  signUpAndIn,
  statusLines,
} from './chromium.js';
import { type E2ePlatform, startE2ePlatform } from './platform.js';

/**
 * A microphone that talks and pauses: a 440 Hz tone (-9 dBFS RMS) for 1.5 s, then 1.5 s of
 * digital silence; Chromium loops it. Chromium's built-in fake device only beeps 20 ms in
 * every 500 ms, which Opus DTX sends as a few packets a second: too few for mediasoup's
 * AudioLevelObserver, which ignores a producer with fewer than 10 packets in an interval.
 */
async function talkingMicrophoneWav(dir: string): Promise<string> {
  const file = path.join(dir, 'talking.wav');
  await promisify(execFile)('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-f', 'lavfi'],
    ...['-i', 'aevalsrc=0.5*sin(2*PI*440*t)*lt(mod(t\\,3)\\,1.5):s=48000:d=3'],
    ...['-c:a', 'pcm_s16le', '-y', file],
  ]);
  return file;
}

async function goLive(studio: Page, title: string): Promise<string> {
  // As a user would, wait until the page has the microphone ("Using <device>.").
  await expect
    .poll(() => studio.getByTestId('mic-status').textContent(), { timeout: 10_000 })
    .toMatch(/^Using /);
  await studio.getByTestId('title').fill(title);
  await studio.getByTestId('go-live').click();
  // Polling the status line (not just the button) makes a failure say what the page said.
  await expect
    .poll(() => studio.getByTestId('studio-status').textContent(), { timeout: 20_000 })
    .toBe('You are live.');
  const listenUrl = await studio.getByTestId('share-link').getAttribute('href');
  expect(listenUrl).toMatch(/\/listen\/\d+$/);
  return listenUrl!;
}

/** What the studio shows of the SFU's level: the meter (and what drives it) and the speaking indicator. */
function studioLevel(studio: Page) {
  return studio.evaluate(() => {
    const meter = document.querySelector<HTMLMeterElement>('[data-testid=level-meter]');
    const speaking = document.querySelector<HTMLElement>('[data-testid=speaking]');
    return {
      source: meter?.dataset.source,
      value: meter?.value ?? 0,
      speaking: speaking?.dataset.state,
    };
  });
}

describe('live audio in the browser', () => {
  let e2e: E2ePlatform;
  let platform: Platform;
  /** The fake microphone of environment.md (it beeps). */
  let browser: Browser;
  /** A fake microphone that talks and pauses (talkingMicrophoneWav). */
  let talkingBrowser: Browser;
  const contexts: BrowserContext[] = [];
  const consoleLines: string[] = [];
  let baseUrl: string;

  beforeAll(async () => {
    [e2e, browser] = await Promise.all([startE2ePlatform('e2e-live'), launchChromium()]);
    ({ platform, baseUrl } = e2e);
    talkingBrowser = await launchChromium({ microphoneWav: await talkingMicrophoneWav(e2e.scratchDir) });
  });

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await talkingBrowser?.close();
    await e2e?.close();
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

  /** Prints what every page said and logged, then rethrows: a failed step says what the browser saw. */
  const explain = async (error: unknown): Promise<never> => {
    const pages = contexts.flatMap((context) => context.pages());
    console.error(
      `page status lines:\n${await statusLines(pages)}\nbrowser console:\n${consoleLines.join('\n')}`,
    );
    throw error;
  };

  const newPage = async (from: Browser, name: string): Promise<Page> => {
    const context = await from.newContext();
    contexts.push(context);
    const page = await context.newPage();
    await recordConsole(page, name, consoleLines);
    return page;
  };

  it('goes live from the studio, is heard on the listen page, and ends there', {
    timeout: 90_000,
  }, async () => {
    const started = performance.now();
    const mark = (step: string) =>
      console.info(`[e2e] ${step} at ${Math.round(performance.now() - started)} ms`);
    try {
      const studio = await newPage(browser, 'studio');
      await studio.goto(`${baseUrl}/studio`);
      await signUpAndIn(studio, `dj-${Date.now()}@example.com`);
      mark('signed up and signed in');

      // The fake microphone beeps: the local level meter moves before going live.
      await expect
        .poll(() => studioLevel(studio), { timeout: 10_000 })
        .toSatisfy(
          (level: Awaited<ReturnType<typeof studioLevel>>) => level.source === 'local' && level.value > 0,
        );
      const listenUrl = await goLive(studio, 'Late night test transmission');
      await expect(studio.getByTestId('stop').isEnabled()).resolves.toBe(true);
      mark('live');

      const listen = await newPage(browser, 'listen');
      // The directory lists the stream; its link is the listen page.
      await listen.goto(`${baseUrl}/`);
      const entry = listen.getByRole('link', { name: 'Late night test transmission' });
      await entry.waitFor({ timeout: 10_000 });
      expect(new URL(await entry.evaluate((link) => (link as HTMLAnchorElement).href)).href).toBe(listenUrl);
      await entry.click();
      await listen.waitForURL(listenUrl);
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
      await expect.poll(() => studioLevel(studio)).toMatchObject({ source: 'local', speaking: 'idle' });
      // The pages kept to their Content-Security-Policy (no eval, no inline script).
      expect(consoleLines.filter((line) => /Content.Security.Policy/i.test(line))).toEqual([]);
    } catch (error) {
      await explain(error);
    }
  });

  it("drives the studio's meter and speaking indicator from the SFU's audio levels", {
    timeout: 90_000,
  }, async () => {
    try {
      const studio = await newPage(talkingBrowser, 'studio');
      await studio.goto(`${baseUrl}/studio`);
      await signUpAndIn(studio, `voice-${Date.now()}@example.com`);
      await goLive(studio, 'Levels check');

      // While the tone plays the SFU hears speech and the meter shows its level (-9 dBov);
      // in the pause it reports silence; then speech again: the indicator follows the source.
      type Level = Awaited<ReturnType<typeof studioLevel>>;
      const speakingLoud = (level: Level) =>
        level.source === 'server' && level.speaking === 'speaking' && level.value > 0.5;
      await expect.poll(() => studioLevel(studio), { timeout: 15_000 }).toSatisfy(speakingLoud);
      await expect
        .poll(() => studioLevel(studio), { timeout: 10_000 })
        .toSatisfy((level: Level) => level.source === 'server' && level.speaking === 'silent');
      await expect.poll(() => studioLevel(studio), { timeout: 10_000 }).toSatisfy(speakingLoud);
      await expect(studio.getByTestId('speaking').textContent()).resolves.toBe('Speaking');
    } catch (error) {
      await explain(error);
    }
  });

  it("brings the listener's audio back within 3 s after the media worker is killed, without a reload", {
    timeout: 90_000,
  }, async () => {
    try {
      const studio = await newPage(talkingBrowser, 'studio');
      await studio.goto(`${baseUrl}/studio`);
      await signUpAndIn(studio, `crash-${Date.now()}@example.com`);
      const listenUrl = await goLive(studio, 'Crash test');
      const listen = await newPage(browser, 'listen');
      await listen.goto(listenUrl);
      const heard = (audio: InboundAudio | null) =>
        audio !== null && audio.packetsReceived > 0 && audio.totalAudioEnergy > 0;
      await expect.poll(() => inboundAudio(listen), { timeout: 20_000 }).toSatisfy(heard);
      const before = (await inboundAudio(listen))!;
      // A reload would lose this mark.
      await listen.evaluate(() => Object.assign(window, { __sameDocument: true }));

      const workers = await platform.media!.getWorkers();
      expect(workers).toHaveLength(1);
      const killedAt = performance.now();
      process.kill(workers[0]!.pid, 'SIGKILL');
      // The listener's client makes a new consumer (a new SSRC) on the replacement worker and
      // decodes the broadcaster's audio again, which the studio re-published by itself.
      await expect
        .poll(() => inboundAudio(listen), { timeout: 3_000, interval: 100 })
        .toSatisfy((audio: InboundAudio | null) => heard(audio) && audio!.ssrc !== before.ssrc);
      console.info(
        `[e2e] audio back ${Math.round(performance.now() - killedAt)} ms after the worker was killed`,
      );
      await expect(listen.evaluate(() => '__sameDocument' in window)).resolves.toBe(true);
      await expect(listen.getByTestId('live-indicator').getAttribute('data-state')).resolves.toBe('live');
      await expect.poll(() => studio.evaluate(() => window.__veza?.state())).toBe('live');
      // The replacement worker's stream has its own AudioLevelObserver: the studio hears it.
      await expect
        .poll(() => studioLevel(studio), { timeout: 10_000 })
        .toMatchObject({ source: 'server', speaking: 'speaking' });
      expect((await platform.media!.getWorkers())[0]!.pid).not.toBe(workers[0]!.pid);
    } catch (error) {
      await explain(error);
    }
  });
});
