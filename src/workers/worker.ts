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
  /** Cache and concurrency limits (default WORKER_TUNING; each within WORKER_TUNING_BOUNDS). */
  tuning?: Partial<WorkerTuning>;
}

/** What bounds a worker's memory: how many workflows it keeps cached, how many tasks it runs at once. */
export interface WorkerTuning {
  /** Workflows kept in the worker's cache (sticky); one not cached is replayed from its history on its next task. */
  maxCachedWorkflows: number;
  /** Activities (steps) running at once in this worker. */
  maxConcurrentActivityTaskExecutions: number;
  /** Workflow tasks running at once in this worker. */
  maxConcurrentWorkflowTaskExecutions: number;
}

/** The options before issue 14 (cache 500, the SDK's defaults for the rest): the engine benchmark's baseline. */
export const WORKER_TUNING_UNTUNED: WorkerTuning = {
  maxCachedWorkflows: 500,
  maxConcurrentActivityTaskExecutions: 100,
  maxConcurrentWorkflowTaskExecutions: 40,
};

/**
 * The production defaults. With the heap bounds below, a cached workflow costs about 0.1 MiB, so the cache holds
 * 1,000 onboardings (one worker's measured load) and none of them is replayed from its history mid-onboarding.
 */
export const WORKER_TUNING: WorkerTuning = { ...WORKER_TUNING_UNTUNED, maxCachedWorkflows: 1_000 };

/**
 * The V8 heap bounds bin/underlay gives `underlay worker` (its node flags; UNDERLAY_WORKER_HEAP_MIB sets the old
 * space, WORKER_HEAP_MIB_BOUNDS): V8 applies them to each isolate, the main thread and the workflow thread alike.
 * Without them V8 sizes its heaps from the machine's memory and grows them lazily: the engine benchmark measured
 * the worker at 1,000 concurrent onboardings well above what it keeps alive (docs/benchmarks.md). bin/underlay
 * repeats these values (bash cannot import them); test/workers/service.test.ts checks the two agree.
 */
export const WORKER_HEAP_MIB = 384;
export const WORKER_HEAP_MIB_BOUNDS = [192, 16_384] as const;
export const WORKER_SEMI_SPACE_MIB = 2;
export function workerNodeFlags(heapMiB = WORKER_HEAP_MIB): string[] {
  return [`--max-old-space-size=${heapMiB}`, `--max-semi-space-size=${WORKER_SEMI_SPACE_MIB}`];
}

/** Inclusive bounds of each setting (the SDK needs ≥ 2 workflow task slots with a cache). */
export const WORKER_TUNING_BOUNDS: Record<keyof WorkerTuning, readonly [number, number]> = {
  maxCachedWorkflows: [0, 10_000],
  maxConcurrentActivityTaskExecutions: [1, 1_000],
  maxConcurrentWorkflowTaskExecutions: [2, 200],
};

/** The defaults with `t` over them, each checked against its bounds (the error names the setting, its bounds and the value). */
export function workerTuning(t: Partial<WorkerTuning> = {}): WorkerTuning {
  const out = { ...WORKER_TUNING, ...t };
  for (const k of Object.keys(WORKER_TUNING_BOUNDS) as Array<keyof WorkerTuning>) {
    const [lo, hi] = WORKER_TUNING_BOUNDS[k];
    const v = out[k];
    if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`worker tuning ${k}: expected an integer from ${lo} to ${hi}, got ${String(v)}`);
  }
  return out;
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
    ...workerTuning(opts.tuning),
    // Cancellation reaches an activity only with a heartbeat response; the default throttle (0.8 × the
    // heartbeat timeout) would let a cancelled step keep changing a host for ~24 s.
    maxHeartbeatThrottleInterval: '2s',
    defaultHeartbeatThrottleInterval: '2s',
  });
}
