/** The underlay worker: onboarding workflows and the step activities that reach hosts over SSH. */
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import type { Connector } from '../activities/run-step';
import { TASK_QUEUE } from '../common/config';

export interface UnderlayWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue?: string;
  /** How activities reach hosts; default SSH with pinned host keys. */
  connector?: Connector;
  /** A prebuilt workflow bundle (tests bundle once); default: bundle src/workflows at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  activities?: object;
}

export async function createWorker(opts: UnderlayWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath: require.resolve('../workflows') }),
    activities: opts.activities ?? createActivities(opts.connector),
    // Workflow state is small, but cap the cache so a large fleet cannot exhaust the worker's heap.
    maxCachedWorkflows: 500,
    // Cancellation reaches an activity only with a heartbeat response; the default throttle (0.8 × the
    // heartbeat timeout) would let a cancelled step keep changing a host for ~24 s.
    maxHeartbeatThrottleInterval: '2s',
    defaultHeartbeatThrottleInterval: '2s',
  });
}
