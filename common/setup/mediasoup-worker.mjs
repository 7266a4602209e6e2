#!/usr/bin/env node
/**
 * Builds the mediasoup worker binary from the npm tarball against Debian's system libraries.
 *
 * Why this exists: mediasoup's own postinstall downloads a prebuilt worker from GitHub and, failing that,
 * runs a meson build that downloads its subprojects. Our machines and CI reach only the npm registry and
 * Debian's mirrors, so we build it ourselves with the subprojects swapped for Debian's packages
 * (see /work/shared/notes/environment.md, "mediasoup"). Then `MEDIASOUP_WORKER_BIN` points mediasoup at the
 * result, both at `npm ci` (its postinstall then skips download and build) and at run time.
 *
 * It runs before `npm ci`, so it may use only node: built-ins and system commands.
 *
 * CLI: `node common/setup/mediasoup-worker.mjs` logs progress on stderr and prints the binary path as the
 * last line of stdout, so `export MEDIASOUP_WORKER_BIN="$(node common/setup/mediasoup-worker.mjs)"` works.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDebianPackages, installHint } from './system-packages.mjs';

const VERSION = '3.12.16';
const HERE = dirname(fileURLToPath(import.meta.url));
const PATCH_FILE = join(HERE, `mediasoup-${VERSION}-system-libs.patch`);
const LOCKFILE = resolve(HERE, '../../package-lock.json');

/** Debian packages the patched build needs, mapped from the pkg-config modules meson looks up. */
const DEBIAN_PACKAGES = [
  'meson',
  'ninja-build',
  'pkg-config',
  'g++',
  'patch',
  'libssl-dev',
  'libuv1-dev',
  'libsrtp2-dev',
  'libusrsctp-dev',
  'libabsl-dev',
  'nlohmann-json3-dev',
];
const PKG_CONFIG_MODULES = {
  openssl: 'libssl-dev',
  libuv: 'libuv1-dev',
  libsrtp2: 'libsrtp2-dev',
  usrsctp: 'libusrsctp-dev',
  nlohmann_json: 'nlohmann-json3-dev',
  absl_btree: 'libabsl-dev',
  absl_flat_hash_map: 'libabsl-dev',
  absl_flat_hash_set: 'libabsl-dev',
  absl_inlined_vector: 'libabsl-dev',
  absl_memory: 'libabsl-dev',
  absl_optional: 'libabsl-dev',
  absl_strings: 'libabsl-dev',
};

/** A lock older than this is from a build that cannot still be running, whatever its pid says now. */
const STALE_LOCK_MS = 60 * 60 * 1000;

function cacheRoot() {
  // XDG says a relative XDG_CACHE_HOME is invalid and must be ignored; it would also move with the cwd.
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache'), 'veza', 'mediasoup-worker');
}

/**
 * Where the worker for this version and this patch lives, built or not. The key includes the patch's hash
 * so that changing the patch can never reuse a binary built from the old one. Cheap enough for run time.
 * @returns {string}
 */
export function mediasoupWorkerPath() {
  const patchHash = createHash('sha256').update(readFileSync(PATCH_FILE)).digest('hex');
  return join(cacheRoot(), `${VERSION}-${patchHash.slice(0, 12)}`, 'mediasoup-worker');
}

