/**
 * `/listen/:streamId`: plays one stream. Listening starts on arrival (the browser may
 * still hold the audio back until a click, which the Listen button then provides).
 * Signed-in people listen as themselves; others with a listener token when the stream
 * allows anonymous listeners, and are asked to sign in otherwise.
 */
import { Listener, type SessionState, SignalingConnection } from '../../../signaling/client/index.js';
import { ApiError, restApi, type StreamInfo } from '../api.js';
import { accessToken, currentSession, onSessionChange } from '../auth.js';
import { authForm } from '../auth-form.js';
import { chatPanel } from '../chat/panel.js';
import { exposeDebug } from '../debug.js';
import { errorMessage, h, statusLine } from '../dom.js';
import { signalingBase } from '../signaling-url.js';
import { followButton } from './follow-button.js';

const VOLUME_KEY = 'veza.volume';
const QUALITY_INTERVAL_MS = 2000;

const STATE_LABELS: Record<SessionState, string> = {
  idle: 'Not playing',
  connecting: 'Connecting…',
  live: 'Live',
  waiting: 'Waiting for the broadcaster',
  reconnecting: 'Reconnecting…',
  ended: 'Ended',
  closed: 'Not playing',
  failed: 'Offline',
};

interface Sample {
  packetsReceived: number;
  packetsLost: number;
}

type Quality = 'Good' | 'Fair' | 'Poor' | 'No audio arriving';

/** Connection quality from the receiver's own stats: loss and jitter since the last sample, and the ICE round trip. */
export function assessQuality(
  previous: Sample | null,
  current: Sample,
  jitterMs: number,
  rttMs: number | null,
): { quality: Quality; detail: string } {
  const received = previous ? current.packetsReceived - previous.packetsReceived : current.packetsReceived;
  const lost = Math.max(0, previous ? current.packetsLost - previous.packetsLost : current.packetsLost);
  if (received <= 0) return { quality: 'No audio arriving', detail: 'no packets in the last seconds' };
  const lossPct = (lost / (lost + received)) * 100;
  const rtt = rttMs ?? 0;
  const quality: Quality =
    lossPct < 2 && jitterMs < 30 && rtt < 300
      ? 'Good'
      : lossPct < 8 && jitterMs < 80 && rtt < 600
        ? 'Fair'
        : 'Poor';
  const parts = [`${lossPct.toFixed(1)}% loss`, `${Math.round(jitterMs)} ms jitter`];
  if (rttMs !== null) parts.push(`${Math.round(rttMs)} ms round trip`);
  return { quality, detail: parts.join(' · ') };
}

function readStats(
  report: RTCStatsReport,
): { sample: Sample; jitterMs: number; rttMs: number | null } | null {
  let inbound: Record<string, unknown> | null = null;
  let rttMs: number | null = null;
  for (const entry of report.values() as IterableIterator<Record<string, unknown>>) {
    if (entry.type === 'inbound-rtp' && entry.kind === 'audio') inbound = entry;
    if (
      entry.type === 'candidate-pair' &&
      entry.nominated &&
      typeof entry.currentRoundTripTime === 'number'
    ) {
      rttMs = entry.currentRoundTripTime * 1000;
    }
  }
  if (!inbound) return null;
  const num = (value: unknown) => (typeof value === 'number' ? value : 0);
  return {
    sample: { packetsReceived: num(inbound.packetsReceived), packetsLost: num(inbound.packetsLost) },
    jitterMs: num(inbound.jitter) * 1000,
    rttMs,
  };
}

function parseStreamId(raw: string): number | null {
  if (!/^\d{1,15}$/.test(raw)) return null;
  const id = Number(raw);
  return id > 0 ? id : null;
}

