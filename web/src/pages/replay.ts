/**
 * `/replay/:streamId`: a recorded stream played back with its chat as it happened. Each message
 * appears when the playback reaches its offset (measured from the recording's first sample), so
 * seeking moves the chat to the same point; messages the live chat took back (moderated or
 * deleted) never come. Each message's time is a link that opens the replay at that moment
 * (`?t=<seconds>`). The broadcaster publishes, unpublishes, retitles and deletes it here.
 */
import { ApiError, type ReplayInfo, restApi, type TrackInfo } from '../api.js';
import { accessToken, currentSession, withToken } from '../auth.js';
import { errorMessage, field, h, statusLine } from '../dom.js';
import { sameOriginMedia } from '../media-url.js';
import { showStatus, statusBadge } from './tracks-view.js';

const POLL_MS = 2000;

/** Milliseconds as m:ss (negative offsets, sent before the audio began, read 0:00). */
function clock(ms: number): string {
  const whole = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, '0')}`;
}

function playableUrl(track: TrackInfo): string | null {
  const renditions = track.renditions ?? [];
  for (const format of ['aac', 'opus', 'mp3']) {
    const match = renditions.find((rendition) => rendition.format === format);
    if (match) return sameOriginMedia(match.url);
  }
  return null;
}

/** The `t` query parameter, in seconds; null when absent or not a time. */
function startAt(): number | null {
  const raw = new URLSearchParams(location.search).get('t');
  if (raw === null) return null;
  const seconds = Number(raw);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}

export function replayPage(streamId: string) {
  return {
    title: 'Replay',
    async render(main: HTMLElement) {
      const heading = h('h1', {}, 'Replay');
      const trackStatus = statusBadge();
      const status = statusLine('replay-status');
      const player = h('audio', { controls: true, preload: 'auto', 'data-testid': 'replay-player' });
      const chat = h('ol', { class: 'replay-chat', 'data-testid': 'replay-chat', 'aria-live': 'polite' });
      const controls = h('form', { class: 'panel', hidden: true, 'data-testid': 'replay-controls' });
      main.append(
        heading,
        trackStatus,
        player,
        h(
          'section',
          { 'aria-labelledby': 'replay-chat-heading' },
          h('h2', { id: 'replay-chat-heading' }, 'Chat'),
          chat,
        ),
        controls,
        status.element,
      );

      let messages: { element: HTMLElement; offsetMs: number }[] = [];
      /** Shows the messages sent up to the playback position; all of them once it has ended. */
      const sync = () => {
        const duration = Number.isFinite(player.duration) ? player.duration : 0;
        const atEnd = player.ended || (duration > 0 && player.currentTime >= duration - 0.05);
        const nowMs = player.currentTime * 1000;
        for (const message of messages) message.element.hidden = !atEnd && message.offsetMs > nowMs;
        chat.dataset.shown = String(messages.filter((message) => !message.element.hidden).length);
      };
      // timeupdate fires only every 250 ms or so; while playing, every frame keeps the chat on time.
      let frame = 0;
      const tick = () => {
        sync();
        frame = player.paused ? 0 : requestAnimationFrame(tick);
      };
      player.addEventListener('play', () => {
        if (!frame) frame = requestAnimationFrame(tick);
      });
      for (const event of ['timeupdate', 'seeked', 'seeking', 'ended', 'loadedmetadata', 'pause']) {
        player.addEventListener(event, sync);
      }

      const seek = (seconds: number) => {
        player.currentTime = seconds;
        sync();
      };

      const showMessages = (replay: ReplayInfo) => {
        messages = replay.messages.map((message) => {
          const seconds = Math.max(0, message.offset_ms / 1000);
          const link = h(
            'a',
            {
              // Rounded up to the tenth: opened there, the message has been said (rounding down
              // could land just before it, and the page would not show it).
              href: `/replay/${encodeURIComponent(streamId)}?t=${(Math.ceil(seconds * 10) / 10).toFixed(1)}`,
              'data-testid': 'replay-time-link',
            },
            clock(message.offset_ms),
          );
          link.addEventListener('click', (event) => {
            event.preventDefault();
            history.replaceState(null, '', link.href);
            seek(seconds);
          });
          const element = h(
            'li',
            { 'data-testid': 'replay-message', 'data-offset-ms': message.offset_ms, hidden: true },
            link,
            ' ',
            h('strong', {}, message.username),
            ': ',
            h('span', {}, message.content),
          );
          return { element, offsetMs: message.offset_ms };
        });
        chat.replaceChildren(...messages.map((message) => message.element));
        sync();
      };

      const showControls = (replay: ReplayInfo) => {
        const session = currentSession();
        const mine =
          session?.user?.id !== undefined && String(session.user.id) === String(replay.track.owner_id);
        controls.hidden = !mine;
        if (!mine) return;
        const title = h('input', {
          type: 'text',
          maxlength: 120,
          value: replay.track.title,
          'data-testid': 'replay-title',
        });
        const save = h('button', { type: 'submit' }, 'Save title');
        const publish = h(
          'button',
          { type: 'button', 'data-testid': 'replay-publish' },
          replay.track.is_public ? 'Unpublish' : 'Publish',
        );
        const remove = h(
          'button',
          { type: 'button', class: 'danger', 'data-testid': 'replay-delete' },
          'Delete replay',
        );
        const change = async (update: { is_public?: boolean; title?: string }) => {
          try {
            const updated = await withToken((token) => restApi.updateReplay(token, streamId, update));
            heading.textContent = updated.track.title;
            showControls(updated);
            status.info(
              updated.track.is_public ? 'Published: anyone can play it.' : 'Private: only you can play it.',
            );
          } catch (error) {
            status.error(errorMessage(error));
          }
        };
        controls.onsubmit = (event) => {
          event.preventDefault();
          void change({ title: title.value });
        };
        publish.onclick = () => void change({ is_public: !replay.track.is_public });
        remove.onclick = async () => {
          if (!confirm('Delete this replay and everything recorded for it?')) return;
          try {
            await withToken((token) => restApi.deleteReplay(token, streamId));
            player.removeAttribute('src');
            chat.replaceChildren();
            controls.hidden = true;
            status.info('The replay was deleted.');
          } catch (error) {
            status.error(errorMessage(error));
          }
        };
        controls.replaceChildren(
          h('h2', {}, 'Your replay'),
          field('Title', title),
          h('div', { class: 'actions' }, save, publish, remove),
        );
      };

      let shown = false;
      const load = async (): Promise<boolean> => {
        const replay = await restApi.getReplay(await accessToken(), streamId);
        heading.textContent = replay.track.title;
        document.title = `${replay.track.title} (replay) · Veza Live`;
        showStatus(trackStatus, replay.track);
        showControls(replay);
        if (replay.track.status !== 'ready') return replay.track.status === 'failed';
        if (shown) return true;
        shown = true;
        const url = playableUrl(replay.track);
        if (url) player.src = url;
        showMessages(replay);
        const at = startAt();
        if (at !== null) {
          player.addEventListener('loadedmetadata', () => seek(at), { once: true });
        }
        return true;
      };
      const poll = async () => {
        try {
          if (await load()) return;
        } catch (error) {
          // Not recorded, no audio, deleted: the server says which, and waiting will not change it.
          if (error instanceof ApiError && error.status < 500) {
            status.error(error.message);
            return;
          }
          status.error(`Could not load the replay: ${errorMessage(error)}`);
        }
        setTimeout(() => void poll(), POLL_MS);
      };
      await poll();
    },
  };
}
