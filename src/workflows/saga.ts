/**
 * The step saga shared by onboarding and drift remediation: apply steps in runbook order with the step
 * activities and policies of policy.ts; every step that changed the host (or failed half-way after touching it)
 * pushes a compensation restoring the pre-state it observed; on failure or cancellation the compensations run
 * newest first in a non-cancellable scope, one failing not stopping the others.
 *
 * The callers keep their own bookkeeping (status, search attributes) in the hooks; the hooks run at the same
 * points, in the same order, as the commands they may issue, so the command sequence is the saga's alone.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  isCancellation,
  log,
  proxyActivities,
  TimeoutFailure,
  workflowInfo,
  type ActivityFunctionWithOptions,
} from '@temporalio/workflow';
import type { StepActivities, StepFailureDetails, StepResult, UndoResult } from '../activities';
import { STEP_DEFS, STEP_TITLES, stepSummary, type StepName } from '../steps';
import type { ServerSpec } from '../spec/server';
import type { CompensationOutcome } from './messages';
import { ROLLBACK_POLICY, STEP_POLICY } from './policy';
import { watchedCall, type StepRouting, type WorkerWaitHooks } from './site-queue';

// Each call carries a one-line summary (messages.ts stepSummary) that the Web UI shows next to the activity.
type StepFn = ActivityFunctionWithOptions<(spec: ServerSpec) => Promise<StepResult>>;
type UndoFn = ActivityFunctionWithOptions<(spec: ServerSpec, pre: unknown) => Promise<UndoResult>>;

/** Each step's apply activity, under its registry name and with its registry policy. */
export const applyStep: Record<StepName, StepFn> = Object.fromEntries(
  STEP_DEFS.map((d) => [d.name, proxyActivities<StepActivities>(STEP_POLICY[d.name])[d.activity.apply]]),
) as Record<StepName, StepFn>;

const rollbacks = proxyActivities<StepActivities>(ROLLBACK_POLICY);
/** Each step's rollback activity. */
export const undoStep: Record<StepName, UndoFn> = Object.fromEntries(STEP_DEFS.map((d) => [d.name, rollbacks[d.activity.undo]])) as Record<StepName, UndoFn>;

/** The apply and undo activities of a step on `routing`'s task queue (its site's), or on the workflow's own. */
function stepCalls(step: StepName, routing: StepRouting | undefined): { apply: StepFn; undo: UndoFn } {
  if (!routing) return { apply: applyStep[step], undo: undoStep[step] };
  const d = STEP_DEFS.find((x) => x.name === step)!;
  return {
    apply: proxyActivities<StepActivities>({ ...STEP_POLICY[step], taskQueue: routing.taskQueue })[d.activity.apply],
    undo: proxyActivities<StepActivities>({ ...ROLLBACK_POLICY, taskQueue: routing.taskQueue })[d.activity.undo],
  };
}

/**
 * The summary of a step activity call in the Web UI's event history: the step's one line for the apply
 * (`bond0 ← eth1,eth2 · 802.3ad · fast`), `undo bond: restore the pre-state of bond0 ← …` for its rollback.
 */
export function activitySummary(step: StepName, spec: ServerSpec, kind: 'apply' | 'undo'): string {
  const line = kind === 'undo' ? `undo ${STEP_TITLES[step]}: restore the pre-state of ${stepSummary(step, spec)}` : stepSummary(step, spec);
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}

export interface SagaHooks extends WorkerWaitHooks {
  /**
   * Awaited before each step, in the saga's cancellable part: a wait here (pause, approval gate) ends in the
   * usual compensation when the saga is cancelled while waiting.
   */
  beforeStep?(step: StepName): Promise<void>;
  stepStarted?(step: StepName): void;
  /** Awaited after the last step, still in the cancellable part (a cancellation that raced it can still fail it). */
  beforeFinish?(): Promise<void>;
  stepDone?(step: StepName, result: StepResult): void;
  stepFailed?(step: StepName, err: unknown, details: StepFailureDetails | undefined): void;
  /** A compensation is about to run (the first call means compensating has begun). */
  compensating?(step: StepName): void;
  compensated?(step: StepName, outcome: CompensationOutcome): void;
}

export type SagaOutcome =
  | {
      ok: true;
      results: Partial<Record<StepName, StepResult>>;
      /** What undoes it all, newest first: the steps that changed the host and the pre-state each saw. */
      compensations: Compensation[];
    }
  | {
      ok: false;
      error: unknown;
      cancelled: boolean;
      /** null when the failure came from outside a step (e.g. cancellation between steps). */
      failedStep: StepName | null;
      attempts: number | null;
      compensations: CompensationOutcome[];
      results: Partial<Record<StepName, StepResult>>;
    };

