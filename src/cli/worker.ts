/**
 * `underlay worker`: the worker as a service (src/workers/service.ts) — flags, and the seam a test uses to run
 * this very command over a host stand-in instead of SSH.
 */
import type { Command } from 'commander';
import { TASK_QUEUE } from '../common/config';
import { DEFAULT_SHUTDOWN_GRACE, parseShutdownGrace, runWorkerService, type WorkerServiceOptions } from '../workers/service';

export function registerWorkerCommand(program: Command, overrides: Pick<WorkerServiceOptions, 'activities' | 'workflowBundle'> = {}): void {
  program
    .command('worker')
    .description('run a worker: onboarding workflows and step activities (SSH with pinned host keys); SIGTERM drains it')
    .option('--task-queue <name>', 'task queue to poll', TASK_QUEUE)
    .option('--metrics <host:port>', 'serve Prometheus metrics at http://<host:port>/metrics (default $UNDERLAY_METRICS_ADDRESS; off when unset)')
    .option(
      '--shutdown-grace <duration>',
      'on SIGTERM/SIGINT, how long running steps may take to finish before they are cancelled and retried elsewhere (e.g. 60s, 5m)',
      DEFAULT_SHUTDOWN_GRACE,
    )
    .action(async (opts: { taskQueue: string; metrics?: string; shutdownGrace: string }) => {
      await runWorkerService({ taskQueue: opts.taskQueue, metrics: opts.metrics, shutdownGraceMs: parseShutdownGrace(opts.shutdownGrace), ...overrides });
    });
}
