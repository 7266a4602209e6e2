/**
 * Bundles the web app into web/dist with esbuild.
 *
 *   node --import tsx web/build.ts [--if-stale]
 *
 * Hashed names under /assets let the edge cache them forever. index.html, the only file
 * whose name does not change, is written after the assets it names and old hashed files
 * are removed last, so a page loading during a build still finds its files.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { brotliCompress, gzip, constants as zlibConstants } from 'node:zlib';
import type * as esbuild from 'esbuild';

const brotli = promisify(brotliCompress);
const gzipAsync = promisify(gzip);

const ROOT = path.resolve(import.meta.dirname, '..');
export const WEB_DIST = path.join(ROOT, 'web', 'dist');
const SRC = path.join(ROOT, 'web', 'src');

/**
 * Where new inputs may appear: a change under any of these makes web/dist stale. Every
 * file the last build actually read (common/errors.ts, mediasoup-client, ...) is recorded
 * in INPUTS_FILE and checked too.
 */
const INPUTS = [
  SRC,
  path.join(ROOT, 'signaling', 'client'),
  path.join(ROOT, 'signaling', 'protocol'),
  path.join(ROOT, 'web', 'build.ts'),
  path.join(ROOT, 'package-lock.json'),
];

const INPUTS_FILE = '.build-inputs.json';

export interface WebBuildOptions {
  outDir?: string;
  /** Where progress goes; silent by default. */
  log?: (line: string) => void;
}

export interface WebBuildResult {
  outDir: string;
  /** Paths relative to outDir, e.g. "index.html", "assets/main-3F2A.js". */
  files: string[];
  durationMs: number;
}

/**
 * `import { z } from 'zod'` binds zod's namespace object, which esbuild cannot tree-shake:
 * every schema kind and all ~40 locales land in the bundle (about 360 KB minified). The
 * equivalent `import * as z from 'zod'` (the form zod 4's docs use) shakes down to what is
 * used. Shared modules (signaling/protocol) are written the first way; this rewrites them
 * for the browser build only, and does nothing once they use the namespace form.
 */
const ZOD_NAMED_IMPORT = /^import \{ z \} from 'zod';$/m;
const zodNamespaceImports: esbuild.Plugin = {
  name: 'zod-namespace-imports',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, async (args) => {
      if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      const source = await readFile(args.path, 'utf8');
      if (!ZOD_NAMED_IMPORT.test(source)) return undefined;
      return { contents: source.replace(ZOD_NAMED_IMPORT, "import * as z from 'zod';"), loader: 'ts' };
    });
  },
};

async function newestMtime(entry: string): Promise<number> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(entry);
  } catch {
    return 0;
  }
  if (!info.isDirectory()) return info.mtimeMs;
  const children = await readdir(entry);
  const times = await Promise.all(children.map((child) => newestMtime(path.join(entry, child))));
  return Math.max(info.mtimeMs, ...times);
}

async function recordedInputs(outDir: string): Promise<string[]> {
  try {
    const parsed: unknown = JSON.parse(await readFile(path.join(outDir, INPUTS_FILE), 'utf8'));
    return Array.isArray(parsed) ? parsed.filter((item): item is string => typeof item === 'string') : [];
  } catch {
    return [];
  }
}

/** True when web/dist is missing or older than any input. */
export async function isWebBuildStale(outDir: string = WEB_DIST): Promise<boolean> {
  const built = await newestMtime(path.join(outDir, 'index.html'));
  if (built === 0) return true;
  const recorded = await recordedInputs(outDir);
  if (recorded.length === 0) return true;
  const inputs = await Promise.all(
    [...INPUTS, ...recorded.map((file) => path.resolve(ROOT, file))].map(newestMtime),
  );
  return inputs.some((time) => time > built);
}

/** Text assets worth compressing; the edge serves the .br/.gz twin when the browser accepts it. */
const COMPRESSIBLE = /\.(js|css)$/;
const MIN_COMPRESS_BYTES = 1024;

async function compressedTwins(file: string, contents: Uint8Array): Promise<Array<[string, Uint8Array]>> {
  if (!COMPRESSIBLE.test(file) || contents.byteLength < MIN_COMPRESS_BYTES) return [];
  const [br, gz] = await Promise.all([
    brotli(contents, {
      params: {
        [zlibConstants.BROTLI_PARAM_QUALITY]: zlibConstants.BROTLI_MAX_QUALITY,
        [zlibConstants.BROTLI_PARAM_SIZE_HINT]: contents.byteLength,
      },
    }),
    gzipAsync(contents, { level: 9 }),
  ]);
  return [
    [`${file}.br`, br],
    [`${file}.gz`, gz],
  ];
}

