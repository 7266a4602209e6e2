/**
 * The boundary lint (.dependency-cruiser.cjs, run by `npm test` as `npm run lint:deps`) is only
 * worth something if it fails: each rule is shown to catch a deliberate violation in a small tree
 * laid out like ours, and the real tree is shown to pass.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
const CONFIG = path.join(ROOT, '.dependency-cruiser.cjs');
const DEPCRUISE = path.join(ROOT, 'node_modules', '.bin', 'depcruise');
const run = promisify(execFile);

interface Violation {
  rule: { name: string };
  from: string;
  to: string;
}

/** Cruises `dirs` of `cwd` with the project's rules and returns the violations. */
async function violations(cwd: string, dirs: string[]): Promise<Violation[]> {
  const { stdout } = await run(DEPCRUISE, [...dirs, '--config', CONFIG, '--output-type', 'json'], {
    cwd,
    maxBuffer: 64 * 1024 * 1024,
  }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
  const result = JSON.parse(stdout) as { summary: { violations: Violation[] } };
  return result.summary.violations;
}

let tree: string;

/** Writes a tree of small modules: path -> the relative imports it makes. */
async function layout(files: Record<string, string[]>): Promise<void> {
  for (const [file, imports] of Object.entries(files)) {
    const full = path.join(tree, file);
    await mkdir(path.dirname(full), { recursive: true });
    const lines = imports.map((target, i) => `import * as m${i} from '${target}';\nvoid m${i};`);
    await writeFile(full, `${lines.join('\n')}\nexport const here = ${JSON.stringify(file)};\n`);
  }
}

beforeAll(async () => {
  tree = await mkdtemp(path.join(tmpdir(), 'veza-deps-'));
  await writeFile(
    path.join(tree, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true } }),
  );
  // A clean skeleton: each folder's index, the edge calling the control plane through its client.
  await layout({
    'common/index.ts': ['./contracts/index.js'],
    'common/contracts/index.ts': [],
    'common/contracts/browser.ts': [],
    'control-plane/index.ts': ['../common/index.js', './auth/index.js'],
    'control-plane/client/index.ts': ['../../common/contracts/index.js'],
    'control-plane/auth/index.ts': ['./users.js'],
    'control-plane/auth/users.ts': [],
    'media-server/index.ts': ['../common/contracts/index.js'],
    'signaling/index.ts': ['./ws/index.js', '../control-plane/client/index.js'],
    'signaling/ws/index.ts': ['../../common/index.js'],
    'signaling/client/index.ts': ['../../common/contracts/browser.js'],
    'workers/index.ts': ['../common/index.js'],
    'web/src/main.ts': ['../../signaling/client/index.js'],
    'app/index.ts': ['../control-plane/index.js', '../signaling/index.js', '../media-server/index.js'],
  });
});

afterAll(async () => {
  await rm(tree, { recursive: true, force: true });
});

describe('the boundary lint', () => {
  it('passes a tree that keeps the rules', async () => {
    expect(
      await violations(tree, [
        'app',
        'common',
        'control-plane',
        'media-server',
        'signaling',
        'web',
        'workers',
      ]),
    ).toEqual([]);
  });

  it.each([
    ['nothing-imports-the-edge', 'control-plane/bad.ts', ['../signaling/index.js']],
    ['nothing-imports-the-edge', 'media-server/bad.ts', ['../signaling/index.js']],
    ['ground-floor', 'common/bad.ts', ['../control-plane/index.js']],
    ['composition-root-on-top', 'signaling/bad.ts', ['../app/index.js']],
    ['media-server-stands-alone', 'media-server/bad2.ts', ['../control-plane/index.js']],
    ['workers-stand-alone', 'workers/bad.ts', ['../control-plane/index.js']],
    ['control-plane-stands-alone', 'control-plane/bad2.ts', ['../workers/index.js']],
    ['edge-calls-the-control-plane-through-its-client', 'signaling/bad2.ts', ['../control-plane/index.js']],
    ['browser-code-is-browser-safe', 'web/src/bad.ts', ['../../common/index.js']],
    ['through-index:control-plane/auth', 'control-plane/bad3.ts', ['./auth/users.js']],
    ['through-index:common/contracts', 'control-plane/bad4.ts', ['../common/contracts/inner.js']],
  ])('%s fails %s', async (rule, file, imports) => {
    await layout({ [file]: imports, 'common/contracts/inner.ts': [] });
    try {
      const found = await violations(tree, [file.split('/')[0] ?? '']);
      expect(found.map((v) => `${v.rule.name} ${v.from}`)).toContain(`${rule} ${file}`);
    } finally {
      await rm(path.join(tree, file));
    }
  });

  it('fails an import cycle, type-only imports included', async () => {
    await layout({ 'workers/a.ts': ['./b.js'] });
    await writeFile(
      path.join(tree, 'workers/b.ts'),
      "import type { here } from './a.js';\nexport type T = typeof here;\n",
    );
    try {
      const found = await violations(tree, ['workers']);
      expect(found.map((v) => v.rule.name)).toContain('no-circular');
    } finally {
      await rm(path.join(tree, 'workers/a.ts'));
      await rm(path.join(tree, 'workers/b.ts'));
    }
  });

  it('finds no violation in the real tree', async () => {
    const found = await violations(ROOT, [
      'app',
      'common',
      'control-plane',
      'media-server',
      'signaling',
      'workers',
      'web',
      'bench',
      'proto',
    ]);
    expect(found.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`)).toEqual([]);
  }, 60_000);
});
