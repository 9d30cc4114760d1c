/**
 * `underlay worker` as a long-running service (deploy/systemd/underlay-worker.service): connects with the
 * Temporal profile (connection.ts), polls one task queue, and stops gracefully.
 *
 * On SIGTERM or SIGINT the worker stops polling (no new onboarding step starts here) and running step activities
 * get the shutdown grace to finish. A step still running when the grace ends is cancelled: its attempt fails
 * (Temporal's WORKER_SHUTDOWN) and Temporal retries it on another worker at once, where it observes the host
 * again and applies only what is still missing. Workflow tasks need no grace: another worker replays them.
 * A repeated signal does not cut the grace short (systemd and wrappers may deliver SIGTERM twice); SIGKILL does.
 * If the worker has not stopped FORCE_MARGIN_MS after the grace, run() fails and the process exits 1.
 */
import { Runtime, type Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, siteActivities } from '../activities';
import { workerSshPool } from '../activities/connect';
import { siteTaskQueue, TASK_QUEUE } from '../common/config';
import { Label } from '../spec/identifiers';
import { connectWorker } from './connection';
import { metricsRuntimeOptions, METRICS_ADDRESS_ENV } from './step-metrics';
import { createWorker, workerTuning, WORKER_TUNING_BOUNDS, type WorkerTuning } from './worker';

export const DEFAULT_SHUTDOWN_GRACE = '60s';
/** Beyond the grace: time for cancelled activities to report and the worker to close its pollers. */
export const FORCE_MARGIN_MS = 15_000;
const MAX_GRACE_MS = 6 * 3600_000;

/** `90`, `90s`, `500ms`, `2m`, `1h` → milliseconds; 0 … 6 h. */
export function parseShutdownGrace(v: string): number {
  const m = /^(\d{1,8})(ms|s|m|h)?$/.exec(v.trim());
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'] : NaN;
  if (!Number.isFinite(ms) || ms > MAX_GRACE_MS)
    throw new Error(`--shutdown-grace: expected a duration from 0 to 6h such as 60s or 5m, got ${JSON.stringify(v)}`);
  return ms;
}

