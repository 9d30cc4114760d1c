/**
 * What a step is, apart from how it runs: its name, title, activity names, the spec section it configures, its
 * retry policy with the reason for it, and its one-line summary. One pure module per step (no I/O, no Node
 * builtins): workflows, activities, the CLI, the plan and the Web UI all read a step's identity from here, as
 * Ironic keeps a deploy step's metadata on the step. How a step runs on each platform is registered once in
 * src/activities/registry.ts.
 */
import type { Duration } from '@temporalio/common';
import type { ServerSpec } from '../spec/server';

/** Optional spec sections a step configures; a step without one runs in every onboarding. */
export type StepSection = 'bond' | 'vlans' | 'sriov' | 'dpdk' | 'attach';

/** Timeouts and retries of a step's apply activity, and why they are what they are. */
export interface StepPolicyDef {
  /** Whole activity attempt, including verification. */
  startToClose: Duration;
  heartbeat: Duration;
  maximumAttempts: number;
  /** Why these numbers: shown in docs, and kept next to them so a change has to face the reason. */
  why: string;
}

export interface StepDef<N extends string = string, A extends string = string, U extends string = string> {
  readonly name: N;
  /** For people: `cable check`, `SR-IOV enable`. */
  readonly title: string;
  /** Activity names, as operators read them in the Web UI. */
  readonly activity: { readonly apply: A; readonly undo: U };
  readonly section?: StepSection;
  readonly policy: StepPolicyDef;
  /** What the step does to this server, one line, from the spec alone (the same on every replay). */
  summary(spec: ServerSpec): string;
}

/** Keeps every literal (name, activity names, section) in the type: the registry derives types from them. */
export function defineStep<const D extends StepDef>(def: D): D {
  return def;
}

/** Whether a spec asks for the step: the section it configures is present (a list: not empty). */
export function sectionPresent(spec: Pick<ServerSpec, StepSection>, section: StepSection | undefined): boolean {
  if (!section) return true;
  const v = spec[section];
  return Array.isArray(v) ? v.length > 0 : v !== undefined;
}
