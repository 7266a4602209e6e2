/**
 * Where a client is, for analytics: its address (the socket's, or the one a trusted proxy
 * names in X-Forwarded-For) turned into a country by the offline GeoIP database, and then
 * forgotten. The address itself is never kept, logged or sent anywhere.
 */
import { createRequire } from 'node:module';
import { BlockList, isIP } from 'node:net';
import maxmind, { type CountryResponse, type Reader } from 'maxmind';

/** `@ip-location-db`'s databases answer `country_code`; MaxMind's own answer `country.iso_code`. */
interface CountryRecord {
  country_code?: string;
  country?: CountryResponse['country'];
}

export interface ClientOrigin {
  /** The client's address: the socket's, or X-Forwarded-For's when the socket is a trusted proxy. */
  address(socketAddress: string, forwardedFor: string): string;
  /** ISO 3166-1 alpha-2, or null when unknown (private addresses, no entry). */
  country(address: string): string | null;
}

function normalise(address: string): string {
  const trimmed = address.trim().replace(/^\[|\]$/g, '');
  // uWS reports IPv4 clients of a dual-stack socket as IPv4-mapped IPv6.
  return trimmed.replace(/^(?:0{0,4}:){0,5}:?ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
}

export function trustedProxies(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', prefix] = entry.split('/');
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(prefix), family);
  }
  return list;
}

const isTrusted = (trusted: BlockList, address: string): boolean => {
  const family = isIP(address);
  return family !== 0 && trusted.check(address, family === 6 ? 'ipv6' : 'ipv4');
};

/**
 * X-Forwarded-For lists the hops left to right; the rightmost address that is not a trusted
 * proxy is the client (anything left of it was written by the client and proves nothing).
 */
export function clientAddress(trusted: BlockList, socketAddress: string, forwardedFor: string): string {
  let client = normalise(socketAddress);
  if (!isTrusted(trusted, client) || forwardedFor.trim() === '') return client;
  const hops = forwardedFor
    .split(',')
    .map(normalise)
    .filter((hop) => hop.length > 0);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i] ?? '';
    if (isIP(hop) === 0) break;
    client = hop;
    if (!isTrusted(trusted, hop)) break;
  }
  return client;
}

export function defaultCountryDatabase(): string {
  return createRequire(import.meta.url).resolve(
    '@ip-location-db/geolite2-country-mmdb/geolite2-country.mmdb',
  );
}

/** One reader per file and process (about 9 MB in memory), shared by every edge the process runs. */
const readers = new Map<string, Promise<Reader<CountryRecord>>>();

function countryReader(file: string): Promise<Reader<CountryRecord>> {
  let reader = readers.get(file);
  if (!reader) {
    // Read once into memory; no watching, no fetching: the database ships with the package.
    reader = maxmind.open<CountryRecord>(file, { watchForUpdates: false });
    reader.catch(() => readers.delete(file));
    readers.set(file, reader);
  }
  return reader;
}

export async function openClientOrigin(options: {
  trustedProxies: readonly string[];
  /** A MaxMind DB file with countries (default: the packaged GeoLite2 country database). */
  database?: string | undefined;
}): Promise<ClientOrigin> {
  const trusted = trustedProxies(options.trustedProxies);
  const reader = await countryReader(options.database ?? defaultCountryDatabase());
  return {
    address: (socketAddress, forwardedFor) => clientAddress(trusted, socketAddress, forwardedFor),
    country(address) {
      if (isIP(address) === 0) return null;
      const record = reader.get(address);
      const code = record?.country_code ?? record?.country?.iso_code;
      return code && /^[A-Z]{2}$/.test(code) ? code : null;
    },
  };
}
