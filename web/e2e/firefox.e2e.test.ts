/**
 * The live-audio path in Firefox (Debian's firefox-esr, driven over WebDriver BiDi by
 * puppeteer-core), against the real platform in this process: a broadcaster signs up,
 * signs in and goes live with Firefox's fake microphone (a tone); a second browser context
 * opens the listener page and decodes the audio through the mediasoup SFU; stopping the
 * stream shows "ended" to the listener. The Chromium twin is live-audio.e2e.test.ts.
 *
 * Firefox runs its media graph (Web Audio, and the decoding of received WebRTC audio) only
 * while an audio output device plays: with none, as on a server, every AudioContext stays
 * "suspended" and nothing is decoded. So the test starts its own PulseAudio with a null
 * sink, private to this run, and points Firefox at it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser, type BrowserContext, type ElementHandle, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type E2ePlatform, startE2ePlatform } from './platform.js';

const FIREFOX = '/usr/bin/firefox-esr';

/**
 * On top of puppeteer's own test profile (which already turns off updates, telemetry,
 * safe browsing and most background requests): a fake microphone without a prompt,
 * autoplay everywhere, audio through PulseAudio, and no remaining background traffic.
 */
const FIREFOX_PREFS: Record<string, unknown> = {
  // getUserMedia answers at once with a generated tone instead of asking.
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  // Play audio without a user gesture, also in a tab that has never been in front.
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  'media.block-autoplay-until-in-foreground': false,
  // The private PulseAudio below, and nothing else.
  'media.cubeb.backend': 'pulse',
  // No background network traffic.
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'network.dns.disablePrefetch': true,
  'network.prefetch-next': false,
  'app.update.enabled': false,
  'app.normandy.enabled': false,
  'browser.safebrowsing.update.enabled': false,
  'browser.discovery.enabled': false,
  'datareporting.healthreport.uploadEnabled': false,
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.unified': false,
  'messaging-system.rsexperimentloader.enabled': false,
  'services.settings.server': 'http://127.0.0.1:9/remote-settings',
  'extensions.blocklist.enabled': false,
};

