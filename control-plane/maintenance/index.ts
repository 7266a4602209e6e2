/** Housekeeping of the control plane's database: the retention sweep. */
export { startRetention } from './retention.js';
