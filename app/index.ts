/**
 * The composition root: the only code that wires roles to adapters (platform.ts), the process
 * entry (main.ts) and the operator CLI (cli.ts). Nothing below app/ imports it; tests and
 * benchmarks start a whole platform through it.
 */
export { type Platform, startPlatform } from './platform.js';
