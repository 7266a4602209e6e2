#!/usr/bin/env node
/**
 * Fails when proto/gen is not what `buf generate` makes from proto/*.proto today, so a
 * .proto edit cannot land without its generated TypeScript.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const out = mkdtempSync(path.join(tmpdir(), 'veza-proto-'));

function files(dir, base = dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? files(full, base) : [path.relative(base, full)];
  });
}

try {
  const buf = path.join(root, 'node_modules', '.bin', 'buf');
  const result = spawnSync(buf, ['generate', '-o', out], { cwd: path.join(root, 'proto'), stdio: 'inherit' });
  if (result.status !== 0) throw new Error('buf generate failed');
  const fresh = path.join(out, 'gen');
  const committed = path.join(root, 'proto', 'gen');
  const names = new Set([...files(fresh), ...files(committed)]);
  const stale = [...names].filter((name) => {
    try {
      return !readFileSync(path.join(fresh, name)).equals(readFileSync(path.join(committed, name)));
    } catch {
      return true;
    }
  });
  if (stale.length > 0) {
    console.error(`proto/gen is out of date for: ${stale.join(', ')}. Run: npm run proto:gen`);
    process.exit(1);
  }
  console.error('proto/gen is up to date');
} finally {
  rmSync(out, { recursive: true, force: true });
}
