/**
 * The activities a worker registers: one per onboarding step, and one rollback per step.
 * Activity names are what operators read in the Web UI, so they say what the step does.
 */
import type { StepName } from '../common/steps';
import { attachStep } from './attach';
import { bondStep } from './bond';
import { cableStep } from './cable';
import { sshConnector } from './connect';
import { hypervisorStep } from './hypervisor';
import { planOnboarding } from './plan';
import { runStep, undoStep, type Connector } from './run-step';
import { sriovStep } from './sriov';
import { vlanStep } from './vlan';
import type { Step, StepResult, UndoResult } from './step';

import { Context } from '@temporalio/activity';

export type { StepResult, UndoResult, StepFailureDetails, Change } from './step';

export type StepSet = { [K in StepName]: Step<any> }; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The Linux (KVM) implementations of the six steps. */
export const LINUX_STEPS: StepSet = {
  cable: cableStep,
  bond: bondStep,
  vlan: vlanStep,
  sriov: sriovStep,
  hypervisor: hypervisorStep,
  attach: attachStep,
};

export function createActivities(connect: Connector = sshConnector, steps: StepSet = LINUX_STEPS) {
  const run = (s: StepName) => (spec: unknown): Promise<StepResult> => runStep(steps[s], spec, connect);
  const undo = (s: StepName) => (spec: unknown, pre: unknown): Promise<UndoResult> => undoStep(steps[s], spec, pre, connect);
  return {
    checkCabling: run('cable'),
    configureBond: run('bond'),
    configureVlans: run('vlan'),
    enableSriov: run('sriov'),
    installHypervisor: run('hypervisor'),
    attachNetwork: run('attach'),

    rollbackCabling: undo('cable'),
    rollbackBond: undo('bond'),
    rollbackVlans: undo('vlan'),
    rollbackSriov: undo('sriov'),
    rollbackHypervisor: undo('hypervisor'),
    rollbackNetworkAttach: undo('attach'),

    /** Dry run: every step's pending changes, nothing applied. */
    planOnboarding: (spec: unknown) => planOnboarding(spec, connect, steps, () => heartbeatIfActivity()),
  };
}

export type Activities = ReturnType<typeof createActivities>;

function heartbeatIfActivity(): void {
  try {
    Context.current().heartbeat();
  } catch {
    // Not inside an activity (the CLI runs plans directly).
  }
}