export function listenPage(rawId: string) {
  return {
    title: 'Listen',
    async render(main: HTMLElement) {
      const streamId = parseStreamId(rawId);
      const heading = h('h1', {}, 'Listen');
      const status = statusLine('listen-status');
      main.append(heading, status.element);
      const notFound = () => {
        heading.textContent = 'Stream not found';
        document.title = 'Stream not found · Veza Live';
      };
      if (streamId === null) {
        notFound();
        status.error('This address does not name a stream.');
        return;
      }

      let info: StreamInfo | null = null;
      try {
        info = await restApi.getStream(String(streamId), await accessToken());
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) {
          notFound();
          status.error('There is no stream at this address. It may have been removed.');
          main.append(h('p', {}, h('a', { href: '/' }, 'See who is live now.')));
          return;
        }
        if (!(error instanceof ApiError && error.status === 401)) {
          status.error(`Could not load the stream: ${errorMessage(error)}`);
        }
      }
      if (info) {
        heading.textContent = info.title;
        document.title = `${info.title} · Veza Live`;
      }

      const liveIndicator = h(
        'span',
        { class: 'badge', 'data-testid': 'live-indicator', 'data-state': 'idle' },
        STATE_LABELS.idle,
      );
      const listenButton = h(
        'button',
        { type: 'button', class: 'primary', 'data-testid': 'listen' },
        'Listen',
      );
      const savedVolume = Number(localStorage.getItem(VOLUME_KEY) ?? '80');
      const volume = h('input', {
        type: 'range',
        min: 0,
        max: 100,
        step: 1,
        value: Number.isFinite(savedVolume) ? Math.min(100, Math.max(0, savedVolume)) : 80,
        id: 'volume',
        'data-testid': 'volume',
      });
      const audio = h('audio', { autoplay: true, 'data-testid': 'audio' });
      const quality = h('span', { 'data-testid': 'connection-quality' }, '—');
      const qualityAnnouncer = h('span', { class: 'visually-hidden', 'aria-live': 'polite' });
      const listenerCount = h('span', { 'data-testid': 'listeners' }, String(info?.listener_count ?? 0));
      const ended = h(
        'div',
        { class: 'ended', hidden: true, 'data-testid': 'ended' },
        h('p', {}, 'This stream has ended. Thanks for listening.'),
        h('p', {}, h('a', { href: '/' }, 'Find another live stream')),
      );
      const signIn = h('div', {});
      const player = h(
        'section',
        { class: 'panel', 'aria-label': 'Player' },
        info?.owner_username ? h('p', { class: 'hint' }, `by ${info.owner_username}`) : null,
        info?.owner_id !== undefined && info.owner_id !== null
          ? followButton(String(info.owner_id), info.owner_username ?? 'this broadcaster')
          : null,
        h('div', { class: 'actions' }, listenButton, liveIndicator),
        h('div', { class: 'field' }, h('label', { for: volume.id }, 'Volume'), volume),
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'Connection'),
          h('dd', {}, quality, qualityAnnouncer),
          h('dt', {}, 'Listeners'),
          h('dd', {}, listenerCount),
        ),
        audio,
      );
      main.append(player, ended, signIn);
      const chat = chatPanel({
        streamId,
        anonymous: Boolean(info?.is_public && info.allow_anonymous),
      });
      main.append(chat.element);

      const applyVolume = () => {
        audio.volume = Number(volume.value) / 100;
        volume.setAttribute('aria-valuetext', `${volume.value}%`);
      };
      applyVolume();
      volume.addEventListener('input', () => {
        applyVolume();
        localStorage.setItem(VOLUME_KEY, volume.value);
      });

      let session: { connection: SignalingConnection; listener: Listener } | null = null;
      let isOver = info?.status === 'ended';
      let previousSample: Sample | null = null;
      let lastQuality = '';

      const setIndicator = (state: SessionState) => {
        liveIndicator.textContent = STATE_LABELS[state];
        liveIndicator.dataset.state = state;
        liveIndicator.classList.toggle('live', state === 'live');
      };

      const showEnded = () => {
        isOver = true;
        stopListening();
        setIndicator('ended');
        ended.hidden = false;
        listenButton.disabled = true;
        quality.textContent = '—';
        status.info('This stream has ended.');
      };

      const stopListening = () => {
        const current = session;
        session = null;
        audio.srcObject = null;
        previousSample = null;
        listenButton.textContent = 'Listen';
        if (!current) return;
        void current.listener.close().finally(() => current.connection.close());
      };

      const play = async () => {
        try {
          await audio.play();
          status.clear();
          if (session) listenButton.textContent = 'Stop listening';
        } catch {
          status.info('Your browser held the audio back. Press Listen to hear the stream.');
          listenButton.textContent = 'Listen';
        }
      };

      /**
       * How the WebSocket opens: with the user's token, anonymously (no token) when the stream
       * allows anonymous listeners, or not at all (null) until the visitor signs in.
       */
      const connectionAuth = (): { token?: () => Promise<string> } | null => {
        if (currentSession()) {
          return {
            token: async () => {
              const token = await accessToken();
              if (!token) throw new Error('signed out');
              return token;
            },
          };
        }
        if (info?.is_public && info.allow_anonymous) return {};
        return null;
      };

      const startListening = async () => {
        if (session || isOver) return;
        const auth = connectionAuth();
        if (!auth) {
          status.info('Sign in to listen to this stream.');
          signIn.replaceChildren(authForm('Sign in to listen'));
          return;
        }
        signIn.replaceChildren();
        const connection = new SignalingConnection({ url: signalingBase(), ...auth });
        const listener = new Listener({ connection });
        session = { connection, listener };
        listenButton.textContent = 'Stop listening';
        setIndicator('connecting');
        const mine = () => session?.listener === listener;
        listener.on('state', (state) => {
          if (!mine()) return;
          setIndicator(state);
          if (state === 'waiting') status.info('The broadcaster is not sending audio right now. Hold on…');
          if (state === 'reconnecting') status.info('Connection lost. Reconnecting…');
        });
        listener.on('track', (track) => {
          if (!mine()) return;
          audio.srcObject = new MediaStream([track]);
          void play();
        });
        listener.on('reconnected', () => mine() && status.info('Reconnected.'));
        listener.on('paused', () => mine() && status.info('The broadcaster paused their audio.'));
        listener.on('resumed', () => mine() && status.clear());
        listener.on('listenerCount', (count) => {
          if (mine()) listenerCount.textContent = String(count);
        });
        listener.on('ended', () => mine() && showEnded());
        listener.on('error', (error) => {
          if (!mine()) return;
          stopListening();
          setIndicator('failed');
          status.error(`Playback stopped: ${errorMessage(error)}`);
        });
        status.info('Connecting…');
        try {
          await connection.connect();
          await listener.listen(streamId);
        } catch (error) {
          if (!mine() || isOver) return;
          const message = errorMessage(error);
          if (/ended/.test(message)) {
            showEnded();
            return;
          }
          stopListening();
          setIndicator('failed');
          status.error(`Could not play the stream: ${message}`);
        }
      };

      listenButton.addEventListener('click', () => {
        if (!session) void startListening();
        else if (audio.paused && audio.srcObject) void play();
        else stopListening();
      });

      const qualityTimer = setInterval(async () => {
        const consumer = session?.listener.consumer;
        if (!consumer || consumer.closed || session?.listener.state !== 'live') return;
        const stats = readStats(await consumer.getStats());
        if (!stats) return;
        const assessed = assessQuality(previousSample, stats.sample, stats.jitterMs, stats.rttMs);
        previousSample = stats.sample;
        quality.textContent = `${assessed.quality} (${assessed.detail})`;
        quality.dataset.quality = assessed.quality;
        // Announce only changes of category: the numbers move every couple of seconds.
        if (assessed.quality !== lastQuality) {
          lastQuality = assessed.quality;
          qualityAnnouncer.textContent = `Connection ${assessed.quality.toLowerCase()}`;
        }
      }, QUALITY_INTERVAL_MS);
      window.addEventListener(
        'pagehide',
        () => {
          clearInterval(qualityTimer);
          chat.dispose();
          stopListening();
        },
        { once: true },
      );

      exposeDebug({
        page: 'listen',
        state: () => session?.listener.state ?? (isOver ? 'ended' : 'idle'),
        stats: async () => session?.listener.consumer?.getStats() ?? null,
      });

      onSessionChange((signedIn) => {
        if (signedIn && !session && !isOver) void startListening();
      });

      if (isOver) showEnded();
      else void startListening();
    },
  };
}
