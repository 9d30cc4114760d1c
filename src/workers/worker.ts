/** The underlay worker: onboarding workflows and the step activities that reach hosts over SSH. */
import type { DataConverter, Duration } from '@temporalio/common';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import type { Connector } from '../activities/run-step';
import { TASK_QUEUE } from '../common/config';
import { dataConverterFromEnv } from './codec-keys';
import { stepMetricsInterceptor } from './step-metrics';

export interface UnderlayWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue?: string;
  /** How activities reach hosts; default SSH with pinned host keys. */
  connector?: Connector;
  /**
   * A prebuilt workflow bundle (tests bundle once); default: bundle src/workflows at start. With payload
   * encryption, build it with `failureConverterPath: FAILURE_CONVERTER_PATH` (codec-keys.ts), else the
   * workflow's own failure messages stay in clear.
   */
  workflowBundle?: WorkerOptions['workflowBundle'];
  activities?: object;
  /** Poll workflow tasks too (default true). A site-local worker runs activities only. */
  workflows?: boolean;
  /** The worker's identity in histories and pollers (default the SDK's `<pid>@<hostname>`). */
  identity?: string;
  /**
   * Payload (and failure) encryption; default from UNDERLAY_CODEC_KEYS_FILE / UNDERLAY_CODEC_KEY(_ID), none when
   * unset. Clients must use the same keys (connectClient reads the same settings).
   */
  dataConverter?: DataConverter;
  /**
   * After `shutdown()` (SIGTERM), how long running activities may go on before they are cancelled (their attempt
   * then fails and Temporal retries it on another worker). Default 0: cancel at once.
   */
  shutdownGraceTime?: Duration;
  /** After `shutdown()`, when to give up waiting altogether (run() throws); default: never. */
  shutdownForceTime?: Duration;
}

export async function createWorker(opts: UnderlayWorkerOptions): Promise<Worker> {
  const dataConverter = 'dataConverter' in opts ? opts.dataConverter : dataConverterFromEnv();
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    ...(opts.workflows === false ? {} : opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath: require.resolve('../workflows') }),
    activities: opts.activities ?? createActivities(opts.connector),
    ...(dataConverter ? { dataConverter } : {}),
    ...(opts.identity ? { identity: opts.identity } : {}),
    ...(opts.shutdownGraceTime !== undefined ? { shutdownGraceTime: opts.shutdownGraceTime } : {}),
    ...(opts.shutdownForceTime !== undefined ? { shutdownForceTime: opts.shutdownForceTime } : {}),
    // Per-step duration histograms and outcome counters, on the Runtime's Prometheus endpoint (step-metrics.ts).
    interceptors: { activity: [stepMetricsInterceptor] },
    // Workflow state is small, but cap the cache so a large fleet cannot exhaust the worker's heap.
    maxCachedWorkflows: 500,
    // Cancellation reaches an activity only with a heartbeat response; the default throttle (0.8 × the
    // heartbeat timeout) would let a cancelled step keep changing a host for ~24 s.
    maxHeartbeatThrottleInterval: '2s',
    defaultHeartbeatThrottleInterval: '2s',
  });
}
