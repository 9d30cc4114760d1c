/** Queries, updates and shared types of the onboarding workflow (imported by clients too). */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { StepName } from '../steps';
import type { WorkerWait } from './site-queue';

export type StepState =
  'pending' | 'skipped' | 'running' | 'done' | 'unchanged' | 'failed' | 'cancelled' | 'compensating' | 'compensated' | 'compensation-failed' | 'not-run';

export interface StepStatus {
  state: StepState;
  /** What the step does to this server, one line (from the spec before it runs, from the step once done). */
  summary?: string;
  attempts?: number;
  /** Fields the step changed (done), or restored (compensated). */
  changes?: number;
  error?: string;
  startedAt?: string;
  endedAt?: string;
}

/**
 * running → (paused | awaiting-approval → running)* → onboarded, or → compensating → failed | cancelled, each
 * with `-rollback-incomplete` when a compensation failed (the host is in neither state: look at it).
 * `paused` and `awaiting-approval` are waits between two steps: nothing runs on the host. One vocabulary: the
 * `UnderlayOutcome` search attribute always holds the phase, and the CLI and docs use the same words.
 */
export const PHASES = [
  'running',
  'paused',
  'awaiting-approval',
  'compensating',
  'onboarded',
  'failed',
  'cancelled',
  'failed-rollback-incomplete',
  'cancelled-rollback-incomplete',
] as const;
export type Phase = (typeof PHASES)[number];

/** What `UnderlayOutcome` holds on `onboard-<id>` workflows: an onboarding's phase, or a rollback's (rollbackServer). */
export const OUTCOMES = [...PHASES, 'rolling-back', 'rolled-back', 'rollback-incomplete'] as const;

/** Phases after which nothing more happens. */
export const FINAL_PHASES: readonly Phase[] = ['onboarded', 'failed', 'cancelled', 'failed-rollback-incomplete', 'cancelled-rollback-incomplete'];
export const isFinalPhase = (p: Phase): boolean => FINAL_PHASES.includes(p);

/** Who asked for an operator action, and when (workflow time). */
export interface OperatorAction {
  by: string;
  at: string;
  reason?: string;
}

/** Operator control of one onboarding: pause/resume, approval gates, cancellation with rollback. */
export interface ControlState {
  /** A pause was asked for: the workflow stops before the next step (the running one finishes). */
  pause: OperatorAction | null;
  /** The step the workflow waits before (paused or awaiting approval), else null. */
  waitingBefore: StepName | null;
  /** Steps that wait for `underlay approve` before they run (OnboardInput.approvalBefore). */
  approvalBefore: StepName[];
  approvals: Array<OperatorAction & { step: StepName }>;
  /** `underlay cancel`: the running step was cancelled and everything changed is being (or was) rolled back. */
  cancel: OperatorAction | null;
}

/** One line of the timeline: a step's apply and, if it was rolled back, its compensation. */
export interface TimelineEntry {
  step: StepName;
  result: 'done' | 'unchanged' | 'failed' | 'cancelled';
  /** Attempts of the step activity (null when unknown, e.g. a timeout without heartbeat). */
  attempts: number | null;
  error?: string;
  startedAt: string;
  durationMs: number;
  compensation?: { outcome: CompensationOutcome['outcome']; durationMs: number; error?: string };
}

export interface OnboardingStatus {
  serverId: string;
  phase: Phase;
  currentStep: StepName | null;
  steps: Record<StepName, StepStatus>;
  /** Absent in histories from before operator control existed. */
  control?: ControlState;
  timeline?: TimelineEntry[];
  /** With site queues: the queue of this server's step activities (`underlay-<site>`). */
  stepQueue?: string;
  /** Set while the running step waits for a worker of the server's site (no poller on its queue), else null. */
  waitingForWorker?: WorkerWait | null;
}

export interface CompensationOutcome {
  step: StepName;
  outcome: 'restored' | 'already-restored' | 'failed';
  changes?: number;
  error?: string;
  /** What the rollback left different from the pre-state on purpose, and why. */
  note?: string;
}

export interface OnboardingFailureReport {
  serverId: string;
  failedStep: StepName | null;
  attempts: number | null;
  error: string;
  compensations: CompensationOutcome[];
  /** Every step that ran: attempts, error, duration and its compensation's outcome. */
  timeline?: TimelineEntry[];
  /** Set when an operator cancelled with `underlay cancel`. */
  cancelledBy?: OperatorAction;
}

/** One character per step state, shared by the Web UI's details table and the CLI's frames. */
export const STEP_MARK: Record<StepState, string> = {
  pending: '·',
  skipped: '–',
  running: '▶',
  done: '✓',
  unchanged: '=',
  failed: '✗',
  compensating: '↺',
  compensated: '↩',
  'compensation-failed': '!',
  cancelled: '⊘',
  'not-run': '·',
};

export const statusQuery = defineQuery<OnboardingStatus>('status');

// ---- operator control (updates with validators: a refused request leaves no trace in the history) -------------

export interface ControlRequest {
  /** Who asks, for the record (the CLI sends the user name). */
  by?: string;
  reason?: string;
}

export interface ApproveRequest extends ControlRequest {
  /** The step being approved; default: the one waiting. Refused if another step waits. */
  step?: StepName;
}

export interface ControlAnswer {
  serverId: string;
  phase: Phase;
  currentStep: StepName | null;
  /** The step the workflow waits before (or will pause before), if any. */
  waitingBefore: StepName | null;
  message: string;
}

export interface CancelAnswer {
  serverId: string;
  /** The step that was running (cancelled) or waited for, null before the first step. */
  cancelledAt: StepName | null;
  compensations: CompensationOutcome[];
  message: string;
}

/** Pause before the next step (the running step finishes). Refused when paused already or finished. */
export const pauseUpdate = defineUpdate<ControlAnswer, [ControlRequest]>('pause');
/** Resume a paused onboarding. Refused unless paused (or a pause is pending). */
export const resumeUpdate = defineUpdate<ControlAnswer, [ControlRequest]>('resume');
/** Approve the gated step the onboarding waits before. Refused when nothing waits for approval. */
export const approveStepUpdate = defineUpdate<ControlAnswer, [ApproveRequest]>('approveStep');
/** Cancel the running step and roll back every change; completes once the rollback is done. */
export const cancelUpdate = defineUpdate<CancelAnswer, [ControlRequest]>('cancel');
