/**
 * The studio's live analytics while on air: listeners, listening minutes, countries and delivery
 * quality, polled from GET /analytics/streams/:id/live. Polling rather than a push: one small
 * read every few seconds per broadcaster is cheap, and it needs nothing new on the socket.
 */
import { withToken } from '../auth.js';
import { errorMessage, h } from '../dom.js';
import { analyticsApi, countryName, formatMinutes, orDash } from './api.js';

/** Matches StreamAnalytics' default interval: the figures behind it change no faster. */
export const LIVE_POLL_MS = 5000;

export interface LiveFigures {
  element: HTMLElement;
  /** Stops polling; the last figures stay on screen. */
  stop(): void;
}

export function liveFigures(streamId: string, pollMs = LIVE_POLL_MS): LiveFigures {
  const listeners = h('dd', { 'data-testid': 'live-listeners' }, '—');
  const minutes = h('dd', { 'data-testid': 'live-minutes' }, '—');
  const bitrate = h('dd', { 'data-testid': 'live-bitrate' }, '—');
  const rtt = h('dd', { 'data-testid': 'live-rtt' }, '—');
  const loss = h('dd', { 'data-testid': 'live-loss' }, '—');
  const countries = h('ul', { class: 'country-list', 'data-testid': 'live-countries' });
  const status = h('p', { class: 'hint', 'data-testid': 'live-analytics-status' });
  const element = h(
    'section',
    { class: 'panel', 'aria-labelledby': 'live-analytics-heading', 'data-testid': 'live-analytics' },
    h('h2', { id: 'live-analytics-heading' }, 'Audience now'),
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Listening now'),
      listeners,
      h('dt', {}, 'Listening time so far'),
      minutes,
      h('dt', {}, 'Bitrate received'),
      bitrate,
      h('dt', {}, 'Round trip'),
      rtt,
      h('dt', {}, 'Packet loss'),
      loss,
    ),
    h('h3', {}, 'Countries'),
    countries,
    status,
  );

  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const poll = async () => {
    try {
      const figures = await withToken((token) => analyticsApi.live(token, streamId));
      if (stopped) return;
      listeners.textContent = String(figures.listeners);
      minutes.textContent = formatMinutes(figures.listeningMinutes);
      bitrate.textContent = orDash(figures.bitrateKbps, 'kbit/s');
      rtt.textContent = orDash(figures.rttMs, 'ms');
      loss.textContent = orDash(figures.lossPct, '%', 1);
      countries.replaceChildren(
        ...(figures.countries.length === 0
          ? [h('li', { class: 'hint' }, 'Nobody yet.')]
          : figures.countries.map((country) =>
              h(
                'li',
                { 'data-country': country.country },
                `${countryName(country.country)}: ${country.listeners} listening, ${formatMinutes(country.minutes)}`,
              ),
            )),
      );
      element.dataset.updatedAt = figures.at;
      status.textContent = '';
    } catch (error) {
      if (!stopped) status.textContent = `The audience figures are not available: ${errorMessage(error)}`;
    }
    if (!stopped) timer = setTimeout(() => void poll(), pollMs);
  };
  void poll();

  return {
    element,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
