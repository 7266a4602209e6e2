/**
 * The TURN servers (coturn) handed to clients, for networks where UDP and direct TCP to the SFU
 * fail. With TURN_SECRET each client gets a credential of its own that expires (coturn's TURN
 * REST API, `use-auth-secret`): a leaked one is good for one user and a limited time, and
 * coturn needs no user database.
 */
import { createHmac } from 'node:crypto';
import type { IceServer } from '../common/contracts/index.js';
import type { Config } from '../common/index.js';

export type IceServerConfig = Pick<
  Config,
  'TURN_URLS' | 'TURN_USERNAME' | 'TURN_CREDENTIAL' | 'TURN_SECRET' | 'TURN_CREDENTIAL_TTL_S'
>;

export interface IceServerRequest {
  /** Who the credential is for (0 or absent: anonymous listener); coturn logs it. */
  userId?: number;
  /** Epoch ms; now by default. */
  now?: number;
}

/** coturn's REST API credential: username `<expiry epoch s>:<user>`, password base64(HMAC-SHA1(secret, username)). */
export function turnRestCredential(
  secret: string,
  ttlS: number,
  request: IceServerRequest = {},
): { username: string; credential: string } {
  const expiresAt = Math.floor((request.now ?? Date.now()) / 1000) + ttlS;
  const username = `${expiresAt}:${request.userId ? `user-${request.userId}` : 'anonymous'}`;
  const credential = createHmac('sha1', secret).update(username).digest('base64');
  return { username, credential };
}

export function iceServers(config: IceServerConfig, request: IceServerRequest = {}): IceServer[] {
  if (config.TURN_URLS.length === 0) return [];
  const server: IceServer & { urls: string[] } = { urls: [...config.TURN_URLS] };
  if (config.TURN_SECRET) {
    Object.assign(server, turnRestCredential(config.TURN_SECRET, config.TURN_CREDENTIAL_TTL_S, request));
    return [server];
  }
  if (config.TURN_USERNAME !== undefined) server.username = config.TURN_USERNAME;
  if (config.TURN_CREDENTIAL !== undefined) server.credential = config.TURN_CREDENTIAL;
  return [server];
}
