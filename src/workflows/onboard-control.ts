/**
 * Operator control of one onboarding: pause / resume / approve / cancel as updates with validators (a refused
 * request leaves no trace in the history), and the waits between steps they cause. The saga's steps run in their
 * own cancellation scope: `cancel` cancels it — the running step, or a wait between steps — and the saga rolls
 * back exactly as on a workflow cancellation; the cancel update completes when the rollback is done.
 */
import { CancellationScope, condition, setHandler } from '@temporalio/workflow';
import type { ServerSpec } from '../spec/server';
import { STEPS, type StepName } from '../steps';
import {
  approveStepUpdate,
  cancelUpdate,
  isFinalPhase,
  pauseUpdate,
  resumeUpdate,
  type CompensationOutcome,
  type ControlAnswer,
  type ControlRequest,
  type OperatorAction,
} from './messages';
import type { OnboardingTracker } from './onboard-status';
import { describeCompensations } from './saga';

export interface OnboardingControl {
  /** The scope the saga runs in: `cancel` cancels it. */
  readonly sagaScope: CancellationScope;
  /** Waits before `step` while paused or while the step awaits its approval (cancellable: in the saga's scope). */
  waitBefore(step: StepName): Promise<void>;
  /** The saga ended: a pending cancel update answers with these compensations. */
  settle(compensations: CompensationOutcome[]): void;
}

export function registerControl(tracker: OnboardingTracker, spec: ServerSpec, planned: readonly StepName[], gates: readonly StepName[]): OnboardingControl {
  const { status } = tracker;
  const control = tracker.control;
  const sagaScope = new CancellationScope();
  const approved = new Set<StepName>();
  let settled: CompensationOutcome[] | undefined;

  const nextStep = (): StepName | null => control.waitingBefore ?? planned.find((s) => status.steps[s].state === 'pending') ?? null;
  const awaitingApproval = (): StepName | null =>
    control.waitingBefore && gates.includes(control.waitingBefore) && !approved.has(control.waitingBefore) ? control.waitingBefore : null;
  const action = (req: ControlRequest | undefined): OperatorAction => ({
    by: req?.by ?? 'unknown',
    at: new Date().toISOString(),
    ...(req?.reason ? { reason: req.reason } : {}),
  });
  const answer = (message: string): ControlAnswer => ({
    serverId: spec.id,
    phase: status.phase,
    currentStep: status.currentStep,
    waitingBefore: control.waitingBefore,
    message,
  });
  const refuseUnlessActive = (what: string) => {
    if (isFinalPhase(status.phase)) throw new Error(`cannot ${what}: the onboarding of ${spec.id} has ended (${status.phase})`);
    if (status.phase === 'compensating' || control.cancel) throw new Error(`cannot ${what}: the onboarding of ${spec.id} is being rolled back`);
  };

  setHandler(
    pauseUpdate,
    (req) => {
      control.pause = action(req);
      tracker.publish();
      const next = nextStep();
      const running = status.phase === 'running' && status.currentStep && status.steps[status.currentStep].state === 'running';
      return answer(running ? `pausing before ${next} once ${status.currentStep} finishes` : `paused before ${next}`);
    },
    {
      description: 'pause before the next step (the running step finishes first)',
      validator: (req) => {
        checkRequest(req);
        refuseUnlessActive('pause');
        if (control.pause) throw new Error(`${spec.id} is already ${status.phase === 'paused' ? 'paused' : 'pausing'} (by ${control.pause.by})`);
        if (!nextStep()) throw new Error(`no step of ${spec.id} is left to pause before`);
      },
    },
  );
  setHandler(
    resumeUpdate,
    (req) => {
      const wasPaused = status.phase === 'paused';
      control.pause = null;
      tracker.publish();
      return answer(wasPaused ? `resumed${req?.by ? ` by ${req.by}` : ''}` : 'pending pause withdrawn');
    },
    {
      description: 'resume a paused onboarding (or withdraw a pause not yet reached)',
      validator: (req) => {
        checkRequest(req);
        refuseUnlessActive('resume');
        if (!control.pause) throw new Error(`${spec.id} is not paused (phase ${status.phase})`);
      },
    },
  );
  setHandler(
    approveStepUpdate,
    (req) => {
      const step = awaitingApproval()!;
      approved.add(step);
      control.approvals.push({ ...action(req), step });
      tracker.publish();
      return answer(`approved ${step}${control.pause ? ' (still paused: resume to continue)' : ''}`);
    },
    {
      description: 'approve the gated step the onboarding waits before (OnboardInput.approvalBefore)',
      validator: (req) => {
        checkRequest(req);
        refuseUnlessActive('approve');
        const waiting = awaitingApproval();
        if (!waiting) {
          const left = gates.filter((g) => !approved.has(g) && status.steps[g].state === 'pending');
          throw new Error(
            `nothing of ${spec.id} awaits approval${left.length ? ` yet (gated: ${left.join(', ')}; the onboarding is at ${status.currentStep ?? 'the start'})` : ''}`,
          );
        }
        if (req?.step !== undefined && req.step !== waiting) throw new Error(`${req.step} is not awaiting approval; ${waiting} is`);
      },
    },
  );
  setHandler(
    cancelUpdate,
    async (req) => {
      control.cancel = action(req);
      const at = control.waitingBefore ?? status.currentStep;
      sagaScope.cancel();
      tracker.publish();
      await condition(() => settled !== undefined);
      const compensations = settled ?? [];
      return {
        serverId: spec.id,
        cancelledAt: at,
        compensations,
        message: `cancelled${at ? ` at ${at}` : ''} — rollback: ${describeCompensations(compensations)}`,
      };
    },
    {
      description: 'cancel the running step and roll back every change (completes when the rollback is done)',
      validator: (req) => {
        checkRequest(req);
        refuseUnlessActive('cancel');
      },
    },
  );

  return {
    sagaScope,
    async waitBefore(step) {
      for (;;) {
        const phase = control.pause ? 'paused' : gates.includes(step) && !approved.has(step) ? 'awaiting-approval' : null;
        if (!phase) break;
        control.waitingBefore = step;
        tracker.setPhase(phase, step);
        await condition(phase === 'paused' ? () => !control.pause : () => approved.has(step) || !!control.pause);
      }
      if (control.waitingBefore) {
        control.waitingBefore = null;
        tracker.setPhase('running');
      }
    },
    settle(compensations) {
      settled = compensations;
    },
  };
}

/** Refuses malformed operator requests (anything can send an update). */
function checkRequest(req: unknown): void {
  if (req === undefined || req === null) return;
  if (typeof req !== 'object') throw new Error('expected { by?: string, reason?: string, step?: string }');
  const r = req as Record<string, unknown>;
  if (r.by !== undefined && (typeof r.by !== 'string' || r.by.length > 100)) throw new Error('by: a name of at most 100 characters');
  if (r.reason !== undefined && (typeof r.reason !== 'string' || r.reason.length > 300)) throw new Error('reason: at most 300 characters');
  if (r.step !== undefined && !(STEPS as readonly unknown[]).includes(r.step)) throw new Error(`step: one of ${STEPS.join(', ')}`);
}
