/**
 * The step registry: the runbook in order, one definition per step (./<step>.ts). Everything else derives from
 * it — the activity names a worker registers, the saga's activity proxies and policies, the plan's step set, the
 * CLI's and the Web UI's titles and summaries, the metrics' step labels. Adding a step means adding its module
 * here and its implementations in src/activities/registry.ts; a test fails if either is missing.
 */
import type { ServerSpec } from '../spec/server';
import { attach } from './attach';
import { bond } from './bond';
import { cable } from './cable';
import { dpdk } from './dpdk';
import { sectionPresent } from './define';
import { hypervisor } from './hypervisor';
import { sriov } from './sriov';
import { vlan } from './vlan';

import type { StepDef, StepSection } from './define';

export type { StepDef, StepPolicyDef, StepSection } from './define';

/** The onboarding runbook, in order. */
export const STEP_DEFS = [cable, bond, vlan, sriov, dpdk, hypervisor, attach] as const;

type Def = (typeof STEP_DEFS)[number];
export type StepName = Def['name'];
export type ApplyActivityName = Def['activity']['apply'];
export type UndoActivityName = Def['activity']['undo'];

export const STEPS: readonly StepName[] = STEP_DEFS.map((d) => d.name);

export const STEP: { readonly [K in StepName]: Extract<Def, { name: K }> } = Object.fromEntries(STEP_DEFS.map((d) => [d.name, d])) as never;

/** A step's definition, as the general shape (for code that treats every step alike). */
export function stepDef(step: StepName): StepDef {
  return STEP[step];
}

export const STEP_TITLES: Record<StepName, string> = Object.fromEntries(STEP_DEFS.map((d) => [d.name, d.title])) as Record<StepName, string>;

/** Whether a spec asks for a step at all: no bond in the spec → no bond step. */
export function stepApplies(step: StepName, spec: Pick<ServerSpec, StepSection>): boolean {
  return sectionPresent(spec, stepDef(step).section);
}

/** The steps a spec asks for, in runbook order. */
export function plannedSteps(spec: Pick<ServerSpec, StepSection>): StepName[] {
  return STEPS.filter((s) => stepApplies(s, spec));
}

/** One line per step for the Web UI and the CLI, clipped. */
export function stepSummary(step: StepName, spec: ServerSpec): string {
  return stepDef(step).summary(spec);
}

/** The step of an activity name (apply or undo), for metrics and the CLI's live view. */
export function stepOfActivity(activityType: string): { step: StepName; kind: 'apply' | 'rollback' } | undefined {
  for (const d of STEP_DEFS) {
    if (d.activity.apply === activityType) return { step: d.name, kind: 'apply' };
    if (d.activity.undo === activityType) return { step: d.name, kind: 'rollback' };
  }
  return undefined;
}
