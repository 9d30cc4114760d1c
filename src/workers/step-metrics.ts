/**
 * Prometheus metrics of a worker: the SDK's own (task latencies, slots, polls, …) plus, per onboarding step,
 *
 *   underlay_step_duration_seconds{step,hypervisor,kind,outcome}   histogram of one activity attempt
 *   underlay_step_total{step,hypervisor,kind,outcome}              counter of activity attempts
 *
 * step: cable | bond | vlan | sriov | hypervisor | attach;  kind: apply | rollback;  outcome: ok | failed |
 * cancelled;  hypervisor: the spec's hypervisor.kind. The SDK adds namespace, taskQueue and activityType.
 *
 * The step metrics come from an activity interceptor through the activity context's metric meter, so they are
 * served by the SDK's own Prometheus endpoint (Runtime telemetry) next to the SDK metrics. Without a metrics
 * address the Runtime has no exporter and the interceptor records into a no-op.
 */
import { CancelledFailure, type MetricTags } from '@temporalio/common';
import type { Context } from '@temporalio/activity';
import { type ActivityInterceptors, type RuntimeOptions } from '@temporalio/worker';
import { stepOfActivity } from '../steps';
import { MOVE_CONFIRM_BUCKETS, MOVE_CONFIRM_METRIC } from '../activities/move';

export const METRICS_ADDRESS_ENV = 'UNDERLAY_METRICS_ADDRESS';
export const STEP_DURATION_METRIC = 'underlay_step_duration_seconds';
export const STEP_COUNT_METRIC = 'underlay_step_total';

/** Step durations range from a second (cable check) to many minutes (a KVM install). */
export const STEP_DURATION_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600];

export type StepOutcome = 'ok' | 'failed' | 'cancelled';

/** The hypervisor label: the spec's kind when it looks like one (bounded cardinality), else "unknown". */
function hypervisorOf(spec: unknown): string {
  const kind = (spec as { hypervisor?: { kind?: unknown } } | null)?.hypervisor?.kind;
  return typeof kind === 'string' && /^[a-z][a-z0-9-]{0,15}$/.test(kind) ? kind : 'unknown';
}

function outcomeOf(err: unknown, ctx: Context): StepOutcome {
  if (err instanceof CancelledFailure) return 'cancelled';
  if (ctx.cancellationSignal.aborted && (err as { name?: string } | null)?.name === 'AbortError') return 'cancelled';
  return 'failed';
}

/**
 * Activity interceptor factory (WorkerOptions.interceptors.activity): times every step and rollback activity
 * attempt and counts its outcome. Other activities pass through untouched.
 */
export function stepMetricsInterceptor(ctx: Context): ActivityInterceptors {
  // The step and apply/rollback of the activity, from the step registry (other activities pass through).
  const entry = stepOfActivity(ctx.info.activityType);
  if (!entry) return {};
  const { step, kind } = entry;
  return {
    inbound: {
      async execute(input, next) {
        const started = process.hrtime.bigint();
        let outcome: StepOutcome = 'failed';
        try {
          const result = await next(input);
          outcome = 'ok';
          return result;
        } catch (err) {
          outcome = outcomeOf(err, ctx);
          throw err;
        } finally {
          const seconds = Number(process.hrtime.bigint() - started) / 1e9;
          const tags: MetricTags = { step, kind, hypervisor: hypervisorOf(input.args[0]), outcome };
          try {
            const meter = ctx.metricMeter;
            meter.createHistogram(STEP_DURATION_METRIC, 'float', 's', 'Duration of one onboarding step activity attempt').record(seconds, tags);
            meter.createCounter(STEP_COUNT_METRIC, '1', 'Onboarding step activity attempts by outcome').add(1, tags);
          } catch {
            // Metrics never fail a step.
          }
        }
      },
    },
  };
}

/** Validates `host:port` / `[v6]:port`; returns it unchanged. */
export function parseMetricsAddress(address: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(address.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new Error(`metrics address ${JSON.stringify(address)}: expected <host>:<port>, e.g. 127.0.0.1:9464`);
  return address.trim();
}

/** Runtime options serving Prometheus metrics (at /metrics) on `bindAddress`; durations in seconds. */
export function metricsRuntimeOptions(bindAddress: string): RuntimeOptions {
  return {
    telemetryOptions: {
      metrics: {
        prometheus: {
          bindAddress: parseMetricsAddress(bindAddress),
          useSecondsForDurations: true,
          histogramBucketOverrides: { [STEP_DURATION_METRIC]: STEP_DURATION_BUCKETS, [MOVE_CONFIRM_METRIC]: MOVE_CONFIRM_BUCKETS },
        },
      },
    },
  };
}
