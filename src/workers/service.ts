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
import { Runtime, type WorkerOptions } from '@temporalio/worker';
import { workerSshPool } from '../activities/connect';
import { TASK_QUEUE } from '../common/config';
import { connectWorker } from './connection';
import { metricsRuntimeOptions, METRICS_ADDRESS_ENV } from './step-metrics';
import { createWorker } from './worker';

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
  const worker = await createWorker({
    connection,
    namespace,
    taskQueue,
    shutdownGraceTime: o.shutdownGraceMs,
    shutdownForceTime: o.shutdownGraceMs + FORCE_MARGIN_MS,
    ...(o.activities ? { activities: o.activities } : {}),
    ...(o.workflowBundle ? { workflowBundle: o.workflowBundle } : {}),
  }).catch(async (err: unknown) => {
    await connection.close();
    throw err;
  });
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  log(`underlay worker ${worker.options.identity} polling task queue "${taskQueue}" in namespace ${namespace} (shutdown grace ${grace})`);
  try {
    await worker.run();
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
