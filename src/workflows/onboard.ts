/**
 * onboardServer — the runbook as a saga.
 *
 *   cable check → bond → VLAN → SR-IOV → hypervisor install → network attach
 *
 * Each step observes, applies only what is missing, verifies, and returns the pre-state it saw. Every step
 * that changed the host pushes a compensation restoring that pre-state. On failure or cancellation the
 * compensations run in reverse, in a non-cancellable scope, and the workflow fails naming the failed step,
 * its attempts, its last error and each compensation's outcome. The saga itself (shared with drift
 * remediation) is in saga.ts; this file keeps the onboarding's status, search attributes and failure report.
 */
import { ApplicationFailure, setHandler, upsertSearchAttributes } from '@temporalio/workflow';
import { SA_OUTCOME, SA_STEP } from '../common/search-attributes';
import { STEP_TITLES, STEPS, stepApplies, type StepName } from '../common/steps';
import type { ServerSpec } from '../spec/server';
import { statusQuery, type OnboardingFailureReport, type OnboardingStatus, type StepState, type StepStatus } from './messages';
import { describeCompensations, rootMessage, runStepSaga } from './saga';

export interface OnboardInput {
  /** A validated server spec (the client validates; every activity validates again). */
  spec: ServerSpec;
}

export interface OnboardResult {
  serverId: string;
  steps: Record<StepName, StepStatus>;
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

  const prior: Partial<Record<StepName, StepState>> = {};
  const outcome = await runStepSaga(
    spec,
    STEPS.filter((s) => stepApplies(s, spec)),
    {
      stepStarted(step) {
        status.currentStep = step;
        Object.assign(status.steps[step], { state: 'running', startedAt: new Date().toISOString() });
        upsertSearchAttributes([{ key: SA_STEP, value: step }]);
      },
      stepDone(step, result) {
        Object.assign(status.steps[step], {
          state: result.changed ? 'done' : 'unchanged',
          endedAt: new Date().toISOString(),
          attempts: result.attempt,
          changes: result.changes.length,
          summary: result.summary,
        });
      },
      stepFailed(step, err, details) {
        Object.assign(status.steps[step], { state: 'failed', endedAt: new Date().toISOString(), attempts: details?.attempt, error: rootMessage(err) });
      },
      compensating(step) {
        status.phase = 'compensating';
        prior[step] = status.steps[step].state;
        status.steps[step].state = 'compensating';
        status.currentStep = step;
        upsertSearchAttributes([{ key: SA_STEP, value: `rollback:${step}` }]);
      },
      compensated(step, o) {
        const st = status.steps[step];
        if (o.outcome === 'failed') Object.assign(st, { state: 'compensation-failed', error: o.error });
        else st.state = prior[step] === 'failed' ? 'failed' : 'compensated';
      },
    },
  );
  if (outcome.ok) {
    status.phase = 'succeeded';
    status.currentStep = null;
    upsertSearchAttributes([{ key: SA_STEP, value: 'done' }, { key: SA_OUTCOME, value: 'onboarded' }]);
    return { serverId: spec.id, steps: status.steps };
  }

  // Steps after the failure never ran.
  for (const s of STEPS) if (status.steps[s].state === 'pending') status.steps[s].state = 'not-run';
  const { cancelled } = outcome;
  const rolledBack = outcome.compensations.every((o) => o.outcome !== 'failed');
  status.phase = cancelled ? 'cancelled' : 'failed';
  status.currentStep = null;
  upsertSearchAttributes([{ key: SA_OUTCOME, value: `${cancelled ? 'cancelled' : 'failed'}${rolledBack ? '' : '-rollback-incomplete'}` }]);
  if (cancelled) throw outcome.error;
  const report: OnboardingFailureReport = {
    serverId: spec.id,
    failedStep: outcome.failedStep,
    attempts: outcome.attempts,
    error: rootMessage(outcome.error),
    compensations: outcome.compensations,
  };
  throw ApplicationFailure.create({ type: 'OnboardingFailed', nonRetryable: true, message: failureMessage(report), details: [report] });
}

function failureMessage(r: OnboardingFailureReport): string {
  const where = r.failedStep ? `${STEP_TITLES[r.failedStep]} (${r.failedStep})${r.attempts ? ` after ${r.attempts} attempt(s)` : ''}` : 'an unknown step';
  return `onboarding of ${r.serverId} failed at ${where}: ${r.error} — rollback: ${describeCompensations(r.compensations)}`;
}
