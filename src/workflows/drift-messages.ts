/** Messages and result types of the drift workflows (imported by clients too). */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { Change, InvalidSpecFile } from '../activities';
import type { StepName } from '../steps';
import type { CompensationOutcome } from './messages';

export const DRIFT_MODES = ['report', 'remediate', 'approve'] as const;
/** report: change nothing · remediate: re-apply the drifted steps · approve: remediate once approved. */
export type DriftMode = (typeof DRIFT_MODES)[number];

/** The value of the UnderlayDriftStatus search attribute of a `drift-<id>` workflow. */
export type DriftStatus = 'clean' | 'drifted' | 'needs-operator' | 'remediated' | 'failed' | 'awaiting-approval' | 'skipped';

/** Why a server was not checked (status `skipped`). */
export type SkipReason = 'onboarding-running' | 'not-onboarded' | 'already-running';

export interface StepDrift {
  step: StepName;
  /** The first changes (values clipped); `more` counts the ones left out. */
  changes: Change[];
  more?: number;
  /** The step could not be observed (e.g. a NIC is missing); nothing is remediated then. */
  error?: string;
  /** Health a re-apply cannot fix (a lost LACP partner, a silent gateway, a moved cable): for a person, never remediated. */
  health?: Array<{ field: string; expected: unknown; observed: unknown; hint: string }>;
}

export interface DriftCheckResult {
  serverId: string;
  mode: DriftMode;
  status: DriftStatus;
  skip?: SkipReason;
  /** Steps whose configuration differs from the spec (re-applying fixes it), in runbook order. */
  driftedSteps: StepName[];
  /** Steps whose health needs a person (StepDrift.health); they are not re-applied. */
  unhealthySteps?: StepName[];
  diffs: StepDrift[];
  /** One line for humans: why skipped or failed, the approval's outcome, what was restored. */
  reason?: string;
  checkedAt?: string;
  remediation?: {
    steps: StepName[];
    approvedBy?: string;
    failedStep?: StepName | null;
    attempts?: number | null;
    error?: string;
    compensations?: CompensationOutcome[];
  };
}

export interface DriftCheckProgress extends DriftCheckResult {
  phase: 'checking' | 'awaiting-approval' | 'remediating' | 'done';
}

export interface ApprovalRequest {
  /** Default true; false rejects the remediation (nothing is changed). */
  approve?: boolean;
  /** Who decided, for the record. */
  by?: string;
}

export interface ApprovalAnswer {
  serverId: string;
  decision: 'approved' | 'rejected';
  /** The steps that will be re-applied (approved) or left drifted (rejected). */
  steps: StepName[];
}

/** Approves (or rejects) the remediation of a `drift-<id>` workflow waiting in approve mode. */
export const approveUpdate = defineUpdate<ApprovalAnswer, [ApprovalRequest]>('approve');
export const driftProgressQuery = defineQuery<DriftCheckProgress>('driftProgress');

export interface DriftCounts {
  /** Valid inventory specs checked (or skipped). */
  servers: number;
  clean: number;
  drifted: number;
  needsOperator: number;
  remediated: number;
  failed: number;
  skipped: number;
  notOnboarded: number;
  invalid: number;
  unmanaged: number;
}

/** A sweep's result: counts for everything, details only for servers that are not clean (capped). */
export interface DriftSweepSummary {
  mode: DriftMode;
  inventoryDir: string;
  startedAt: string;
  finishedAt?: string;
  /** Inventory pages read (one workflow run each: the sweep continues-as-new between pages). */
  pages: number;
  counts: DriftCounts;
  /** Drifted, remediated, failed and skipped servers (not the clean ones), up to a cap. */
  servers: DriftCheckResult[];
  /** Non-clean servers beyond the cap: see their `drift-<id>` workflows (UnderlayDriftStatus). */
  omitted: number;
  invalid: InvalidSpecFile[];
  notOnboarded: string[];
  unmanaged: string[];
}

export const sweepProgressQuery = defineQuery<DriftSweepSummary>('sweepProgress');
