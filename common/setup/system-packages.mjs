/**
 * Debian packages the platform needs from the system (the mediasoup worker's build
 * libraries, ffmpeg, Chromium and Firefox ESR with PulseAudio for browser tests).
 * Installed with apt-get when we are root, since that is what anyone would do next
 * anyway; otherwise the error names exactly what to install.
 */
import { spawnSync } from 'node:child_process';

/**
 * @param {string[]} names
 * @returns {string[] | null} the packages not installed, or null when dpkg-query is unavailable (not Debian)
 */
export function missingDebianPackages(names) {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
  const res = spawnSync('dpkg-query', ['-W', '-f=${Package} ${Status}\n', ...names], { encoding: 'utf8' });
  if (res.error) return null;
  const installed = new Set(
    res.stdout
      .split('\n')
      .filter((line) => line.endsWith(' install ok installed'))
      .map((line) => line.split(' ')[0].split(':')[0]),
  );
  return names.filter((name) => !installed.has(name));
}

export function installHint(names) {
  return `sudo apt-get install -y --no-install-recommends ${names.join(' ')}`;
}

let aptUpdated = false;

/**
 * @param {string[]} names Debian package names
 * @param {string} why What needs them, for the messages
 * @param {(line: string) => void} log
 * @param {{ install?: boolean }} [options] install: false only checks (tests; default: install when root)
 */
export function ensureDebianPackages(names, why, log, options = {}) {
  const missing = missingDebianPackages(names);
  if (missing === null) {
    log(`dpkg-query not found, cannot check the Debian packages ${why} needs (${names.join(' ')}); going on`);
    return;
  }
  if (missing.length === 0) return;
  const canInstall =
    options.install !== false && process.getuid?.() === 0 && spawnSync('apt-get', ['--version']).status === 0;
  if (canInstall) {
    log(`installing Debian packages for ${why}: ${missing.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const apt = (args) => spawnSync('apt-get', args, { env, stdio: ['ignore', 2, 2] }).status === 0;
    if (!aptUpdated) aptUpdated = apt(['update', '-qq']);
    apt(['install', '-y', '-qq', '--no-install-recommends', ...missing]);
  }
  const still = missingDebianPackages(names) ?? [];
  if (still.length > 0) {
    throw new Error(
      `${why} needs the Debian packages ${still.join(' ')}\n  install them with: ${installHint(still)}`,
    );
  }
}
