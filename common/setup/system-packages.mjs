/**
 * Debian packages the platform needs from the system (the mediasoup worker's build
 * libraries, ffmpeg, Chromium for browser tests). Installed with apt-get when we are
 * root; otherwise the error names exactly what to install.
 */
import { spawnSync } from 'node:child_process';

/** @param {string} name */
export function isDebianPackageInstalled(name) {
  const result = spawnSync('dpkg-query', ['-W', '-f=${Status}', name], { encoding: 'utf8' });
  return result.status === 0 && result.stdout.includes('install ok installed');
}

/**
 * @param {string[]} names Debian package names
 * @param {string} why What needs them, for the messages
 * @param {(line: string) => void} log
 */
export function ensureDebianPackages(names, why, log) {
  if (spawnSync('dpkg-query', ['--version']).status !== 0) {
    // Not Debian: we cannot check, so let the step that uses them fail with its own message.
    return;
  }
  const missing = names.filter((name) => !isDebianPackageInstalled(name));
  if (missing.length === 0) return;
  const command = `apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  const isRoot = process.getuid?.() === 0;
  const hasApt = spawnSync('apt-get', ['--version']).status === 0;
  if (!isRoot || !hasApt) {
    throw new Error(`${why} needs the Debian packages ${missing.join(', ')}; install them with: sudo ${command}`);
  }
  log(`installing Debian packages for ${why}: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  if (update.status !== 0) throw new Error(`apt-get update failed while installing ${missing.join(', ')} for ${why}`);
  const install = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], {
    stdio: 'inherit',
    env,
  });
  const stillMissing = missing.filter((name) => !isDebianPackageInstalled(name));
  if (install.status !== 0 || stillMissing.length > 0) {
    throw new Error(`${why} needs the Debian packages ${stillMissing.join(', ')}, and "${command}" failed`);
  }
}
