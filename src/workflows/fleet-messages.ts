/** Input, progress, queries and updates of the fleet workflow (imported by clients too). */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { FleetSearchFilter } from '../activities';
import type { OperatorAction } from './messages';
import type { StepRouting } from './site-queue';

/** What the fleet onboards: an inventory directory, a list of spec files, or the servers of earlier onboardings. */
export type FleetSource =
  /** Every spec file of a directory (as the workers see it), in file-name order: the drift sweep's inventory. */
  | { kind: 'inventory'; dir: string }
  /** These spec files (absolute paths on the workers), in this order; at most FLEET_LIMITS.files. */
  | { kind: 'files'; files: string[] }
  /** The servers whose latest onboarding matches (visibility search), onboarded again with the spec it had. */
  | { kind: 'search'; filter: FleetSearchFilter };

/**
 * A search over earlier onboardings (src/activities/fleet.ts): site, rack, hypervisor, outcome (UnderlayOutcome),
 * each a list of values (any of them), and/or `fleet` (the servers of an earlier fleet); the fields together (all).
 */
export type { FleetSearchFilter };

export const CANARY_APPROVALS = ['wait', 'auto'] as const;
export const ON_STOP = ['finish', 'rollback'] as const;
export type OnStop = (typeof ON_STOP)[number];

export interface FleetInput {
  source: FleetSource;
  /** The first `size` servers run alone first; then `approval: wait` waits for `underlay fleet approve`. */
  canary?: { size: number; approval: (typeof CANARY_APPROVALS)[number] };
  /** Onboardings running at once, over the whole fleet (canary and waves alike). Default 10. */
  concurrency?: number;
  /** Servers per wave after the canary; a wave finishes before the next starts. Default: one wave. */
  waveSize?: number;
  /** Stop starting servers when more than `count` fail, or more than `percent` of the fleet. Default { count: 0 }. */
  failureBudget?: { count?: number; percent?: number };
  /** When the fleet stops (budget, canary failure, abort): the running onboardings finish, or are cancelled and rolled back. */
  onStop?: OnStop;
  /** Run every server's step activities on its site's queue (`<this queue>-<site>`). */
  siteQueues?: boolean;
  /** With site queues: when the children first look for a site worker, and how often. */
  siteCheck?: StepRouting['check'];
  /** Inventory files (or servers) read per page. Default 100, at most 500. */
  pageSize?: number;
  /** Continue as new once a run's history has this many events. Default 5,000 (200 … 40,000). */
  maxEventsPerRun?: number;
  /** Carried across continue-as-new; leave unset. */
  carry?: FleetCarry;
}

export const FLEET_DEFAULTS = { concurrency: 10, pageSize: 100, maxEventsPerRun: 5_000, onStop: 'finish' as OnStop };
export const FLEET_LIMITS = {
  concurrency: 500,
  waveSize: 100_000,
  canary: 1_000,
  pageSize: 500,
  files: 1_000,
  search: 1_000,
  /** Servers listed by name in the progress (failed, skipped, invalid each); the counts are complete. */
  listed: 100,
  /** Waves kept in the progress (the oldest are folded into one line). */
  waves: 50,
  reasonChars: 300,
  minEvents: 200,
  maxEvents: 40_000,
  filterValues: 20,
};

export type FleetPhase = 'canary' | 'awaiting-approval' | 'rolling' | 'stopping' | 'completed' | 'stopped' | 'aborted';
export const FINAL_FLEET_PHASES: readonly FleetPhase[] = ['completed', 'stopped', 'aborted'];

export type ServerOutcome = 'onboarded' | 'failed' | 'cancelled' | 'skipped' | 'invalid';

export interface WaveSummary {
  /** 0 is the canary. */
  index: number;
  canary: boolean;
  /** Servers started (or skipped) in this wave so far, and its planned size. */
  size: number;
  planned: number;
  onboarded: number;
  failed: number;
  cancelled: number;
  skipped: number;
  startedAt: string;
  endedAt?: string;
}

export interface RunningServer {
  serverId: string;
  runId: string;
  site: string;
  wave: number;
  startedAt: string;
}

export interface ServerNote {
  serverId: string;
  /** One line: the onboarding's own failure message, or why it was skipped or is invalid. */
  reason: string;
  wave?: number;
}

export interface FleetCounts {
  /** Servers (valid specs) read from the source so far, and the source's size when known. */
  seen: number;
  started: number;
  running: number;
  onboarded: number;
  failed: number;
  cancelled: number;
  skipped: number;
  invalid: number;
}

export interface FleetProgress {
  fleetId: string;
  phase: FleetPhase;
  /** Why it stopped (budget, canary, abort), once it did. */
  stopReason?: string;
  source: string;
  /** Entries (spec files or servers) in the source, when known. */
  total: number | null;
  concurrency: number;
  waveSize: number | null;
  canary: { size: number; approval: 'wait' | 'auto'; approvedBy?: string } | null;
  budget: { allowed: number; failed: number; exceeded: boolean };
  onStop: OnStop;
  counts: FleetCounts;
  waves: WaveSummary[];
  /** Waves folded out of `waves` (the oldest). */
  foldedWaves: number;
  running: RunningServer[];
  failures: ServerNote[];
  skipped: ServerNote[];
  invalid: ServerNote[];
  control: { pause: OperatorAction | null; abort: (OperatorAction & { onStop: OnStop }) | null };
  /** Workflow runs so far (continue-as-new), and this run's history length at the last update. */
  runs: number;
  historyEvents: number;
  startedAt: string;
  endedAt?: string;
}

/** What continue-as-new carries: the progress, where to read on, and the onboardings still running. */
export interface FleetCarry {
  progress: FleetProgress;
  cursor?: string;
  /** The search's servers and their matching runs, resolved once (source kind `search`). */
  runs?: Array<{ serverId: string; runId: string }>;
  /** Servers taken into the current wave so far. */
  waveTaken: number;
  canaryDone: boolean;
  /** The source is exhausted: only the running ones are left. */
  exhausted: boolean;
}

export const fleetProgressQuery = defineQuery<FleetProgress>('fleetProgress');

export interface FleetRequest {
  by?: string;
  reason?: string;
}

export interface AbortRequest extends FleetRequest {
  /** Override the fleet's onStop for this abort. */
  onStop?: OnStop;
}

export interface FleetAnswer {
  fleetId: string;
  phase: FleetPhase;
  message: string;
}

/** Start no new server until resumed (the running ones go on). */
export const pauseFleetUpdate = defineUpdate<FleetAnswer, [FleetRequest]>('pause');
export const resumeFleetUpdate = defineUpdate<FleetAnswer, [FleetRequest]>('resume');
/** Let the rollout go on after the canary (canary approval `wait`). */
export const approveFleetUpdate = defineUpdate<FleetAnswer, [FleetRequest]>('approve');
/** Start no new server; the running ones finish, or are cancelled and rolled back (onStop). */
export const abortFleetUpdate = defineUpdate<FleetAnswer, [AbortRequest]>('abort');
