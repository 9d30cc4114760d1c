/**
 * The status of one onboarding, kept in one place: the status query's answer, the phase, the search attributes
 * (`UnderlayStep`, `UnderlayOutcome` = the phase) and the Web UI's current details change together, here only.
 * The tracker implements the saga's hooks (saga.ts), so the runbook (onboard.ts) wires it in one line.
 */
import { setCurrentDetails, setHandler, upsertSearchAttributes, isCancellation } from '@temporalio/workflow';
import { SA_OUTCOME, SA_STEP } from '../common/search-attributes';
import type { ServerSpec } from '../spec/server';
import { STEP_TITLES, STEPS, stepSummary, type StepName } from '../steps';
import { isFinalPhase, STEP_MARK, statusQuery, type ControlState, type OnboardingStatus, type Phase, type StepState, type TimelineEntry } from './messages';
import { rootMessage, type SagaHooks } from './saga';
import type { StepFailureDetails, StepResult } from '../activities';
import type { CompensationOutcome } from './messages';

export class OnboardingTracker {
  readonly status: OnboardingStatus;
  private readonly prior: Partial<Record<StepName, StepState>> = {};
  private readonly compensationStarted: Partial<Record<StepName, number>> = {};

  constructor(spec: ServerSpec, planned: readonly StepName[], gates: readonly StepName[], stepQueue?: string) {
    this.status = {
      serverId: spec.id,
      phase: 'running',
      currentStep: null,
      steps: Object.fromEntries(
        STEPS.map((s) => [s, planned.includes(s) ? { state: 'pending', summary: stepSummary(s, spec) } : { state: 'skipped' }]),
      ) as OnboardingStatus['steps'],
      control: { pause: null, waitingBefore: null, approvalBefore: [...gates], approvals: [], cancel: null },
      timeline: [],
      ...(stepQueue ? { stepQueue, waitingForWorker: null } : {}),
    };
    setHandler(statusQuery, () => this.status);
    this.publish();
  }

  get control(): ControlState {
    return this.status.control!;
  }

  get timeline(): TimelineEntry[] {
    return this.status.timeline!;
  }

  get phase(): Phase {
    return this.status.phase;
  }

  /** The Web UI's current details (the workflow metadata query). */
  publish(): void {
    setCurrentDetails(renderDetails(this.status));
  }

  /** Phase, `UnderlayOutcome` (= the phase), optionally `UnderlayStep`, and the details: always together. */
  setPhase(phase: Phase, step?: string): void {
    this.status.phase = phase;
    upsertSearchAttributes([...(step !== undefined ? [{ key: SA_STEP, value: step }] : []), { key: SA_OUTCOME, value: phase }]);
    this.publish();
  }

  /** The saga's hooks (all but the waits, which belong to operator control). */
  sagaHooks(): Pick<SagaHooks, 'stepStarted' | 'stepDone' | 'stepFailed' | 'compensating' | 'compensated' | 'waitingForWorker' | 'workerFound'> {
    const { status } = this;
    const lastEntry = (step: StepName) => [...this.timeline].reverse().find((e) => e.step === step);
    return {
      waitingForWorker: (wait) => {
        status.waitingForWorker = wait;
        this.publish();
      },
      workerFound: () => {
        status.waitingForWorker = null;
        this.publish();
      },
      stepStarted: (step) => {
        status.currentStep = step;
        Object.assign(status.steps[step], { state: 'running', startedAt: new Date().toISOString() });
        upsertSearchAttributes([{ key: SA_STEP, value: step }]);
        this.publish();
      },
      stepDone: (step, result: StepResult) => {
        const st = status.steps[step];
        Object.assign(st, {
          state: result.changed ? 'done' : 'unchanged',
          endedAt: new Date().toISOString(),
          attempts: result.attempt,
          changes: result.changes.length,
          summary: result.note ? `${result.summary} · ${result.note}` : result.summary,
        });
        this.timeline.push({
          step,
          result: result.changed ? 'done' : 'unchanged',
          attempts: result.attempt,
          startedAt: st.startedAt!,
          durationMs: Date.now() - Date.parse(st.startedAt!),
        });
        this.publish();
      },
      stepFailed: (step, err: unknown, details: StepFailureDetails | undefined) => {
        const st = status.steps[step];
        const cancelled = isCancellation(err);
        Object.assign(st, {
          state: cancelled ? 'cancelled' : 'failed',
          endedAt: new Date().toISOString(),
          attempts: details?.attempt,
          error: cancelled ? `cancelled${status.control?.cancel ? ` by ${status.control.cancel.by}` : ''}` : rootMessage(err),
        });
        this.timeline.push({
          step,
          result: cancelled ? 'cancelled' : 'failed',
          attempts: details?.attempt || null,
          error: st.error,
          startedAt: st.startedAt!,
          durationMs: Date.now() - Date.parse(st.startedAt!),
        });
        this.publish();
      },
      compensating: (step) => {
        this.prior[step] = status.steps[step].state;
        status.steps[step].state = 'compensating';
        status.currentStep = step;
        this.compensationStarted[step] = Date.now();
        this.setPhase('compensating', `rollback:${step}`);
      },
      compensated: (step, o: CompensationOutcome) => {
        const st = status.steps[step];
        const before = this.prior[step];
        if (o.outcome === 'failed') Object.assign(st, { state: 'compensation-failed', error: o.error });
        else st.state = before === 'failed' || before === 'cancelled' ? before : 'compensated';
        const entry = lastEntry(step);
        if (entry) {
          entry.compensation = {
            outcome: o.outcome,
            durationMs: Date.now() - (this.compensationStarted[step] ?? Date.now()),
            ...(o.error ? { error: o.error } : {}),
          };
        }
        this.publish();
      },
    };
  }

