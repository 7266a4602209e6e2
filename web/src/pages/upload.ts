/**
 * `/upload`: one file, a bar for its bytes, then a bar for the server's processing. Processing
 * progress comes live over the WebSocket (`track.progress`); GET /tracks/:id is polled as well
 * because those live events are not stored (a reconnect or a slow socket can miss some).
 */
import type { TrackProgress } from '../../../signaling/client/index.js';
import { restApi, uploadTrack } from '../api.js';
import { currentSession, onSessionChange, type Session, withToken } from '../auth.js';
import { authForm } from '../auth-form.js';
import { liveChat } from '../chat/live.js';
import { errorMessage, field, h, replaceContent, statusLine } from '../dom.js';
import { showStatus, statusBadge, trackLink } from './tracks-view.js';

const POLL_MS = 2000;
const FINAL = new Set(['ready', 'failed']);

function uploader(_session: Session): { element: HTMLElement; dispose(): void } {
  const file = h('input', {
    type: 'file',
    name: 'file',
    accept: 'audio/*',
    required: true,
    'data-testid': 'upload-file',
  });
  const title = h('input', { type: 'text', name: 'title', maxlength: 200 });
  const submit = h('button', { type: 'submit', 'data-testid': 'upload-submit' }, 'Upload');
  const uploadBar = h('progress', {
    max: 100,
    value: 0,
    'data-testid': 'upload-progress',
    'aria-label': 'Upload progress',
  });
  const processingBar = h('progress', {
    max: 100,
    value: 0,
    'data-testid': 'processing-progress',
    'aria-label': 'Processing progress',
  });
  const trackStatus = statusBadge();
  const status = statusLine('upload-status');
  const result = h('p', {});
  const form = h(
    'form',
    { class: 'upload-form' },
    field('Audio file', file, 'wav, mp3, flac or ogg'),
    field('Title', title, 'Defaults to the file name'),
    h('div', { class: 'actions' }, submit),
  );
  const element = h(
    'div',
    {},
    form,
    h('div', { class: 'field' }, h('span', {}, 'Upload'), uploadBar),
    h('div', { class: 'field' }, h('span', {}, 'Processing'), processingBar),
    trackStatus,
    status.element,
    result,
  );

  let disposed = false;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const offs: Array<() => void> = [];
  let watching: string | null = null;

  const update = (track: { status: string; progress?: number | null; failure_reason?: string | null }) => {
    showStatus(trackStatus, track);
    const percent =
      track.status === 'ready' ? 100 : Math.max(Number(processingBar.value), track.progress ?? 0);
    if (track.status === 'processing' || track.status === 'ready') processingBar.value = percent;
    processingBar.dataset.value = String(Math.round(Number(processingBar.value)));
    if (watching && FINAL.has(track.status)) {
      const id = watching;
      watching = null;
      if (timer) clearTimeout(timer);
      if (track.status === 'ready') {
        result.replaceChildren(
          h('a', { href: trackLink(id), 'data-testid': 'track-link' }, 'Open your track'),
        );
      }
    }
  };

  const poll = async (id: string) => {
    if (disposed || watching !== id) return;
    try {
      update(await withToken((token) => restApi.getTrack(token, id)));
    } catch (error) {
      status.error(`Could not read the track's status: ${errorMessage(error)}`);
    }
    if (!disposed && watching === id) timer = setTimeout(() => void poll(id), POLL_MS);
  };

  const listen = async () => {
    const live = liveChat();
    if (!live) return;
    offs.push(
      live.chat.on('trackProgress', (event: TrackProgress) => {
        if (watching === String(event.trackId)) {
          processingBar.dataset.liveEvents = String(Number(processingBar.dataset.liveEvents ?? 0) + 1);
          update({
            status: event.status,
            progress: event.progress,
            failure_reason: event.failureReason ?? null,
          });
        }
      }),
    );
    try {
      await live.ready;
      // Listing notifications is what makes the edge send this user's live events to the socket.
      await live.chat.loadNotifications();
      element.dataset.live = 'watching';
    } catch {
      // Polling still reports progress without the socket.
    }
  };
  void listen();

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const chosen = file.files?.[0];
    if (!chosen) {
      status.error('Choose an audio file first.');
      return;
    }
    submit.disabled = true;
    uploadBar.value = 0;
    processingBar.value = 0;
    result.replaceChildren();
    status.info('Uploading…');
    const name = title.value.trim() || chosen.name.replace(/\.[^.]+$/, '') || 'Untitled';
    void withToken((token) =>
      uploadTrack(token, chosen, { title: name }, (loaded, total) => {
        uploadBar.value = total > 0 ? Math.round((loaded / total) * 100) : 0;
        uploadBar.dataset.value = String(uploadBar.value);
      }),
    )
      .then((id) => {
        uploadBar.value = 100;
        uploadBar.dataset.value = '100';
        status.info('Uploaded. Processing…');
        result.replaceChildren(h('a', { href: trackLink(id) }, 'Open the track page'));
        element.dataset.trackId = id;
        watching = id;
        showStatus(trackStatus, { status: 'uploaded', progress: 0, failure_reason: null });
        void poll(id);
      })
      .catch((error: unknown) => status.error(`The upload failed: ${errorMessage(error)}`))
      .finally(() => {
        submit.disabled = false;
      });
  });

  return {
    element,
    dispose() {
      disposed = true;
      if (timer) clearTimeout(timer);
      for (const off of offs) off();
    },
  };
}

export function uploadPage() {
  return {
    title: 'Upload a track',
    render(main: HTMLElement) {
      const container = h('div', {});
      main.append(h('h1', {}, 'Upload a track'), container);
      let dispose: (() => void) | null = null;
      let shownFor: string | null = null;
      const show = (session: Session | null) => {
        const key = session ? String(session.user?.id ?? session.user?.email ?? 'signed-in') : null;
        if (key === shownFor && container.childElementCount > 0) return;
        shownFor = key;
        dispose?.();
        dispose = null;
        if (!session) {
          replaceContent(container, authForm('Sign in to upload'));
          return;
        }
        const view = uploader(session);
        dispose = view.dispose;
        replaceContent(container, view.element);
      };
      show(currentSession());
      onSessionChange(show);
    },
  };
}