async function writeAtomically(file: string, contents: Uint8Array | string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temporary, contents);
  await rename(temporary, file);
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  if (!existsSync(dir)) return [];
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

function escapeAttribute(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
}

export async function buildWeb(options: WebBuildOptions = {}): Promise<WebBuildResult> {
  const started = performance.now();
  const outDir = path.resolve(options.outDir ?? WEB_DIST);
  // Loaded here so that `--if-stale` on a fresh build stays a few stat() calls.
  const { build } = await import('esbuild');
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: { main: path.join(SRC, 'main.ts') },
    bundle: true,
    platform: 'browser',
    format: 'esm',
    splitting: true,
    target: 'es2020',
    minify: true,
    sourcemap: 'linked',
    legalComments: 'linked',
    outdir: outDir,
    publicPath: '/',
    entryNames: 'assets/[name]-[hash]',
    chunkNames: 'assets/chunk-[hash]',
    assetNames: 'assets/[name]-[hash]',
    metafile: true,
    write: false,
    logLevel: 'silent',
    define: { 'process.env.NODE_ENV': '"production"' },
    plugins: [zodNamespaceImports],
  });
  for (const warning of result.warnings) options.log?.(`warning: ${warning.text}`);

  // Dynamically imported chunks carry an entryPoint too (the page modules): pick main.ts's own output.
  const entry = Object.entries(result.metafile.outputs).find(
    ([file, output]) => output.entryPoint !== undefined && path.basename(file).startsWith('main-'),
  );
  if (!entry) throw new Error('esbuild produced no entry point');
  const [entryPath, entryOutput] = entry;
  const url = (output: string) =>
    `/${path.relative(path.relative(ROOT, outDir), output).split(path.sep).join('/')}`;
  const script = url(entryPath);
  const stylesheet = entryOutput.cssBundle ? url(entryOutput.cssBundle) : null;
  // The entry's static imports are fetched in parallel with it instead of after it.
  const preloads = entryOutput.imports
    .filter((item) => item.kind === 'import-statement')
    .map((item) => url(item.path));

  const template = await readFile(path.join(SRC, 'index.html'), 'utf8');
  const head = [
    ...(stylesheet ? [`<link rel="stylesheet" href="${escapeAttribute(stylesheet)}">`] : []),
    `<script type="module" src="${escapeAttribute(script)}"></script>`,
    ...preloads.map((href) => `<link rel="modulepreload" href="${escapeAttribute(href)}">`),
  ].join('\n    ');
  if (!template.includes('<!-- assets -->'))
    throw new Error('web/src/index.html lacks the <!-- assets --> marker');
  const html = template.replace('<!-- assets -->', head);

  const written = new Set<string>();
  const relative = (file: string) => path.relative(outDir, file).split(path.sep).join('/');
  await Promise.all(
    result.outputFiles.map(async (file) => {
      const twins = await compressedTwins(file.path, file.contents);
      for (const [name, contents] of [[file.path, file.contents] as const, ...twins]) {
        await writeAtomically(name, contents);
        written.add(relative(name));
      }
    }),
  );
  // Relative to the repository, so a moved checkout does not look stale forever.
  const inputs = Object.keys(result.metafile.inputs).filter((input) => existsSync(path.resolve(ROOT, input)));
  await writeAtomically(path.join(outDir, INPUTS_FILE), JSON.stringify(inputs));
  written.add(INPUTS_FILE);
  await writeAtomically(path.join(outDir, 'index.html'), html);
  written.add('index.html');
  for (const stale of await listFiles(outDir)) {
    if (!written.has(stale) && !stale.endsWith('.tmp')) await rm(path.join(outDir, stale), { force: true });
  }
  const files = [...written].sort();
  const durationMs = Math.round(performance.now() - started);
  options.log?.(
    `web app built into ${path.relative(ROOT, outDir) || outDir}: ${files.length} files in ${durationMs} ms`,
  );
  return { outDir, files, durationMs };
}

async function cli(): Promise<void> {
  const ifStale = process.argv.includes('--if-stale');
  if (ifStale && !(await isWebBuildStale())) return;
  await buildWeb({ log: (line) => console.error(`[web] ${line}`) });
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  cli().catch((error: unknown) => {
    console.error(`[web] build failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}