function isExecutableFile(path) {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * Returns the path of a usable worker binary, building it first if the cache lacks it.
 * @param {{ log?: (line: string) => void }} [options]
 * @returns {Promise<string>} absolute path of the mediasoup-worker binary
 */
export async function ensureMediasoupWorker({ log = console.log } = {}) {
  const target = mediasoupWorkerPath();
  if (isExecutableFile(target)) return target;

  ensureDebianPackages(DEBIAN_PACKAGES, 'the mediasoup worker build', log);
  const finalDir = dirname(target);
  mkdirSync(dirname(finalDir), { recursive: true });
  const release = await acquireLock(`${finalDir}.lock`, log);
  try {
    // Another run may have finished the build while we waited for the lock.
    if (isExecutableFile(target)) return target;
    // We hold this entry's lock, so any leftover temp dir of this entry is from a killed build.
    const tmpPrefix = `.tmp-${basename(finalDir)}-`;
    for (const name of readdirSync(dirname(finalDir))) {
      if (name.startsWith(tmpPrefix)) rmSync(join(dirname(finalDir), name), { recursive: true, force: true });
    }
    // The temp dir sits next to the cache entry so the final rename stays on one filesystem (atomic).
    const tmp = mkdtempSync(join(dirname(finalDir), tmpPrefix));
    try {
      await build(tmp, log);
      publish(join(tmp, 'out'), finalDir);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  } finally {
    release();
  }
  if (!isExecutableFile(target)) throw new Error(`mediasoup-worker: build finished but ${target} is missing`);
  log(`mediasoup-worker: ready at ${target}`);
  return target;
}

/** Fetches, verifies, patches and compiles the worker; leaves the binary alone in `<tmp>/out/`. */
async function build(tmp, log) {
  const started = Date.now();
  log(`mediasoup-worker: building mediasoup ${VERSION} worker (about 3 minutes on 2 cores)`);

  // The npm registry is the only network we may use, and the lockfile already pins the tarball's hash.
  await run('npm', ['pack', `mediasoup@${VERSION}`, '--pack-destination', tmp], { cwd: tmp });
  const tarball = join(tmp, `mediasoup-${VERSION}.tgz`);
  verifyIntegrity(tarball);
  log('mediasoup-worker: tarball integrity matches package-lock.json');

  await run('tar', ['xzf', tarball, '-C', tmp]);
  const pkg = join(tmp, 'package');
  await run('patch', ['-p1', '--forward', '--batch', '-i', PATCH_FILE], { cwd: pkg });

  const worker = join(pkg, 'worker');
  log('mediasoup-worker: meson setup');
  const meson = [
    'setup',
    '--buildtype',
    'release',
    '-Db_ndebug=true',
    '-Db_pie=true',
    '-Db_staticpic=true',
    '--wrap-mode=nodownload',
    'build',
  ];
  await run('meson', meson, { cwd: worker }).catch(explainMissingLibs);

  let lastReport = 0;
  await run('ninja', ['-C', 'build', 'mediasoup-worker'], {
    cwd: worker,
    onLine(line) {
      // ninja prints one [n/m] line per step; a line every 10 s shows progress without flooding CI logs.
      const m = /^\[(\d+)\/(\d+)\]/.exec(line);
      if (m && (Date.now() - lastReport > 10_000 || m[1] === m[2])) {
        lastReport = Date.now();
        log(`mediasoup-worker: compiling [${m[1]}/${m[2]}] ${Math.floor((100 * m[1]) / m[2])}%`);
      }
    },
  }).catch(explainMissingLibs);

  const out = join(tmp, 'out');
  mkdirSync(out);
  renameSync(join(worker, 'build', 'mediasoup-worker'), join(out, 'mediasoup-worker'));
  log(`mediasoup-worker: built in ${Math.round((Date.now() - started) / 1000)} s`);
}

/**
 * Checks the packed tarball against the lockfile, so the registry cannot hand us different code.
 * @param {string} tarball
 * @param {string} [lockfile] package-lock.json (the project's by default)
 */
export function verifyIntegrity(tarball, lockfile = LOCKFILE) {
  const lock = JSON.parse(readFileSync(lockfile, 'utf8'));
  const entry = lock.packages?.['node_modules/mediasoup'];
  if (entry?.version !== VERSION || !entry.integrity?.startsWith('sha512-')) {
    throw new Error(
      `mediasoup-worker: ${lockfile} must pin mediasoup ${VERSION} with a sha512 integrity ` +
        `(found ${entry?.version ?? 'none'}); this script and its patch are for ${VERSION} only`,
    );
  }
  const actual = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  if (actual !== entry.integrity) {
    throw new Error(
      `mediasoup-worker: integrity mismatch for mediasoup-${VERSION}.tgz\n` +
        `  expected (package-lock.json): ${entry.integrity}\n  actual:                        ${actual}`,
    );
  }
}

/** Moves the finished output into place in one rename, so a killed build never leaves a half cache. */
function publish(outDir, finalDir) {
  try {
    renameSync(outDir, finalDir);
  } catch (err) {
    // A concurrent run that got past a stale lock may have won the race; its binary is as good as ours.
    if (isExecutableFile(join(finalDir, 'mediasoup-worker'))) return;
    if (err.code !== 'EEXIST' && err.code !== 'ENOTEMPTY') throw err;
    // A broken leftover entry (binary deleted by hand): replace it.
    rmSync(finalDir, { recursive: true, force: true });
    renameSync(outDir, finalDir);
  }
}

/** Re-throws a build failure, adding which Debian package pkg-config cannot find, if any. */
function explainMissingLibs(err) {
  const missing = Object.entries(PKG_CONFIG_MODULES)
    .filter(([mod]) => spawnSync('pkg-config', ['--exists', mod]).status !== 0)
    .map(([, pkg]) => pkg);
  const pkgs = [...new Set(missing)];
  if (pkgs.length > 0) {
    err.message += `\n  pkg-config cannot find libraries from: ${pkgs.join(' ')}\n  install them with: ${installHint(pkgs)}`;
  }
  throw err;
}

/**
 * Runs a command, keeping its output quiet unless it fails: then the error carries the last 40 lines,
 * which is where meson, ninja and the compiler put the reason.
 */
function run(cmd, args, { cwd, onLine } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail = [];
    let partial = '';
    const onData = (chunk) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop();
      for (const line of lines) {
        tail.push(line);
        if (tail.length > 40) tail.shift();
        onLine?.(line);
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.on('error', (err) =>
      reject(new Error(`mediasoup-worker: cannot run ${cmd}: ${err.code === 'ENOENT' ? 'not found' : err}`)),
    );
    child.on('close', (code, signal) => {
      if (partial) tail.push(partial);
      if (code === 0) return resolvePromise();
      reject(
        new Error(
          `mediasoup-worker: \`${cmd} ${args.join(' ')}\` failed (${signal ?? `exit ${code}`}) in ${cwd}\n` +
            `--- last lines of output ---\n${tail.join('\n')}\n---`,
        ),
      );
    });
  });
}

/**
 * One build at a time per cache entry: two at once would take twice as long on a 2-core box. The lock
 * records its owner's pid so a lock left by a killed build is taken over instead of waited on forever.
 * @returns {Promise<() => void>} release function
 */
async function acquireLock(lockPath, log) {
  let announced = false;
  for (;;) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lockPath, { force: true });
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    if (isStaleLock(lockPath)) {
      try {
        unlinkSync(lockPath);
      } catch {}
      continue;
    }
    if (!announced) {
      log(`mediasoup-worker: another run is building (lock ${lockPath}); waiting for it`);
      announced = true;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function isStaleLock(lockPath) {
  try {
    if (Date.now() - statSync(lockPath).mtimeMs > STALE_LOCK_MS) return true;
    const pid = Number(readFileSync(lockPath, 'utf8'));
    if (!pid) return false; // just created, pid not written yet
    process.kill(pid, 0);
    return false;
  } catch (err) {
    // ESRCH: owner is gone. ENOENT: released meanwhile. EPERM: alive under another user.
    return err.code !== 'EPERM';
  }
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  ensureMediasoupWorker({ log: (line) => console.error(line) }).then(
    (path) => console.log(path),
    (err) => {
      console.error(err.message);
      process.exitCode = 1;
    },
  );
}
