/**
 * `/studio`: sign in, pick a microphone, check the level, go live, watch the listener
 * count, stop. Before going live the level meter reads the local track (a mic check with no
 * server involved); once live, the SFU's AudioLevelObserver drives both the meter and the
 * speaking indicator, so the broadcaster sees what listeners actually get.
 *
 * mediasoup only reports a producer that sent at least 10 packets with an audio level in an
 * observer interval. Opus DTX sends almost nothing during silence, so a quiet microphone
 * reads as silence here even when the local meter shows room noise; that is the truth about
 * what is being broadcast.
 */
import { Broadcaster, SignalingConnection } from '../../../signaling/client/index.js';
import { type LiveFigures, liveFigures } from '../analytics/live-figures.js';
import { ApiError, restApi } from '../api.js';
import {
  accessToken,
  currentSession,
  displayName,
  onSessionChange,
  type Session,
  signOut,
  withToken,
} from '../auth.js';
import { authForm } from '../auth-form.js';
import { chatPanel } from '../chat/panel.js';
import { exposeDebug } from '../debug.js';
import { errorMessage, field, h, replaceContent, statusLine } from '../dom.js';
import { animateMeter, dbToUnit, type LocalLevel, localLevel } from '../level-meter.js';
import { signalingBase } from '../signaling-url.js';

interface LiveSession {
  streamId: number;
  connection: SignalingConnection;
  broadcaster: Broadcaster;
}

async function freshToken(): Promise<string> {
  const token = await accessToken();
  if (!token) throw new Error('signed out');
  return token;
}

function describeMediaError(error: unknown): string {
  if (error instanceof DOMException) {
    if (error.name === 'NotAllowedError')
      return 'Microphone access was refused. Allow it in the browser, then try again.';
    if (error.name === 'NotFoundError') return 'No microphone was found. Connect one, then try again.';
    if (error.name === 'NotReadableError') return 'The microphone is busy in another application.';
    if (error.name === 'OverconstrainedError') return 'That microphone is no longer available.';
  }
  return `The microphone could not be opened: ${errorMessage(error)}`;
}