export function formatMs(ms: number): string {
  return ms % 60_000 === 0 && ms > 0 ? `${ms / 60_000} min` : ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** The worker flags (and their environment defaults) for each tuning setting (worker.ts: WORKER_TUNING). */
export const TUNING_FLAGS: Record<keyof WorkerTuning, { flag: string; env: string }> = {
  maxCachedWorkflows: { flag: '--max-cached-workflows', env: 'UNDERLAY_WORKER_MAX_CACHED_WORKFLOWS' },
  maxConcurrentWorkflowTaskExecutions: { flag: '--max-workflow-tasks', env: 'UNDERLAY_WORKER_MAX_WORKFLOW_TASKS' },
  maxConcurrentActivityTaskExecutions: { flag: '--max-activities', env: 'UNDERLAY_WORKER_MAX_ACTIVITIES' },
};

/** One tuning value from a flag or its environment variable: a decimal integer within WORKER_TUNING_BOUNDS. */
export function parseTuning(key: keyof WorkerTuning, v: string, source = TUNING_FLAGS[key].flag): number {
  const [lo, hi] = WORKER_TUNING_BOUNDS[key];
  const n = /^\d{1,6}$/.test(v.trim()) ? Number(v.trim()) : NaN;
  if (!(n >= lo && n <= hi)) throw new Error(`${source}: expected an integer from ${lo} to ${hi}, got ${JSON.stringify(v.slice(0, 40))}`);
  return n;
}

/** The tuning set in the environment (UNDERLAY_WORKER_MAX_*), each checked; flags override it. */
export function tuningFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<WorkerTuning> {
  const out: Partial<WorkerTuning> = {};
  for (const [key, { env: name }] of Object.entries(TUNING_FLAGS) as Array<[keyof WorkerTuning, { env: string }]>) {
    const v = env[name];
    if (v !== undefined && v !== '') out[key] = parseTuning(key, v, name);
  }
  return out;
}

export interface WorkerServiceOptions {
  taskQueue?: string;
  shutdownGraceMs: number;
  /** Prometheus bind address (default $UNDERLAY_METRICS_ADDRESS; none → no metrics endpoint). */
  metrics?: string;
  /** Where status lines go (default stdout). */
  log?: (line: string) => void;
  /** The activities to register (default: the production steps over SSH). Tests pass a host stand-in. */
  activities?: object;
  workflowBundle?: WorkerOptions['workflowBundle'];
  /**
   * A site-local worker: poll `<taskQueue>-<site>` for the step activities of that site's servers (and no
   * workflows). With `workflows`, the same process also polls the central queue for workflows and central activities.
   */
  site?: string;
  workflows?: boolean;
  /** Cache and concurrency limits over the environment's (tuningFromEnv) and the defaults (worker.ts). */
  tuning?: Partial<WorkerTuning>;
}

/** `--site` value: a site label as specs carry it. */
export function parseSite(v: string): string {
  const r = Label.safeParse(v);
  if (!r.success) throw new Error(`--site: ${JSON.stringify(v)} is not a site label (letters, digits, ".", "_", "-"; ≤ 64)`);
  return v;
}

/** Runs the worker until a signal has drained it; resolves when it stopped cleanly, rejects otherwise. */
export async function runWorkerService(o: WorkerServiceOptions): Promise<void> {
  const log = o.log ?? ((line: string) => console.log(line));
  const taskQueue = o.taskQueue ?? TASK_QUEUE;
  const metrics = o.metrics ?? process.env[METRICS_ADDRESS_ENV];
  // The Runtime installs once, before any connection. Signals are ours (below), not the Runtime's.
  Runtime.install({ ...(metrics ? metricsRuntimeOptions(metrics) : {}), shutdownSignals: [] });
  if (metrics) log(`underlay worker metrics on http://${metrics}/metrics`);

  const { connection, namespace } = await connectWorker();
  const grace = formatMs(o.shutdownGraceMs);
  let stopping: string | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log(`${signal} while stopping (since ${stopping}): still waiting for running steps — SIGKILL stops at once`);
      return;
    }
    stopping = signal;
    log(`${signal}: stopping — polling no new tasks; running steps have ${grace} to finish, then they are cancelled and retried by another worker`);
    if (worker.getState() === 'RUNNING') worker.shutdown();
  };
  const tuning = workerTuning({ ...tuningFromEnv(), ...o.tuning });
  const all = o.activities ?? createActivities();
  const common = { connection, namespace, tuning, shutdownGraceTime: o.shutdownGraceMs, shutdownForceTime: o.shutdownGraceMs + FORCE_MARGIN_MS };
  // Central: workflows and every activity on the central queue. Site: that site's step activities only.
  const plan: Array<{ queue: string; what: string; site: boolean }> = o.site
    ? [
        { queue: siteTaskQueue(o.site, taskQueue), what: `site ${o.site}: step activities`, site: true },
        ...(o.workflows ? [{ queue: taskQueue, what: 'central: workflows and activities', site: false }] : []),
      ]
    : [{ queue: taskQueue, what: '', site: false }];
  const workers: Worker[] = [];
  try {
    for (const p of plan) {
      workers.push(
        await createWorker({
          ...common,
          taskQueue: p.queue,
          activities: p.site ? siteActivities(all) : all,
          ...(p.site ? { workflows: false } : o.workflowBundle ? { workflowBundle: o.workflowBundle } : {}),
        }),
      );
    }
  } catch (err) {
    await connection.close();
    throw err;
  }
  const worker = { getState: () => workers[0]!.getState(), shutdown: () => workers.forEach((w) => w.getState() === 'RUNNING' && w.shutdown()) };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  for (const [i, p] of plan.entries()) {
    log(
      `underlay worker ${workers[i]!.options.identity} polling task queue "${p.queue}"${p.what ? ` (${p.what})` : ''} in namespace ${namespace} (shutdown grace ${grace}; ${p.site ? '' : `${tuning.maxCachedWorkflows} workflows cached, ${tuning.maxConcurrentWorkflowTaskExecutions} workflow tasks and `}${tuning.maxConcurrentActivityTaskExecutions} activities at once)`,
    );
  }
  try {
    // One worker stopping (an error) stops the others too: the process runs all or nothing.
    await Promise.all(
      workers.map((w) =>
        w.run().catch((err: unknown) => {
          worker.shutdown();
          throw err;
        }),
      ),
    );
    log(`underlay worker stopped${stopping ? ` after ${stopping}` : ''}`);
  } finally {
    const ssh = workerSshPool.stats();
    workerSshPool.closeIdle();
    if (ssh.handshakes || ssh.reused) log(`SSH sessions: ${ssh.handshakes} handshake(s), ${ssh.reused} saved by reusing a pooled session`);
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await connection.close();
  }
}
