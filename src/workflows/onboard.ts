/**
 * onboardServer — the runbook as a saga.
 *
 *   cable check → bond → VLAN → SR-IOV → hypervisor install → network attach
 *
 * Each step observes, applies only what is missing, verifies, and returns the pre-state it saw. Every step
 * that changed the host pushes a compensation restoring that pre-state. On failure or cancellation the
 * compensations run in reverse, in a non-cancellable scope, and the workflow fails naming the failed step,
 * its attempts, its last error and each compensation's outcome. The saga itself (shared with drift
 * remediation) is in saga.ts; this file keeps the onboarding's status, search attributes, operator control
 * (pause / resume / approve / cancel, updates with validators), the Web UI's current details and the failure
 * report with its timeline.
 */
import {
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  condition,
  isCancellation,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { SA_OUTCOME, SA_STEP } from '../common/search-attributes';
import { STEP_TITLES, STEPS, stepApplies, type StepName } from '../common/steps';
import type { ServerSpec } from '../spec/server';
import {
  approveStepUpdate,
  cancelUpdate,
  pauseUpdate,
  resumeUpdate,
  statusQuery,
  STEP_MARK,
  stepSummary,
  type CompensationOutcome,
  type ControlAnswer,
  type ControlRequest,
  type OnboardingFailureReport,
  type OnboardingStatus,
  type OperatorAction,
  type StepState,
  type StepStatus,
  type TimelineEntry,
} from './messages';
import { describeCompensations, rootMessage, runStepSaga } from './saga';

export interface OnboardInput {
  /** A validated server spec (the client validates; every activity validates again). */
  spec: ServerSpec;
  /** Steps that wait for an operator's approval (`underlay approve`) before they run, e.g. ['hypervisor']. */
  approvalBefore?: StepName[];
}

export interface OnboardResult {
  serverId: string;
  steps: Record<StepName, StepStatus>;
  timeline?: TimelineEntry[];
}

const FINISHED = ['succeeded', 'failed', 'cancelled'];

export async function onboardServer(input: OnboardInput): Promise<OnboardResult> {
  const { spec } = input;
  const planned = STEPS.filter((s) => stepApplies(s, spec));
  const gates = input.approvalBefore ?? [];
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
  const status: OnboardingStatus = {
    serverId: spec.id,
    phase: 'running',
    currentStep: null,
    steps: Object.fromEntries(
      STEPS.map((s) => [s, stepApplies(s, spec) ? { state: 'pending', summary: stepSummary(s, spec) } : { state: 'skipped' }]),
    ) as OnboardingStatus['steps'],
    control: { pause: null, waitingBefore: null, approvalBefore: [...gates], approvals: [], cancel: null },
    timeline: [],
  };
  const control = status.control!;
  const timeline = status.timeline!;
  setHandler(statusQuery, () => status);
  const publish = () => setCurrentDetails(renderDetails(status));
  publish();

  // ---- operator control ----------------------------------------------------------------------------------------
  // The saga's steps run in their own scope: `cancel` cancels it (the running step, or a wait between steps), and
  // the saga rolls back exactly as on a workflow cancellation.
  const sagaScope = new CancellationScope();
  let settled = false;
  let compensations: CompensationOutcome[] = [];
  const approved = new Set<StepName>();
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
    if (FINISHED.includes(status.phase)) throw new Error(`cannot ${what}: the onboarding of ${spec.id} has ${status.phase}`);
    if (status.phase === 'compensating' || control.cancel) throw new Error(`cannot ${what}: the onboarding of ${spec.id} is being rolled back`);
  };

  setHandler(
    pauseUpdate,
    (req) => {
      control.pause = action(req);
      publish();
      const next = nextStep();
      return answer(
        status.phase === 'running' && status.currentStep && status.steps[status.currentStep].state === 'running'
          ? `pausing before ${next} once ${status.currentStep} finishes`
          : `paused before ${next}`,
      );
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
      publish();
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
      publish();
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
      publish();
      await condition(() => settled);
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

  /** Waits between steps while paused or while a gated step lacks its approval. Cancellable (sagaScope). */
  const waitBefore = async (step: StepName): Promise<void> => {
    for (;;) {
      const phase = control.pause ? 'paused' : gates.includes(step) && !approved.has(step) ? 'awaiting-approval' : null;
      if (!phase) break;
      control.waitingBefore = step;
      status.phase = phase;
      upsertSearchAttributes([
        { key: SA_STEP, value: step },
        { key: SA_OUTCOME, value: phase },
      ]);
      publish();
      await condition(phase === 'paused' ? () => !control.pause : () => approved.has(step) || !!control.pause);
    }
    if (control.waitingBefore) {
      control.waitingBefore = null;
      status.phase = 'running';
      upsertSearchAttributes([{ key: SA_OUTCOME, value: 'running' }]);
    }
  };

  // ---- the saga --------------------------------------------------------------------------------------------------
  const prior: Partial<Record<StepName, StepState>> = {};
  const compensationStarted: Partial<Record<StepName, number>> = {};
  const lastEntry = (step: StepName) => [...timeline].reverse().find((e) => e.step === step);
  const outcome = await sagaScope.run(() =>
    runStepSaga(spec, planned, {
      beforeStep: waitBefore,
      stepStarted(step) {
        status.currentStep = step;
        Object.assign(status.steps[step], { state: 'running', startedAt: new Date().toISOString() });
        upsertSearchAttributes([{ key: SA_STEP, value: step }]);
        publish();
      },
      stepDone(step, result) {
        const st = status.steps[step];
        Object.assign(st, {
          state: result.changed ? 'done' : 'unchanged',
          endedAt: new Date().toISOString(),
          attempts: result.attempt,
          changes: result.changes.length,
          summary: result.summary,
        });
        timeline.push({
          step,
          result: result.changed ? 'done' : 'unchanged',
          attempts: result.attempt,
          startedAt: st.startedAt!,
          durationMs: Date.now() - Date.parse(st.startedAt!),
        });
        publish();
      },
      stepFailed(step, err, details) {
        const st = status.steps[step];
        Object.assign(st, { state: 'failed', endedAt: new Date().toISOString(), attempts: details?.attempt, error: rootMessage(err) });
        timeline.push({
          step,
          result: isCancellation(err) ? 'cancelled' : 'failed',
          attempts: details?.attempt || null,
          error: rootMessage(err),
          startedAt: st.startedAt!,
          durationMs: Date.now() - Date.parse(st.startedAt!),
        });
        publish();
      },
      async beforeFinish() {
        // A cancel that arrived together with the last step's result still rolls everything back.
        if (CancellationScope.current().consideredCancelled) throw new CancelledFailure('cancelled after the last step');
      },
      compensating(step) {
        status.phase = 'compensating';
        prior[step] = status.steps[step].state;
        status.steps[step].state = 'compensating';
        status.currentStep = step;
        compensationStarted[step] = Date.now();
        upsertSearchAttributes([{ key: SA_STEP, value: `rollback:${step}` }]);
        publish();
      },
      compensated(step, o) {
        const st = status.steps[step];
        if (o.outcome === 'failed') Object.assign(st, { state: 'compensation-failed', error: o.error });
        else st.state = prior[step] === 'failed' ? 'failed' : 'compensated';
        const entry = lastEntry(step);
        if (entry)
          entry.compensation = {
            outcome: o.outcome,
            durationMs: Date.now() - (compensationStarted[step] ?? Date.now()),
            ...(o.error ? { error: o.error } : {}),
          };
        publish();
      },
    }),
  );
  control.waitingBefore = null;
  control.pause = null;

  if (outcome.ok) {
    status.phase = 'succeeded';
    status.currentStep = null;
    upsertSearchAttributes([
      { key: SA_STEP, value: 'done' },
      { key: SA_OUTCOME, value: 'onboarded' },
    ]);
    publish();
    settled = true;
    await condition(allHandlersFinished);
    return { serverId: spec.id, steps: status.steps, timeline };
  }

  // Steps after the failure never ran.
  for (const s of STEPS) if (status.steps[s].state === 'pending') status.steps[s].state = 'not-run';
  compensations = outcome.compensations;
  const { cancelled } = outcome;
  const rolledBack = outcome.compensations.every((o) => o.outcome !== 'failed');
  status.phase = cancelled ? 'cancelled' : 'failed';
  status.currentStep = null;
  upsertSearchAttributes([{ key: SA_OUTCOME, value: `${cancelled ? 'cancelled' : 'failed'}${rolledBack ? '' : '-rollback-incomplete'}` }]);
  publish();
  settled = true;
  await condition(allHandlersFinished);

  const report: OnboardingFailureReport = {
    serverId: spec.id,
    failedStep: outcome.failedStep,
    attempts: outcome.attempts,
    error: rootMessage(outcome.error),
    compensations: outcome.compensations,
    timeline,
    ...(control.cancel ? { cancelledBy: control.cancel } : {}),
  };
  // A workflow cancellation (Temporal's cancel) ends the workflow as cancelled; `underlay cancel` (this
  // workflow's own cancel update) fails it with the report, typed OnboardingCancelled.
  if (cancelled && !control.cancel) throw outcome.error;
  if (control.cancel) {
    throw ApplicationFailure.create({ type: 'OnboardingCancelled', nonRetryable: true, message: cancelMessage(report, control.cancel), details: [report] });
  }
  throw ApplicationFailure.create({ type: 'OnboardingFailed', nonRetryable: true, message: failureMessage(report), details: [report] });
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

function failureMessage(r: OnboardingFailureReport): string {
  const where = r.failedStep ? `${STEP_TITLES[r.failedStep]} (${r.failedStep})${r.attempts ? ` after ${r.attempts} attempt(s)` : ''}` : 'an unknown step';
  return `onboarding of ${r.serverId} failed at ${where}: ${r.error} — rollback: ${describeCompensations(r.compensations)}`;
}

function cancelMessage(r: OnboardingFailureReport, by: OperatorAction): string {
  const where = r.failedStep ? ` during ${STEP_TITLES[r.failedStep]} (${r.failedStep})` : '';
  return `onboarding of ${r.serverId} cancelled by ${by.by}${by.reason ? ` (${by.reason})` : ''}${where} — rollback: ${describeCompensations(r.compensations)}`;
}

// ---- current details: what the Web UI shows live (workflow metadata query) --------------------------------------

/** A markdown table cell: one line, no pipe breaking the table, clipped. */
function cell(v: string | number | null | undefined, max = 90): string {
  const s = String(v ?? '')
    .replace(/\s+/g, ' ')
    .replace(/\|/g, '\\|')
    .trim();
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

function seconds(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

function renderDetails(s: OnboardingStatus): string {
  const c = s.control!;
  const where = c.waitingBefore ? ` · before ${STEP_TITLES[c.waitingBefore]}` : s.currentStep ? ` · ${STEP_TITLES[s.currentStep]}` : '';
  const lines = [`**${s.serverId}** · ${s.phase}${where}`, ''];
  if (s.phase === 'paused') lines.push(`⏸ Paused before **${STEP_TITLES[c.waitingBefore!]}** by ${c.pause?.by}: \`underlay resume ${s.serverId}\``, '');
  else if (c.pause && !FINISHED.includes(s.phase)) lines.push(`⏸ Pausing before the next step (asked by ${c.pause.by})`, '');
  if (s.phase === 'awaiting-approval')
    lines.push(`⏳ **${STEP_TITLES[c.waitingBefore!]}** awaits approval: \`underlay approve ${s.serverId} --step ${c.waitingBefore}\``, '');
  if (c.cancel) lines.push(`✗ Cancelled by ${c.cancel.by}${c.cancel.reason ? ` (${cell(c.cancel.reason, 80)})` : ''}: rolling back`, '');
  // Three columns: the UI's details panel is narrow and its markdown tables have no cell padding.
  lines.push('| step | state | what |', '|---|---|---|');
  for (const step of STEPS) {
    const st = s.steps[step];
    if (st.state === 'skipped') continue;
    const time = st.startedAt ? (st.endedAt ? seconds(Date.parse(st.endedAt) - Date.parse(st.startedAt)) : `since ${st.startedAt.slice(11, 19)}Z`) : '';
    const tries = st.attempts && st.attempts > 1 ? `${st.attempts} attempts` : '';
    const gate = c.approvalBefore.includes(step) ? (c.approvals.some((a) => a.step === step) ? 'approved' : 'needs approval') : '';
    const state = [st.state, time, tries, gate].filter(Boolean).join(' · ');
    lines.push(`| ${STEP_MARK[st.state]} ${STEP_TITLES[step]} | ${state} | ${cell(st.error ?? st.summary)} |`);
  }
  if (s.phase === 'compensating' || s.phase === 'failed' || s.phase === 'cancelled') {
    lines.push('', '**Timeline**', '', '| step | result | error | rollback |', '|---|---|---|---|');
    for (const e of s.timeline ?? []) {
      const result = `${e.result} · ${e.attempts ?? '?'} attempt${e.attempts === 1 ? '' : 's'} · ${seconds(e.durationMs)}`;
      const rb = e.compensation
        ? `${e.compensation.outcome} · ${seconds(e.compensation.durationMs)}${e.compensation.error ? ` · ${e.compensation.error}` : ''}`
        : '–';
      lines.push(`| ${STEP_TITLES[e.step]} | ${result} | ${cell(e.error, 120) || '–'} | ${cell(rb, 80)} |`);
    }
  }
  return lines.join('\n');
}