export interface Compensation {
  step: StepName;
  pre: unknown;
}

/**
 * Applies `steps` in the given order; on failure compensates what changed and returns the failure. With `routing`,
 * every step activity (and its compensation) goes to the site's task queue, watched for a live worker.
 */
export async function runStepSaga(spec: ServerSpec, steps: readonly StepName[], hooks: SagaHooks = {}, routing?: StepRouting): Promise<SagaOutcome> {
  const compensations: Compensation[] = [];
  const results: Partial<Record<StepName, StepResult>> = {};
  let failedStep: StepName | null = null;
  let attempts: number | null = null;
  try {
    for (const step of steps) {
      await hooks.beforeStep?.(step);
      hooks.stepStarted?.(step);
      let result: StepResult;
      try {
        const { apply } = stepCalls(step, routing);
        result = await watchedCall(routing, () => apply.executeWithOptions({ summary: activitySummary(step, spec, 'apply') }, [spec]), hooks);
      } catch (err) {
        failedStep = step;
        const details = stepFailureDetails(err, step);
        attempts = details?.attempt ?? null;
        hooks.stepFailed?.(step, err, details);
        // A step that failed half-way may have changed the host: it is compensated first.
        if (details?.touched && details.pre !== undefined) compensations.unshift({ step, pre: details.pre });
        throw err;
      }
      results[step] = result;
      hooks.stepDone?.(step, result);
      if (result.changed) compensations.unshift({ step, pre: result.pre });
    }
    await hooks.beforeFinish?.();
    return { ok: true, results, compensations };
  } catch (err) {
    const outcomes = await CancellationScope.nonCancellable(() => compensate(spec, compensations, hooks, routing));
    return { ok: false, error: err, cancelled: isCancellation(err), failedStep, attempts, compensations: outcomes, results };
  }
}

/** Runs the compensations newest-first; one failing does not stop the others. */
export async function compensate(spec: ServerSpec, compensations: Compensation[], hooks: SagaHooks, routing?: StepRouting): Promise<CompensationOutcome[]> {
  const outcomes: CompensationOutcome[] = [];
  for (const { step, pre } of compensations) {
    hooks.compensating?.(step);
    let outcome: CompensationOutcome;
    try {
      const { undo } = stepCalls(step, routing);
      const r = await watchedCall(routing, () => undo.executeWithOptions({ summary: activitySummary(step, spec, 'undo') }, [spec, pre]), hooks);
      outcome = { step, outcome: r.changes.length ? 'restored' : 'already-restored', changes: r.changes.length, ...(r.note ? { note: r.note } : {}) };
    } catch (err) {
      outcome = { step, outcome: 'failed', error: rootMessage(err) };
      log.error('compensation failed', { step, error: rootMessage(err) });
    }
    outcomes.push(outcome);
    hooks.compensated?.(step, outcome);
  }
  return outcomes;
}

/** The StepFailureDetails a step activity attached to its failure (or its last heartbeat, on a timeout). */
export function stepFailureDetails(err: unknown, step: StepName): StepFailureDetails | undefined {
  if (!(err instanceof ActivityFailure)) return undefined;
  const cause = err.cause;
  if (cause instanceof ApplicationFailure || cause instanceof CancelledFailure) return cause.details?.[0] as StepFailureDetails | undefined;
  if (cause instanceof TimeoutFailure) {
    const hb = cause.lastHeartbeatDetails as { pre?: unknown; touched?: boolean } | undefined;
    return hb && { step, host: workflowInfo().workflowId, attempt: 0, touched: hb.touched ?? false, pre: hb.pre };
  }
  return undefined;
}

/** The innermost message of a failure chain (the activity's own error, not "Activity task failed"). */
export function rootMessage(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && (e as { cause?: unknown }).cause instanceof Error) e = (e as { cause: unknown }).cause;
  return e instanceof Error ? e.message : String(e);
}

/** One line per compensation: `vlan restored, bond FAILED (…)`. */
export function describeCompensations(outcomes: CompensationOutcome[]): string {
  return outcomes.length
    ? outcomes.map((c) => `${c.step} ${c.outcome === 'failed' ? `FAILED (${c.error})` : c.outcome}${c.note ? ` (${c.note})` : ''}`).join(', ')
    : 'nothing to roll back';
}
