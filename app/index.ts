/**
 * The composition root: the only code that wires roles to adapters (platform.ts), how `npm start`
 * runs them (launch.ts: role threads under a supervisor, supervisor.ts, or one loop), the process
 * entry (main.ts) and the operator CLI (cli.ts). Nothing below app/ imports it; tests and
 * benchmarks start a whole platform through it.
 */
export { launchPlatform, type RunningPlatform } from './launch.js';
export { type Platform, type PlatformOptions, startPlatform } from './platform.js';
export { type RoleThreadInfo, startThreadedPlatform, type ThreadedPlatform } from './supervisor.js';
