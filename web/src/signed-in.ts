/**
 * Shows a signed-in view in a container, or the sign-in form when signed out. A token refresh
 * keeps the same account, so the view is only rebuilt when the account changes (a form being
 * filled in must survive a refresh).
 */
import { currentSession, onSessionChange, type Session } from './auth.js';
import { authForm } from './auth-form.js';
import { replaceContent } from './dom.js';

export function whenSignedIn(
  container: HTMLElement,
  signInHeading: string,
  render: (session: Session) => HTMLElement,
): void {
  let shownFor: string | null = null;
  const show = (session: Session | null) => {
    const key = session ? String(session.user?.id ?? session.user?.email ?? 'signed-in') : null;
    if (key === shownFor && container.childElementCount > 0) return;
    shownFor = key;
    replaceContent(container, session ? render(session) : authForm(signInHeading));
  };
  show(currentSession());
  onSessionChange(show);
}
