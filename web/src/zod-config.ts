/**
 * Imported first by main.ts. zod compiles fast parsers with `new Function` when it can and
 * probes for that on first use; the app's Content-Security-Policy (script-src 'self') forbids
 * eval, so the probe shows up as a CSP violation on every page. jitless skips the probe.
 */
import { config } from 'zod/mini';

config({ jitless: true });
