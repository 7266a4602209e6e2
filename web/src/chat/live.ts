/**
 * The page's one chat connection for the signed-in user: the chat panels, the notification
 * bell and the moderation page share it (one WebSocket per page for all three). It follows
 * the session: closed on sign-out, opened again for the next account.
 */
import { ChatClient, SignalingConnection } from '../../../signaling/client/index.js';
import { accessToken, currentSession, onSessionChange, type Session } from '../auth.js';
import { signalingBase } from '../signaling-url.js';

export interface LiveChat {
  connection: SignalingConnection;
  chat: ChatClient;
  /** Resolves once the WebSocket is open (rejects when the first attempt fails). */
  ready: Promise<void>;
}

type Listener = (live: LiveChat | null) => void;

let current: { key: string; live: LiveChat } | null = null;
const listeners = new Set<Listener>();

const MODERATOR_ROLES = ['moderator', 'admin'];

export function isModerator(session: Session | null = currentSession()): boolean {
  return (session?.user?.roles ?? []).some((role) => MODERATOR_ROLES.includes(role));
}

function keyOf(session: Session): string {
  return String(session.user?.id ?? session.user?.email ?? 'signed-in');
}

async function freshToken(): Promise<string> {
  const token = await accessToken();
  if (!token) throw new Error('signed out');
  return token;
}

/** The signed-in user's chat connection (opened on first use), or null when signed out. */
export function liveChat(): LiveChat | null {
  const session = currentSession();
  if (!session) return null;
  const key = keyOf(session);
  if (current?.key === key) return current.live;
  close();
  const connection = new SignalingConnection({ url: signalingBase(), token: freshToken });
  const chat = new ChatClient({ connection, token: freshToken });
  const ready = connection.connect();
  // Callers await `ready` when they care; an unobserved first failure must not be unhandled.
  ready.catch(() => undefined);
  current = { key, live: { connection, chat, ready } };
  return current.live;
}

/** Runs `listener` now and whenever the live chat changes (sign-in, sign-out, another account). */
export function onLiveChat(listener: Listener): () => void {
  listeners.add(listener);
  listener(liveChat());
  return () => listeners.delete(listener);
}

function close(): void {
  const previous = current;
  current = null;
  if (!previous) return;
  previous.live.chat.close();
  previous.live.connection.close();
}

onSessionChange((session) => {
  // A token refresh keeps the account: the connection stays.
  if (session && current?.key === keyOf(session)) return;
  close();
  const live = session ? liveChat() : null;
  for (const listener of [...listeners]) listener(live);
});
