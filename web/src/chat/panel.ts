/**
 * The chat beside a stream (listener and studio pages): history, live messages, who is
 * typing, a "not sent" notice with the server's reason, and a report button per message.
 *
 * Signed-in people chat through the page's shared connection (live.ts); visitors of a stream
 * that allows anonymous listeners read along through their own listener-token connection and
 * are invited to sign in to write. Messages are rendered as text (never as HTML).
 */
import {
  CHAT_MAX_LENGTH,
  ChatClient,
  type ChatMessage,
  type MessageInfo,
  SignalingConnection,
} from '../../../signaling/client/index.js';
import { authForm } from '../auth-form.js';
import { errorMessage, h, statusLine } from '../dom.js';
import { signalingBase } from '../signaling-url.js';
import { isModerator, type LiveChat, onLiveChat } from './live.js';

export interface ChatPanelOptions {
  streamId: number;
  /** For visitors who are not signed in: a listener token, when the stream allows anonymous listeners. */
  /** The stream allows anonymous listeners: read along on a connection without a token. */
  anonymous?: boolean;
}

const REPORT_REASONS = ['Spam', 'Harassment', 'Hate speech', 'Something else'];

let panelCount = 0;

function timeOf(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? ''
    : date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function typingText(usernames: readonly string[]): string {
  if (usernames.length === 0) return '';
  if (usernames.length === 1) return `${usernames[0]} is typing…`;
  if (usernames.length === 2) return `${usernames[0]} and ${usernames[1]} are typing…`;
  return 'Several people are typing…';
}

export function chatPanel(options: ChatPanelOptions): { element: HTMLElement; dispose(): void } {
  panelCount += 1;
  const ids = { heading: `chat-heading-${panelCount}`, input: `chat-input-${panelCount}` };
  // The messages are a list inside the log: role=log is not allowed on an <ol> itself.
  const list = h('ol', { class: 'chat-list' });
  const log = h(
    'div',
    {
      class: 'chat-log',
      role: 'log',
      'aria-live': 'polite',
      'aria-relevant': 'additions',
      'aria-labelledby': ids.heading,
      tabindex: 0,
      'data-testid': 'chat-log',
    },
    list,
  );
  const older = h('button', { type: 'button', hidden: true }, 'Load earlier messages');
  const typing = h('p', { class: 'hint chat-typing', 'aria-live': 'polite', 'data-testid': 'chat-typing' });
  const input = h('input', {
    type: 'text',
    id: ids.input,
    name: 'message',
    autocomplete: 'off',
    maxlength: CHAT_MAX_LENGTH,
    'data-testid': 'chat-input',
  });
  const send = h('button', { type: 'submit', class: 'primary', 'data-testid': 'chat-send' }, 'Send');
  const notSent = h('p', {
    class: 'status error',
    role: 'alert',
    hidden: true,
    'data-testid': 'chat-not-sent',
  });
  const form = h(
    'form',
    { class: 'chat-form', novalidate: true },
    h('label', { for: ids.input, class: 'visually-hidden' }, 'Message'),
    input,
    send,
  );
  const status = statusLine('chat-status');
  const signIn = h('div', { class: 'chat-sign-in' });
  const element = h(
    'section',
    { class: 'panel chat', 'aria-labelledby': ids.heading, 'data-testid': 'chat' },
    h('h2', { id: ids.heading }, 'Chat'),
    older,
    log,
    typing,
    notSent,
    form,
    signIn,
    status.element,
  );

  let chat: ChatClient | null = null;
  let roomId = 0;
  let ownConnection: SignalingConnection | null = null;
  const offs: Array<() => void> = [];
  let disposed = false;
  const items = new Map<number, HTMLLIElement>();

  const showNotSent = (message: string | null) => {
    notSent.hidden = message === null;
    notSent.textContent = message === null ? '' : `Not sent: ${message.replace(/^message not sent: /, '')}`;
  };

  const nearBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 48;

  const render = (message: ChatMessage): HTMLLIElement => {
    const mine = chat !== null && message.userId === chat.userId && chat.userId !== 0;
    const li = h('li', {
      class: mine ? 'chat-message mine' : 'chat-message',
      'data-testid': 'chat-message',
      'data-message-id': message.messageId,
    });
    const text = message.deleted
      ? h('p', { class: 'chat-text deleted' }, 'Message deleted')
      : h('p', { class: 'chat-text' }, message.content);
    const edited = !message.deleted && message.updatedAt !== message.createdAt;
    const actions = h('span', { class: 'chat-actions' });
    const writable = chat !== null && !(chat.room(roomId)?.readOnly ?? true);
    if (writable && !message.deleted) {
      if (!mine) {
        const report = h(
          'button',
          {
            type: 'button',
            class: 'link',
            'data-testid': 'report',
            'aria-label': `Report message from ${message.username}`,
          },
          'Report',
        );
        report.addEventListener('click', () => openReport(li, message, report));
        actions.append(report);
      }
      if (mine || isModerator()) {
        const remove = h(
          'button',
          { type: 'button', class: 'link', 'aria-label': `Delete message from ${message.username}` },
          'Delete',
        );
        remove.addEventListener('click', async () => {
          remove.disabled = true;
          try {
            await chat?.delete(message.messageId, mine ? undefined : 'removed by a moderator');
          } catch (error) {
            status.error(`Could not delete the message: ${errorMessage(error)}`);
            remove.disabled = false;
          }
        });
        actions.append(remove);
      }
    }
    li.append(
      h(
        'p',
        { class: 'chat-meta' },
        h('span', { class: 'chat-author' }, message.username || 'someone'),
        ' ',
        h('time', { datetime: message.createdAt }, timeOf(message.createdAt)),
        edited ? h('span', { class: 'hint' }, ' (edited)') : null,
      ),
      text,
      actions,
    );
    return li;
  };

  const openReport = (li: HTMLLIElement, message: ChatMessage, button: HTMLButtonElement) => {
    if (li.querySelector('form')) return;
    const reasonId = `report-reason-${message.messageId}-${panelCount}`;
    const reason = h(
      'select',
      { id: reasonId },
      ...REPORT_REASONS.map((label) => h('option', { value: label }, label)),
    );
    const submit = h('button', { type: 'submit', class: 'danger' }, 'Send report');
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const reportForm = h(
      'form',
      { class: 'chat-report', 'aria-label': `Report message from ${message.username}` },
      h('label', { for: reasonId }, 'Reason'),
      reason,
      submit,
      cancel,
    );
    const close = () => {
      reportForm.remove();
      button.focus();
    };
    cancel.addEventListener('click', close);
    reportForm.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') close();
    });
    reportForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      submit.disabled = true;
      try {
        await chat?.report({ targetType: 'message', targetId: message.messageId }, reason.value);
        reportForm.remove();
        button.disabled = true;
        button.textContent = 'Reported';
        // The accessible name must keep containing the visible text (WCAG 2.5.3).
        button.setAttribute('aria-label', `Reported message from ${message.username}`);
        status.info('Thanks: the moderators will look at it.');
      } catch (error) {
        submit.disabled = false;
        status.error(`Could not send the report: ${errorMessage(error)}`);
      }
    });
    li.append(reportForm);
    reason.focus();
  };

  const onMessage = (message: ChatMessage, info: MessageInfo) => {
    if (info.roomId !== roomId) return;
    const stick = nearBottom();
    const node = render(message);
    const existing = items.get(message.messageId);
    if (existing) existing.replaceWith(node);
    else {
      const after = chat?.room(roomId)?.messages[info.index + 1];
      const before = after ? items.get(after.messageId) : undefined;
      list.insertBefore(node, before ?? null);
    }
    items.set(message.messageId, node);
    if (stick) log.scrollTop = log.scrollHeight;
  };

  const detach = () => {
    for (const off of offs.splice(0)) off();
    if (ownConnection) {
      chat?.close();
      ownConnection.close();
    }
    ownConnection = null;
    chat = null;
    roomId = 0;
    items.clear();
    list.replaceChildren();
    typing.textContent = '';
    older.hidden = true;
  };

  const attach = async (client: ChatClient, connection: SignalingConnection, ready: Promise<void>) => {
    chat = client;
    // The form shows once the room is joined: a message typed before would have nowhere to go.
    form.hidden = true;
    signIn.replaceChildren();
    offs.push(
      client.on('message', onMessage),
      client.on('typing', (event) => {
        if (event.roomId === roomId) typing.textContent = typingText(event.usernames);
      }),
      client.on('removed', (event) => {
        if (event.roomId !== roomId) return;
        form.hidden = true;
        status.error(`You can no longer write here: ${event.reason}`);
      }),
      connection.on('state', (state) => {
        if (state === 'reconnecting') status.info('Chat connection lost. Reconnecting…');
        if (state === 'open') status.clear();
      }),
    );
    status.info('Loading the chat…');
    log.setAttribute('aria-busy', 'true');
    try {
      await ready;
      const room = await client.join({ streamId: options.streamId });
      if (chat !== client) return;
      roomId = room.roomId;
      // The join emitted the history before roomId was known here: draw it now, in order.
      for (const [index, message] of room.messages.entries())
        onMessage(message, { roomId, eventType: 'created', index });
      older.hidden = !room.hasOlder;
      form.hidden = room.readOnly;
      if (room.readOnly) showSignIn('Sign in to chat');
      status.clear();
      log.scrollTop = log.scrollHeight;
    } catch (error) {
      if (chat === client) status.error(`The chat is not available: ${errorMessage(error)}`);
    } finally {
      log.setAttribute('aria-busy', 'false');
    }
  };

  const showSignIn = (label: string) => {
    const button = h('button', { type: 'button' }, label);
    button.addEventListener('click', () => {
      // One sign-in form per page: the page's own, when it shows one.
      const existing = document.querySelector<HTMLInputElement>('[data-testid="email"]');
      if (existing) existing.focus();
      else signIn.replaceChildren(authForm('Sign in to chat'));
    });
    signIn.replaceChildren(button);
  };

  const useLive = (live: LiveChat | null) => {
    if (disposed) return;
    detach();
    if (live) {
      void attach(live.chat, live.connection, live.ready);
      return;
    }
    form.hidden = true;
    showSignIn('Sign in to chat');
    if (!options.anonymous) {
      status.info('Sign in to read and write in the chat.');
      return;
    }
    const connection = new SignalingConnection({ url: signalingBase() });
    ownConnection = connection;
    void attach(new ChatClient({ connection }), connection, connection.connect());
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const content = input.value.trim();
    if (!content) return;
    if (!chat || !roomId) {
      showNotSent('the chat is not connected yet');
      return;
    }
    showNotSent(null);
    send.disabled = true;
    try {
      await chat.send(roomId, content);
      if (input.value.trim() === content) input.value = '';
    } catch (error) {
      // The text stays in the box so it can be fixed and sent again.
      showNotSent(errorMessage(error));
    } finally {
      send.disabled = false;
      input.focus();
    }
  });
  input.addEventListener('input', () => {
    if (chat && roomId) chat.typing(roomId, input.value.trim().length > 0);
  });
  input.addEventListener('blur', () => {
    if (chat && roomId) chat.typing(roomId, false);
  });
  older.addEventListener('click', async () => {
    if (!chat || !roomId) return;
    older.disabled = true;
    try {
      older.hidden = !(await chat.loadOlder(roomId));
    } catch (error) {
      status.error(`Could not load earlier messages: ${errorMessage(error)}`);
    } finally {
      older.disabled = false;
    }
  });

  // Signing in (here or in the page's own form) or out switches the connection over.
  const offLive = onLiveChat(useLive);

  return {
    element,
    dispose() {
      disposed = true;
      offLive();
      detach();
    },
  };
}
