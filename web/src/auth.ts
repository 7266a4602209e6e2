/**
 * The signed-in session, kept in localStorage so it survives reloads and is shared by tabs.
 *
 * The access token is refreshed shortly before it expires. Tabs coordinate through a Web
 * Lock: refresh tokens rotate, so two tabs refreshing with the same one at once would make
 * the second look like a replayed token. Inside the lock a tab re-reads storage and skips
 * the call when another tab has just refreshed.
 */
import { ApiError, restApi, type Tokens, type User } from './api.js';

const STORAGE_KEY = 'veza.session';
const LOCK_NAME = 'veza.session.refresh';

export interface Session {
  accessToken: string;
  refreshToken: string;
  /** Epoch milliseconds. */
  expiresAt: number;
  /** The token's lifetime, used to pick when to refresh. */
  ttlMs: number;
  user: User | null;
}

type Listener = (session: Session | null) => void;
const listeners = new Set<Listener>();
let refreshTimer: ReturnType<typeof setTimeout> | undefined;

function isSession(value: unknown): value is Session {
  if (!value || typeof value !== 'object') return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.accessToken === 'string' &&
    typeof v.refreshToken === 'string' &&
    typeof v.expiresAt === 'number' &&
    typeof v.ttlMs === 'number'
  );
}

export function currentSession(): Session | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    const parsed: unknown = raw ? JSON.parse(raw) : null;
    return isSession(parsed) ? parsed : null;
  } catch {
    return null;
  }
}

function store(session: Session | null): void {
  if (session) localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  else localStorage.removeItem(STORAGE_KEY);
  changed(session);
}

function changed(session: Session | null): void {
  schedule(session);
  for (const listener of listeners) listener(session);
}

function fromTokens(tokens: Tokens, previous: Session | null): Session {
  const ttlMs = tokens.expires_in * 1000;
  return {
    accessToken: tokens.access_token,
    refreshToken: tokens.refresh_token,
    expiresAt: Date.now() + ttlMs,
    ttlMs,
    user: tokens.user ?? previous?.user ?? null,
  };
}

/** Refresh at 80% of the lifetime, and never closer than 15 s to expiry. */
function refreshDueAt(session: Session): number {
  return Math.min(session.expiresAt - session.ttlMs * 0.2, session.expiresAt - 15_000);
}

function schedule(session: Session | null): void {
  clearTimeout(refreshTimer);
  if (!session) return;
  const delay = Math.max(0, refreshDueAt(session) - Date.now());
  refreshTimer = setTimeout(() => {
    refresh().catch(() => {
      // refresh() already signed out on a rejected token; a network error retries later.
      const latest = currentSession();
      if (latest) refreshTimer = setTimeout(() => schedule(currentSession()), 10_000);
    });
  }, delay);
}

async function withLock<T>(task: () => Promise<T>): Promise<T> {
  if (typeof navigator !== 'undefined' && navigator.locks) return navigator.locks.request(LOCK_NAME, task);
  return task();
}

let inFlight: Promise<Session | null> | null = null;

/** Exchanges the refresh token for new tokens; signs out when the server rejects it. */
export function refresh(): Promise<Session | null> {
  inFlight ??= withLock(async () => {
    const session = currentSession();
    if (!session) return null;
    if (refreshDueAt(session) > Date.now()) {
      // Another tab refreshed while this one waited for the lock.
      changed(session);
      return session;
    }
    try {
      const next = fromTokens(await restApi.refresh(session.refreshToken), session);
      store(next);
      return next;
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.code === 'unauthenticated')) {
        store(null);
        return null;
      }
      throw error;
    }
  }).finally(() => {
    inFlight = null;
  });
  return inFlight;
}

/** A token valid for at least a few seconds, refreshing first when needed; null when signed out. */
export async function accessToken(): Promise<string | null> {
  const session = currentSession();
  if (!session) return null;
  if (session.expiresAt - Date.now() > 5_000) return session.accessToken;
  return (await refresh())?.accessToken ?? null;
}

/**
 * Runs an authenticated call, retrying once after a refresh if the token was rejected
 * (it may have been revoked or the clock may be off).
 */
export async function withToken<T>(call: (token: string) => Promise<T>): Promise<T> {
  const token = await accessToken();
  if (!token) throw new ApiError(401, 'unauthenticated', 'Please sign in first.');
  try {
    return await call(token);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    const fresh = await refresh();
    if (!fresh) throw new ApiError(401, 'unauthenticated', 'Your session has expired. Please sign in again.');
    return call(fresh.accessToken);
  }
}

export async function signIn(email: string, password: string): Promise<Session> {
  const session = fromTokens(await restApi.login(email, password), null);
  store(session);
  return session;
}

export async function signUp(email: string, password: string, username: string): Promise<void> {
  await restApi.register(email, password, username);
}

export async function signOut(): Promise<void> {
  const session = currentSession();
  store(null);
  if (session) {
    // Best effort: the tokens are already gone from this browser either way.
    await restApi.logout(session.accessToken, session.refreshToken).catch(() => undefined);
  }
}

export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Starts the refresh timer and follows sign-in/out done in other tabs. */
export function initAuth(): void {
  schedule(currentSession());
  window.addEventListener('storage', (event) => {
    if (event.key === STORAGE_KEY || event.key === null) changed(currentSession());
  });
}

export function displayName(session: Session): string {
  const user = session.user;
  return user?.display_name || user?.username || user?.email || 'you';
}
