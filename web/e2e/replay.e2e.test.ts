/**
 * Recording and replay on the real platform (standalone, in this process): the media node's
 * recorder, the worker's join and transcode, the control plane's replay, the edge's routes and
 * the replay page in Chromium.
 *
 * - A Chromium broadcaster goes live for 20 s from the studio and writes two chat messages at
 *   known times; within a minute the replay is ready, as long as the broadcast (within 0.5 s), and
 *   its page, played in Chromium, shows each message within 0.5 s of its offset; seeking to the
 *   end shows both, and a message's time link opens the replay at that moment.
 * - A wrtc broadcaster sends a 440 Hz tone, drops its connection for a while and comes back, and
 *   the recorder's ffmpeg is killed meanwhile: the replay is as long as the broadcast and holds the
 *   tone where it was sent and silence of the right length where it was not (the kill's gap too).
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderMetrics } from '../../common/index.js';
import { decodeMono } from '../../common/testing/index.js';
import { installWrtcGlobals, SineSource, TestPublisher } from '../../media-server/testing/wrtc-peers.js';
import { launchChromium, PASSWORD, recordConsole, signUpAndIn, statusLines } from './chromium.js';
import { type E2ePlatform, startE2ePlatform } from './platform.js';

const BROADCAST_MS = 20_000;
const MESSAGE_AT_MS = [5_000, 12_000];

let e2e: E2ePlatform;
let browser: Browser;
const contexts: BrowserContext[] = [];
const consoleLines: string[] = [];

async function api<T>(method: string, route: string, body?: unknown, token?: string): Promise<T> {
  const response = await fetch(`${e2e.baseUrl}${route}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await response.json()) as T & { error?: { message: string } };
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${json.error?.message ?? ''}`);
  return json;
}

interface ReplayJson {
  recording_started_at: string | null;
  track: { status: string; duration: number | null; renditions: { format: string; url: string }[] };
  messages: { content: string; offset_ms: number }[];
}

/** Polls the replay (as its owner) until it is ready; fails after `timeoutMs`. */
async function readyReplay(streamId: number, token: string, timeoutMs = 60_000): Promise<ReplayJson> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const replay = await api<{ replay: ReplayJson }>(
      'GET',
      `/stream/${streamId}/replay`,
      undefined,
      token,
    ).then(
      (response) => response.replay,
      () => null,
    );
    if (replay?.track.status === 'ready') return replay;
    if (replay?.track.status === 'failed') throw new Error('the replay failed');
    if (Date.now() > deadline)
      throw new Error(`the replay of stream ${streamId} was not ready within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Recorder restarts counted by this process's media node. */
async function restarts(): Promise<number> {
  const { body } = await renderMetrics();
  return body
    .split('\n')
    .filter((line) => line.startsWith('veza_recording_restarts_total{'))
    .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
}

async function until<T>(
  check: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

beforeAll(async () => {
  installWrtcGlobals();
  [e2e, browser] = await Promise.all([startE2ePlatform('e2e-replay'), launchChromium()]);
});

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => undefined);
  await browser?.close();
  await e2e?.close();
});

describe('replays', () => {
  it('a 20 s Chromium broadcast with two messages becomes a replay whose page shows the chat on time', {
    timeout: 180_000,
  }, async () => {
    const context = await browser.newContext();
    contexts.push(context);
    const studio = await context.newPage();
    let replayPage: Page | undefined;
    try {
      await recordConsole(studio, 'studio', consoleLines);
      await studio.goto(`${e2e.baseUrl}/studio`);
      await signUpAndIn(studio, `replay-${Date.now()}@example.com`);
      await expect
        .poll(
          () => studio.getByTestId('level-meter').evaluate((meter) => (meter as HTMLMeterElement).value),
          {
            timeout: 10_000,
          },
        )
        .toBeGreaterThan(0);
      expect(await studio.getByTestId('record').isChecked()).toBe(true);
      await studio.getByTestId('title').fill('Replayable show');
      await studio.getByTestId('go-live').click();
      await expect
        .poll(() => studio.getByTestId('studio-status').textContent(), { timeout: 20_000 })
        .toBe('You are live.');
      const liveAt = Date.now();
      expect(await studio.getByTestId('record').isDisabled()).toBe(true);
      const streamId = Number((await studio.getByTestId('share-link').textContent())?.split('/').at(-1));
      await studio.getByTestId('chat-input').waitFor();

      const sentAt: number[] = [];
      for (const [index, at] of MESSAGE_AT_MS.entries()) {
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, liveAt + at - Date.now())));
        sentAt.push(Date.now());
        await studio.getByTestId('chat-input').fill(`message ${index + 1}`);
        await studio.getByTestId('chat-send').click();
        await studio
          .getByTestId('chat-message')
          .filter({ hasText: `message ${index + 1}` })
          .waitFor();
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, liveAt + BROADCAST_MS - Date.now())));
      const stoppedAt = Date.now();
      await studio.getByTestId('stop').click();
      await expect
        .poll(() => studio.getByTestId('studio-status').textContent(), { timeout: 10_000 })
        .toBe('Your stream has ended.');

      const token = await studio.evaluate(() => {
        for (const key of Object.keys(localStorage)) {
          const value = localStorage.getItem(key) ?? '';
          if (value.includes('accessToken'))
            return (JSON.parse(value) as { accessToken: string }).accessToken;
        }
        return '';
      });
      const replay = await readyReplay(streamId, token);
      const broadcastS = (stoppedAt - liveAt) / 1000;
      console.info(
        `[e2e] replay duration ${replay.track.duration?.toFixed(3)} s, broadcast ${broadcastS.toFixed(3)} s, ready ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s after the stop; offsets ${replay.messages.map((m) => m.offset_ms).join(', ')} ms, sent at ${sentAt.map((t) => t - liveAt).join(', ')} ms after live`,
      );
      expect(Math.abs((replay.track.duration ?? 0) - broadcastS)).toBeLessThan(0.5);
      expect(replay.messages.map((message) => message.content)).toEqual(['message 1', 'message 2']);
      // The offsets count from the recording's first sample, which follows "live" by a moment.
      for (const [index, message] of replay.messages.entries()) {
        expect(Math.abs(message.offset_ms - ((sentAt[index] ?? 0) - liveAt))).toBeLessThan(1000);
      }

      // The replay page, played: each message appears when the playback reaches it.
      replayPage = await context.newPage();
      await recordConsole(replayPage, 'replay', consoleLines);
      await replayPage.goto(`${e2e.baseUrl}/replay/${streamId}`);
      await replayPage.getByTestId('replay-message').first().waitFor({ state: 'attached' });
      expect(await replayPage.getByTestId('replay-message').and(replayPage.locator(':visible')).count()).toBe(
        0,
      );
      const shownAt = await replayPage.evaluate(async () => {
        const player = document.querySelector<HTMLAudioElement>('[data-testid="replay-player"]');
        const items = [...document.querySelectorAll<HTMLElement>('[data-testid="replay-message"]')];
        if (!player) throw new Error('no player');
        const seen = new Map<HTMLElement, number>();
        const observer = new MutationObserver(() => {
          for (const item of items) if (!item.hidden && !seen.has(item)) seen.set(item, player.currentTime);
        });
        for (const item of items) observer.observe(item, { attributes: true, attributeFilter: ['hidden'] });
        player.playbackRate = 2;
        await player.play();
        await new Promise<void>((resolve) =>
          player.addEventListener('ended', () => resolve(), { once: true }),
        );
        observer.disconnect();
        return items.map((item) => ({
          offsetMs: Number(item.dataset.offsetMs),
          shownAtS: seen.get(item) ?? -1,
        }));
      });
      console.info(`[e2e] replay page: ${JSON.stringify(shownAt)}`);
      for (const { offsetMs, shownAtS } of shownAt) {
        expect(shownAtS).toBeGreaterThanOrEqual(0);
        expect(Math.abs(shownAtS - offsetMs / 1000)).toBeLessThan(0.5);
      }

      // Seeking back hides what was not said yet; seeking to the end shows both.
      await replayPage.evaluate(() => {
        const player = document.querySelector<HTMLAudioElement>('[data-testid="replay-player"]');
        if (player) player.currentTime = 1;
      });
      await expect.poll(() => replayPage?.getByTestId('replay-chat').getAttribute('data-shown')).toBe('0');
      await replayPage.evaluate(() => {
        const player = document.querySelector<HTMLAudioElement>('[data-testid="replay-player"]');
        if (player) player.currentTime = player.duration;
      });
      await expect.poll(() => replayPage?.getByTestId('replay-chat').getAttribute('data-shown')).toBe('2');

      // The second message's time link opens the replay at that moment.
      const href = await replayPage.getByTestId('replay-time-link').nth(1).getAttribute('href');
      expect(href).toMatch(new RegExp(`^/replay/${streamId}\\?t=`));
      const linked = await context.newPage();
      await linked.goto(`${e2e.baseUrl}${href}`);
      await linked.getByTestId('replay-message').first().waitFor({ state: 'attached' });
      await expect
        .poll(() =>
          linked.evaluate(
            () => document.querySelector<HTMLAudioElement>('[data-testid="replay-player"]')?.currentTime,
          ),
        )
        .toBeCloseTo((replay.messages[1]?.offset_ms ?? 0) / 1000, 0);
      await expect.poll(() => linked.getByTestId('replay-chat').getAttribute('data-shown')).toBe('2');
    } catch (error) {
      console.error(
        `page status lines:\n${await statusLines(replayPage ? [studio, replayPage] : [studio])}\nbrowser console:\n${consoleLines.join('\n')}`,
      );
      throw error;
    }
  });

  it("a wrtc broadcaster's tone is in the replay where it was sent, with silence where it dropped out or its recorder died", {
    timeout: 120_000,
  }, async () => {
    const media = e2e.platform.media;
    if (!media) throw new Error('the e2e platform runs no media node in this process');
    const email = `tone-${Date.now()}@example.com`;
    await api('POST', '/auth/register', { email, password: PASSWORD, username: `tone_${Date.now()}` });
    const { access_token: token } = await api<{ access_token: string }>('POST', '/auth/login', {
      email,
      password: PASSWORD,
    });
    const started = await api<{ stream_id: number }>('POST', '/stream/start', { title: 'Tone' }, token);
    const streamId = started.stream_id;
    await media.openStream(String(streamId));
    const source = new SineSource({ frequency: 440, amplitude: 0.5 });
    source.start();
    try {
      const publisher = await TestPublisher.start(
        media,
        { streamId: String(streamId), peerId: `tone-${streamId}` },
        source,
      );
      const firstAt = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 4000));
      publisher.close(); // the broadcaster's connection drops...
      const droppedAt = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const backAt = Date.now();
      await publisher.connect(); // ...and it comes back into the same stream
      // Mid-broadcast, the recorder's ffmpeg dies: it is replaced, and the gap stays in the timeline.
      const restartsBefore = await restarts();
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const pid = await until(
        () => media.recorderPid(String(streamId)),
        'the recorder of the reconnected producer',
      );
      const killedAt = Date.now();
      process.kill(pid, 'SIGKILL');
      await until(async () => (await restarts()) > restartsBefore || undefined, 'the restart to be counted');
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const stoppedAt = Date.now();
      await api('POST', `/stream/${streamId}/stop`, {}, token);
      publisher.close();

      const replay = await readyReplay(streamId, token);
      const aac = replay.track.renditions.find((rendition) => rendition.format === 'aac');
      if (!aac) throw new Error('no aac rendition');
      const media4 = path.join(e2e.scratchDir, `tone-${streamId}.m4a`);
      const response = await fetch(new URL(new URL(aac.url).pathname, e2e.baseUrl));
      await writeFile(media4, Buffer.from(await response.arrayBuffer()));
      const decoded = await decodeMono(media4, path.join(e2e.scratchDir, `tone-${streamId}.pcm`));
      const toneAt = (atS: number) => decoded.toneAt(atS);
      const duration = decoded.durationS;
      // The recording starts with the first packet, a moment after produce() (DTLS connects then).
      const originMs = Date.parse(replay.recording_started_at ?? '');
      expect(originMs - firstAt).toBeGreaterThanOrEqual(0);
      expect(originMs - firstAt).toBeLessThan(1500);
      const gapStartS = (droppedAt - originMs) / 1000;
      const gapEndS = (backAt - originMs) / 1000;
      console.info(
        `[e2e] tone replay ${duration.toFixed(2)} s (broadcast ${((stoppedAt - originMs) / 1000).toFixed(2)} s from its first packet), gap sent ${gapStartS.toFixed(2)}-${gapEndS.toFixed(2)} s`,
      );
      expect(Math.abs(duration - (stoppedAt - originMs) / 1000)).toBeLessThan(0.5);
      // The tone before the drop, silence during it (give the reconnect a second), the tone after.
      for (let at = 0.8; at < gapStartS - 0.5; at += 0.5) expect(toneAt(at).share).toBeGreaterThan(0.8);
      for (let at = gapStartS + 0.5; at < gapEndS - 0.3; at += 0.25) expect(toneAt(at).rms).toBeLessThan(100);
      // The kill lost the segment ffmpeg had open (at most RECORDING_SEGMENT_S): silence just
      // before it, of its real length; the tone again from the replacement recorder on.
      const killS = (killedAt - originMs) / 1000;
      expect(toneAt(killS - 0.25).rms).toBeLessThan(100);
      for (let at = killS + 0.6; at < duration - 0.8; at += 0.5)
        expect(toneAt(at).share).toBeGreaterThan(0.8);
    } finally {
      source.stop();
    }
  });
});
