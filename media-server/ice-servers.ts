/** The TURN servers (coturn) handed to clients, for networks where UDP and direct TCP to the SFU fail. */
import type { Config } from '../common/config.js';

/** The browser's RTCIceServer, as JSON. */
export interface IceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

export function iceServers(
  config: Pick<Config, 'TURN_URLS' | 'TURN_USERNAME' | 'TURN_CREDENTIAL'>,
): IceServer[] {
  if (config.TURN_URLS.length === 0) return [];
  const server: IceServer = { urls: [...config.TURN_URLS] };
  if (config.TURN_USERNAME !== undefined) server.username = config.TURN_USERNAME;
  if (config.TURN_CREDENTIAL !== undefined) server.credential = config.TURN_CREDENTIAL;
  return [server];
}
