#!/usr/bin/env node
/**
 * Installs whatever is missing before `npm start`, `npm test` or `npm run bench`, and
 * costs almost nothing when nothing is. Only Node built-ins are used here because this
 * runs before node_modules exists.
 *
 *   node common/setup/ensure.mjs [start|test]
 *
 * Steps, each skipped when already done:
 *   1. Node.js version check.
 *   2. Debian packages (ffmpeg; for tests Chromium, Firefox ESR, and PulseAudio, which
 *      gives headless Firefox an audio output: without one it decodes no audio; Prometheus,
 *      Alertmanager and docker-compose, which check and run the monitoring files).
 *   3. The mediasoup worker, built from mediasoup's npm tarball against Debian's
 *      libraries (mediasoup's own install downloads from GitHub, which cannot work here).
 *   4. npm dependencies, re-installed only when package.json or package-lock.json changes;
 *      as root, the postgres user must be able to reach embedded PostgreSQL's binaries.
 *   5. The web app bundle.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureMediasoupWorker } from './mediasoup-worker.mjs';
import { ensurePostgresCanReach } from './postgres-access.mjs';
import { ensureDebianPackages } from './system-packages.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const purpose = process.argv[2] === 'test' ? 'test' : 'start';
const log = (line) => console.error(`[setup] ${line}`);

function checkNode() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 20 || (major === 20 && minor < 19)) {
    throw new Error(`Node.js >= 20.19 is required (found ${process.versions.node})`);
  }
}

function ensureNpmDependencies(workerBin) {
  const stamp = path.join(root, 'node_modules', '.veza-install-stamp');
  const manifestHash = () =>
    createHash('sha256')
      .update(readFileSync(path.join(root, 'package.json')))
      .update(readFileSync(path.join(root, 'package-lock.json')))
      .digest('hex');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === manifestHash()) return;
  // `npm install` rather than `npm ci`: npm 11.19 records only this platform's optional
  // binaries (biome, buf, esbuild) in the lockfile and then `npm ci` refuses that same
  // lockfile as out of sync. With an up-to-date lockfile, install resolves to it exactly.
  log('installing npm dependencies (npm install)');
  const result = spawnSync('npm', ['install', '--no-audit', '--no-fund'], {
    cwd: root,
    stdio: 'inherit',
    // mediasoup's postinstall would download a worker from GitHub; ours is already built.
    env: { ...process.env, MEDIASOUP_WORKER_BIN: workerBin },
  });
  if (result.status !== 0) throw new Error('npm install failed (see the output above)');
  writeFileSync(stamp, `${manifestHash()}\n`);
}

function ensureWebBundle() {
  const build = path.join(root, 'web', 'build.ts');
  if (!existsSync(build)) return;
  const result = spawnSync(process.execPath, ['--import', 'tsx', build, '--if-stale'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (result.status !== 0) throw new Error('building the web app failed (see the output above)');
}

async function main() {
  const started = Date.now();
  checkNode();
  const packages = ['ffmpeg'];
  // prometheus (the server and promtool), prometheus-alertmanager (amtool) and docker-compose
  // check the monitoring files and run the dashboard test (app/deploy/monitoring/).
  if (purpose === 'test')
    packages.push(
      'chromium',
      'firefox-esr',
      'pulseaudio',
      'prometheus',
      'prometheus-alertmanager',
      'docker-compose',
    );
  ensureDebianPackages(packages, purpose === 'test' ? 'the test suite' : 'Veza Live', log);
  const workerBin = await ensureMediasoupWorker({ log });
  ensureNpmDependencies(workerBin);
  ensurePostgresCanReach(root, log);
  ensureWebBundle();
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  log(`ready for ${purpose} in ${seconds}s`);
}

main().catch((error) => {
  console.error(`[setup] FAILED: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
