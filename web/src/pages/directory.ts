/** `/`: who is live now. */
import { restApi, type StreamInfo, streamIdOf } from '../api.js';
import { errorMessage, h, statusLine } from '../dom.js';

const REFRESH_MS = 15_000;
/** The server's default page size (GET /streams without limit). */
const FIRST_PAGE_MAX = 50;

function listenerLabel(count: number): string {
  return count === 1 ? '1 listener' : `${count} listeners`;
}

function item(stream: StreamInfo): HTMLElement {
  const id = streamIdOf(stream);
  const meta = [
    stream.owner_username ? `by ${stream.owner_username}` : null,
    stream.genre || null,
    listenerLabel(stream.listener_count ?? 0),
  ].filter((part): part is string => part !== null);
  return h(
    'li',
    { 'data-stream-id': id },
    h('a', { href: `/listen/${encodeURIComponent(id)}` }, stream.title),
    h('div', { class: 'hint' }, meta.join(' · ')),
    stream.description ? h('p', {}, stream.description) : null,
  );
}

export function directoryPage() {
  return {
    title: 'Live now',
    render(main: HTMLElement) {
      const list = h('ul', {
        class: 'stream-list',
        'aria-labelledby': 'live-heading',
        'data-testid': 'stream-list',
      });
      const status = statusLine('directory-status');
      const refreshButton = h('button', { type: 'button' }, 'Refresh');
      const moreButton = h(
        'button',
        { type: 'button', hidden: true, 'data-testid': 'more-streams' },
        'Show more',
      );
      main.append(
        h('h1', { id: 'live-heading' }, 'Live now'),
        h('div', { class: 'actions' }, refreshButton, h('a', { href: '/studio' }, 'Start your own stream')),
        status.element,
        list,
        moreButton,
      );

      let loading = false;
      let nextPageToken: string | null = null;
      /** Loads the first page (replacing the list) or, with `more`, appends the next one. */
      const load = async (announce: boolean, more = false) => {
        if (loading) return;
        loading = true;
        list.setAttribute('aria-busy', 'true');
        try {
          const page = await restApi.listStreams(more ? (nextPageToken ?? undefined) : undefined);
          const streams = page.streams.filter((stream) => (stream.status ?? 'live') === 'live');
          if (more) list.append(...streams.map(item));
          else list.replaceChildren(...streams.map(item));
          nextPageToken = page.nextPageToken;
          moreButton.hidden = nextPageToken === null;
          const shown = list.childElementCount;
          if (shown === 0) status.info('Nobody is live right now.');
          else if (announce || more) status.info(`${shown} live ${shown === 1 ? 'stream' : 'streams'}.`);
          else if (status.element.classList.contains('error')) status.clear();
        } catch (error) {
          status.error(`Could not load the live streams: ${errorMessage(error)}`);
        } finally {
          loading = false;
          list.setAttribute('aria-busy', 'false');
        }
      };
      moreButton.addEventListener('click', () => void load(false, true));
      refreshButton.addEventListener('click', () => void load(true));
      void load(false);
      // Quietly keep the list current; announcing every refresh would be noise for screen readers.
      // Not once the user has asked for more: refreshing would collapse what they opened.
      const timer = setInterval(() => {
        if (document.visibilityState === 'visible' && list.childElementCount <= FIRST_PAGE_MAX)
          void load(false);
      }, REFRESH_MS);
      window.addEventListener('pagehide', () => clearInterval(timer), { once: true });
    },
  };
}
