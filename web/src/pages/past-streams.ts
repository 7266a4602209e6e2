/** `/studio/streams`: the signed-in broadcaster's streams, newest first, each linking to its analytics. */
import type { PastStream } from '../../../common/contracts/browser.js';
import { analyticsApi, formatMinutes } from '../analytics/api.js';
import { withToken } from '../auth.js';
import { errorMessage, h, statusLine } from '../dom.js';
import { whenSignedIn } from '../signed-in.js';

export function formatWhen(iso: string | null): string {
  if (!iso) return 'not started';
  const date = new Date(iso);
  return date.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

function item(stream: PastStream): HTMLElement {
  return h(
    'li',
    { 'data-stream-id': stream.streamId },
    h('a', { href: `/studio/streams/${encodeURIComponent(stream.streamId)}` }, stream.title),
    h(
      'div',
      { class: 'hint' },
      `${formatWhen(stream.startedAt)}${stream.endedAt ? '' : ' · live now'} · ` +
        `peak ${stream.peakListeners} ${stream.peakListeners === 1 ? 'listener' : 'listeners'} · ` +
        `${formatMinutes(stream.listeningMinutes)} listened`,
    ),
  );
}

export function pastStreamsPage() {
  return {
    title: 'Your streams',
    render(main: HTMLElement) {
      const container = h('div', {});
      main.append(
        h('h1', { id: 'past-streams-heading' }, 'Your streams'),
        h('p', {}, h('a', { href: '/studio' }, 'Back to the studio')),
        container,
      );
      whenSignedIn(container, 'Sign in to see your streams', () => {
        const list = h('ul', {
          class: 'stream-list',
          'aria-labelledby': 'past-streams-heading',
          'data-testid': 'past-streams',
        });
        const status = statusLine('past-streams-status');
        status.info('Loading your streams…');
        void withToken((token) => analyticsApi.pastStreams(token))
          .then((streams) => {
            list.replaceChildren(...streams.map(item));
            if (streams.length === 0) status.info('You have not streamed yet.');
            else status.clear();
          })
          .catch((error: unknown) => status.error(`Could not load your streams: ${errorMessage(error)}`));
        return h('div', {}, status.element, list);
      });
    },
  };
}
