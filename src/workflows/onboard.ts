/**
 * onboardServer — the runbook as a saga.
 *
 *   cable check → bond → VLAN → SR-IOV → hypervisor install → network attach
 *
 * Each step observes, applies only what is missing, verifies, and returns the pre-state it saw. Every step
 * that changed the host pushes a compensation restoring that pre-state. On failure or cancellation the
 * compensations run in reverse, in a non-cancellable scope, and the workflow fails naming the failed step,
 * its attempts, its last error and each compensation's outcome.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  TimeoutFailure,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities, StepFailureDetails, StepResult, UndoResult } from '../activities';
import { SA_OUTCOME, SA_STEP } from '../common/search-attributes';
import { STEP_TITLES, STEPS, stepApplies, type StepName } from '../common/steps';
import type { ServerSpec } from '../spec/server';
import {
  statusQuery,
  type CompensationOutcome,
  type OnboardingFailureReport,
  type OnboardingStatus,
  type StepStatus,
} from './messages';
import { ROLLBACK_POLICY, STEP_POLICY } from './policy';

export interface OnboardInput {
  /** A validated server spec (the client validates; every activity validates again). */
  spec: ServerSpec;
}

export interface OnboardResult {
  serverId: string;
  steps: Record<StepName, StepStatus>;
}

type StepFn = (spec: ServerSpec) => Promise<StepResult>;
type UndoFn = (spec: ServerSpec, pre: unknown) => Promise<UndoResult>;

const apply: Record<StepName, StepFn> = {
  cable: proxyActivities<Activities>(STEP_POLICY.cable).checkCabling,
  bond: proxyActivities<Activities>(STEP_POLICY.bond).configureBond,
  vlan: proxyActivities<Activities>(STEP_POLICY.vlan).configureVlans,
  sriov: proxyActivities<Activities>(STEP_POLICY.sriov).enableSriov,
  hypervisor: proxyActivities<Activities>(STEP_POLICY.hypervisor).installHypervisor,
  attach: proxyActivities<Activities>(STEP_POLICY.attach).attachNetwork,
};

const rollbacks = proxyActivities<Activities>(ROLLBACK_POLICY);
const undo: Record<StepName, UndoFn> = {
  cable: rollbacks.rollbackCabling,
  bond: rollbacks.rollbackBond,
  vlan: rollbacks.rollbackVlans,
  sriov: rollbacks.rollbackSriov,
  hypervisor: rollbacks.rollbackHypervisor,
  attach: rollbacks.rollbackNetworkAttach,
};

interface Compensation {
  step: StepName;
  pre: unknown;
}

export async function onboardServer(input: OnboardInput): Promise<OnboardResult> {
  const { spec } = input;
  const status: OnboardingStatus = {
    serverId: spec.id,
    phase: 'running',
    currentStep: null,
    steps: Object.fromEntries(STEPS.map((s) => [s, { state: stepApplies(s, spec) ? 'pending' : 'skipped' }])) as OnboardingStatus['steps'],
  };
  setHandler(statusQuery, () => status);

  const compensations: Compensation[] = [];
  let failedStep: StepName | null = null;
  try {
    for (const step of STEPS) {
      if (!stepApplies(step, spec)) continue;
      const st = status.steps[step];
      status.currentStep = step;
      st.state = 'running';
      st.startedAt = new Date().toISOString();
      upsertSearchAttributes([{ key: SA_STEP, value: step }]);
      let result: StepResult;
      try {
        result = await apply[step](spec);
      } catch (err) {
        failedStep = step;
        const details = stepFailureDetails(err);
        Object.assign(st, { state: 'failed', endedAt: new Date().toISOString(), attempts: details?.attempt, error: rootMessage(err) });
        // A step that failed half-way may have changed the host: it is compensated first.
        if (details?.touched && details.pre !== undefined) compensations.unshift({ step, pre: details.pre });
        throw err;
      }
      Object.assign(st, {
        state: result.changed ? 'done' : 'unchanged',
        endedAt: new Date().toISOString(),
        attempts: result.attempt,
        changes: result.changes.length,
        summary: result.summary,
      });
      if (result.changed) compensations.unshift({ step, pre: result.pre });
    }
    status.phase = 'succeeded';
    status.currentStep = null;
    upsertSearchAttributes([{ key: SA_STEP, value: 'done' }, { key: SA_OUTCOME, value: 'onboarded' }]);
    return { serverId: spec.id, steps: status.steps };
  } catch (err) {
    const cancelled = isCancellation(err);
    const outcomes = await CancellationScope.nonCancellable(() => compensate(spec, compensations, status));
    const rolledBack = outcomes.every((o) => o.outcome !== 'failed');
    status.phase = cancelled ? 'cancelled' : 'failed';
    status.currentStep = null;
    upsertSearchAttributes([{ key: SA_OUTCOME, value: `${cancelled ? 'cancelled' : 'failed'}${rolledBack ? '' : '-rollback-incomplete'}` }]);
    if (cancelled) throw err;
    const report: OnboardingFailureReport = {
      serverId: spec.id,
      failedStep,
      attempts: failedStep === null ? null : (status.steps[failedStep as StepName].attempts ?? null),
      error: rootMessage(err),
      compensations: outcomes,
    };
    throw ApplicationFailure.create({ type: 'OnboardingFailed', nonRetryable: true, message: failureMessage(report), details: [report] });
  }
}

