/**
 * Headless Debian Chromium for the browser tests, launched with the flags measured in
 * ../shared/notes/environment.md, and the small page helpers every e2e test uses.
 */
import { type Browser, chromium, type Page } from 'playwright-core';
import { expect } from 'vitest';

/** Without the autoplay flag, decoded audio energy often stays 0 (environment.md). */
export const CHROMIUM_ARGS = [
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

export interface LaunchOptions {
  /**
   * A 16-bit PCM wav the fake microphone plays in a loop instead of Chromium's built-in beep
   * (a 20 ms beep every 500 ms, which Opus DTX turns into a few packets a second).
   */
  microphoneWav?: string;
}

export function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  const args = [...CHROMIUM_ARGS];
  if (options.microphoneWav) args.push(`--use-file-for-fake-audio-capture=${options.microphoneWav}`);
  return chromium.launch({ executablePath: '/usr/bin/chromium', args });
}

/**
 * Collects what a page reports going wrong (console errors and warnings, page errors,
 * Content-Security-Policy violations, and with `network` failed requests and 4xx/5xx
 * responses), printed when a step fails so the failure says what the page saw.
 */
export async function recordConsole(
  page: Page,
  name: string,
  lines: string[],
  options: { network?: boolean } = {},
): Promise<void> {
  // Chromium reports a Content-Security-Policy violation that the page's code caught (zod's
  // eval probe, say) only as an event, not on the console: make it a console error.
  await page.addInitScript(() =>
    document.addEventListener('securitypolicyviolation', (event) =>
      console.error(`Content-Security-Policy violation: ${event.violatedDirective} by ${event.sourceFile}`),
    ),
  );
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') lines.push(`[${name}] ${message.text()}`);
  });
  page.on('pageerror', (error) => lines.push(`[${name}] page error: ${error.message}`));
  if (!options.network) return;
  page.on('requestfailed', (request) =>
    lines.push(`[${name}] request failed: ${request.url()} ${request.failure()?.errorText}`),
  );
  page.on('response', (response) => {
    if (response.status() >= 400) lines.push(`[${name}] ${response.status()} ${response.url()}`);
  });
}

export interface InboundAudio {
  /** The consumer's SSRC: a new one after the client re-consumes (a reconnect). */
  ssrc: number;
  packetsReceived: number;
  totalAudioEnergy: number;
}

/** The listen page's inbound-rtp audio stats, through its window.__veza hook (web/src/debug.ts). */
export async function inboundAudio(page: Page): Promise<InboundAudio | null> {
  return page.evaluate(async () => {
    const stats = (await window.__veza?.stats()) ?? [];
    const inbound = stats.find((entry) => entry.type === 'inbound-rtp' && entry.kind === 'audio');
    if (!inbound) return null;
    return {
      ssrc: Number(inbound.ssrc ?? 0),
      packetsReceived: Number(inbound.packetsReceived ?? 0),
      totalAudioEnergy: Number(inbound.totalAudioEnergy ?? 0),
    };
  });
}

/** The texts of `selector` (by default every status line) on every open page, to print with a failure. */
export async function statusLines(pages: Page[], selector = '[role=status]'): Promise<string> {
  const lines = await Promise.all(
    pages.map((page) =>
      page
        .locator(selector)
        .allTextContents()
        .then((texts) => `${new URL(page.url()).pathname}: ${texts.filter(Boolean).join(' | ')}`)
        .catch(() => ''),
    ),
  );
  return lines.join('\n');
}

export const PASSWORD = 'Correct horse battery 9';

/** Creates an account with the page's sign-in form and signs in with it; resolves once the form is gone. */
export async function signUpAndIn(page: Page, email: string): Promise<void> {
  await page.getByTestId('email').fill(email);
  await page.getByTestId('password').fill(PASSWORD);
  await page.getByTestId('sign-up').click();
  await expect.poll(() => page.getByTestId('auth-status').textContent()).toContain('Account created');
  await page.getByTestId('sign-in').click();
  await page.getByTestId('sign-in').waitFor({ state: 'detached' });
}