interface AudioServer {
  /** For PULSE_SERVER. */
  server: string;
  log: string[];
  close(): Promise<void>;
}

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A PulseAudio of our own with one null sink, in a temporary directory, gone at close(). */
async function startAudioServer(): Promise<AudioServer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'veza-e2e-pulse-'));
  const socketPath = path.join(dir, 'native');
  const log: string[] = [];
  const child: ChildProcess = spawn(
    'pulseaudio',
    [
      '--daemonize=no',
      '-n',
      '--exit-idle-time=-1',
      '--use-pid-file=no',
      '--log-target=stderr',
      '-L',
      'module-null-sink sink_name=veza_null',
      '-L',
      `module-native-protocol-unix auth-anonymous=1 socket=${socketPath}`,
    ],
    {
      // Everything PulseAudio keeps (cookie, state, runtime files) stays in dir.
      env: {
        ...process.env,
        HOME: dir,
        XDG_CONFIG_HOME: dir,
        XDG_RUNTIME_DIR: dir,
        PULSE_RUNTIME_PATH: dir,
        PULSE_STATE_PATH: dir,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => log.push(chunk.trimEnd()));
  let exited: string | null = null;
  child.once('error', (error) => {
    exited = error.message;
  });
  child.once('exit', (code, signal) => {
    exited ??= `exited with ${signal ?? code}`;
  });
  const close = async () => {
    if (exited === null) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await gone;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // vi.waitFor, not expect.poll: this runs in beforeAll, outside any test.
    await vi.waitFor(
      async () => {
        if (exited !== null) throw new Error(`pulseaudio ${exited}:\n${log.join('\n')}`);
        if (!(await canConnect(socketPath))) throw new Error(`pulseaudio is not listening on ${socketPath}`);
      },
      { timeout: 10_000, interval: 50 },
    );
  } catch (error) {
    await close();
    throw error;
  }
  return { server: `unix:${socketPath}`, log, close };
}

interface InboundAudio {
  packetsReceived: number;
  /** Undefined when the browser does not report it. */
  totalAudioEnergy: number | undefined;
  audioLevel: number | undefined;
}

async function inboundAudio(page: Page): Promise<InboundAudio | null> {
  return page.evaluate(async () => {
    const stats = (await window.__veza?.stats()) ?? [];
    const inbound = stats.find((entry) => entry.type === 'inbound-rtp' && entry.kind === 'audio');
    if (!inbound) return null;
    const optional = (value: unknown) => (typeof value === 'number' ? value : undefined);
    return {
      packetsReceived: Number(inbound.packetsReceived ?? 0),
      totalAudioEnergy: optional(inbound.totalAudioEnergy),
      audioLevel: optional(inbound.audioLevel),
    };
  });
}

const byTestId = (id: string) => `[data-testid="${id}"]`;

/**
 * The element once it is in the page. Polled here rather than with puppeteer's
 * waitForSelector, whose in-page poller is built with `new Function`, which the app's
 * Content-Security-Policy (script-src 'self') rightly refuses in Firefox.
 */
async function find(page: Page, selector: string, timeout = 5_000): Promise<ElementHandle<Element>> {
  let found: ElementHandle<Element> | null = null;
  await expect
    .poll(
      async () => {
        found = await page.$(selector);
        return found !== null;
      },
      { timeout, message: `${selector} on ${page.url()}` },
    )
    .toBe(true);
  return found!;
}

async function fill(page: Page, id: string, text: string): Promise<void> {
  const input = await find(page, byTestId(id));
  await input.click();
  await input.type(text);
}

async function click(page: Page, id: string): Promise<void> {
  await (await find(page, byTestId(id))).click();
}

function textOf(page: Page, id: string): Promise<string | null> {
  return page.$eval(byTestId(id), (element) => element.textContent).catch(() => null);
}

function attributeOf(page: Page, id: string, name: string): Promise<string | null> {
  return page.$eval(byTestId(id), (element, attribute) => element.getAttribute(attribute), name);
}

/** Browser console errors, printed when a step fails so the failure says what the page saw. */
function recordConsole(page: Page, name: string, lines: string[]): void {
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warn') lines.push(`[${name}] ${message.text()}`);
  });
  page.on('pageerror', (error) =>
    lines.push(`[${name}] page error: ${error instanceof Error ? error.message : String(error)}`),
  );
}