/** Runs the compensations newest-first; one failing does not stop the others. */
async function compensate(spec: ServerSpec, compensations: Compensation[], status: OnboardingStatus): Promise<CompensationOutcome[]> {
  const outcomes: CompensationOutcome[] = [];
  if (compensations.length) status.phase = 'compensating';
  for (const { step, pre } of compensations) {
    const st = status.steps[step];
    const prior = st.state;
    st.state = 'compensating';
    status.currentStep = step;
    upsertSearchAttributes([{ key: SA_STEP, value: `rollback:${step}` }]);
    try {
      const r = await undo[step](spec, pre);
      st.state = prior === 'failed' ? 'failed' : 'compensated';
      outcomes.push({ step, outcome: r.changes.length ? 'restored' : 'already-restored', changes: r.changes.length });
    } catch (err) {
      st.state = 'compensation-failed';
      st.error = rootMessage(err);
      outcomes.push({ step, outcome: 'failed', error: rootMessage(err) });
      log.error('compensation failed', { step, error: rootMessage(err) });
    }
  }
  // Steps after the failure never ran.
  for (const s of STEPS) if (status.steps[s].state === 'pending') status.steps[s].state = 'not-run';
  return outcomes;
}

/** The StepFailureDetails a step activity attached to its failure (or its last heartbeat, on a timeout). */
function stepFailureDetails(err: unknown): StepFailureDetails | undefined {
  if (!(err instanceof ActivityFailure)) return undefined;
  const cause = err.cause;
  if (cause instanceof ApplicationFailure || cause instanceof CancelledFailure) return cause.details?.[0] as StepFailureDetails | undefined;
  if (cause instanceof TimeoutFailure) {
    const hb = cause.lastHeartbeatDetails as { pre?: unknown; touched?: boolean } | undefined;
    return hb && { step: 'cable', host: workflowInfo().workflowId, attempt: 0, touched: hb.touched ?? false, pre: hb.pre };
  }
  return undefined;
}

function rootMessage(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && (e as { cause?: unknown }).cause instanceof Error) e = (e as { cause: unknown }).cause;
  return e instanceof Error ? e.message : String(e);
}

function failureMessage(r: OnboardingFailureReport): string {
  const where = r.failedStep ? `${STEP_TITLES[r.failedStep]} (${r.failedStep})${r.attempts ? ` after ${r.attempts} attempt(s)` : ''}` : 'an unknown step';
  const comp = r.compensations.length
    ? r.compensations.map((c) => `${c.step} ${c.outcome === 'failed' ? `FAILED (${c.error})` : c.outcome}`).join(', ')
    : 'nothing to roll back';
  return `onboarding of ${r.serverId} failed at ${where}: ${r.error} — rollback: ${comp}`;
}
