/** `/my-tracks`: the signed-in user's uploads, newest first. */
import { restApi, type TrackInfo } from '../api.js';
import { currentSession, onSessionChange, type Session, withToken } from '../auth.js';
import { authForm } from '../auth-form.js';
import { errorMessage, h, replaceContent, statusLine } from '../dom.js';
import { describeStatus, trackLink } from './tracks-view.js';

function item(track: TrackInfo): HTMLElement {
  const id = String(track.id);
  return h(
    'li',
    { 'data-track-id': id, 'data-status': track.status },
    h('a', { href: trackLink(id) }, track.title),
    h('div', { class: 'hint' }, describeStatus(track)),
  );
}

export function myTracksPage() {
  return {
    title: 'Your tracks',
    render(main: HTMLElement) {
      const container = h('div', {});
      main.append(
        h('h1', { id: 'tracks-heading' }, 'Your tracks'),
        h('div', { class: 'actions' }, h('a', { href: '/upload' }, 'Upload a track')),
        container,
      );
      const show = (session: Session | null) => {
        if (!session) {
          replaceContent(container, authForm('Sign in to see your tracks'));
          return;
        }
        const list = h('ul', {
          class: 'stream-list',
          'aria-labelledby': 'tracks-heading',
          'data-testid': 'track-list',
        });
        const status = statusLine('tracks-status');
        replaceContent(container, status.element, list);
        void withToken((token) => restApi.listTracks(token))
          .then((tracks) => {
            list.replaceChildren(...tracks.map(item));
            if (tracks.length === 0) status.info('You have not uploaded anything yet.');
          })
          .catch((error: unknown) => status.error(`Could not load your tracks: ${errorMessage(error)}`));
      };
      show(currentSession());
      onSessionChange(show);
    },
  };
}