function studio(session: Session): { element: HTMLElement; dispose(): void } {
  const microphone = h('select', { name: 'microphone', 'data-testid': 'microphone' });
  const processing = h('input', { type: 'checkbox', name: 'processing', id: 'voice-processing' });
  const retryMic = h('button', { type: 'button', hidden: true }, 'Allow microphone');
  const meter = h('meter', {
    min: 0,
    max: 1,
    low: 0.6,
    high: 0.9,
    optimum: 0.5,
    value: 0,
    id: 'level-meter',
    'data-testid': 'level-meter',
    'data-source': 'local',
    'aria-label': 'Microphone level',
  });
  // data-state: idle (not live), waiting (live, no level from the SFU yet), silent, speaking.
  const speaking = h(
    'span',
    { class: 'speaking', 'data-testid': 'speaking', 'data-state': 'idle', 'aria-live': 'polite' },
    'Not live',
  );
  const micStatus = statusLine('mic-status');

  const title = h('input', {
    type: 'text',
    name: 'title',
    maxlength: 120,
    required: true,
    autocomplete: 'off',
    'data-testid': 'title',
  });
  const goLive = h('button', { type: 'submit', class: 'primary', 'data-testid': 'go-live' }, 'Go live');
  const stop = h(
    'button',
    { type: 'button', class: 'danger', disabled: true, 'data-testid': 'stop' },
    'Stop',
  );
  const onAir = h('span', { class: 'badge', 'data-testid': 'on-air' }, 'Off air');
  const listeners = h('span', { 'data-testid': 'listener-count', 'aria-live': 'polite' }, '0');
  const shareLink = h('a', { href: '#', 'data-testid': 'share-link' }, '');
  const shareTerm = h('dt', { hidden: true }, 'Listen link');
  const shareValue = h('dd', { hidden: true }, shareLink);
  const status = statusLine('studio-status');
  const signOutButton = h('button', { type: 'button' }, 'Sign out');

  const streamForm = h(
    'form',
    { class: 'panel', 'aria-labelledby': 'stream-heading', novalidate: true },
    h('h2', { id: 'stream-heading' }, 'Your stream'),
    field('Title', title, 'What listeners see in the directory (up to 120 characters).'),
    h('div', { class: 'actions' }, goLive, stop, onAir),
    status.element,
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Listeners'),
      h('dd', {}, listeners),
      h('dt', {}, 'Heard by the server'),
      h('dd', {}, speaking),
      shareTerm,
      shareValue,
    ),
  );
  const showShare = (visible: boolean) => {
    shareTerm.hidden = !visible;
    shareValue.hidden = !visible;
  };

  // The stream's chat, shown once live (and kept after the end, to read the last messages).
  const chatSlot = h('div', {});
  let chat: { element: HTMLElement; dispose(): void } | null = null;
  const showChat = (streamId: number) => {
    chat?.dispose();
    chat = chatPanel({ streamId });
    chatSlot.replaceChildren(chat.element);
  };

  // The audience figures while live (kept after the end, showing the last ones).
  const figuresSlot = h('div', {});
  let figures: LiveFigures | null = null;
  const showFigures = (streamId: number) => {
    figures?.stop();
    figures = liveFigures(String(streamId));
    figuresSlot.replaceChildren(figures.element);
  };

  const element = h(
    'div',
    {},
    h(
      'p',
      {},
      `Signed in as ${displayName(session)}. `,
      signOutButton,
      ' ',
      h('a', { href: '/studio/streams', 'data-testid': 'past-streams-link' }, 'Your past streams'),
    ),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'mic-heading' },
      h('h2', { id: 'mic-heading' }, 'Microphone'),
      field('Input device', microphone),
      h(
        'div',
        { class: 'field' },
        h(
          'label',
          { for: processing.id },
          processing,
          ' Voice processing (echo cancellation, noise suppression, automatic gain)',
        ),
      ),
      h('div', { class: 'level-row' }, h('label', { for: meter.id }, 'Level'), meter),
      retryMic,
      micStatus.element,
    ),
    streamForm,
    figuresSlot,
    chatSlot,
  );

  let track: MediaStreamTrack | null = null;
  let level: LocalLevel | null = null;
  let live: LiveSession | null = null;
  /** The SFU's last level for our producer, 0..1; null until the first one arrives. */
  let serverLevel: number | null = null;
  let disposed = false;
  const stopMeter = animateMeter(meter, () => (live ? (serverLevel ?? 0) : (level?.value() ?? 0)));

  // Text only changes with the state (aria-live would otherwise read out every level).
  const showSpeaking = (state: 'idle' | 'waiting' | 'silent' | 'speaking', text: string) => {
    if (speaking.dataset.state === state) return;
    speaking.dataset.state = state;
    speaking.classList.toggle('active', state === 'speaking');
    speaking.textContent = text;
  };

  const setLiveUi = (isLive: boolean) => {
    goLive.disabled = isLive;
    title.disabled = isLive;
    stop.disabled = !isLive;
    if (!isLive) figures?.stop();
    onAir.textContent = isLive ? 'Live' : 'Off air';
    onAir.classList.toggle('live', isLive);
    showShare(isLive);
    meter.dataset.source = isLive ? 'server' : 'local';
    meter.setAttribute('aria-label', isLive ? 'Level heard by the server' : 'Microphone level');
    if (!isLive) {
      serverLevel = null;
      showSpeaking('idle', 'Not live');
    } else if (serverLevel === null) showSpeaking('waiting', 'Waiting for the server…');
  };

  const constraints = (deviceId: string | null): MediaTrackConstraints => {
    const voice = processing.checked;
    return {
      ...(deviceId ? { deviceId: { exact: deviceId } } : {}),
      echoCancellation: voice,
      noiseSuppression: voice,
      autoGainControl: voice,
      channelCount: { ideal: 2 },
    };
  };

  const listDevices = async () => {
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'audioinput');
    const selected = track?.getSettings().deviceId ?? microphone.value;
    microphone.replaceChildren(
      ...devices.map((device, index) =>
        h('option', { value: device.deviceId }, device.label || `Microphone ${index + 1}`),
      ),
    );
    if (selected && devices.some((d) => d.deviceId === selected)) microphone.value = selected;
  };

  /**
   * The microphone check in progress (the one the page starts on arrival, or a switch): going
   * live waits for it instead of reading a track that is not there yet.
   */
  let opening: Promise<void> | null = null;
  /** Opens (or switches) the microphone; while live the new track replaces the old one in place. */
  const openMicrophone = (deviceId: string | null): Promise<void> => {
    const run = acquireMicrophone(deviceId);
    opening = run;
    void run.finally(() => {
      if (opening === run) opening = null;
    });
    return run;
  };
  const acquireMicrophone = async (deviceId: string | null) => {
    retryMic.hidden = true;
    micStatus.info('Opening the microphone…');
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: constraints(deviceId),
        video: false,
      });
      const next = stream.getAudioTracks()[0];
      if (!next) throw new Error('the browser returned no audio track');
      if (disposed) {
        next.stop();
        return;
      }
      if (live) await live.broadcaster.replaceTrack(next);
      level?.stop();
      track?.stop();
      track = next;
      try {
        level = localLevel(next);
      } catch {
        // Without Web Audio there is no meter, but going live still works.
        level = null;
      }
      next.addEventListener('ended', () => {
        micStatus.error('The microphone stopped (unplugged or taken away). Pick another one.');
      });
      await listDevices();
      micStatus.info(`Using ${next.label || 'the default microphone'}.`);
    } catch (error) {
      micStatus.error(describeMediaError(error));
      retryMic.hidden = false;
    }
  };

  const leave = () => {
    const session = live;
    live = null;
    if (!session) return;
    void session.broadcaster.close().finally(() => session.connection.close());
  };

  const startLive = async () => {
    const name = title.value.trim();
    if (!name) {
      status.error('Give your stream a title first.');
      title.focus();
      return;
    }
    goLive.disabled = true;
    title.disabled = true;
    if (!track) {
      // Pressed right after signing in: the check started on arrival may still be running; when
      // none runs (it failed, or was never possible), try once more now.
      status.info('Waiting for the microphone…');
      await (opening ?? openMicrophone(microphone.value || null));
    }
    if (!track || disposed) {
      goLive.disabled = false;
      title.disabled = false;
      status.error('A microphone is needed to go live.');
      return;
    }
    status.info('Starting your stream…');
    let streamId: number | null = null;
    try {
      const started = await withToken((token) => restApi.startStream(token, name));
      streamId = Number(started.stream_id);
      const connection = new SignalingConnection({
        url: signalingBase(started.signaling_url),
        token: freshToken,
      });
      const broadcaster = new Broadcaster({ connection });
      live = { streamId, connection, broadcaster };
      broadcaster.on('listenerCount', (count) => {
        listeners.textContent = String(count);
      });
      broadcaster.on('level', ({ volume, speaking: isSpeaking }) => {
        if (live?.broadcaster !== broadcaster) return;
        serverLevel = dbToUnit(volume);
        if (isSpeaking) showSpeaking('speaking', 'Speaking');
        else showSpeaking('silent', 'Silence');
      });
      broadcaster.on('state', (state) => {
        if (state === 'reconnecting') {
          status.info('Connection lost. Reconnecting…');
          // The last level is stale until the SFU hears the re-published track.
          serverLevel = null;
          showSpeaking('waiting', 'Waiting for the server…');
        }
        if (state === 'live' && live?.broadcaster === broadcaster) status.info('You are live.');
      });
      broadcaster.on('reconnected', () => status.info('Reconnected. You are live again.'));
      broadcaster.on('ended', () => {
        if (live?.broadcaster !== broadcaster) return;
        leave();
        setLiveUi(false);
        status.info('Your stream has ended.');
      });
      broadcaster.on('error', (error) => {
        if (live?.broadcaster !== broadcaster) return;
        leave();
        setLiveUi(false);
        status.error(`The stream stopped: ${errorMessage(error)}`);
      });
      await connection.connect();
      await broadcaster.publish(streamId, track);
      const url = new URL(`/listen/${streamId}`, location.origin).href;
      shareLink.href = url;
      shareLink.textContent = url;
      listeners.textContent = '0';
      setLiveUi(true);
      showChat(streamId);
      showFigures(streamId);
      status.info('You are live.');
      stop.focus();
    } catch (error) {
      leave();
      // Do not leave a stream listed as live that nobody can hear.
      if (streamId !== null && Number.isFinite(streamId)) {
        const id = String(streamId);
        await withToken((token) => restApi.stopStream(token, id)).catch(() => undefined);
      }
      setLiveUi(false);
      status.error(error instanceof ApiError ? error.message : `Could not go live: ${errorMessage(error)}`);
    }
  };

  const stopLive = async () => {
    const session = live;
    if (!session) return;
    stop.disabled = true;
    status.info('Stopping…');
    try {
      // The server ends the stream first, so listeners hear about it from the source of truth.
      await withToken((token) => restApi.stopStream(token, String(session.streamId)));
      leave();
      setLiveUi(false);
      status.info('Your stream has ended.');
      goLive.focus();
    } catch (error) {
      stop.disabled = false;
      status.error(`Could not stop the stream: ${errorMessage(error)}`);
    }
  };

  streamForm.addEventListener('submit', (event) => {
    event.preventDefault();
    void startLive();
  });
  stop.addEventListener('click', () => void stopLive());
  microphone.addEventListener('change', () => void openMicrophone(microphone.value || null));
  processing.addEventListener('change', () => void openMicrophone(microphone.value || null));
  retryMic.addEventListener('click', () => void openMicrophone(microphone.value || null));
  signOutButton.addEventListener('click', async () => {
    if (live) await stopLive();
    await signOut();
  });
  const onDeviceChange = () => void listDevices().catch(() => undefined);
  navigator.mediaDevices?.addEventListener('devicechange', onDeviceChange);
  const warnBeforeLeaving = (event: BeforeUnloadEvent) => {
    if (!live) return;
    event.preventDefault();
  };
  window.addEventListener('beforeunload', warnBeforeLeaving);

  exposeDebug({
    page: 'studio',
    state: () => live?.broadcaster.state ?? 'idle',
    stats: async () => (live?.broadcaster.producer ? live.broadcaster.producer.getStats() : null),
  });

  if (typeof navigator.mediaDevices?.getUserMedia === 'function') void openMicrophone(null);
  else micStatus.error('This browser cannot capture audio (a secure https:// page is needed).');

  return {
    element,
    dispose() {
      disposed = true;
      chat?.dispose();
      figures?.stop();
      stopMeter();
      leave();
      level?.stop();
      track?.stop();
      navigator.mediaDevices?.removeEventListener('devicechange', onDeviceChange);
      window.removeEventListener('beforeunload', warnBeforeLeaving);
    },
  };
}

export function studioPage() {
  return {
    title: 'Studio',
    render(main: HTMLElement) {
      const container = h('div', {});
      main.append(h('h1', {}, 'Studio'), container);
      let disposeCurrent: (() => void) | null = null;
      let shownFor: string | null = null;
      const show = (session: Session | null) => {
        // A token refresh keeps the same account: leave a live broadcast alone.
        const key = session ? String(session.user?.id ?? session.user?.email ?? 'signed-in') : null;
        if (key === shownFor && container.childElementCount > 0) return;
        shownFor = key;
        disposeCurrent?.();
        disposeCurrent = null;
        if (!session) {
          replaceContent(container, authForm('Sign in to go live'));
          return;
        }
        const view = studio(session);
        disposeCurrent = view.dispose;
        replaceContent(container, view.element);
      };
      show(currentSession());
      onSessionChange(show);
    },
  };
}
