/**
 * `underlay worker`: the worker as a service (src/workers/service.ts) — flags, and the seam a test uses to run
 * this very command over a host stand-in instead of SSH.
 */
import type { Command } from 'commander';
import { TASK_QUEUE } from '../common/config';
import {
  DEFAULT_SHUTDOWN_GRACE,
  parseShutdownGrace,
  parseSite,
  parseTuning,
  runWorkerService,
  TUNING_FLAGS,
  type WorkerServiceOptions,
} from '../workers/service';
import { WORKER_TUNING, WORKER_TUNING_BOUNDS, type WorkerTuning } from '../workers/worker';

interface WorkerFlags {
  taskQueue: string;
  metrics?: string;
  shutdownGrace: string;
  site?: string;
  workflows?: boolean;
  maxCachedWorkflows?: number;
  maxWorkflowTasks?: number;
  maxActivities?: number;
}

const range = (k: keyof WorkerTuning) => `${WORKER_TUNING_BOUNDS[k][0]}–${WORKER_TUNING_BOUNDS[k][1]}`;

export function registerWorkerCommand(program: Command, overrides: Pick<WorkerServiceOptions, 'activities' | 'workflowBundle'> = {}): void {
  program
    .command('worker')
    .description('run a worker: onboarding workflows and step activities (SSH with pinned host keys); SIGTERM drains it')
    .option('--task-queue <name>', 'task queue to poll (with --site: the central queue the site queue is named after)', TASK_QUEUE)
    .option('--site <site>', 'a site-local worker: poll only the step activities of this site (task queue <task-queue>-<site>)', parseSite)
    .option('--workflows', 'with --site: also poll the central task queue for workflows and central activities')
    .option('--metrics <host:port>', 'serve Prometheus metrics at http://<host:port>/metrics (default $UNDERLAY_METRICS_ADDRESS; off when unset)')
    .option(
      '--shutdown-grace <duration>',
      'on SIGTERM/SIGINT, how long running steps may take to finish before they are cancelled and retried elsewhere (e.g. 60s, 5m)',
      DEFAULT_SHUTDOWN_GRACE,
    )
    .option(
      `${TUNING_FLAGS.maxCachedWorkflows.flag} <n>`,
      `workflows kept in memory; others are replayed from their history on their next task (${range('maxCachedWorkflows')}; default $${TUNING_FLAGS.maxCachedWorkflows.env} or ${WORKER_TUNING.maxCachedWorkflows})`,
      (v: string) => parseTuning('maxCachedWorkflows', v),
    )
    .option(
      `${TUNING_FLAGS.maxConcurrentWorkflowTaskExecutions.flag} <n>`,
      `workflow tasks run at once (${range('maxConcurrentWorkflowTaskExecutions')}; default $${TUNING_FLAGS.maxConcurrentWorkflowTaskExecutions.env} or ${WORKER_TUNING.maxConcurrentWorkflowTaskExecutions})`,
      (v: string) => parseTuning('maxConcurrentWorkflowTaskExecutions', v),
    )
    .option(
      `${TUNING_FLAGS.maxConcurrentActivityTaskExecutions.flag} <n>`,
      `step activities run at once (${range('maxConcurrentActivityTaskExecutions')}; default $${TUNING_FLAGS.maxConcurrentActivityTaskExecutions.env} or ${WORKER_TUNING.maxConcurrentActivityTaskExecutions})`,
      (v: string) => parseTuning('maxConcurrentActivityTaskExecutions', v),
    )
    .action(async (opts: WorkerFlags) => {
      if (opts.workflows && !opts.site) throw new Error('--workflows goes with --site (a worker without --site polls workflows anyway)');
      await runWorkerService({
        taskQueue: opts.taskQueue,
        metrics: opts.metrics,
        shutdownGraceMs: parseShutdownGrace(opts.shutdownGrace),
        ...(opts.site ? { site: opts.site, workflows: opts.workflows ?? false } : {}),
        tuning: {
          ...(opts.maxCachedWorkflows !== undefined ? { maxCachedWorkflows: opts.maxCachedWorkflows } : {}),
          ...(opts.maxWorkflowTasks !== undefined ? { maxConcurrentWorkflowTaskExecutions: opts.maxWorkflowTasks } : {}),
          ...(opts.maxActivities !== undefined ? { maxConcurrentActivityTaskExecutions: opts.maxActivities } : {}),
        },
        ...overrides,
      });
    });
}
