/** Housekeeping of the control plane's database: the retention sweep. */
export {
  type RetentionDeps,
  type RetentionRun,
  type RetentionSweeper,
  type RetentionTask,
  retentionTasks,
  startRetention,
  startRetentionSweeper,
} from './retention.js';
