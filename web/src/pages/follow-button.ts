/**
 * "Follow" on the listen page: followers get a "went live" notification in their bell when the
 * broadcaster next goes live (the control plane's live notifications). Shown to signed-in
 * listeners other than the broadcaster; its state is the server's (GET /me/following).
 */
import { restApi } from '../api.js';
import { currentSession, onSessionChange, type Session, withToken } from '../auth.js';
import { errorMessage, h } from '../dom.js';

export function followButton(broadcasterId: string, broadcasterName: string): HTMLElement {
  const button = h(
    'button',
    { type: 'button', 'data-testid': 'follow', 'data-state': 'unknown', hidden: true },
    'Follow',
  );
  const note = h('span', { class: 'hint', role: 'status', 'data-testid': 'follow-status' });
  const element = h('div', { class: 'actions follow' }, button, note);
  let following = false;

  const render = () => {
    button.textContent = following ? `Following ${broadcasterName}` : `Follow ${broadcasterName}`;
    button.setAttribute('aria-pressed', String(following));
    button.dataset.state = following ? 'following' : 'not-following';
  };

  const show = (session: Session | null) => {
    const isSelf = session?.user?.id !== undefined && String(session.user?.id) === broadcasterId;
    button.hidden = !session || isSelf;
    if (button.hidden) return;
    void withToken((token) => restApi.following(token))
      .then((ids) => {
        following = ids.includes(broadcasterId);
        render();
      })
      .catch((error: unknown) => {
        note.textContent = `Could not check whom you follow: ${errorMessage(error)}`;
      });
  };

  button.addEventListener('click', async () => {
    button.disabled = true;
    const next = !following;
    try {
      await withToken((token) =>
        next ? restApi.follow(token, broadcasterId) : restApi.unfollow(token, broadcasterId),
      );
      following = next;
      render();
      note.textContent = next
        ? `You will be told when ${broadcasterName} goes live.`
        : `You no longer follow ${broadcasterName}.`;
    } catch (error) {
      note.textContent = `Could not ${next ? 'follow' : 'unfollow'}: ${errorMessage(error)}`;
    } finally {
      button.disabled = false;
    }
  });

  show(currentSession());
  onSessionChange(show);
  return element;
}