  /** The end: every step that never ran is `not-run`; the phase, search attributes and details say how it ended. */
  finish(phase: Extract<Phase, 'onboarded' | 'failed' | 'cancelled' | 'failed-rollback-incomplete' | 'cancelled-rollback-incomplete'>): void {
    const { status } = this;
    this.control.waitingBefore = null;
    this.control.pause = null;
    status.currentStep = null;
    if (phase !== 'onboarded') for (const s of STEPS) if (status.steps[s].state === 'pending') status.steps[s].state = 'not-run';
    this.setPhase(phase, phase === 'onboarded' ? 'done' : undefined);
  }
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

export function seconds(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function renderDetails(s: OnboardingStatus): string {
  const c = s.control!;
  const where = c.waitingBefore ? ` · before ${STEP_TITLES[c.waitingBefore]}` : s.currentStep ? ` · ${STEP_TITLES[s.currentStep]}` : '';
  const lines = [`**${s.serverId}** · ${s.phase}${where}`, ''];
  if (s.phase === 'paused') lines.push(`⏸ Paused before **${STEP_TITLES[c.waitingBefore!]}** by ${c.pause?.by}: \`underlay resume ${s.serverId}\``, '');
  else if (c.pause && !isFinalPhase(s.phase)) lines.push(`⏸ Pausing before the next step (asked by ${c.pause.by})`, '');
  if (s.phase === 'awaiting-approval')
    lines.push(`⏳ **${STEP_TITLES[c.waitingBefore!]}** awaits approval: \`underlay approve ${s.serverId} --step ${c.waitingBefore}\``, '');
  if (c.cancel) lines.push(`✗ Cancelled by ${c.cancel.by}${c.cancel.reason ? ` (${cell(c.cancel.reason, 80)})` : ''}: rolling back`, '');
  if (s.waitingForWorker)
    lines.push(`⏳ **No worker for site ${s.waitingForWorker.site}** since ${s.waitingForWorker.since.slice(11, 19)}Z: ${s.waitingForWorker.detail}`, '');
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
  if (s.phase !== 'running' && s.phase !== 'paused' && s.phase !== 'awaiting-approval' && s.phase !== 'onboarded') {
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

/** The markdown the Web UI shows as the onboarding's details: the server, and every planned step in one line. */
export function onboardingDetails(spec: ServerSpec, planned: readonly StepName[], gates: readonly StepName[] = []): string {
  const m = spec.management;
  return [
    `**Server** ${spec.id} · site ${spec.site} · rack ${spec.rack}`,
    `**Hypervisor** ${spec.hypervisor.kind} · **management** ${m.user}@${m.address}:${m.port}`,
    '',
    '**Planned steps**',
    '',
    ...planned.map((s, i) => `${i + 1}. **${STEP_TITLES[s]}** — ${stepSummary(s, spec)}${gates.includes(s) ? ' · _waits for approval_' : ''}`),
    '',
    `Follow: \`underlay status ${spec.id} --watch\` · control: \`underlay pause|resume|cancel ${spec.id}\`${gates.length ? ` · \`underlay approve ${spec.id}\`` : ''}`,
  ].join('\n');
}
