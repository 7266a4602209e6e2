/**
 * Uploading a track in a real browser, against the real platform (with its transcode worker)
 * in this process: sign up and in, upload a generated 4 s wav on /upload, watch both progress
 * bars and the status, then on the track page see the waveform drawn, play the track, seek by
 * clicking the waveform, and check how Chromium treats the HLS rendition.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, recordConsole, statusLines } from './chromium.js';
import { type E2ePlatform, startE2ePlatform } from './platform.js';

const currentTime = (page: Page) =>
  page.getByTestId('player').evaluate((audio) => (audio as HTMLAudioElement).currentTime);

describe('uploading a track in the browser', () => {
  let e2e: E2ePlatform;
  let browser: Browser;
  let context: BrowserContext;
  const consoleLines: string[] = [];
  let baseUrl: string;
  let wavPath: string;

  beforeAll(async () => {
    [e2e, browser] = await Promise.all([startE2ePlatform('e2e-upload'), launchChromium()]);
    baseUrl = e2e.baseUrl;
    wavPath = path.join(e2e.scratchDir, 'sine-4s.wav');
    await promisify(execFile)('ffmpeg', [
      ...['-hide_banner', '-loglevel', 'error', '-f', 'lavfi'],
      ...['-i', 'sine=frequency=440:duration=4', '-ar', '44100', '-ac', '2', wavPath],
    ]);
    context = await browser.newContext();
  });

  afterAll(async () => {
    await context?.close().catch(() => undefined);
    await browser?.close();
    await e2e?.close();
  });

  it('uploads, processes, draws the waveform, plays and seeks', { timeout: 120_000 }, async () => {
    try {
      const page = await context.newPage();
      await recordConsole(page, 'upload', consoleLines, { network: true });
      const response = await page.goto(`${baseUrl}/upload`);
      expect(response?.status()).toBe(200);
      await page.getByTestId('email').waitFor({ timeout: 10_000 });
      await page.getByTestId('email').fill(`uploader-${Date.now()}@example.com`);
      await page.getByTestId('password').fill('Correct horse battery 9');
      await page.getByTestId('sign-up').click();
      await expect.poll(() => page.getByTestId('auth-status').textContent()).toContain('Account created');
      await page.getByTestId('sign-in').click();
      // Live progress reaches the page once its socket watches the user's events.
      await page.locator('[data-live="watching"]').waitFor({ timeout: 10_000 });
      await page.getByTestId('upload-file').setInputFiles(wavPath);
      await page.getByTestId('upload-submit').click();

      await expect
        .poll(
          () => page.getByTestId('upload-progress').evaluate((bar) => (bar as HTMLProgressElement).value),
          {
            timeout: 20_000,
          },
        )
        .toBe(100);
      await expect
        .poll(() => page.getByTestId('track-status').getAttribute('data-status'), { timeout: 60_000 })
        .toBe('ready');
      await expect(
        page.getByTestId('processing-progress').evaluate((bar) => (bar as HTMLProgressElement).value),
      ).resolves.toBe(100);
      // The processing bar moved on track.progress notifications from the WebSocket, not only by polling.
      expect(
        Number(await page.getByTestId('processing-progress').getAttribute('data-live-events')),
      ).toBeGreaterThan(0);

      await page.getByTestId('track-link').click();
      await page.waitForURL(/\/track\/\d+$/);
      const waveform = page.getByTestId('waveform');
      await expect.poll(() => waveform.getAttribute('data-points'), { timeout: 10_000 }).toBe('1000');
      const painted = await waveform.evaluate((canvas) => {
        const c = canvas as HTMLCanvasElement;
        const pixels = c.getContext('2d')?.getImageData(0, 0, c.width, c.height).data ?? [];
        let opaque = 0;
        for (let i = 3; i < pixels.length; i += 4) if ((pixels[i] ?? 0) > 0) opaque++;
        return opaque;
      });
      expect(painted).toBeGreaterThan(1000);

      const player = page.getByTestId('player');
      await expect
        .poll(() => player.evaluate((audio) => (audio as HTMLAudioElement).readyState), { timeout: 10_000 })
        .toBeGreaterThanOrEqual(1);
      await player.evaluate((audio) => (audio as HTMLAudioElement).play());
      await expect.poll(() => currentTime(page), { timeout: 10_000 }).toBeGreaterThan(0.3);

      const duration = await player.evaluate((audio) => (audio as HTMLAudioElement).duration);
      expect(duration).toBeGreaterThan(3.5);
      expect(duration).toBeLessThan(4.5);
      const box = await waveform.boundingBox();
      if (!box) throw new Error('the waveform has no box');
      await player.evaluate((audio) => (audio as HTMLAudioElement).pause());
      await waveform.click({ position: { x: box.width * 0.75, y: box.height / 2 } });
      await expect
        .poll(() => currentTime(page), { timeout: 5_000 })
        .toSatisfy((time: number) => Math.abs(time - duration * 0.75) < 0.3);

      // HLS: does Chromium play the playlist natively in an <audio> element?
      const hls = await player.getAttribute('data-hls');
      expect(hls).toMatch(/\.m3u8$/);
      const hlsSupport = await page.evaluate(async (url) => {
        const audio = document.createElement('audio');
        const canPlay = audio.canPlayType('application/vnd.apple.mpegurl');
        audio.src = url;
        const outcome = await new Promise<string>((resolve) => {
          audio.addEventListener('timeupdate', () => audio.currentTime > 0.3 && resolve('played'));
          audio.addEventListener('error', () =>
            resolve(`error ${audio.error?.code}: ${audio.error?.message}`),
          );
          audio.play().catch((error: unknown) => resolve(`play() rejected: ${String(error)}`));
        });
        audio.pause();
        return { canPlay, outcome };
      }, hls ?? '');
      console.info(`[e2e] Chromium HLS in <audio>: ${JSON.stringify(hlsSupport)}`);
      expect(hlsSupport.outcome).toBe('played');
    } catch (error) {
      const statuses = await statusLines(context.pages());
      console.error(`page status lines:\n${statuses}\nbrowser console:\n${consoleLines.join('\n')}`);
      throw error;
    }
  });
});
