/**
 * Operator commands: `npm run veza -- <command>`.
 *
 *   create-admin --email E --username U   (password from VEZA_ADMIN_PASSWORD or stdin)
 *   set-role --email E --role R [--revoke]
 *   migrate
 *
 * They use the same config as the platform: in standalone mode the embedded
 * PostgreSQL under VEZA_DATA_DIR (started for the command, or the running one reused),
 * in cluster mode DATABASE_URL.
 */
import { Command } from 'commander';
import { VezaError } from '../common/contracts/index.js';
import {
  connectDatabase,
  MIGRATIONS_DIR,
  migrate,
  type Sql,
  startEmbeddedPostgres,
} from '../common/db/index.js';
import { ConfigError, createLogger, loadConfig } from '../common/index.js';
import { createAdmin, setUserRole } from '../control-plane/index.js';

const log = createLogger({ level: process.env.LOG_LEVEL ?? 'warn', name: 'veza-cli' });

async function withDatabase<T>(work: (sql: Sql) => Promise<T>): Promise<T> {
  const config = loadConfig();
  let stop = async () => {};
  let url = config.DATABASE_URL;
  if (!url) {
    const embedded = await startEmbeddedPostgres(config.dataDir, config.EMBEDDED_PG_PORT, log);
    url = embedded.url;
    stop = embedded.stop;
  }
  const sql = connectDatabase(url, { max: 2 });
  try {
    await migrate(sql, MIGRATIONS_DIR, log);
    return await work(sql);
  } finally {
    await sql.end({ timeout: 5 });
    await stop();
  }
}

async function readPassword(): Promise<string> {
  const fromEnv = process.env.VEZA_ADMIN_PASSWORD;
  if (fromEnv) return fromEnv;
  if (process.stdin.isTTY) {
    throw new VezaError('invalid_argument', 'set VEZA_ADMIN_PASSWORD or pipe the password on stdin');
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

const program = new Command('veza').description('Veza Live operator commands').showHelpAfterError();

program
  .command('create-admin')
  .description('create an account with every role (the first admin)')
  .requiredOption('--email <email>', 'email address')
  .requiredOption('--username <username>', 'username')
  .action(async (options: { email: string; username: string }) => {
    const password = await readPassword();
    const account = await withDatabase((sql) => createAdmin({ sql }, { ...options, password }));
    console.log(JSON.stringify(account));
  });

program
  .command('set-role')
  .description('grant (or with --revoke take away) a role: listener, broadcaster, moderator or admin')
  .requiredOption('--email <email>', 'the account')
  .requiredOption('--role <role>', 'listener | broadcaster | moderator | admin')
  .option('--revoke', 'take the role away instead of granting it', false)
  .action(async (options: { email: string; role: string; revoke: boolean }) => {
    const account = await withDatabase((sql) =>
      setUserRole(
        { sql },
        { email: options.email, role: options.role, granted: !options.revoke, actor: 'cli' },
      ),
    );
    console.log(JSON.stringify(account));
  });

program
  .command('migrate')
  .description('apply pending database migrations')
  .action(async () => {
    await withDatabase(async () => undefined);
    console.log('migrations applied');
  });

program.parseAsync().catch((error: unknown) => {
  if (error instanceof VezaError || error instanceof ConfigError) {
    console.error(`error: ${error.message}`);
  } else {
    console.error('error:', error instanceof Error ? error.message : error);
  }
  process.exit(1);
});
