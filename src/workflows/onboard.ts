/**
 * onboardServer — the runbook as a saga.
 *
 *   cable check → bond → VLAN → SR-IOV → hypervisor install → network attach
 *
 * Each step observes, applies only what is missing, verifies, and returns the pre-state it saw. Every step
 * that changed the host pushes a compensation restoring that pre-state. On failure or cancellation the
 * compensations run in reverse, in a non-cancellable scope, and the workflow fails naming the failed step,
 * its attempts, its last error and each compensation's outcome. The saga (shared with drift remediation) is
 * saga.ts; the status, search attributes and Web UI details are one tracker (onboard-status.ts); pause / resume /
 * approve / cancel are onboard-control.ts. This file is the runbook and the failure report.
 */
import { allHandlersFinished, ApplicationFailure, CancellationScope, CancelledFailure, condition, upsertSearchAttributes } from '@temporalio/workflow';
import { SA_OUTCOME } from '../common/search-attributes';
import type { ServerSpec } from '../spec/server';
import { plannedSteps, STEP_TITLES, type StepName } from '../steps';
import type { OnboardingFailureReport, OperatorAction, StepStatus, TimelineEntry } from './messages';
import { registerControl } from './onboard-control';
import { OnboardingTracker } from './onboard-status';
import { describeCompensations, rootMessage, runStepSaga, type Compensation } from './saga';
import { checkRouting, type StepRouting } from './site-queue';

export interface OnboardInput {
  /** A validated server spec (the client validates; every activity validates again). */
  spec: ServerSpec;
  /** Steps that wait for an operator's approval (`underlay approve`) before they run, e.g. ['hypervisor']. */
  approvalBefore?: StepName[];
  /**
   * Site queues: the step activities go to this task queue (`underlay-<site>`, polled by `underlay worker --site`),
   * and the workflow reports when no worker of the site polls it. Absent: the workflow's own queue.
   */
  stepRouting?: StepRouting;
}

export interface OnboardResult {
  serverId: string;
  steps: Record<StepName, StepStatus>;
  timeline?: TimelineEntry[];
  /** What `underlay rollback` undoes, newest first: each step that changed the host, with the pre-state it saw. */
  compensations?: Compensation[];
  /** The spec it onboarded (the rollback's undo activities need it). */
  spec?: ServerSpec;
}

export async function onboardServer(input: OnboardInput): Promise<OnboardResult> {
  const { spec } = input;
  const planned = plannedSteps(spec);
  const gates = input.approvalBefore ?? [];
  checkGates(gates, planned);
  const routing = input.stepRouting;
  checkInputRouting(routing, spec);

  const tracker = new OnboardingTracker(spec, planned, gates, routing?.taskQueue);
  const control = registerControl(tracker, spec, planned, gates);

  // The runbook: every planned step in order; what changed is compensated newest first on failure or cancel.
  const outcome = await control.sagaScope.run(() =>
    runStepSaga(
      spec,
      planned,
      {
        ...tracker.sagaHooks(),
        beforeStep: control.waitBefore,
        async beforeFinish() {
          // A cancel that arrived together with the last step's result still rolls everything back.
          if (CancellationScope.current().consideredCancelled) throw new CancelledFailure('cancelled after the last step');
        },
      },
      routing,
    ),
  );

  if (outcome.ok) {
    tracker.finish('onboarded');
    control.settle([]);
    await condition(allHandlersFinished);
    return { serverId: spec.id, steps: tracker.status.steps, timeline: tracker.timeline, compensations: outcome.compensations, spec };
  }

  const { cancelled } = outcome;
  const rolledBack = outcome.compensations.every((o) => o.outcome !== 'failed');
  tracker.finish(`${cancelled ? 'cancelled' : 'failed'}${rolledBack ? '' : '-rollback-incomplete'}`);
  control.settle(outcome.compensations);
  await condition(allHandlersFinished);

  const cancelledBy = tracker.control.cancel;
  const report: OnboardingFailureReport = {
    serverId: spec.id,
    failedStep: outcome.failedStep,
    attempts: outcome.attempts,
    error: rootMessage(outcome.error),
    compensations: outcome.compensations,
    timeline: tracker.timeline,
    ...(cancelledBy ? { cancelledBy } : {}),
  };
  // A workflow cancellation (Temporal's cancel) ends the workflow as cancelled; `underlay cancel` (this
  // workflow's own cancel update) fails it with the report, typed OnboardingCancelled.
  if (cancelled && !cancelledBy) throw outcome.error;
  if (cancelledBy) {
    throw ApplicationFailure.create({ type: 'OnboardingCancelled', nonRetryable: true, message: cancelMessage(report, cancelledBy), details: [report] });
  }
  throw ApplicationFailure.create({ type: 'OnboardingFailed', nonRetryable: true, message: failureMessage(report), details: [report] });
}

/** Approval gates must name steps this onboarding runs. */
function checkGates(gates: readonly StepName[], planned: readonly StepName[]): void {
  for (const g of gates) {
    if (!planned.includes(g)) {
      upsertSearchAttributes([{ key: SA_OUTCOME, value: 'failed' }]);
      throw ApplicationFailure.create({
        type: 'InvalidOnboardInput',
        nonRetryable: true,
        message: `approvalBefore: ${JSON.stringify(g)} is not a step of this onboarding (steps: ${planned.join(', ')})`,
      });
    }
  }
}

/** The step routing must be well-formed and for the spec's own site. */
function checkInputRouting(routing: StepRouting | undefined, spec: ServerSpec): void {
  let problem: string | undefined;
  try {
    checkRouting(routing);
  } catch (err) {
    problem = (err as Error).message;
  }
  if (!problem && routing && routing.site !== spec.site) problem = `stepRouting.site: ${routing.site} is not the spec's site ${spec.site}`;
  if (problem) {
    upsertSearchAttributes([{ key: SA_OUTCOME, value: 'failed' }]);
    throw ApplicationFailure.create({ type: 'InvalidOnboardInput', nonRetryable: true, message: problem });
  }
}

function failureMessage(r: OnboardingFailureReport): string {
  const where = r.failedStep ? `${STEP_TITLES[r.failedStep]} (${r.failedStep})${r.attempts ? ` after ${r.attempts} attempt(s)` : ''}` : 'an unknown step';
  return `onboarding of ${r.serverId} failed at ${where}: ${r.error} — rollback: ${describeCompensations(r.compensations)}`;
}

function cancelMessage(r: OnboardingFailureReport, by: OperatorAction): string {
  const where = r.failedStep ? ` during ${STEP_TITLES[r.failedStep]} (${r.failedStep})` : '';
  return `onboarding of ${r.serverId} cancelled by ${by.by}${by.reason ? ` (${by.reason})` : ''}${where} — rollback: ${describeCompensations(r.compensations)}`;
}
