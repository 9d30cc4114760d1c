/**
 * A one-activity workflow for the reboot lab test: the `installHypervisor` activity with the production retry,
 * timeout and heartbeat policy of the hypervisor step (src/workflows/policy.ts), and nothing else — so the test
 * exercises the activity runner and a real worker restart, not the onboarding saga around it.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { StepResult } from '../../src/activities/step';
import { STEP_POLICY } from '../../src/workflows/policy';

const { installHypervisor } = proxyActivities<{ installHypervisor(spec: unknown): Promise<StepResult> }>(STEP_POLICY.hypervisor);

export async function rebootOnce(spec: unknown): Promise<StepResult> {
  return installHypervisor(spec);
}
