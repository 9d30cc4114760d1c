/** Queries and shared types of the onboarding workflow (imported by clients too). */
import { defineQuery } from '@temporalio/workflow';
import type { StepName } from '../common/steps';

export type StepState =
  | 'pending'
  | 'skipped'
  | 'running'
  | 'done'
  | 'unchanged'
  | 'failed'
  | 'compensating'
  | 'compensated'
  | 'compensation-failed'
  | 'not-run';

export interface StepStatus {
  state: StepState;
  summary?: string;
  attempts?: number;
  /** Fields the step changed (done), or restored (compensated). */
  changes?: number;
  error?: string;
  startedAt?: string;
  endedAt?: string;
}

export type Phase = 'running' | 'compensating' | 'succeeded' | 'failed' | 'cancelled';

export interface OnboardingStatus {
  serverId: string;
  phase: Phase;
  currentStep: StepName | null;
  steps: Record<StepName, StepStatus>;
}

export interface CompensationOutcome {
  step: StepName;
  outcome: 'restored' | 'already-restored' | 'failed';
  changes?: number;
  error?: string;
}

export interface OnboardingFailureReport {
  serverId: string;
  failedStep: StepName | null;
  attempts: number | null;
  error: string;
  compensations: CompensationOutcome[];
}

export const statusQuery = defineQuery<OnboardingStatus>('status');
