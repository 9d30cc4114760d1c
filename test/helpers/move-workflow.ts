/**
 * A one-activity workflow for the management-move lab test: the production `configureBond` activity with the bond
 * step's production policy (src/workflows/policy.ts) — the test kills the worker between arm and confirm and
 * exercises the retry on a new worker, not the onboarding saga around it.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { StepResult } from '../../src/activities/step';
import { STEP_POLICY } from '../../src/workflows/policy';

const { configureBond } = proxyActivities<{ configureBond(spec: unknown): Promise<StepResult> }>(STEP_POLICY.bond);

export async function moveBond(spec: unknown): Promise<StepResult> {
  return configureBond(spec);
}
