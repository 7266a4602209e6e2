/**
 * Entry point: picks the page from the path. Pages are separate chunks, so the directory
 * does not download mediasoup-client.
 */
import './zod-config.js';
import './styles.css';
import './chat/chat.css';
import { initAuth } from './auth.js';
import { h } from './dom.js';

interface Page {
  title: string;
  render(main: HTMLElement): Promise<void> | void;
}

async function pageFor(pathname: string): Promise<Page> {
  if (pathname === '/' || pathname === '/index.html') {
    const { directoryPage } = await import('./pages/directory.js');
    return directoryPage();
  }
  if (pathname === '/studio' || pathname === '/studio/') {
    const { studioPage } = await import('./pages/studio.js');
    return studioPage();
  }
  if (pathname === '/studio/streams' || pathname === '/studio/streams/') {
    const { pastStreamsPage } = await import('./pages/past-streams.js');
    return pastStreamsPage();
  }
  const pastStream = /^\/studio\/streams\/([^/]+)\/?$/.exec(pathname);
  if (pastStream?.[1]) {
    const { pastStreamPage } = await import('./pages/past-stream.js');
    return pastStreamPage(decodeURIComponent(pastStream[1]));
  }
  if (pathname === '/profile' || pathname === '/profile/') {
    const { profilePage } = await import('./pages/profile.js');
    return profilePage();
  }
  if (pathname === '/moderation' || pathname === '/moderation/') {
    const { moderationPage } = await import('./moderation/page.js');
    return moderationPage();
  }
  if (pathname === '/upload' || pathname === '/upload/') {
    const { uploadPage } = await import('./pages/upload.js');
    return uploadPage();
  }
  if (pathname === '/my-tracks' || pathname === '/my-tracks/') {
    const { myTracksPage } = await import('./pages/my-tracks.js');
    return myTracksPage();
  }
  const track = /^\/track\/([^/]+)\/?$/.exec(pathname);
  if (track?.[1]) {
    const { trackPage } = await import('./pages/track.js');
    return trackPage(decodeURIComponent(track[1]));
  }
  const listen = /^\/listen\/([^/]+)\/?$/.exec(pathname);
  if (listen?.[1]) {
    const { listenPage } = await import('./pages/listen.js');
    return listenPage(decodeURIComponent(listen[1]));
  }
  return {
    title: 'Page not found',
    render(main) {
      main.append(
        h('h1', {}, 'Page not found'),
        h('p', {}, 'There is nothing at this address. ', h('a', { href: '/' }, 'See who is live now.')),
      );
    },
  };
}

function markCurrentNav(pathname: string): void {
  for (const link of document.querySelectorAll<HTMLAnchorElement>('.site-header nav a')) {
    const target = new URL(link.href).pathname;
    if (target === pathname || (target !== '/' && pathname.startsWith(target)))
      link.setAttribute('aria-current', 'page');
  }
}

async function start(): Promise<void> {
  initAuth();
  const header = document.querySelector<HTMLElement>('.site-header');
  if (header) {
    // The bell follows the session (hidden when signed out); its own chunk keeps this entry small.
    void import('./notifications/bell.js').then(({ mountBell }) => mountBell(header));
  }
  const main = document.getElementById('main');
  if (!main) return;
  markCurrentNav(location.pathname);
  try {
    const page = await pageFor(location.pathname);
    document.title = `${page.title} · Veza Live`;
    await page.render(main);
  } catch (error) {
    main.append(
      h('h1', {}, 'Something went wrong'),
      h('p', { role: 'alert' }, error instanceof Error ? error.message : String(error)),
      h('p', {}, h('a', { href: location.pathname }, 'Reload the page')),
    );
  }
}

void start();
