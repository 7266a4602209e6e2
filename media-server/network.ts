/**
 * Where WebRtcTransports listen and which address they announce in their ICE candidates.
 *
 * mediasoup is ICE-lite: it never discovers addresses, it only announces what it is told. Listening on
 * all interfaces suits any client, but a wildcard cannot be announced, and Chromium offers no 127.0.0.1
 * candidate, so by default the first non-internal IPv4 address is announced: a browser on the same
 * machine (and on its network) can reach it.
 */
import { type NetworkInterfaceInfo, networkInterfaces } from 'node:os';
import type { types as ms } from 'mediasoup';

const WILDCARDS = new Set(['0.0.0.0', '::']);

export function firstNonInternalIPv4(
  interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces(),
): string | undefined {
  for (const addresses of Object.values(interfaces)) {
    for (const address of addresses ?? []) {
      if (address.family === 'IPv4' && !address.internal) return address.address;
    }
  }
  return undefined;
}

export interface ListenSettings {
  listenIp: string;
  announcedAddress?: string | undefined;
}

/**
 * The listen IP with the address to announce: the configured one, else (for a wildcard listen IP) the
 * first non-internal IPv4, else loopback. A specific listen IP announces itself.
 */
export function transportListenIp(
  { listenIp, announcedAddress }: ListenSettings,
  interfaces?: NodeJS.Dict<NetworkInterfaceInfo[]>,
): ms.TransportListenIp {
  if (announcedAddress) return { ip: listenIp, announcedIp: announcedAddress };
  if (!WILDCARDS.has(listenIp)) return { ip: listenIp };
  return { ip: listenIp, announcedIp: firstNonInternalIPv4(interfaces) ?? '127.0.0.1' };
}
