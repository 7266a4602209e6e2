/**
 * The dependency rules of Veza Live, enforced in `npm test` (npm run lint:deps). Why each rule
 * exists is in docs/architecture.md; dependency-cruiser.test.ts proves that each one fails a
 * deliberate violation.
 *
 * Modules: every folder listed in MODULES has an index.ts (some have a second public entry,
 * listed with it); code outside a module imports only its entries.
 */

/** Module folder -> its public entries besides index.ts. */
const MODULES = {
  common: [],
  'common/contracts': ['browser.ts'],
  'common/db': [],
  'common/ports': [],
  'common/testing': [],
  // media-processes.ts: the media node processes alone, for the fanout bench's --nodes run,
  // without the wrtc clients the rest of app/testing loads.
  app: ['testing/index.ts', 'testing/media-processes.ts'],
  'app/testing': ['media-processes.ts'],
  'control-plane': ['client/index.ts', 'test-harness.ts'],
  'control-plane/analytics': [],
  'control-plane/auth': [],
  'control-plane/chat': ['test-support.ts'],
  'control-plane/client': [],
  'control-plane/grpc': [],
  'control-plane/maintenance': [],
  'control-plane/moderation': ['test-scorer-server.ts'],
  'control-plane/notifications': [],
  'control-plane/recordings': [],
  'control-plane/streams': [],
  'control-plane/uploads': [],
  'media-server': ['testing/wrtc-peers.ts', 'testing/index.ts'],
  signaling: ['client/index.ts', 'client/testing/index.ts', 'protocol/index.ts'],
  'signaling/client': ['testing/index.ts'],
  'signaling/client/testing': [],
  'signaling/protocol': [],
  'signaling/ws': [],
  'signaling/ws/chat': [],
  workers: ['test-audio.ts'],
  'workers/pipeline': [],
};

const ROLES = ['control-plane', 'media-server', 'signaling', 'workers'];
const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
const TEST = '(\\.test\\.ts$|/testing/|/test-[^/]+\\.ts$|/test-harness\\.ts$|/e2e/)';

/** `common` holds only its top-level files; its sub-folders are modules of their own. */
const inside = (folder) => (folder === 'common' ? '^common/[^/]+\\.ts$' : `^${escapeRegExp(folder)}/`);
/** The ground floor's own sub-modules use its top-level files directly (common/index.ts re-exports presence, which uses ports). */
const outside = (folder) => (folder === 'common' ? '^common/' : inside(folder));

const throughIndex = Object.entries(MODULES).map(([folder, entries]) => ({
  name: `through-index:${folder}`,
  comment: `Outside ${folder}/, import only its public entries (index.ts${entries.map((e) => `, ${e}`).join('')}).`,
  severity: 'error',
  from: { pathNot: outside(folder) },
  to: {
    path: inside(folder),
    pathNot: [
      `^${escapeRegExp(folder)}/index\\.ts$`,
      ...entries.map((e) => `^${escapeRegExp(folder)}/${escapeRegExp(e)}$`),
    ],
  },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment:
        'An import cycle (type-only imports included) ties modules that should be able to change apart.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'ground-floor',
      comment: 'common/ is the ground floor: it imports no role, no composition root, no app.',
      severity: 'error',
      from: { path: '^common/' },
      to: { path: `^(app|web|bench|${ROLES.join('|')})/` },
    },
    {
      name: 'composition-root-on-top',
      comment: 'The roles never import the composition root (app/); their tests may use its test stacks.',
      severity: 'error',
      from: { path: `^(common|web|${ROLES.join('|')})/`, pathNot: TEST },
      to: { path: '^app/' },
    },
    {
      name: 'nothing-imports-the-edge',
      comment: 'The control plane, the media server and the workers never depend on the edge.',
      severity: 'error',
      from: { path: '^(control-plane|media-server|workers)/' },
      to: { path: '^signaling/' },
    },
    {
      name: 'media-server-stands-alone',
      comment: 'The media server speaks only the contracts; it imports no other role.',
      severity: 'error',
      from: { path: '^media-server/' },
      to: { path: '^(control-plane|signaling|workers)/' },
    },
    {
      name: 'workers-stand-alone',
      comment: 'Workers take jobs and report through the contracts; they import no other role.',
      severity: 'error',
      from: { path: '^workers/' },
      to: { path: '^(control-plane|signaling|media-server)/' },
    },
    {
      name: 'control-plane-stands-alone',
      comment:
        'The control plane places streams and queues jobs through the contracts, not through other roles.',
      severity: 'error',
      from: { path: '^control-plane/', pathNot: TEST },
      to: { path: '^(signaling|media-server|workers)/' },
    },
    {
      name: 'edge-calls-the-control-plane-through-its-client',
      comment:
        'The edge reaches the control plane only through the gRPC client, and the media nodes only through the contracts.',
      severity: 'error',
      from: { path: '^signaling/', pathNot: TEST },
      to: { path: '^(control-plane/(?!client/)|media-server/|workers/)' },
    },
    {
      name: 'browser-code-is-browser-safe',
      comment:
        'The web app and the client library reach the ground floor only through the zod-only contracts entry.',
      severity: 'error',
      from: {
        path: '^(web/src|signaling/client|signaling/protocol)/',
        pathNot: '^signaling/client/testing/',
      },
      to: {
        path: `^(common|proto|app|${ROLES.join('|')}|web/(?!src/))`,
        pathNot: [
          '^common/contracts/browser\\.ts$',
          '^common/contracts/(chat-rules|errors|mediasoup)\\.ts$',
          '^signaling/(client|protocol)/',
        ],
      },
    },
    {
      name: 'production-code-does-not-import-tests',
      comment: 'Test helpers and test files are for tests.',
      severity: 'error',
      from: { pathNot: `${TEST}|^bench/` },
      to: { path: TEST },
    },
    ...throughIndex,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|data|web/dist|bench/results|proto/gen/google)' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
