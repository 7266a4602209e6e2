/**
 * What `CONTROL_PLANE_ADDRESS` may say, and the gRPC channel target it becomes. Parsed here,
 * on the ground floor, so the config loader refuses a bad value at start and the one gRPC
 * client builds its channel from the same reading.
 *
 * - `host:port`: one control plane (a host name goes through grpc-js's DNS resolver, so a
 *   name with several A records is already balanced);
 * - `ip:port,ip:port,...`: a fixed list, balanced across (grpc-js's `ipv4:`/`ipv6:` targets);
 * - `dns:///name:port` (or `dns://server/name:port`): a name that resolves to every control
 *   plane, re-resolved by grpc-js when a connection fails.
 *
 * A list of host names is refused: grpc-js resolves a list only of IP literals, and a name
 * per control plane is what one DNS name with several records is for.
 */
import { isIP } from 'node:net';

export interface ControlPlaneTarget {
  /** The target handed to the grpc-js channel. */
  channelTarget: string;
  /** host:port of each listed control plane; one entry for a DNS name. */
  addresses: string[];
}

const HOST_PORT = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/;

function splitHostPort(entry: string): { host: string; port: number } {
  const match = HOST_PORT.exec(entry);
  const port = Number(match?.[2]);
  if (!match?.[1] || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`"${entry}" is not host:port (a port from 1 to 65535)`);
  }
  return { host: match[1], port };
}

/** Throws an Error naming the bad entry; the config loader prefixes the variable. */
export function parseControlPlaneTarget(text: string): ControlPlaneTarget {
  const value = text.trim();
  if (value.startsWith('dns:')) {
    const name = value.replace(/^dns:(\/\/[^/]*\/)?/, '');
    splitHostPort(name);
    return { channelTarget: value, addresses: [name] };
  }
  const entries = value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
  if (entries.length === 0) throw new Error('no control-plane address');
  const parsed = entries.map(splitHostPort);
  if (entries.length === 1) return { channelTarget: entries[0] as string, addresses: entries };
  const families = new Set(parsed.map(({ host }) => isIP(host.replace(/^\[|\]$/g, ''))));
  if (families.has(0)) {
    throw new Error(
      'a list of control planes must hold IP addresses; for host names, use one DNS name ' +
        'that resolves to every control plane (dns:///name:port)',
    );
  }
  if (families.size > 1) throw new Error('a list of control planes must be all IPv4 or all IPv6');
  const scheme = families.has(4) ? 'ipv4' : 'ipv6';
  return { channelTarget: `${scheme}:${entries.join(',')}`, addresses: entries };
}
