/**
 * `/moderation`: the queue of reported and automatically flagged items, with the moderator
 * actions (delete the message, mute or ban its author in the room, end the stream) and the
 * resolutions (approve a flagged message so it is delivered, dismiss, mark handled).
 *
 * Everything goes through the page's chat connection; the control plane checks the role and
 * audits each action, so this page only decides what to show.
 */
import type { ChatClient, ModerationItem } from '../../../signaling/client/index.js';
import { currentSession } from '../auth.js';
import { authForm } from '../auth-form.js';
import { isModerator, type LiveChat, onLiveChat } from '../chat/live.js';
import { errorMessage, field, h, replaceContent, statusLine } from '../dom.js';

const PAGE_SIZE = 25;
const MUTE_OPTIONS: Array<[string, number]> = [
  ['10 minutes', 600],
  ['1 hour', 3600],
  ['1 day', 86_400],
];

function when(iso: string | null): string {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? ''
    : date.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}

function describe(item: ModerationItem): string {
  const what = item.source === 'automatic' ? 'Flagged automatically' : `Reported ${item.targetType}`;
  const why = item.source === 'automatic' ? item.reasons.join(', ') : item.reason;
  return why ? `${what}: ${why}` : what;
}

export function moderationPage() {
  return {
    title: 'Moderation',
    render(main: HTMLElement) {
      const container = h('div', {});
      main.append(h('h1', {}, 'Moderation'), container);
      let offs: Array<() => void> = [];
      onLiveChat((live) => {
        for (const off of offs.splice(0)) off();
        if (!live || !currentSession()) {
          replaceContent(container, authForm('Sign in to moderate'));
          return;
        }
        if (!isModerator()) {
          replaceContent(
            container,
            h('p', { role: 'status' }, 'This page is for moderators. Your account does not have that role.'),
          );
          return;
        }
        const view = queueView(live);
        offs = view.offs;
        replaceContent(container, view.element);
      });
    },
  };
}

function queueView(live: LiveChat): { element: HTMLElement; offs: Array<() => void> } {
  const chat: ChatClient = live.chat;
  const filter = h(
    'select',
    { name: 'status', 'data-testid': 'moderation-filter' },
    h('option', { value: 'open' }, 'Open'),
    h('option', { value: 'resolved' }, 'Resolved'),
    h('option', { value: 'all' }, 'All'),
  );
  const refresh = h('button', { type: 'button' }, 'Refresh');
  const more = h('button', { type: 'button', hidden: true }, 'Load more');
  const list = h('ul', {
    class: 'moderation-queue',
    'aria-label': 'Moderation queue',
    'data-testid': 'moderation-queue',
  });
  const status = statusLine('moderation-status');
  const element = h(
    'div',
    {},
    h('div', { class: 'actions' }, field('Show', filter), refresh),
    status.element,
    list,
    more,
  );
  let oldest = 0;

  const act = async (label: string, action: () => Promise<unknown>, item: ModerationItem, resolve = true) => {
    status.info(`${label}…`);
    try {
      await action();
      if (resolve && item.status === 'open') await chat.moderation.resolve(item.reportId, 'actioned', label);
      status.info(`${label}: done.`);
      await load(true);
    } catch (error) {
      status.error(`${label} failed: ${errorMessage(error)}`);
    }
  };

  const button = (label: string, onClick: () => void, className = '') => {
    const element = h('button', { type: 'button', class: className }, label);
    element.addEventListener('click', onClick);
    return element;
  };

  const render = (item: ModerationItem): HTMLLIElement => {
    const message = item.message;
    const actions = h('div', { class: 'actions' });
    if (item.status === 'open') {
      if (message && !message.deleted) {
        actions.append(
          button(
            'Delete message',
            () =>
              void act(
                'Message deleted',
                () => chat.moderation.deleteMessage(message.messageId, item.reason || 'moderation'),
                item,
              ),
            'danger',
          ),
        );
      }
      const userId = message?.userId ?? (item.targetType === 'user' ? item.targetId : 0);
      if (item.roomId && userId) {
        const roomId = item.roomId;
        const duration = h(
          'select',
          { 'aria-label': 'Mute for' },
          ...MUTE_OPTIONS.map(([label, seconds]) => h('option', { value: seconds }, label)),
        );
        actions.append(
          duration,
          button('Mute', () => {
            const seconds = Number(duration.value);
            void act('User muted', () => chat.moderation.mute(roomId, userId, seconds, item.reason), item);
          }),
          button(
            'Ban from room',
            () => void act('User banned', () => chat.moderation.ban(roomId, userId, 0, item.reason), item),
            'danger',
          ),
        );
      }
      if (item.targetType === 'stream') {
        actions.append(
          button(
            'End stream',
            () =>
              void act(
                'Stream ended',
                () => chat.moderation.endStream(item.targetId, 'terms_violation'),
                item,
              ),
            'danger',
          ),
        );
      }
      if (item.source === 'automatic') {
        actions.append(
          button(
            'Approve (deliver)',
            () => void act('Approved', () => chat.moderation.resolve(item.reportId, 'approved'), item, false),
          ),
        );
      }
      actions.append(
        button(
          'Dismiss',
          () => void act('Dismissed', () => chat.moderation.resolve(item.reportId, 'dismissed'), item, false),
        ),
      );
    }
    return h(
      'li',
      { 'data-testid': 'moderation-item', 'data-report-id': item.reportId },
      h('p', {}, h('strong', {}, describe(item)), ' ', h('span', { class: 'hint' }, when(item.createdAt))),
      message
        ? h(
            'blockquote',
            {},
            h('span', { class: 'chat-author' }, message.username || `user ${message.userId}`),
            ': ',
            message.deleted ? 'message deleted' : message.content,
          )
        : h('p', { class: 'hint' }, `${item.targetType} ${item.targetId}`),
      item.details ? h('p', { class: 'hint' }, item.details) : null,
      item.status === 'open'
        ? null
        : h(
            'p',
            { class: 'hint' },
            `Resolved: ${item.status}${item.resolutionNote ? ` (${item.resolutionNote})` : ''}`,
          ),
      actions,
    );
  };

  const load = async (fresh: boolean) => {
    if (fresh) oldest = 0;
    list.setAttribute('aria-busy', 'true');
    try {
      const status_ = filter.value as 'open' | 'resolved' | 'all';
      const page = await chat.moderation.queue({
        status: status_,
        limit: PAGE_SIZE,
        ...(oldest > 0 ? { beforeReportId: oldest } : {}),
      });
      const rendered = page.items.map(render);
      if (fresh) list.replaceChildren(...rendered);
      else list.append(...rendered);
      oldest = page.items.at(-1)?.reportId ?? oldest;
      more.hidden = !page.hasMore;
      if (fresh && page.items.length === 0) status.info('Nothing to review.');
    } catch (error) {
      status.error(`Could not load the queue: ${errorMessage(error)}`);
    } finally {
      list.setAttribute('aria-busy', 'false');
    }
  };

  filter.addEventListener('change', () => void load(true));
  refresh.addEventListener('click', () => void load(true));
  more.addEventListener('click', () => void load(false));
  const offs = [
    // New reports and flags arrive as notifications: show them without a reload.
    chat.on('notification', (notification) => {
      if (notification.type.startsWith('moderation.')) void load(true);
    }),
  ];
  live.ready.then(() => load(true)).catch((error: unknown) => status.error(errorMessage(error)));
  return { element, offs };
}
