/**
 * The web app (web/dist, built by web/build.ts): every page of WEB_PAGES (`/`, `/studio`,
 * `/listen/:id`, `/profile`, ...) gets index.html (the app picks the page from the path),
 * `/assets/*` the bundle.
 *
 * Asset names carry a content hash, so they are cached for a year as immutable; the page
 * itself is revalidated on every load (ETag), which is what lets a new build reach users.
 * The files are small and few, so they are held in memory with their precompressed twins
 * and reloaded when a rebuild replaces index.html.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { NotFoundError, UnavailableError } from '../../../common/contracts/index.js';
import type { Logger } from '../../../common/index.js';
import type { EdgeRequest } from '../context.js';
import type { HttpReply } from '../reply.js';
import type { RouteRegistrar } from '../server.js';

export const DEFAULT_WEB_DIST = path.resolve(import.meta.dirname, '../../../web/dist');

/** The app's pages; every one is the same index.html. */
export const WEB_PAGES = [
  '/',
  '/studio',
  '/listen/:id',
  '/moderation',
  '/upload',
  '/my-tracks',
  '/track/:id',
  '/profile',
  '/studio/streams',
  '/studio/streams/:id',
] as const;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff2': 'font/woff2',
  '.webmanifest': 'application/manifest+json',
};

/** esbuild's [hash]: 8 characters of base32 right before the extension(s). */
const HASHED_NAME = /-[A-Z2-7]{8}\.[a-z0-9.]+$/;
const IMMUTABLE = 'public, max-age=31536000, immutable';

/**
 * The page only loads its own scripts and styles; media arrives over WebRTC, signaling over
 * a WebSocket that may live on another edge host (cluster mode), hence ws:/wss:.
 */
const PAGE_SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob: mediastream:",
    "connect-src 'self' ws: wss:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'strict-origin-when-cross-origin',
  'permissions-policy': 'microphone=(self), camera=(), geolocation=()',
};

type Encoding = 'br' | 'gzip';

interface StaticFile {
  body: Buffer;
  encoded: Partial<Record<Encoding, Buffer>>;
  contentType: string;
  etag: string;
  cacheControl: string;
}

interface Site {
  /** index.html's mtime when loaded: a rebuild changes it. */
  stamp: number;
  files: Map<string, StaticFile>;
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map((entry) =>
      entry.isDirectory()
        ? listFiles(path.join(dir, entry.name), `${prefix}${entry.name}/`)
        : Promise.resolve([`${prefix}${entry.name}`]),
    ),
  );
  return nested.flat();
}

async function loadSite(distDir: string, stamp: number): Promise<Site> {
  // Dot files (the build's input list) and half-written .tmp files are not part of the site.
  const names = (await listFiles(distDir)).filter(
    (name) => !name.endsWith('.tmp') && !name.split('/').some((part) => part.startsWith('.')),
  );
  const present = new Set(names);
  const files = new Map<string, StaticFile>();
  await Promise.all(
    names
      .filter((name) => !name.endsWith('.br') && !name.endsWith('.gz'))
      .map(async (name) => {
        const body = await readFile(path.join(distDir, name));
        const encoded: StaticFile['encoded'] = {};
        for (const [encoding, suffix] of [
          ['br', '.br'],
          ['gzip', '.gz'],
        ] as const) {
          if (present.has(name + suffix))
            encoded[encoding] = await readFile(path.join(distDir, name + suffix));
        }
        files.set(name, {
          body,
          encoded,
          contentType: CONTENT_TYPES[path.extname(name).toLowerCase()] ?? 'application/octet-stream',
          etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`,
          cacheControl:
            name === 'index.html' ? 'no-cache' : HASHED_NAME.test(name) ? IMMUTABLE : 'public, max-age=300',
        });
      }),
  );
  return { stamp, files };
}

/** The best encoding the client accepts among those we have (RFC 9110 12.5.3, without wildcards). */
export function chooseEncoding(acceptEncoding: string, available: readonly Encoding[]): Encoding | null {
  const accepted = new Map<string, number>();
  for (const part of acceptEncoding.toLowerCase().split(',')) {
    const [name = '', ...params] = part.trim().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const quality = q === undefined ? 1 : Number(q.slice(2));
    if (name) accepted.set(name.trim(), Number.isFinite(quality) ? quality : 0);
  }
  let best: Encoding | null = null;
  let bestQ = 0;
  for (const encoding of available) {
    const q = accepted.get(encoding) ?? 0;
    if (q > bestQ) {
      best = encoding;
      bestQ = q;
    }
  }
  return best;
}

function etagMatches(ifNoneMatch: string, etag: string): boolean {
  if (!ifNoneMatch) return false;
  if (ifNoneMatch.trim() === '*') return true;
  return ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}

function reply(request: EdgeRequest, file: StaticFile, extra: Record<string, string> = {}): HttpReply {
  const headers: Record<string, string> = {
    'content-type': file.contentType,
    'cache-control': file.cacheControl,
    etag: file.etag,
    ...extra,
  };
  const encodings = Object.keys(file.encoded) as Encoding[];
  if (encodings.length > 0) headers.vary = 'accept-encoding';
  if (etagMatches(request.header('if-none-match'), file.etag)) return { status: 304, headers };
  const encoding = chooseEncoding(request.header('accept-encoding'), encodings);
  const body = encoding ? file.encoded[encoding] : file.body;
  if (encoding && body) return { status: 200, headers: { ...headers, 'content-encoding': encoding }, body };
  return { status: 200, headers, body: file.body };
}

export interface WebRouteDeps {
  log: Logger;
  /** Defaults to web/dist of this checkout. */
  distDir?: string;
}

export function registerWebRoutes(routes: RouteRegistrar, deps: WebRouteDeps): void {
  const distDir = deps.distDir ?? DEFAULT_WEB_DIST;
  const log = deps.log.child({ component: 'web' });
  const indexPath = path.join(distDir, 'index.html');
  let site: Promise<Site> | null = null;
  let checkedAt = 0;

  /** The loaded files, reloaded at most once a second when index.html has changed. */
  const current = async (): Promise<Site> => {
    const now = Date.now();
    if (site && now - checkedAt < 1000) return site;
    checkedAt = now;
    const stamp = await stat(indexPath).then(
      (info) => info.mtimeMs,
      () => 0,
    );
    if (stamp === 0) {
      site = null;
      throw new UnavailableError('the web app is not built: run `node --import tsx web/build.ts`');
    }
    const loaded = site ? await site.catch(() => null) : null;
    if (!loaded || loaded.stamp !== stamp) {
      site = loadSite(distDir, stamp);
      site.then(
        (value) => log.debug({ files: value.files.size, distDir }, 'web app loaded'),
        (error: unknown) => log.error({ err: error, distDir }, 'could not load the web app'),
      );
    }
    return site ?? Promise.reject(new UnavailableError('the web app is not loaded'));
  };

  const page = async (request: EdgeRequest): Promise<HttpReply> => {
    const index = (await current()).files.get('index.html');
    if (!index) throw new UnavailableError('the web app is not built: web/dist/index.html is missing');
    return reply(request, index, PAGE_SECURITY_HEADERS);
  };
  for (const pattern of WEB_PAGES) routes.route('GET', pattern, page);

  routes.route('GET', '/assets/*', async (request) => {
    const name = `assets/${request.params['*'] ?? ''}`;
    const file = (await current()).files.get(name);
    if (!file) throw new NotFoundError(`no asset at ${request.path}`);
    return reply(request, file, { 'x-content-type-options': 'nosniff' });
  });
}
