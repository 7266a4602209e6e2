import { SIGNALING_PATH } from '../../signaling/client/index.js';

/**
 * The signaling endpoint: the one the server named (it may be another edge host), else
 * this origin's. A server URL with port 0 comes from an unset PUBLIC_URL on an ephemeral
 * port and cannot be reached, so this origin is used instead.
 */
export function signalingBase(fromServer?: string | null): string {
  const own = new URL(SIGNALING_PATH, location.href);
  if (!fromServer) return own.href;
  try {
    const url = new URL(fromServer, location.href);
    return url.port === '0' ? own.href : url.href;
  } catch {
    return own.href;
  }
}
