/**
 * The activities a worker registers: one per onboarding step, one rollback per step, the dry-run plan, and the
 * drift sweep's inventory, managed-server lookups and observation.
 * Activity names are what operators read in the Web UI, so they say what the step does.
 */
import type { Client } from '@temporalio/client';
import type { StepName } from '../common/steps';
import { sshConnector } from './connect';
import { findUnmanaged, loadInventoryPage, observeDrift, onboardingState, type InventoryPageInput } from './drift';
import { PLATFORM_STEP_SET, type StepSet } from './platforms';
import { planOnboarding } from './plan';
import { runStep, undoStep, type Connector } from './run-step';
import type { StepResult, UndoResult } from './step';

import { Context } from '@temporalio/activity';

export type { StepResult, UndoResult, StepFailureDetails, Change } from './step';
export type { InventoryPage, InventoryPageInput, InvalidSpecFile, OnboardingState, UnmanagedServers } from './drift';
export type { OnboardingPlan, StepPlan } from './plan';

export { LINUX_STEPS, PLATFORM_STEP_SET, type StepSet } from './platforms';

export interface ActivityDeps {
  /** The Temporal client of the lookups (default: the worker's own, `Context.current().client`). */
  client?: () => Client;
}

export function createActivities(connect: Connector = sshConnector, steps: StepSet = PLATFORM_STEP_SET, deps: ActivityDeps = {}) {
  const client = deps.client ?? (() => Context.current().client);
  const run =
    (s: StepName) =>
    (spec: unknown): Promise<StepResult> =>
      runStep(s, steps[s], spec, connect);
  const undo =
    (s: StepName) =>
    (spec: unknown, pre: unknown): Promise<UndoResult> =>
      undoStep(s, steps[s], spec, pre, connect);
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

    /** Drift: one page of the inventory (valid specs, and invalid files with their issues). */
    loadInventoryPage: (input: InventoryPageInput) => loadInventoryPage(input),
    /** Drift: whether the server is managed (a completed onboarding) or being onboarded right now. */
    onboardingState: (serverId: string) => onboardingState(client(), serverId),
    /** Drift: servers onboarded in Temporal that have no spec in the inventory. */
    findUnmanaged: (dir: string) => findUnmanaged(client(), dir),
    /** Drift: every step's live state against the spec, over one SSH session; changes nothing. */
    observeDrift: (spec: unknown) => observeDrift(spec, connect, steps),
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
