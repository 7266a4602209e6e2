/**
 * The notification bell in the site header: the unread count, kept live over the page's
 * chat connection, and a list that opens below it. Signed-out visitors see nothing; moderators
 * also get a "Moderation" link in the navigation.
 */
import type { UserNotification } from '../../../signaling/client/index.js';
import { svg, toElement } from '../charts/svg-tree.js';
import { isModerator, type LiveChat, onLiveChat } from '../chat/live.js';
import { errorMessage, h } from '../dom.js';

const PAGE_SIZE = 20;

function when(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? ''
    : date.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}

/** Where a notification leads, from the ids its data carries. */
function linkOf(notification: UserNotification): string | null {
  const data = notification.data ?? {};
  if (notification.type.startsWith('moderation.')) return '/moderation';
  const streamId = data.stream_id ?? data.streamId;
  if (typeof streamId === 'number' || typeof streamId === 'string') return `/listen/${streamId}`;
  return null;
}

/** An SVG bell: an emoji one shows as an empty box where no emoji font is installed. */
function bellIcon(): SVGElement {
  return toElement(
    svg(
      'svg',
      {
        viewBox: '0 0 24 24',
        width: 20,
        height: 20,
        'aria-hidden': 'true',
        focusable: 'false',
        class: 'bell-icon',
      },
      svg('path', {
        d: 'M12 3a6 6 0 0 0-6 6v4l-2 3h16l-2-3V9a6 6 0 0 0-6-6zM10 19a2 2 0 0 0 4 0',
        fill: 'none',
        stroke: 'currentColor',
        'stroke-width': 2,
        'stroke-linejoin': 'round',
      }),
    ),
  );
}

export function mountBell(header: HTMLElement): void {
  const count = h('span', { class: 'bell-count', hidden: true, 'data-testid': 'notifications-count' }, '0');
  const button = h(
    'button',
    {
      type: 'button',
      class: 'bell',
      'aria-expanded': 'false',
      'aria-controls': 'notification-list',
      'data-testid': 'notifications',
    },
    bellIcon(),
    h('span', { class: 'visually-hidden' }, 'Notifications'),
    count,
  );
  const items = h('ul', {});
  const markAll = h('button', { type: 'button' }, 'Mark all as read');
  const listStatus = h('p', { class: 'hint', role: 'status' });
  const list = h(
    'div',
    {
      class: 'bell-list',
      id: 'notification-list',
      role: 'region',
      'aria-label': 'Notifications',
      hidden: true,
    },
    h('div', { class: 'actions' }, markAll),
    listStatus,
    items,
  );
  const wrapper = h('div', { class: 'bell-wrapper', hidden: true }, button, list);
  const moderationLink = h('li', { hidden: true }, h('a', { href: '/moderation' }, 'Moderation'));
  header.querySelector('nav ul')?.append(moderationLink);
  header.append(wrapper);

  let live: LiveChat | null = null;
  let unread = 0;
  let notifications: UserNotification[] = [];
  let offs: Array<() => void> = [];

  const showCount = () => {
    count.textContent = String(unread);
    count.hidden = unread === 0;
    button.setAttribute('aria-label', unread === 0 ? 'Notifications' : `Notifications, ${unread} unread`);
    button.dataset.unread = String(unread);
  };

  const renderList = () => {
    items.replaceChildren(
      ...notifications.map((notification) => {
        const link = linkOf(notification);
        const title = link ? h('a', { href: link }, notification.title) : h('span', {}, notification.title);
        const item = h(
          'li',
          { class: notification.read ? '' : 'unread', 'data-testid': 'notification' },
          title,
          notification.body ? h('p', { class: 'hint' }, notification.body) : null,
          h('time', { class: 'hint', datetime: notification.createdAt }, when(notification.createdAt)),
        );
        item.addEventListener('click', () => void markRead([notification]));
        return item;
      }),
    );
    listStatus.textContent = notifications.length === 0 ? 'Nothing new.' : '';
  };

  const markRead = async (which: UserNotification[] | 'all') => {
    const chat = live?.chat;
    if (!chat) return;
    const targets = which === 'all' ? notifications.filter((n) => !n.read) : which.filter((n) => !n.read);
    if (targets.length === 0) return;
    try {
      await chat.markRead(
        which === 'all' ? { all: true } : { notificationIds: targets.map((n) => n.notificationId) },
      );
      for (const notification of targets) notification.read = true;
      unread = Math.max(0, unread - targets.length);
      if (which === 'all') unread = 0;
      showCount();
      renderList();
    } catch (error) {
      listStatus.textContent = `Could not mark as read: ${errorMessage(error)}`;
    }
  };

  const setOpen = (open: boolean) => {
    list.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
    if (open) renderList();
  };

  button.addEventListener('click', () => setOpen(list.hidden));
  markAll.addEventListener('click', () => void markRead('all'));
  wrapper.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !list.hidden) {
      setOpen(false);
      button.focus();
    }
  });
  document.addEventListener('click', (event) => {
    if (!list.hidden && event.target instanceof Node && !wrapper.contains(event.target)) setOpen(false);
  });

  onLiveChat((next) => {
    for (const off of offs.splice(0)) off();
    live = next;
    wrapper.hidden = next === null;
    moderationLink.hidden = !(next && isModerator());
    unread = 0;
    notifications = [];
    showCount();
    if (!next) {
      setOpen(false);
      return;
    }
    offs = [
      next.chat.on('notification', (notification) => {
        notifications = [
          notification,
          ...notifications.filter((n) => n.notificationId !== notification.notificationId),
        ];
        if (!notification.read) unread += 1;
        showCount();
        if (!list.hidden) renderList();
      }),
      // After each load (the first, and again after a reconnect) the server's count is the truth.
      next.chat.on('notifications', (page) => {
        notifications = page.notifications;
        unread = page.unreadCount;
        showCount();
        if (!list.hidden) renderList();
      }),
    ];
    next.ready
      .then(() => next.chat.loadNotifications({ pageSize: PAGE_SIZE }))
      .catch((error: unknown) => {
        listStatus.textContent = `Notifications are not available: ${errorMessage(error)}`;
      });
  });
}
