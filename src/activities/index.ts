/**
 * The activities a worker registers: per step of the registry (src/steps) its apply and its rollback, under the
 * names the step's definition gives (operators read them in the Web UI); the dry-run plan; and the drift sweep's
 * inventory, managed-server lookups and observation.
 */
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { STEP_DEFS, type ApplyActivityName, type StepName, type UndoActivityName } from '../steps';
import { pooledSshConnector } from './connect';
import { blockingDriftCheck, findUnmanaged, loadInventoryPage, observeDrift, onboardingState, type InventoryPageInput } from './drift';
import { cancelOnboardings, loadFleetPage, onboardingOutcomes, resolveFleetSearch, type FleetPageInput, type FleetSearchFilter } from './fleet';
import { planOnboarding } from './plan';
import { probeHealth, type ProbeRequest } from './probe';
import { loadRollback } from './rollback';
import { queueWorkers } from './queues';
import { PLATFORM_STEP_SET, type StepSet } from './registry';
import { runStep, undoStep, type Connector } from './run-step';
import type { StepResult, UndoResult } from './step';

export type { StepResult, UndoResult, StepFailureDetails, Change } from './step';
export type { InventoryPage, InventoryPageInput, InvalidSpecFile, OnboardingState, UnmanagedServers } from './drift';
export type { OnboardingPlan, StepPlan } from './plan';
export type { RollbackPlan } from './rollback';
export type { HealthRow, ProbeRequest } from './probe';
export type { QueueWorkers } from './queues';
export type { CancelOutcome, FleetEntry, FleetPage, FleetPageInput, FleetPageSource, FleetSearchFilter, RunOutcome } from './fleet';

export { IMPLEMENTATIONS, PLATFORM_STEP_SET, stepSetOf, type StepSet } from './registry';

export interface ActivityDeps {
  /** The Temporal client of the lookups (default: the worker's own, `Context.current().client`). */
  client?: () => Client;
}

/** Every step's apply and rollback activity, named by the registry. */
export type StepActivities = { [K in ApplyActivityName]: (spec: unknown) => Promise<StepResult> } & {
  [K in UndoActivityName]: (spec: unknown, pre: unknown) => Promise<UndoResult>;
};

export function stepActivities(connect: Connector, steps: StepSet): StepActivities {
  const out: Record<string, unknown> = {};
  for (const d of STEP_DEFS) {
    const name: StepName = d.name;
    out[d.activity.apply] = (spec: unknown): Promise<StepResult> => runStep(name, steps[name], spec, connect);
    out[d.activity.undo] = (spec: unknown, pre: unknown): Promise<UndoResult> => undoStep(name, steps[name], spec, pre, connect);
  }
  return out as StepActivities;
}

export function createActivities(connect: Connector = pooledSshConnector(), steps: StepSet = PLATFORM_STEP_SET, deps: ActivityDeps = {}) {
  const client = deps.client ?? (() => Context.current().client);
  return {
    ...stepActivities(connect, steps),

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
    /** Health sweep: probe one host over one SSH session, write its node_exporter textfile there (read-only otherwise). */
    probeHealth: (spec: unknown, req?: ProbeRequest) => probeHealth(spec, connect, req),
    /** Rollback: the compensations of the server's latest completed onboarding. */
    loadRollback: (serverId: string) => loadRollback(client(), serverId),
    /** Fleet: one page of the fleet's servers (inventory, spec files, or earlier onboardings' specs). */
    loadFleetPage: (input: FleetPageInput) => loadFleetPage(client, input),
    /** Fleet: the servers whose latest onboarding matches a search filter. */
    resolveFleetSearch: (filter: FleetSearchFilter) => resolveFleetSearch(client(), filter),
    /** Fleet: the mode of a drift check that may change the host right now (onboarding must wait), or null. */
    blockingDrift: async (serverId: string) => (await blockingDriftCheck(client(), serverId)) ?? null,
    /** Fleet abort with rollback: `underlay cancel` of each running onboarding. */
    cancelOnboardings: (input: { serverIds: string[]; by: string; reason?: string }) => cancelOnboardings(client(), input),
    /** Fleet: how the onboardings an earlier run started have ended (if they have). */
    onboardingOutcomes: (runs: Array<{ serverId: string; runId: string }>) => onboardingOutcomes(client(), runs),
    /** Site queues: whether a worker polls a site's step activity queue (workflows look while a step waits). */
    siteQueueWorkers: (taskQueue: string) => queueWorkers(client(), taskQueue, 'activity'),
  };
}

export type Activities = ReturnType<typeof createActivities>;

/**
 * The activities that reach hosts — every step's apply and rollback, and the drift observation — i.e. what a
 * site-local worker (`underlay worker --site <site>`) runs from inside its site. The rest (inventory, Temporal
 * lookups) stays with the central workers.
 */
export const SITE_ACTIVITY_NAMES: readonly string[] = [...STEP_DEFS.flatMap((d) => [d.activity.apply, d.activity.undo]), 'observeDrift'];

/** The site-scoped part of an activities object (tests pass their own host stand-ins). */
export function siteActivities(all: object): Record<string, unknown> {
  const src = all as Record<string, unknown>;
  return Object.fromEntries(SITE_ACTIVITY_NAMES.filter((n) => typeof src[n] === 'function').map((n) => [n, src[n]]));
}

function heartbeatIfActivity(): void {
  try {
    Context.current().heartbeat();
  } catch {
    // Not inside an activity (the CLI runs plans directly).
  }
}