describe('live audio in Firefox', () => {
  let e2e: E2ePlatform;
  let audio: AudioServer;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const consoleLines: string[] = [];
  let baseUrl: string;

  beforeAll(async () => {
    // Each resource is assigned as soon as it exists, so afterAll closes whatever started.
    const launchFirefox = async () => {
      audio = await startAudioServer();
      browser = await puppeteer.launch({
        browser: 'firefox',
        protocol: 'webDriverBiDi',
        executablePath: FIREFOX,
        headless: true,
        env: { ...process.env, PULSE_SERVER: audio.server },
        extraPrefsFirefox: FIREFOX_PREFS,
      });
    };
    const startPlatform = async () => {
      e2e = await startE2ePlatform('e2e-firefox');
    };
    await Promise.all([startPlatform(), launchFirefox()]);
    baseUrl = e2e.baseUrl;
  });

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await audio?.close();
    await e2e?.close();
  });

  it('goes live from the studio, is heard on the listen page, and ends there', {
    timeout: 90_000,
  }, async () => {
    const started = performance.now();
    const mark = (step: string) =>
      console.info(`[e2e firefox] ${step} at ${Math.round(performance.now() - started)} ms`);
    try {
      const broadcasterContext = await browser.createBrowserContext();
      const listenerContext = await browser.createBrowserContext();
      contexts.push(broadcasterContext, listenerContext);
      const studio = await broadcasterContext.newPage();
      recordConsole(studio, 'studio', consoleLines);

      await studio.goto(`${baseUrl}/studio`);
      await fill(studio, 'email', `dj-${Date.now()}@example.com`);
      await fill(studio, 'password', 'Correct horse battery 9');
      await click(studio, 'sign-up');
      await expect.poll(() => textOf(studio, 'auth-status')).toContain('Account created');
      await click(studio, 'sign-in');
      await find(studio, byTestId('title'));
      mark('signed up and signed in');

      // The fake microphone plays a tone: the local level meter moves before going live.
      await expect
        .poll(() => studio.$eval(byTestId('level-meter'), (meter) => (meter as HTMLMeterElement).value), {
          timeout: 10_000,
        })
        .toBeGreaterThan(0);
      await fill(studio, 'title', 'Late night test transmission');
      await click(studio, 'go-live');
      // Polling the status line (not just the button) makes a failure say what the page said.
      await expect.poll(() => textOf(studio, 'studio-status'), { timeout: 20_000 }).toBe('You are live.');
      await expect(
        studio.$eval(byTestId('stop'), (button) => !(button as HTMLButtonElement).disabled),
      ).resolves.toBe(true);
      const listenPath = await attributeOf(studio, 'share-link', 'href');
      expect(listenPath).toMatch(/\/listen\/\d+$/);
      const listenUrl = new URL(listenPath!, baseUrl).href;
      mark('live');
      // Firefox's fake microphone plays a steady tone: the SFU's AudioLevelObserver hears
      // speech, and the studio's meter and speaking indicator follow it.
      await expect
        .poll(() => attributeOf(studio, 'speaking', 'data-state'), { timeout: 15_000 })
        .toBe('speaking');
      await expect(attributeOf(studio, 'level-meter', 'data-source')).resolves.toBe('server');
      mark('the SFU hears the broadcaster');

      const listen = await listenerContext.newPage();
      recordConsole(listen, 'listen', consoleLines);
      // The directory lists the stream; its link is the listen page.
      await listen.goto(`${baseUrl}/`);
      const entry = await find(
        listen,
        '::-p-xpath(//a[normalize-space(.)="Late night test transmission"])',
        10_000,
      );
      expect(await entry.evaluate((link) => (link as HTMLAnchorElement).href)).toBe(listenUrl);
      await entry.click();
      await expect.poll(() => listen.evaluate(() => location.href)).toBe(listenUrl);
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
      let last: InboundAudio | null = null;
      await expect
        .poll(
          async () => {
            last = await inboundAudio(listen);
            return last;
          },
          { timeout: 20_000 },
        )
        .toSatisfy(
          (audio: InboundAudio | null) =>
            audio !== null &&
            audio.packetsReceived > baseline &&
            audio.totalAudioEnergy !== undefined &&
            audio.totalAudioEnergy > 0,
        );
      mark(`audio decoded with energy (${JSON.stringify(last)})`);
      await expect(attributeOf(listen, 'live-indicator', 'data-state')).resolves.toBe('live');
      await expect.poll(() => textOf(studio, 'listener-count'), { timeout: 10_000 }).toBe('1');

      await click(studio, 'stop');
      await expect
        .poll(() => listen.$eval(byTestId('ended'), (ended) => !(ended as HTMLElement).hidden), {
          timeout: 15_000,
        })
        .toBe(true);
      mark('ended shown to the listener');
      await expect(attributeOf(listen, 'live-indicator', 'data-state')).resolves.toBe('ended');
    } catch (error) {
      const pages = (await Promise.all(contexts.map((context) => context.pages()))).flat();
      const statuses = await Promise.all(
        pages.map((page) =>
          page
            .$$eval('[role=status]', (elements) => elements.map((element) => element.textContent ?? ''))
            .then((texts) => `${new URL(page.url()).pathname}: ${texts.filter(Boolean).join(' | ')}`)
            .catch(() => ''),
        ),
      );
      console.error(
        `page status lines:\n${statuses.join('\n')}\nbrowser console:\n${consoleLines.join('\n')}` +
          `\npulseaudio:\n${audio?.log.join('\n') ?? ''}`,
      );
      throw error;
    }
  });
});
