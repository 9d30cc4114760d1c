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
  /** The tuning flags, by commander's attribute name (attribute below); parsed by parseTuning. */
  [tuning: string]: unknown;
}

const TUNING_KEYS = Object.keys(TUNING_FLAGS) as Array<keyof WorkerTuning>;
const TUNING_HELP: Record<keyof WorkerTuning, string> = {
  maxCachedWorkflows: 'workflows kept in memory; others are replayed from their history on their next task',
  maxConcurrentWorkflowTaskExecutions: 'workflow tasks run at once',
  maxConcurrentActivityTaskExecutions: 'step activities run at once',
};
/** Commander's attribute for a flag: --max-workflow-tasks → maxWorkflowTasks. */
const attribute = (flag: string) => flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const range = (k: keyof WorkerTuning) => `${WORKER_TUNING_BOUNDS[k][0]}–${WORKER_TUNING_BOUNDS[k][1]}`;

export function registerWorkerCommand(program: Command, overrides: Pick<WorkerServiceOptions, 'activities' | 'workflowBundle'> = {}): void {
  const cmd = program
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
    );
  for (const k of TUNING_KEYS) {
    const { flag, env } = TUNING_FLAGS[k];
    cmd.option(`${flag} <n>`, `${TUNING_HELP[k]} (${range(k)}; default $${env} or ${WORKER_TUNING[k]})`, (v: string) => parseTuning(k, v));
  }
  cmd.action(async (opts: WorkerFlags) => {
    if (opts.workflows && !opts.site) throw new Error('--workflows goes with --site (a worker without --site polls workflows anyway)');
    await runWorkerService({
      taskQueue: opts.taskQueue,
      metrics: opts.metrics,
      shutdownGraceMs: parseShutdownGrace(opts.shutdownGrace),
      ...(opts.site ? { site: opts.site, workflows: opts.workflows ?? false } : {}),
      tuning: Object.fromEntries(
        TUNING_KEYS.flatMap((k) => {
          const v = opts[attribute(TUNING_FLAGS[k].flag)];
          return typeof v === 'number' ? [[k, v]] : [];
        }),
      ),
      ...overrides,
    });
  });
}
